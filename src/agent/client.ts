import { createHash, randomUUID } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AGENT_API,
  CONTENT_SHA256_HEADER,
  type CheckinRequest,
  type CheckinResponse,
  type EnrollRequest,
  type EnrollResponse,
  type LibraryLinkResponse,
  type ProgressRequest,
  type ReportRequest,
  type ReportResponse,
  type StartResponse,
  type UploadResponse,
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

  /** A request whose body (if any) and answer are streams; resolves with the response once it starts. */
  private open(method: string, path: string, headers: OutgoingHttpHeaders, body: Readable | null, signal?: AbortSignal): Promise<IncomingMessage> {
    const target = new URL(`${this.url.pathname.replace(/\/+$/, '')}${path}`, this.url);
    const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(target, {
        method,
        agent: this.agent,
        headers: { ...headers, ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
        timeout: this.timeoutMs,
        ...(signal ? { signal } : {}),
      });
      req.on('response', resolve);
      req.on('timeout', () => req.destroy(new Error(`request to ${path} timed out`)));
      req.on('error', reject);
      if (body) pipeline(body, req).catch((error: unknown) => req.destroy(error as Error));
      else req.end();
    });
  }

  /** The refusal in an error response's envelope. */
  private async refusal(res: IncomingMessage): Promise<ServerError> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size <= 64 * 1024) chunks.push(chunk);
    }
    const status = res.statusCode ?? 0;
    try {
      const error = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string; message?: string } }).error;
      return new ServerError(status, error?.code ?? 'Unknown', error?.message ?? `HTTP ${status}`);
    } catch {
      return new ServerError(status, 'InvalidResponse', `HTTP ${status}`);
    }
  }

  /**
   * Downloads a library file the action names to `destination`: asks for a fresh link, then
   * streams the bytes to a temporary name beside it, checks their size and SHA-256 against the
   * library's, and renames. On any failure nothing is left at `destination`.
   */
  async fetchLibraryFile(actionId: string, fileName: string, destination: string, signal?: AbortSignal): Promise<LibraryLinkResponse> {
    const link = await this.call<LibraryLinkResponse>(`/actions/${actionId}/library-link`, { fileName }, 0, signal);
    if (!link.link.startsWith(`${AGENT_API}/`)) throw new ServerError(0, 'InvalidResponse', `unexpected library link ${link.link}`);
    const res = await this.open('GET', link.link, {}, null, signal);
    if (res.statusCode !== 200) throw await this.refusal(res);
    const partial = `${destination}.${randomUUID()}.part`;
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (size > link.size) return callback(new Error(`${fileName}: more bytes than the library's ${link.size}`));
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    try {
      await pipeline(res, meter, createWriteStream(partial, { mode: 0o600, flags: 'wx' }));
      const sha256 = hash.digest('hex');
      if (size !== link.size || sha256 !== link.sha256) {
        throw new Error(`${fileName}: downloaded ${size} bytes with SHA-256 ${sha256}, the library has ${link.size} bytes with ${link.sha256}`);
      }
      await rename(partial, destination);
      return link;
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }

  /**
   * Uploads the file at `source` to `path` (a command's result or the package), with its length
   * and SHA-256, so the server stores exactly these bytes or refuses them. Safe to repeat.
   */
  async upload(path: string, source: string, contentType: string, signal?: AbortSignal): Promise<UploadResponse> {
    const { size } = await stat(source);
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(source) as AsyncIterable<Buffer>) hash.update(chunk);
    const sha256 = hash.digest('hex');
    const res = await this.open(
      'PUT',
      `${AGENT_API}${path}`,
      { 'content-type': contentType, 'content-length': size, [CONTENT_SHA256_HEADER]: sha256 },
      createReadStream(source),
      signal,
    );
    if (res.statusCode !== 200) throw await this.refusal(res);
    const chunks: Buffer[] = [];
    for await (const chunk of res as AsyncIterable<Buffer>) chunks.push(chunk);
    const stored = JSON.parse(Buffer.concat(chunks).toString('utf8')) as UploadResponse;
    if (stored.sha256 !== sha256) throw new ServerError(0, 'InvalidResponse', `the server stored ${stored.sha256}, not ${sha256}`);
    return stored;
  }
}
