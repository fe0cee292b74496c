/**
 * The query string of a collection request (contract §5) to an ODataQuery.
 */
import type { EntitySetDef, ODataQuery, OrderByItem } from './ast.js';
import { ODataError, quote } from './errors.js';
import { parseFilter } from './filter.js';
import { findProperty } from './schema.js';

const SUPPORTED = ['$filter', '$top', '$skip', '$orderby', '$count', '$expand'] as const;
type Option = (typeof SUPPORTED)[number];
const SUPPORTED_SET: ReadonlySet<string> = new Set(SUPPORTED);

/**
 * `application/x-www-form-urlencoded` decoding of one name or value: '+' is a space, then
 * percent-decoding as UTF-8. Undefined when the percent-encoding is malformed.
 */
function decodeFormComponent(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function isWs(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

/** Trims spaces and tabs (no regex, so a long run of spaces costs linear time). */
function trimWs(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isWs(s[start])) start++;
  while (end > start && isWs(s[end - 1])) end--;
  return s.slice(start, end);
}

/**
 * Parses the URL's query string (without '?', exactly as sent). Parameters whose names do not
 * start with '$' are ignored; `$` options are matched case-insensitively; an unsupported or
 * repeated option is an error. Throws only ODataError.
 */
export function parseQueryOptions(rawQuery: string, set: EntitySetDef): ODataQuery {
  const query: ODataQuery = { skip: 0, orderBy: [], count: false };
  const seen = new Set<Option>();
  const raw = rawQuery.startsWith('?') ? rawQuery.slice(1) : rawQuery;
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const rawValue = eq < 0 ? '' : part.slice(eq + 1);
    const name = decodeFormComponent(rawName);
    if (name === undefined) {
      if (rawName.startsWith('$') || rawName.toLowerCase().startsWith('%24')) {
        throw new ODataError(`Malformed percent-encoding in the query option name ${quote(rawName)}`);
      }
      continue;
    }
    if (!name.startsWith('$')) continue;
    const key = name.toLowerCase();
    // $expand exists only on the sets that have something to expand (alerts: evidence).
    if (!SUPPORTED_SET.has(key) || (key === '$expand' && (set.expand ?? []).length === 0)) {
      const expand = (set.expand ?? []).length > 0 ? ', $count and $expand' : ' and $count';
      throw new ODataError(
        `Unsupported query option ${quote(name)}; the supported options are $filter, $top, $skip, $orderby${expand}`,
        { option: name },
      );
    }
    const option = key as Option;
    if (seen.has(option)) throw new ODataError(`Query option ${option} is given more than once`, { option });
    seen.add(option);
    const value = decodeFormComponent(rawValue);
    if (value === undefined) throw new ODataError(`Malformed percent-encoding in the value of ${option}`, { option });
    switch (option) {
      case '$filter':
        query.filter = parseFilter(value, set);
        break;
      case '$top':
        query.top = parseInteger(value, set.maxTop, '$top');
        break;
      case '$skip':
        query.skip = parseInteger(value, Number.MAX_SAFE_INTEGER, '$skip');
        break;
      case '$count': {
        const v = value.toLowerCase();
        if (v !== 'true' && v !== 'false') throw new ODataError('$count must be true or false', { option });
        query.count = v === 'true';
        break;
      }
      case '$orderby':
        query.orderBy = parseOrderBy(value, set);
        break;
      case '$expand':
        query.expand = parseExpand(value, set);
        break;
    }
  }
  return query;
}

function parseInteger(value: string, max: number, option: '$top' | '$skip'): number {
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!(n >= 0 && n <= max)) {
    throw new ODataError(`${option} must be an integer between 0 and ${max}`, { option });
  }
  return n;
}

/** `evidence, ...`: names from the set's expand list, any case, each once. */
function parseExpand(value: string, set: EntitySetDef): string[] {
  const option = { option: '$expand' };
  const allowed = set.expand ?? [];
  const items: string[] = [];
  for (const rawItem of value.split(',')) {
    const item = trimWs(rawItem);
    const name = allowed.find((a) => a.toLowerCase() === item.toLowerCase());
    if (name === undefined) {
      throw new ODataError(`Cannot expand ${quote(item)}; $expand accepts ${allowed.join(', ')}`, option);
    }
    if (items.includes(name)) throw new ODataError(`'${name}' appears more than once in $expand`, option);
    items.push(name);
  }
  return items;
}

/** `prop [asc|desc], ...` over the whitelist; each property at most once; not 'tags' ones. */
export function parseOrderBy(value: string, set: EntitySetDef): OrderByItem[] {
  const option = { option: '$orderby' };
  const items: OrderByItem[] = [];
  const seen = new Set<string>();
  if (trimWs(value) === '') throw new ODataError('$orderby is empty', option);
  for (const rawItem of value.split(',')) {
    const item = trimWs(rawItem);
    if (item === '') throw new ODataError('$orderby has an empty item', option);
    const parts = item.split(/[ \t]+/);
    const [name, dir] = parts;
    if (parts.length > 2 || name === undefined) {
      throw new ODataError(`Invalid $orderby item ${quote(item)}: expected '<property> [asc|desc]'`, option);
    }
    const prop = findProperty(set, name);
    if (!prop) throw new ODataError(`Unknown property ${quote(name)} in $orderby`, option);
    if (prop.type === 'tags') throw new ODataError(`Property '${prop.name}' cannot be used in $orderby`, option);
    const direction = dir === undefined ? 'asc' : dir.toLowerCase();
    if (direction !== 'asc' && direction !== 'desc') {
      throw new ODataError(`Invalid sort direction ${quote(dir ?? '')} in $orderby: expected asc or desc`, option);
    }
    if (seen.has(prop.name)) throw new ODataError(`Property '${prop.name}' appears more than once in $orderby`, option);
    seen.add(prop.name);
    items.push({ property: prop.name, direction });
  }
  return items;
}
