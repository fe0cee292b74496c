import type { MachineAction } from './types.js';

/**
 * A request that did not succeed, as the server said it: the envelope's code and message
 * (contract §6), the HTTP status, the request id (the envelope's `target`, also the
 * `request-id` header) and Retry-After in seconds when the server sent one. Token failures
 * carry the OAuth error (`invalid_client`, ...) as the code. A request that got no answer at
 * all has status 0 and code `ConnectionFailed`.
 */
export class CountermandError extends Error {
  override readonly name = 'CountermandError';

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null = null,
    readonly retryAfterSeconds: number | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** One line for a terminal: `NotFound: Machine action ... was not found (HTTP 404, request id ...)`. */
  describe(): string {
    const where = [this.status ? `HTTP ${this.status}` : null, this.requestId ? `request id ${this.requestId}` : null].filter(Boolean);
    const retry = this.retryAfterSeconds !== null ? `; retry after ${this.retryAfterSeconds} s` : '';
    return `${this.code}: ${this.message}${where.length ? ` (${where.join(', ')}${retry})` : retry}`;
  }
}

/** `waitForAction` gave up: the action had not reached a wanted status in time. */
export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';

  constructor(
    /** The action as last seen. */
    readonly action: MachineAction,
    readonly timeoutMs: number,
  ) {
    super(`Action ${action.id} is still ${action.status} after ${timeoutMs} ms`);
  }
}

/** Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

/** The error a non-2xx response stands for, whatever its body holds. */
export async function errorFromResponse(response: Response): Promise<CountermandError> {
  const requestId = response.headers.get('request-id');
  const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
  const text = await response.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const envelope = (body as { error?: unknown } | undefined)?.error;
  if (envelope && typeof envelope === 'object') {
    // The API's envelope (contract §6).
    const e = envelope as { code?: unknown; message?: unknown; target?: unknown };
    return new CountermandError(
      response.status,
      typeof e.code === 'string' ? e.code : `HTTP${response.status}`,
      typeof e.message === 'string' ? e.message : response.statusText,
      typeof e.target === 'string' ? e.target : requestId,
      retryAfter,
    );
  }
  if (typeof envelope === 'string') {
    // The token endpoint's OAuth 2.0 error (RFC 6749 §5.2).
    const description = (body as { error_description?: unknown }).error_description;
    return new CountermandError(response.status, envelope, typeof description === 'string' ? description : envelope, requestId, retryAfter);
  }
  const snippet = text.trim().slice(0, 200);
  return new CountermandError(
    response.status,
    `HTTP${response.status}`,
    snippet ? `${response.statusText || 'Error'}: ${snippet}` : response.statusText || `HTTP ${response.status}`,
    requestId,
    retryAfter,
  );
}
