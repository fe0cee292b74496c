/**
 * The package's entry point: `import { Countermand } from 'countermand'` (docs/client.md).
 * Nothing here reaches the server's modules; the client speaks HTTP only.
 */
export {
  ACTION_ROUTES,
  Countermand,
  DEFAULT_RESOURCE,
  FINAL_STATUSES,
  isFinal,
  type ActionBodies,
  type CountermandOptions,
  type RequestOptions,
  type RetryOptions,
  type WaitOptions,
} from './countermand.js';
export { CountermandError, WaitTimeoutError } from './errors.js';
export { odataString, queryString } from './query.js';
export type * from './types.js';
