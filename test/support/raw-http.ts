import net from 'node:net';

/**
 * HTTP/1.1 over a bare socket, byte for byte as the test writes it: no client library
 * normalises the path, fixes the framing or refuses a malformed header first.
 */

export interface RawResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
  json: any;
}

export interface RawExchange {
  /** Every response the server wrote, in order. */
  responses: RawResponse[];
  /** Whether the server closed the connection (else the test's own limit ended it). */
  closedByServer: boolean;
  /** Milliseconds from connecting until the server closed (or the limit). */
  elapsedMs: number;
}

/** Parses the responses in what a server wrote. */
export function parseResponses(raw: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const [statusLine, ...lines] = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    const body = rest.subarray(end + 4, end + 4 + length).toString('utf8');
    let json: unknown;
    try {
      json = body ? JSON.parse(body) : undefined;
    } catch {
      json = undefined;
    }
    responses.push({ status, headers, body, json });
    rest = rest.subarray(end + 4 + length);
    if (status === 0) break;
  }
  return responses;
}

export interface RawOptions {
  host?: string;
  /** Connect from this local address (e.g. 127.0.0.2, another loopback source). */
  localAddress?: string;
  /** Give up (and close from this side) after this long. */
  limitMs?: number;
  /** Called after the first write, with the socket: for slow senders. */
  then?: (socket: net.Socket) => void | Promise<void>;
  /** Resolve as soon as this many responses have arrived, without waiting for a close. */
  responses?: number;
}

/** Writes `data` on a fresh connection and collects what comes back until the server closes. */
export function rawExchange(port: number, data: string | Buffer, options: RawOptions = {}): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect({ port, host: options.host ?? '127.0.0.1', ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(limit);
      socket.destroy();
      resolve({ responses: parseResponses(Buffer.concat(chunks)), closedByServer, elapsedMs: Date.now() - started });
    };
    const limit = setTimeout(() => finish(false), options.limitMs ?? 5000);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (options.responses && parseResponses(Buffer.concat(chunks)).filter((r) => r.body.length >= Number(r.headers['content-length'] ?? 0)).length >= options.responses) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A reset after the answer is still the server closing.
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') finish(true);
      else if (!done) reject(error);
    });
    socket.on('connect', () => {
      socket.write(data);
      void Promise.resolve(options.then?.(socket)).catch(() => undefined);
    });
  });
}

/** The contract's envelope on a raw response: error code, message, target = the request-id header. */
export function envelopeOf(response: RawResponse): { code: string; message: string; target: string } {
  const error = response.json?.error;
  if (!error || typeof error.code !== 'string' || typeof error.message !== 'string') {
    throw new Error(`not an envelope: ${response.status} ${response.body.slice(0, 200)}`);
  }
  if (Object.keys(response.json).join() !== 'error' || error.target !== response.headers['request-id']) {
    throw new Error(`envelope target ${error.target} is not the request-id ${response.headers['request-id']}`);
  }
  return error;
}
