import { randomUUID } from 'node:crypto';
import { STATUS_CODES, maxHeaderSize, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { ERRORS, type ApiError } from '../domain/errors.js';
import { ERROR_JSON, REQUEST_ID_HEADER, errorEnvelope } from './wire.js';

/**
 * The socket level, below Fastify's request lifecycle: how long a client may take to send a
 * request, how many connections one address may hold, and the answers given where no request
 * object exists yet (malformed HTTP, timeouts, refused connections). Those answers still carry
 * the contract's envelope and a request id (contract §1).
 */

export interface ConnectionLimits {
  /** The request line and headers must arrive within this. */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this (a long poll's wait is not part of it). */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Open connections per client address; 0 for no cap. */
  maxPerSource: number;
}

/** How long a refused connection may drain what its client already sent before it is closed. */
const REFUSED_DRAIN_MS = 2000;

/**
 * Node's server options for the limits. Node looks for expired requests on a timer; it runs
 * four times within the shortest timeout (at most every second), so a timeout holds to within
 * a quarter of itself.
 */
export function serverOptions(limits: ConnectionLimits) {
  const shortest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  return {
    headersTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(shortest / 4))),
  };
}

/** An error answer outside Fastify's reply: the envelope, a fresh request id, and `connection: close`. */
function closingAnswer(error: ApiError): { requestId: string; headers: Record<string, string>; body: string } {
  const requestId = randomUUID();
  const body = errorEnvelope(error, requestId);
  const headers: Record<string, string> = {
    ...error.headers,
    'content-type': ERROR_JSON,
    'content-length': String(Buffer.byteLength(body)),
    [REQUEST_ID_HEADER]: requestId,
    connection: 'close',
  };
  return { requestId, headers, body };
}

/** The same as a complete HTTP/1.1 response to write on a bare socket. */
export function rawErrorResponse(error: ApiError): { requestId: string; text: string } {
  const { requestId, headers, body } = closingAnswer(error);
  headers.date = new Date().toUTCString();
  const head = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return { requestId, text: `HTTP/1.1 ${error.statusCode} ${STATUS_CODES[error.statusCode]}\r\n${head}\r\n${body}` };
}

interface ClientError extends Error {
  code?: string;
  /** llhttp's reason, e.g. "Invalid header value char". */
  reason?: string;
}

function clientErrorAnswer(error: ClientError, limits: ConnectionLimits): ApiError {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return ERRORS.RequestTimeout(
        `The request did not arrive in time: its headers must arrive within ${limits.headersTimeoutMs / 1000} s and the whole request within ${limits.requestTimeoutMs / 1000} s.`,
      );
    case 'HPE_HEADER_OVERFLOW':
      return ERRORS.HeadersTooLarge(maxHeaderSize);
    default: {
      // llhttp's reasons are fixed strings; cut and clean anyway, they end up in a client's log.
      const reason = (error.reason ?? '').replace(/[^\x20-\x7e]/g, '').slice(0, 120);
      return ERRORS.BadRequest(`The request is not valid HTTP/1.1${reason ? ` (${reason})` : ''}.`);
    }
  }
}

/**
 * Fastify's `clientErrorHandler`: what Node's HTTP parser refuses (malformed lines, Content-Length
 * with Transfer-Encoding, bad chunks, oversized headers) and requests that did not arrive in
 * time. The socket is closed after the answer: the parser cannot continue on it.
 */
export function clientErrorHandler(limits: ConnectionLimits, log: FastifyBaseLogger) {
  return (error: ClientError, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) {
      socket.destroy();
      return;
    }
    const answer = clientErrorAnswer(error, limits);
    // As Node's own handler does: no answer once a response has started on this socket (a
    // pipelined request may be in flight), or the client would read a corrupt stream.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (socket.writable && !inFlight?.headersSent) {
      const { requestId, text } = rawErrorResponse(answer);
      const what = answer.statusCode === 408 ? 'request did not arrive in time' : 'rejected malformed request';
      log.info({ reqId: requestId, code: answer.code, reason: error.code }, what);
      socket.write(text);
    }
    socket.destroy();
  };
}

/** Node's 'checkExpectation': an `Expect:` other than 100-continue, which Node would answer with a bare 417. */
export function answerExpectation(request: IncomingMessage, response: ServerResponse): void {
  const { headers, body } = closingAnswer(ERRORS.ExpectationFailed(String(request.headers.expect ?? '').slice(0, 64)));
  response.writeHead(417, headers).end(body);
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are the same client. */
function sourceOf(socket: Socket): string {
  const address = socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * At most `max` open connections per client address. The HTTP layer starts reading a socket in
 * its listener for one event ('connection', or 'secureConnection' after the TLS handshake); that
 * listener only ever sees admitted sockets. A refused socket is answered 429 in the envelope
 * (Retry-After, `connection: close`) before its request is read, and closed once its client has
 * read the answer (or after a moment).
 */
export function capConnectionsPerSource(
  server: HttpServer | HttpsServer,
  max: number,
  log: FastifyBaseLogger,
  onRefused: () => void = () => undefined,
): void {
  if (max <= 0) return;
  const event = server instanceof HttpsServer ? 'secureConnection' : 'connection';
  const httpListeners = server.listeners(event) as ((this: unknown, socket: Socket) => void)[];
  server.removeAllListeners(event);
  const open = new Map<string, number>();
  /** Sources told about once while they stay at the cap, so a flood is one log line, not one per connection. */
  const warned = new Set<string>();
  server.on(event, (socket: Socket) => {
    const source = sourceOf(socket);
    const count = open.get(source) ?? 0;
    if (count >= max) {
      if (!warned.has(source)) {
        warned.add(source);
        log.warn({ source, max }, 'a client address reached the cap on open connections; more are refused');
      }
      refuse(socket, max, log);
      onRefused();
      return;
    }
    open.set(source, count + 1);
    socket.once('close', () => {
      const left = (open.get(source) ?? 1) - 1;
      if (left > 0) open.set(source, left);
      else open.delete(source);
      warned.delete(source);
    });
    for (const listener of httpListeners) listener.call(server, socket);
  });
}

function refuse(socket: Socket, max: number, log: FastifyBaseLogger): void {
  const { requestId, text } = rawErrorResponse(ERRORS.TooManyConnections(max));
  log.debug({ reqId: requestId, source: sourceOf(socket) }, 'refused a connection over the per-source cap');
  socket.on('error', () => socket.destroy());
  socket.end(text);
  // Closing with unread request bytes would reset the connection and could take the answer
  // with it: read and drop what arrives until the client closes, for a moment at most.
  socket.on('data', () => undefined);
  socket.once('end', () => socket.destroy());
  setTimeout(() => socket.destroy(), REFUSED_DRAIN_MS).unref();
}
