import type { FastifyError } from 'fastify';
import { ApiError, ERRORS } from '../domain/errors.js';
import { ODataError } from '../odata/index.js';

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** `/Commands/0/params/1/key` -> `Commands[0].params[1].key` */
export function fieldName(instancePath: string, child?: string): string {
  const parts = instancePath.split('/').filter(Boolean);
  if (child !== undefined) parts.push(child);
  return parts.reduce((name, part) => (/^\d+$/.test(part) ? `${name}[${part}]` : name ? `${name}.${part}` : part), '');
}

/** Body validation failures in the contract's terms (§2 request bodies). */
function bodyError(errors: readonly AjvError[]): ApiError {
  const missing = errors.find((e) => e.keyword === 'required');
  if (missing) return ERRORS.MissingRequiredParameter(fieldName(missing.instancePath, String(missing.params.missingProperty)));
  const first = errors[0];
  if (!first || first.instancePath === '') return ERRORS.InvalidRequestBody('The request body must be a JSON object.');
  const field = fieldName(first.instancePath);
  switch (first.keyword) {
    case 'enum':
      return ERRORS.InvalidRequestBody(
        `Invalid value for '${field}': must be one of ${(first.params.allowedValues as string[]).join(', ')} (case-sensitive).`,
      );
    case 'type':
      return ERRORS.InvalidRequestBody(`Invalid value for '${field}': must be of type ${String(first.params.type)}.`);
    case 'pattern':
      return ERRORS.InvalidRequestBody(
        field === 'Sha1'
          ? `Invalid value for 'Sha1': must be 40 hexadecimal characters.`
          : `Invalid value for '${field}': wrong format.`,
      );
    default:
      return ERRORS.InvalidRequestBody(`Invalid value for '${field}': ${first.message ?? 'invalid'}.`);
  }
}

/**
 * Turns anything thrown while handling a request into an ApiError. Unknown errors become a 500
 * whose message reveals nothing; the caller logs the original.
 */
export function toApiError(error: unknown, bodyLimit: number): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ODataError) return ERRORS.ODataError(error.message);
  const e = error as Partial<FastifyError> & { validation?: AjvError[] };
  if (e.validation) {
    return e.validationContext === 'body'
      ? bodyError(e.validation)
      : ERRORS.BadRequest(`Invalid request ${e.validationContext ?? ''}.`.replace(' .', '.'));
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return ERRORS.PayloadTooLarge(bodyLimit);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return ERRORS.UnsupportedMediaType(undefined);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return ERRORS.InvalidRequestBody('The request body is empty.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      // Also what the parser says of `__proto__` and `constructor.prototype` keys.
      return ERRORS.InvalidRequestBody('The request body is not valid JSON.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return ERRORS.BadRequest('The Content-Length header does not match the body.');
  }
  // Any other malformed-request error the framework raises is still the client's, not ours.
  if (typeof e.code === 'string' && e.code.startsWith('FST_') && e.statusCode === 400) {
    return ERRORS.BadRequest('The request is malformed.');
  }
  return ERRORS.InternalServerError();
}
