/**
 * The error registry: one factory per error the API can answer with. Each carries the contract's
 * code (§6), the HTTP status and a message meant for the client. Nothing else produces error
 * bodies, so codes, statuses and wording stay consistent.
 */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * Retry-After for the live-response concurrency limit: no window ends at a known time, so this
 * is a polling interval, not a promise (docs/identity.md).
 */
export const CONCURRENCY_RETRY_AFTER_SECONDS = 10;

export const ERRORS = {
  BadRequest: (message: string) => new ApiError('BadRequest', 400, message),
  InvalidGuidKey: (key: string) =>
    new ApiError(
      'BadRequest',
      400,
      `The key value (${key}) from request is not valid. The key value should be format of type 'Edm.Guid'.`,
    ),
  CancelOfFinalAction: (id: string, status: string) =>
    new ApiError('BadRequest', 400, `Action ${id} cannot be cancelled because its status is ${status}.`),
  ODataError: (message: string) => new ApiError('ODataError', 400, message),
  InvalidInput: (message: string) => new ApiError('InvalidInput', 400, message),
  InvalidRequestBody: (message: string) => new ApiError('InvalidRequestBody', 400, message),
  MachineOffboarded: (machineId: string) =>
    new ApiError('InvalidInput', 400, `Machine ${machineId} is offboarded: no actions can be created on it.`),
  MissingRequiredParameter: (name: string) =>
    new ApiError('MissingRequiredParameter', 400, `Missing required parameter '${name}'.`),
  ActiveRequestAlreadyExists: () =>
    new ApiError('ActiveRequestAlreadyExists', 400, 'Action is already in progress'),
  Unauthorized: (message = 'Authorization has been denied for this request.') =>
    new ApiError('Unauthorized', 401, message),
  Forbidden: (accepted: readonly string[]) =>
    new ApiError(
      'Forbidden',
      403,
      `The application or user does not have any of the required permissions: ${accepted.join(', ')}.`,
    ),
  ForbiddenMessage: (message: string) => new ApiError('Forbidden', 403, message),
  NotFound: (message = 'The requested resource was not found.') => new ApiError('NotFound', 404, message),
  ActionNotFound: (id: string) => new ApiError('NotFound', 404, `Machine action ${id} was not found`),
  AlertNotFound: (id: string) => new ApiError('NotFound', 404, `Alert ${id} was not found`),
  InvestigationNotFound: (id: string) => new ApiError('NotFound', 404, `Investigation ${id} was not found`),
  ResourceNotFound: (machineId: string) =>
    new ApiError('ResourceNotFound', 404, `Machine ${machineId} was not found`),
  MethodNotAllowed: (method: string, allow: readonly string[]) =>
    new ApiError('MethodNotAllowed', 405, `The requested resource does not support http method '${method}'.`, {
      allow: allow.join(', '),
    }),
  RequestTimeout: (message: string) => new ApiError('RequestTimeout', 408, message),
  PayloadTooLarge: (limitBytes: number) =>
    new ApiError('RequestEntityTooLarge', 413, `The request body is larger than ${limitBytes} bytes.`),
  UnsupportedMediaType: (contentType: string | undefined, expected = 'application/json') =>
    new ApiError(
      'UnsupportedMediaType',
      415,
      contentType
        ? `The content type '${contentType}' is not supported; send ${expected}.`
        : `A Content-Type of ${expected} is required.`,
    ),
  ExpectationFailed: (expectation: string) =>
    new ApiError('ExpectationFailed', 417, `The expectation '${expectation}' is not supported; only 100-continue is.`),
  TooManyRequests: (retryAfterSeconds: number) =>
    new ApiError('TooManyRequests', 429, `Rate limit is exceeded. Try again in ${retryAfterSeconds} seconds.`, {
      'retry-after': String(retryAfterSeconds),
    }),
  /** No window to wait out: the tenant has too many unfinished actions of a type (contract §8). */
  TooManyActive: (type: string, max: number) =>
    new ApiError('TooManyRequests', 429, `The tenant already has ${max} ${type} actions that have not finished.`, {
      'retry-after': String(CONCURRENCY_RETRY_AFTER_SECONDS),
    }),
  /** Refused before the request is read: the source already holds its share of connections. */
  TooManyConnections: (max: number) =>
    new ApiError('TooManyRequests', 429, `Too many open connections from this address (at most ${max}); close one or try again later.`, {
      'retry-after': String(CONCURRENCY_RETRY_AFTER_SECONDS),
    }),
  /** The caller already holds its share of open event streams (docs/action-center.md). */
  TooManyStreams: (max: number) =>
    new ApiError('TooManyRequests', 429, `Too many open event streams for this caller (at most ${max}); close one first.`, {
      'retry-after': String(CONCURRENCY_RETRY_AFTER_SECONDS),
    }),
  HeadersTooLarge: (limitBytes: number) =>
    new ApiError('RequestHeaderFieldsTooLarge', 431, `The request line and headers are larger than ${limitBytes} bytes.`),
  ServiceUnavailable: (message: string) => new ApiError('ServiceUnavailable', 503, message),
  LibraryFileNotFound: (name: string) => new ApiError('NotFound', 404, `Library file '${name}' was not found`),
  LibraryFileExists: (name: string) =>
    new ApiError('BadRequest', 400, `A library file named '${name}' already exists; set OverrideIfExists to true to replace it.`),
  /** An upload larger than its cap; `what` names the part (e.g. 'File'). */
  FileTooLarge: (what: string, maxBytes: number) =>
    new ApiError('InvalidInput', 400, `'${what}' is larger than ${maxBytes} bytes.`),
  /** A download link whose signature does not verify (altered, or not made by this service). */
  LinkInvalid: () => new ApiError('Forbidden', 403, 'The download link is not valid.'),
  LinkExpired: (at: string) => new ApiError('Forbidden', 403, `The download link expired at ${at}; request a new one.`),
  /** Agent protocol: the action is no longer (or not yet) running on the machine. */
  ActionNotRunning: (id: string, status: string) =>
    new ApiError('Conflict', 409, `Action ${id} is ${status}: the machine may only send files for an InProgress action.`),
  InternalServerError: () =>
    new ApiError('InternalServerError', 500, 'An unexpected error occurred. Quote the request id when reporting it.'),
} as const;
