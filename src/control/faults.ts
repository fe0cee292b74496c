import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendError } from '../api/app.js';
import { ApiError, ERRORS } from '../domain/errors.js';
import type { Randomness } from './random.js';
import type { Fault } from './schemas.js';

/**
 * Faults: a hook before the route (registered only with the control API on). A request whose
 * method and path match a fault may be delayed, answered with an error, throttled (429 with
 * Retry-After) or, on the token endpoints, refused as an outage, each drawn from the seeded
 * `faults` stream, so the same seed and the same requests meet the same faults. The agent
 * protocol and the control API are never faulted.
 */

export interface FaultState {
  id: string;
  fault: Fault;
  pattern: RegExp;
  /** Injections left; null: no end. */
  remaining: number | null;
  /** How many requests it has affected. */
  injected: number;
}

/** The token endpoints (contract §7), which answer in OAuth's error format, not the envelope. */
const TOKEN_PATH = /^\/[^/]+\/oauth2\/(v2\.0\/)?token$/i;
const NEVER_FAULTED = /^\/(agent|_countermand)(\/|$)/i;

/** `/api/machines/*\/isolate` to a RegExp: `*` is within one segment, `**` crosses segments. */
export function pathPattern(glob: string): RegExp {
  const source = glob
    .split(/(\*\*|\*)/)
    .map((part) => (part === '**' ? '.*' : part === '*' ? '[^/]*' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source.replace(/\/+$/, '')}$`, 'i');
}

/** The path as faults see it: no query, the /api/v1.0 alias folded, no doubled or trailing slash. */
export function normalisedPath(url: string): string {
  const path = url.split('?')[0]!.replace(/\/{2,}/g, '/').replace(/^\/api\/v1\.0(?=\/|$)/i, '/api');
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

const DEFAULT_CODES: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  408: 'RequestTimeout',
  409: 'Conflict',
  429: 'TooManyRequests',
  500: 'InternalServerError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

/** What a fault did to one request (the journal shows it): a latency's drawn delay, or the answer it forced. */
export interface Injection {
  id: string;
  kind: Fault['kind'];
  /** latency: the delay drawn. */
  delayMs?: number;
}

export class Faults {
  private list: FaultState[] = [];
  private counter = 0;
  private readonly injections = new WeakMap<FastifyRequest, Injection[]>();

  constructor(private readonly random: Randomness) {}

  listFaults(): (Fault & { id: string; remaining: number | null; injected: number })[] {
    return this.list.map((f) => ({ ...f.fault, id: f.id, remaining: f.remaining, injected: f.injected }));
  }

  set(faults: readonly Fault[]): void {
    const states = faults.map((f) => this.state(f));
    const ids = new Set<string>();
    for (const s of states) {
      if (ids.has(s.id)) throw ERRORS.InvalidInput(`Fault id '${s.id}' appears twice.`);
      ids.add(s.id);
    }
    this.list = states;
  }

  add(fault: Fault): Fault & { id: string; remaining: number | null; injected: number } {
    const state = this.state(fault);
    if (this.list.some((f) => f.id === state.id)) throw ERRORS.InvalidInput(`A fault with id '${state.id}' exists already.`);
    this.list.push(state);
    return { ...state.fault, id: state.id, remaining: state.remaining, injected: 0 };
  }

  remove(id: string): boolean {
    const before = this.list.length;
    this.list = this.list.filter((f) => f.id !== id);
    return this.list.length < before;
  }

  clear(): void {
    this.list = [];
    this.counter = 0;
  }

  /** The faults that affected the request, in the order they were applied. */
  injectedInto(request: FastifyRequest): Injection[] {
    return this.injections.get(request) ?? [];
  }

  private state(fault: Fault): FaultState {
    if (fault.kind === 'latency' && (fault.minMs ?? 0) > (fault.maxMs ?? fault.minMs ?? 0)) {
      throw ERRORS.InvalidInput('A latency fault needs minMs <= maxMs.');
    }
    const id = fault.id ?? `fault-${++this.counter}`;
    const glob = fault.match?.path ?? (fault.kind === 'outage' ? '/*/oauth2/**' : '/**');
    return { id, fault: { ...fault, id }, pattern: pathPattern(glob), remaining: fault.times ?? null, injected: 0 };
  }

  /**
   * The onRequest hook. Faults are tried in order; each that matches draws once from the seeded
   * stream. Latencies add up; the first error, throttle or outage drawn answers the request.
   */
  readonly hook = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (this.list.length === 0) return;
    const path = normalisedPath(request.url);
    if (NEVER_FAULTED.test(path)) return;
    let delay = 0;
    const injected: Injection[] = [];
    for (const f of this.list) {
      const { fault } = f;
      if (fault.match?.method && fault.match.method !== request.method) continue;
      if (!f.pattern.test(path)) continue;
      if (f.remaining !== null && f.remaining <= 0) continue;
      if (this.random.fraction('faults') >= (fault.rate ?? 1)) continue;
      if (f.remaining !== null) f.remaining--;
      f.injected++;
      if (injected.length === 0) this.injections.set(request, injected);
      if (fault.kind === 'latency') {
        const min = fault.minMs ?? 0;
        const max = fault.maxMs ?? min;
        const delayMs = min + Math.floor(this.random.fraction('faults') * (max - min + 1));
        injected.push({ id: f.id, kind: fault.kind, delayMs });
        delay += delayMs;
        continue;
      }
      injected.push({ id: f.id, kind: fault.kind });
      if (delay > 0) await sleep(delay);
      return this.answer(fault, TOKEN_PATH.test(path), request, reply);
    }
    if (delay > 0) await sleep(delay);
  };

  /** The fault's answer: the envelope on the API, an OAuth 2.0 error (RFC 6749 §5.2) on the token endpoints. */
  private answer(fault: Fault, tokenEndpoint: boolean, request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const throttled = fault.kind === 'throttle';
    const status = throttled ? 429 : (fault.status ?? (fault.kind === 'outage' ? 503 : 500));
    const retryAfter = throttled ? (fault.retryAfterSeconds ?? 60) : fault.retryAfterSeconds;
    const headers: Record<string, string> = retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : {};
    request.log.info({ fault: fault.id, status }, 'emulated fault');
    if (tokenEndpoint) {
      const error = status === 429 || status === 503 ? 'temporarily_unavailable' : status >= 500 ? 'server_error' : 'invalid_request';
      const description = fault.message ?? 'The token service is unavailable (an emulated fault).';
      return reply
        .code(status)
        .headers(headers)
        .header('content-type', 'application/json; charset=utf-8')
        .header('cache-control', 'no-store')
        .send(JSON.stringify({ error, error_description: description, trace_id: request.id }));
    }
    const error =
      throttled && !fault.message && !fault.code
        ? ERRORS.TooManyRequests(retryAfter ?? 60)
        : new ApiError(fault.code ?? DEFAULT_CODES[status] ?? 'Error', status, fault.message ?? 'An emulated fault (Countermand control API).', headers);
    return sendError(reply, request, error);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
