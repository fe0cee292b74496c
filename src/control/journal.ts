import type { FastifyReply, FastifyRequest } from 'fastify';
import { redactUrl } from '../logger.js';
import { toWireTime } from '../domain/time.js';
import { normalisedPath, type Injection } from './faults.js';

/**
 * The request journal: what clients called, so a test can assert what its playbook did. A ring
 * of the last N requests, kept in memory. It records the method, the path, the query string
 * (with secret parameters redacted, as the log does), who called (tenant and client id or user,
 * never a token), the status, the latency and the request id. Never a header, a body, a cookie,
 * a secret or a credential. The agent protocol and the control API itself are not journaled.
 */

export interface JournalEntry {
  seq: number;
  /** The emulator's clock, on the wire's format. */
  time: string;
  method: string;
  path: string;
  query: string;
  /** The route's operation (contract §2 name, e.g. Isolate, GetMachineAction), or null. */
  operation: string | null;
  caller: { tenantId: string; kind: 'application' | 'user'; id: string; name: string } | null;
  status: number;
  latencyMs: number;
  requestId: string;
  /** The faults that affected it, in order (a latency with the delay it drew); empty when none did. */
  faults: Injection[];
}

export interface JournalFilter {
  method?: string | undefined;
  pathPrefix?: string | undefined;
  status?: number | undefined;
  /** A caller's id (client id or user object id) or name (display name or UPN). */
  caller?: string | undefined;
  /** Entries after this sequence number. */
  afterSeq?: number | undefined;
  /** Entries at or after this time (ISO 8601). */
  since?: number | undefined;
}

const NOT_JOURNALED = /^\/(agent|_countermand)(\/|$)/i;

export class Journal {
  private entries: JournalEntry[] = [];
  private seq = 0;

  constructor(
    private capacity: number,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.capacity;
  }

  resize(capacity: number): void {
    this.capacity = capacity;
    if (this.entries.length > capacity) this.entries = this.entries.slice(-capacity);
  }

  clear(): void {
    this.entries = [];
    this.seq = 0;
  }

  list(filter: JournalFilter = {}): JournalEntry[] {
    const method = filter.method?.toUpperCase();
    const prefix = filter.pathPrefix?.toLowerCase();
    const caller = filter.caller?.toLowerCase();
    return this.entries.filter(
      (e) =>
        (!method || e.method === method) &&
        (!prefix || e.path.toLowerCase().startsWith(prefix)) &&
        (filter.status === undefined || e.status === filter.status) &&
        (!caller || (e.caller !== null && (e.caller.id.toLowerCase() === caller || e.caller.name.toLowerCase() === caller))) &&
        (filter.afterSeq === undefined || e.seq > filter.afterSeq) &&
        (filter.since === undefined || Date.parse(e.time) >= filter.since),
    );
  }

  /** The onResponse hook. `operation` names the route's operation, if it has one; `faults`, what faults did to it. */
  record(request: FastifyRequest, reply: FastifyReply, operation: string | null, faults: Injection[]): void {
    const url = request.url;
    const path = normalisedPath(url);
    if (NOT_JOURNALED.test(path)) return;
    const q = url.indexOf('?');
    this.entries.push({
      seq: ++this.seq,
      time: toWireTime(this.now()),
      method: request.method,
      path,
      query: q < 0 ? '' : redactUrl(url.slice(q)).slice(1),
      operation,
      caller: callerOf(request),
      status: reply.statusCode,
      latencyMs: Math.round(reply.elapsedTime * 1000) / 1000,
      requestId: request.id,
      faults,
    });
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
  }
}

/** Who called: the authenticated caller of an /api request, or the client a token request names. */
function callerOf(request: FastifyRequest): JournalEntry['caller'] {
  const caller = request.caller;
  if (caller) return { tenantId: caller.tenantId, kind: caller.kind, id: caller.id, name: caller.displayName };
  const body = request.body as Record<string, unknown> | undefined;
  const tenant = /^\/([^/]+)\/oauth2\//i.exec(normalisedPath(request.url))?.[1];
  if (!tenant || typeof body !== 'object' || body === null) return null;
  // The token form's public names only: never client_secret, password or assertion.
  if (typeof body.username === 'string') return { tenantId: tenant.toLowerCase(), kind: 'user', id: body.username, name: body.username };
  if (typeof body.client_id === 'string') return { tenantId: tenant.toLowerCase(), kind: 'application', id: body.client_id, name: body.client_id };
  return null;
}
