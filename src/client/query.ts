import type { ListQuery } from './types.js';

/** A string literal for `$filter`: single quotes, a quote inside doubled (contract §5). */
export function odataString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** `$filter=...&$orderby=...` for the options given, each value percent-encoded (so `+` stays a plus). */
export function queryString(query: ListQuery = {}): string {
  const parts: string[] = [];
  if (query.filter !== undefined) parts.push(`$filter=${encodeURIComponent(query.filter)}`);
  if (query.orderby !== undefined) parts.push(`$orderby=${encodeURIComponent(query.orderby)}`);
  if (query.top !== undefined) parts.push(`$top=${integer('top', query.top)}`);
  if (query.skip !== undefined) parts.push(`$skip=${integer('skip', query.skip)}`);
  if (query.count !== undefined) parts.push(`$count=${query.count ? 'true' : 'false'}`);
  if (query.expand !== undefined) parts.push(`$expand=${encodeURIComponent(query.expand)}`);
  return parts.join('&');
}

function integer(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`${name} must be a whole number >= 0, not ${value}`);
  return value;
}
