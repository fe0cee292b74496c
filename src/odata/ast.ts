/**
 * The typed AST of the OData query options Countermand supports (contract §5), and the
 * description of an entity set's properties (the whitelist the parser and compiler read).
 */

/**
 * 'integerKey': an integer id the wire shows as a string (investigation ids, `"63017"`); a
 * literal may be quoted or bare and is compared as a number, so ordering is numeric.
 * 'boolean': stored as 0/1.
 */
export type PropertyType = 'string' | 'guid' | 'datetime' | 'number' | 'enum' | 'tags' | 'boolean' | 'integerKey';

export interface PropertyDef {
  /** camelCase wire name, e.g. 'creationDateTimeUtc'; matched case-insensitively. */
  name: string;
  type: PropertyType;
  /** SQL expression of the column, e.g. 'a.created_at' (unused for 'tags'). */
  column: string;
  /**
   * For 'enum': the canonical values. Literals match case-insensitively and are normalised to
   * the canonical spelling; an unknown value is an ODataError naming the allowed values.
   */
  enumValues?: readonly string[];
  /**
   * For 'tags' only: a boolean SQL expression with exactly one '?' standing for the tag, e.g.
   * "EXISTS (SELECT 1 FROM machine_tags t WHERE t.machine_id = m.id AND t.tag = ?)".
   */
  existsSql?: string;
  /**
   * A scalar that $orderby accepts but $filter does not: $orderby takes every scalar property
   * of the entity, $filter only the ones the contract lists (§5, §10).
   */
  orderOnly?: boolean;
  /** The column may be NULL: $orderby then puts nulls first ascending, last descending, on every backend. */
  nullable?: boolean;
}

export interface EntitySetDef {
  name: string;
  properties: readonly PropertyDef[];
  /** Largest accepted $top (the contract's page size, 10000). */
  maxTop: number;
  /** Navigation properties `$expand` accepts (alerts: `evidence`); none when absent. */
  expand?: readonly string[];
}

export type SqlParam = string | number | null;

export type Literal =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  /** Epoch milliseconds (UTC). */
  | { kind: 'datetime'; value: number }
  | { kind: 'null' };

export type CompareOp = 'eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le';

/**
 * `property` is always the canonical (whitelisted) name, whatever casing the client used.
 * Literals are already normalised: guid strings lower-cased, enum strings in canonical case,
 * datetimes (quoted or not) as epoch milliseconds.
 */
export type FilterExpr =
  | { kind: 'compare'; op: CompareOp; property: string; value: Literal }
  | { kind: 'in'; property: string; values: Literal[] }
  | { kind: 'startswith'; property: string; prefix: string }
  /**
   * `machineTags/any(t: t eq 'x')`. The bare form `machineTags eq 'x'` parses to the same node
   * with `variable: 't'`.
   */
  | { kind: 'any'; property: string; variable: string; value: Literal }
  | { kind: 'and' | 'or'; left: FilterExpr; right: FilterExpr }
  | { kind: 'not'; operand: FilterExpr };

export interface OrderByItem {
  property: string;
  direction: 'asc' | 'desc';
}

export interface ODataQuery {
  filter?: FilterExpr;
  /** Absent when the client sent no $top. */
  top?: number;
  skip: number;
  orderBy: OrderByItem[];
  count: boolean;
  /** `$expand` items, canonical names from the set's `expand` list; absent when not given. */
  expand?: string[];
}

/** The limits the parser enforces on $filter. */
export const FILTER_LIMITS = {
  /** Characters of the decoded $filter value. */
  maxLength: 4096,
  /** Nesting of parentheses and `not` operators. */
  maxDepth: 32,
  /** Values in all `in (...)` lists of one filter together. */
  maxInValues: 500,
} as const;
