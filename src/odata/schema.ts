/**
 * The property whitelist: case-insensitive lookup and the type rules a literal must satisfy
 * against a property. Shared by the parser and the compiler, so an AST built by hand is held
 * to the same rules as a parsed one.
 */
import type { CompareOp, EntitySetDef, Literal, PropertyDef, PropertyType } from './ast.js';
import { parseDateTime } from './datetime.js';
import { ODataError, quote } from './errors.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

const lookups = new WeakMap<EntitySetDef, Map<string, PropertyDef>>();

function lookupTable(set: EntitySetDef): Map<string, PropertyDef> {
  let table = lookups.get(set);
  if (!table) {
    table = new Map();
    for (const p of set.properties) {
      const key = p.name.toLowerCase();
      // A misconfigured whitelist is a programming error, not bad client input.
      if (table.has(key)) throw new Error(`Entity set ${set.name}: property '${p.name}' is defined twice`);
      table.set(key, p);
    }
    lookups.set(set, table);
  }
  return table;
}

/** The property named `name` (any casing), or undefined. */
export function findProperty(set: EntitySetDef, name: string): PropertyDef | undefined {
  return lookupTable(set).get(name.toLowerCase());
}

/**
 * The property named `name`, or an ODataError "Unknown property 'x' in $filter". In $filter,
 * a property that may only be ordered by is refused with the list of those that filter.
 */
export function requireProperty(set: EntitySetDef, name: string, option: string): PropertyDef {
  const p = typeof name === 'string' ? findProperty(set, name) : undefined;
  if (!p) throw new ODataError(`Unknown property ${quote(String(name))} in ${option}`, { option });
  if (option === '$filter' && p.orderOnly) {
    const filterable = set.properties.filter((q) => !q.orderOnly).map((q) => q.name);
    throw new ODataError(
      `Property '${p.name}' cannot be used in $filter (it can in $orderby); the filterable properties are ${filterable.join(', ')}`,
      { option },
    );
  }
  return p;
}

/**
 * Checks an entity set definition once (at start-up) and returns it. Throws a plain Error for
 * a misconfiguration: duplicate names, an enum without values, a 'tags' property whose
 * existsSql does not have exactly one '?', a column containing '?', a bad maxTop.
 */
export function defineEntitySet<T extends EntitySetDef>(set: T): T {
  const fail = (why: string): never => {
    throw new Error(`Entity set ${set.name}: ${why}`);
  };
  if (!Number.isSafeInteger(set.maxTop) || set.maxTop < 0) fail('maxTop must be a non-negative integer');
  for (const name of set.expand ?? []) if (!IDENTIFIER.test(name)) fail(`expand name '${name}' is not an identifier`);
  for (const p of set.properties) {
    if (p.type === 'tags' && p.orderOnly) fail(`tags property '${p.name}' cannot be order-only (collections are never ordered by)`);
    if (!IDENTIFIER.test(p.name)) fail(`property name '${p.name}' is not an identifier`);
    if (p.type === 'tags') {
      const marks = (p.existsSql ?? '').split('?').length - 1;
      if (marks !== 1) fail(`tags property '${p.name}' needs existsSql with exactly one '?'`);
    } else {
      if (p.column.trim() === '' || p.column.includes('?')) fail(`property '${p.name}' has an invalid column`);
    }
    if (p.type === 'enum') {
      const values = p.enumValues ?? [];
      if (values.length === 0) fail(`enum property '${p.name}' has no enumValues`);
      if (new Set(values.map((v) => v.toLowerCase())).size !== values.length) {
        fail(`enum property '${p.name}' has values differing only in case`);
      }
    }
  }
  lookupTable(set);
  return set;
}

const ORDERING_OPS: ReadonlySet<string> = new Set(['gt', 'ge', 'lt', 'le']);

/** Which literal a property type takes, for messages. */
const EXPECTED: Record<PropertyType, string> = {
  string: 'a string in single quotes',
  guid: 'a string in single quotes',
  enum: 'a string in single quotes',
  number: 'a number',
  datetime: 'a datetime such as 2019-11-22T00:00:00Z',
  tags: 'a string in single quotes',
  boolean: 'true or false',
  integerKey: "an id such as '63017'",
};

/** Digits an integerKey literal may have (an exact double up to 15 digits). */
const INTEGER_KEY = /^[0-9]{1,15}$/;

/** A literal as a client would have written it, for messages. */
export function describeLiteral(lit: Literal | { kind: 'boolean'; value: boolean }): string {
  switch (lit.kind) {
    case 'string':
      return quote(String(lit.value));
    case 'number':
      return String(lit.value);
    case 'datetime':
      return Number.isFinite(lit.value) && Math.abs(lit.value) <= 8.64e15
        ? new Date(lit.value).toISOString()
        : String(lit.value);
    case 'null':
      return 'null';
    case 'boolean':
      return String(lit.value);
  }
}

