export type {
  CompareOp,
  EntitySetDef,
  FilterExpr,
  Literal,
  ODataQuery,
  OrderByItem,
  PropertyDef,
  PropertyType,
  SqlParam,
} from './ast.js';
export { FILTER_LIMITS } from './ast.js';
export { ODataError } from './errors.js';
export { parseQueryOptions, parseOrderBy } from './parse.js';
export { parseFilter, BARE_TAGS_VARIABLE } from './filter.js';
export { compileFilter, compileOrderBy, escapeLike, type CompiledFilter } from './sql.js';
export { defineEntitySet } from './schema.js';
export { parseDateTime } from './datetime.js';
