import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import {
  AGENT_API,
  type CheckinRequest,
  type CheckinResponse,
  type EnrollRequest,
  type EnrollResponse,
  type ProgressRequest,
  type ReportRequest,
  type ReportResponse,
  type StartResponse,
} from '../dispatch/protocol.js';

/** A refusal from the server (4xx/5xx), with the error envelope's code. */
export class ServerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** A 429's Retry-After: when the server will accept the call again. */
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
    this.name = 'ServerError';
  }
}

export interface ClientOptions {
  serverUrl: string;
  /** PEM of the CA that must have signed the server's certificate (pinning); https only. */
  ca?: string | Buffer;
  /** Per-request timeout besides the long poll's own wait. */
  timeoutMs?: number;
  /** Name resolution (default: the system's, dns.lookup). */
  resolver?: typeof dnsLookup;
}

const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

/** The most connections one agent opens to the server at a time. */
export const AGENT_MAX_SOCKETS = 8;

/** The agent's side of the protocol: JSON over one keep-alive connection pool. */
export class AgentClient {
  private readonly url: URL;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly timeoutMs: number;
  token: string | null = null;
  /** The local address of the last connection to the server (the machine's address towards it). */
  localAddress: string | null = null;
  /** The server's addresses as last resolved: used when name resolution fails (e.g. while isolated). */
  private lastResolved: LookupAddress[] = [];

  constructor(private readonly options: ClientOptions) {
    this.url = new URL(options.serverUrl);
    const https = this.url.protocol === 'https:';
    if (!https && options.ca) throw new Error('a CA can only be pinned for an https server URL');
    const lookup = this.lookup;
    this.agent = https
      ? new HttpsAgent({ keepAlive: true, maxSockets: AGENT_MAX_SOCKETS, lookup, ...(options.ca ? { ca: options.ca } : {}) })
      : new HttpAgent({ keepAlive: true, maxSockets: AGENT_MAX_SOCKETS, lookup } as ConstructorParameters<typeof HttpAgent>[0]);
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * Name resolution that survives isolation: an isolated machine may not reach its DNS servers,
   * but must still reach this server, so the last good answer is reused when a lookup fails.
   */
  private readonly lookup: LookupFunction = (hostname, options, callback) => {
    (this.options.resolver ?? dnsLookup)(hostname, { ...options, all: true }, (error, addresses) => {
      const list = error ? this.lastResolved : (addresses as LookupAddress[]);
      if (!error) this.lastResolved = list;
      if (list.length === 0) return callback(error ?? new Error(`cannot resolve ${hostname}`), '', 4);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };

  close(): void {
    this.agent.destroy();
  }

  private call<T>(path: string, body: unknown, extraTimeoutMs = 0, signal?: AbortSignal, token = this.token): Promise<T> {
    const payload = JSON.stringify(body ?? {});
    const target = new URL(`${this.url.pathname.replace(/\/+$/, '')}${AGENT_API}${path}`, this.url);
    const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<T>((resolve, reject) => {
      const req = request(
        target,
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          timeout: this.timeoutMs + extraTimeoutMs,
          ...(signal ? { signal } : {}),
        },
        (res) => {
          this.localAddress = res.socket.localAddress ?? this.localAddress;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('response too large'));
            else chunks.push(chunk);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : {};
            } catch {
              return reject(new ServerError(res.statusCode ?? 0, 'InvalidResponse', `unparseable response: ${text.slice(0, 200)}`));
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(parsed as T);
            const error = (parsed as { error?: { code?: string; message?: string } }).error;
            const retryAfter = Number(res.headers['retry-after']);
            reject(
              new ServerError(status, error?.code ?? 'Unknown', error?.message ?? `HTTP ${status}`, Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : null),
            );
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`request to ${path} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Sends `credential` (the machine's current one) as its proof, or no credential at all. */
  enroll(request: EnrollRequest, credential?: string): Promise<EnrollResponse> {
    return this.call('/enroll', request, 0, undefined, credential ?? null);
  }

  checkin(request: CheckinRequest, signal?: AbortSignal): Promise<CheckinResponse> {
    return this.call('/checkin', request, (request.maxWaitSeconds ?? 60) * 1000, signal);
  }

  start(actionId: string): Promise<StartResponse> {
    return this.call(`/actions/${actionId}/start`, {});
  }

  progress(actionId: string, request: ProgressRequest): Promise<StartResponse> {
    return this.call(`/actions/${actionId}/progress`, request);
  }

  report(actionId: string, request: ReportRequest): Promise<ReportResponse> {
    return this.call(`/actions/${actionId}/report`, request);
  }
}