/** Rejects characters a string parameter cannot carry on every backend (PostgreSQL text has no NUL). */
export function checkStringValue(value: unknown, where: string): string {
  if (typeof value !== 'string') throw new ODataError(`Invalid string value in ${where}`, { option: '$filter' });
  if (value.includes('\u0000')) {
    throw new ODataError(`String literals must not contain the character U+0000 in ${where}`, { option: '$filter' });
  }
  return value;
}

/**
 * Checks that `lit` may be compared with `prop` by `op` (`in` lists use 'eq') and returns it
 * normalised: guid strings lower-cased, enum strings in canonical case, a quoted datetime
 * compared with a datetime property converted to epoch milliseconds.
 */
export function coerceLiteral(
  prop: PropertyDef,
  op: CompareOp,
  lit: Literal | { kind: 'boolean'; value: boolean },
): Literal {
  const option = { option: '$filter' };
  if (prop.type === 'tags') {
    throw new ODataError(
      `Property '${prop.name}' is a collection; compare it with ${prop.name}/any(t: t eq '...') in $filter`,
      option,
    );
  }
  if (typeof lit !== 'object' || lit === null) throw new ODataError('Invalid literal in $filter', option);
  if (prop.type === 'boolean') {
    if (op !== 'eq' && op !== 'ne') {
      throw new ODataError(`Operator '${op}' is not supported on property '${prop.name}' (boolean) in $filter; use eq or ne`, option);
    }
    if (lit.kind === 'null') return { kind: 'null' };
    if (lit.kind !== 'boolean' || typeof lit.value !== 'boolean') {
      throw new ODataError(`Invalid value ${describeLiteral(lit)} for property '${prop.name}' in $filter: expected true or false`, option);
    }
    return { kind: 'number', value: lit.value ? 1 : 0 };
  }
  if (lit.kind === 'boolean') {
    throw new ODataError(`Property '${prop.name}' cannot be compared with the boolean ${lit.value} in $filter`, option);
  }
  if (ORDERING_OPS.has(op) && (prop.type === 'enum' || prop.type === 'guid')) {
    throw new ODataError(
      `Operator '${op}' is not supported on property '${prop.name}' (${prop.type}) in $filter; use eq, ne or in`,
      option,
    );
  }
  if (lit.kind === 'null') {
    if (op !== 'eq' && op !== 'ne') {
      throw new ODataError(`null can only be compared with eq or ne (property '${prop.name}') in $filter`, option);
    }
    return { kind: 'null' };
  }
  const invalid = (): ODataError =>
    new ODataError(
      `Invalid value ${describeLiteral(lit)} for property '${prop.name}' in $filter: expected ${EXPECTED[prop.type]}`,
      option,
    );
  switch (prop.type) {
    case 'string':
      if (lit.kind !== 'string') throw invalid();
      return { kind: 'string', value: checkStringValue(lit.value, '$filter') };
    case 'guid':
      if (lit.kind !== 'string') throw invalid();
      return { kind: 'string', value: checkStringValue(lit.value, '$filter').toLowerCase() };
    case 'enum': {
      if (lit.kind !== 'string') throw invalid();
      const wanted = checkStringValue(lit.value, '$filter').toLowerCase();
      const values = prop.enumValues ?? [];
      const canonical = values.find((v) => v.toLowerCase() === wanted);
      if (canonical === undefined) {
        throw new ODataError(
          `Invalid value ${describeLiteral(lit)} for property '${prop.name}' in $filter: expected one of ${values.join(', ')}`,
          option,
        );
      }
      return { kind: 'string', value: canonical };
    }
    case 'number':
      if (lit.kind !== 'number' || typeof lit.value !== 'number' || !Number.isFinite(lit.value)) throw invalid();
      return { kind: 'number', value: lit.value === 0 ? 0 : lit.value };
    case 'integerKey': {
      // An id that is not a number names nothing: it is invalid rather than silently unmatched.
      if (lit.kind === 'number' && Number.isSafeInteger(lit.value) && lit.value >= 0) return { kind: 'number', value: lit.value };
      if (lit.kind === 'string' && typeof lit.value === 'string' && INTEGER_KEY.test(lit.value)) {
        return { kind: 'number', value: Number(lit.value) };
      }
      throw invalid();
    }
    case 'datetime': {
      if (lit.kind === 'datetime' && typeof lit.value === 'number' && Number.isFinite(lit.value)) {
        return { kind: 'datetime', value: lit.value };
      }
      if (lit.kind === 'string' && typeof lit.value === 'string') {
        const ms = parseDateTime(lit.value);
        if (ms !== undefined) return { kind: 'datetime', value: ms };
      }
      throw invalid();
    }
  }
}
