/**
 * The filter AST to a parameterised SQL predicate, and $orderby to an ORDER BY list, over the
 * property whitelist. Placeholders are `?`; values travel only in `params`; identifiers come
 * only from the whitelist's `column` and `existsSql`. The SQL is the same for SQLite and
 * PostgreSQL.
 *
 * Null semantics are OData's, not SQL's: a comparison with a null column is false (`ne` is
 * true), so `not (status eq 'x')` matches rows whose status is null, like `status ne 'x'`. To
 * keep that under NOT, a comparison that SQL would evaluate to NULL is guarded with
 * `col IS NOT NULL AND ...` inside a NOT. Outside a NOT, NULL already acts as false in WHERE.
 */
import type { EntitySetDef, FilterExpr, Literal, OrderByItem, PropertyDef, SqlParam } from './ast.js';
import { FILTER_LIMITS } from './ast.js';
import { ODataError } from './errors.js';
import { checkStringValue, coerceLiteral, requireProperty } from './schema.js';

export interface CompiledFilter {
  sql: string;
  params: SqlParam[];
}

const SQL_OPS = { eq: '=', gt: '>', ge: '>=', lt: '<', le: '<=' } as const;

/** Deep enough for any parsed filter; bounds recursion on hand-built ASTs. */
const MAX_COMPILE_DEPTH = 4 * FILTER_LIMITS.maxDepth + 8;

/** Escapes LIKE's wildcards and the escape character itself with a backslash. */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Compiles a filter to a boolean SQL expression. Throws only ODataError for a bad AST. */
export function compileFilter(expr: FilterExpr, set: EntitySetDef): CompiledFilter {
  const params: SqlParam[] = [];
  const sql = compileNode(expr, set, params, false, 0);
  return { sql, params };
}

function paramOf(lit: Exclude<Literal, { kind: 'null' }>): SqlParam {
  return lit.value;
}

/** Operands of a run of same-kind and/or nodes, in order (iterative: no recursion per link). */
function flatten(expr: FilterExpr & { kind: 'and' | 'or' }): FilterExpr[] {
  const out: FilterExpr[] = [];
  const stack: FilterExpr[] = [expr];
  while (stack.length > 0) {
    const e = stack.pop() as FilterExpr;
    if (typeof e === 'object' && e !== null && e.kind === expr.kind) stack.push(e.right, e.left);
    else out.push(e);
  }
  return out;
}

function compileNode(expr: FilterExpr, set: EntitySetDef, params: SqlParam[], negated: boolean, depth: number): string {
  if (depth > MAX_COMPILE_DEPTH) throw new ODataError('$filter is nested too deeply', { option: '$filter' });
  if (typeof expr !== 'object' || expr === null) throw new ODataError('Invalid $filter expression', { option: '$filter' });
  /** A comparison SQL would evaluate to NULL for a null column, made two-valued under NOT. */
  const guard = (prop: PropertyDef, sql: string): string =>
    negated ? `(${prop.column} IS NOT NULL AND ${sql})` : sql;
  switch (expr.kind) {
    case 'and':
    case 'or': {
      const parts = flatten(expr).map((e) => compileNode(e, set, params, negated, depth + 1));
      return `(${parts.join(expr.kind === 'and' ? ' AND ' : ' OR ')})`;
    }
    case 'not':
      return `NOT (${compileNode(expr.operand, set, params, true, depth + 1)})`;
    case 'compare': {
      const prop = requireProperty(set, expr.property, '$filter');
      if (!Object.hasOwn(SQL_OPS, expr.op) && expr.op !== 'ne') {
        throw new ODataError(`Unsupported operator in $filter`, { option: '$filter' });
      }
      const lit = coerceLiteral(prop, expr.op, expr.value);
      const col = prop.column;
      if (lit.kind === 'null') return expr.op === 'eq' ? `${col} IS NULL` : `${col} IS NOT NULL`;
      params.push(paramOf(lit));
      if (expr.op === 'ne') return `(${col} <> ? OR ${col} IS NULL)`;
      return guard(prop, `${col} ${SQL_OPS[expr.op]} ?`);
    }
    case 'in': {
      const prop = requireProperty(set, expr.property, '$filter');
      if (!Array.isArray(expr.values) || expr.values.length === 0) {
        throw new ODataError(`'in' needs at least one value in $filter`, { option: '$filter' });
      }
      const values = expr.values.map((v) => coerceLiteral(prop, 'eq', v));
      const col = prop.column;
      const present = values.filter((v): v is Exclude<Literal, { kind: 'null' }> => v.kind !== 'null');
      const hasNull = present.length < values.length;
      if (present.length === 0) return `${col} IS NULL`;
      for (const v of present) params.push(paramOf(v));
      const list = `${col} IN (${present.map(() => '?').join(', ')})`;
      // `col IS NULL OR col IN (...)` is never NULL, so it needs no guard.
      return hasNull ? `(${col} IS NULL OR ${list})` : guard(prop, list);
    }
    case 'startswith': {
      const prop = requireProperty(set, expr.property, '$filter');
      if (prop.type !== 'string' && prop.type !== 'guid') {
        throw new ODataError(
          `startswith is not supported on property '${prop.name}' (${prop.type}) in $filter; it needs a string property`,
          { option: '$filter' },
        );
      }
      const prefix = checkStringValue(expr.prefix, '$filter');
      // Case-insensitive on both backends: lower() on both sides (PostgreSQL's LIKE is
      // case-sensitive), and an explicit ESCAPE (SQLite has no default escape character).
      params.push(`${escapeLike(prefix.toLowerCase())}%`);
      return guard(prop, `lower(${prop.column}) LIKE ? ESCAPE '\\'`);
    }
    case 'any': {
      const prop = requireProperty(set, expr.property, '$filter');
      if (prop.type !== 'tags') {
        throw new ODataError(`Property '${prop.name}' is not a collection; /any(...) is not supported on it in $filter`, {
          option: '$filter',
        });
      }
      const existsSql = prop.existsSql ?? '';
      if (existsSql.split('?').length !== 2) {
        throw new Error(`Entity set ${set.name}: tags property '${prop.name}' needs existsSql with exactly one '?'`);
      }
      const value = expr.value;
      if (typeof value !== 'object' || value === null || value.kind !== 'string') {
        throw new ODataError(`${prop.name}/any(...) compares tags with a string in $filter`, { option: '$filter' });
      }
      params.push(checkStringValue(value.value, '$filter'));
      return `(${existsSql})`;
    }
    default:
      throw new ODataError('Unsupported $filter expression', { option: '$filter' });
  }
}

/**
 * `a.created_at DESC, a.type ASC` (no tiebreaker: the caller appends one). A nullable column
 * sorts its nulls first ascending and last descending, as OData says and SQLite does by
 * default; PostgreSQL needs it spelled out.
 */
export function compileOrderBy(orderBy: readonly OrderByItem[], set: EntitySetDef): string {
  const seen = new Set<string>();
  return orderBy
    .map((item) => {
      const prop = requireProperty(set, item.property, '$orderby');
      if (prop.type === 'tags') {
        throw new ODataError(`Property '${prop.name}' cannot be used in $orderby`, { option: '$orderby' });
      }
      if (seen.has(prop.name)) {
        throw new ODataError(`Property '${prop.name}' appears more than once in $orderby`, { option: '$orderby' });
      }
      seen.add(prop.name);
      const direction = String(item.direction).toLowerCase();
      if (direction !== 'asc' && direction !== 'desc') {
        throw new ODataError(`Invalid sort direction in $orderby: expected asc or desc`, { option: '$orderby' });
      }
      if (prop.nullable) return `${prop.column} ${direction === 'asc' ? 'ASC NULLS FIRST' : 'DESC NULLS LAST'}`;
      return `${prop.column} ${direction.toUpperCase()}`;
    })
    .join(', ');
}
