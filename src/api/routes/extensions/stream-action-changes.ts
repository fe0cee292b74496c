import { decodeJwt } from 'jose';
import { ERRORS } from '../../../domain/errors.js';
import { READ_MACHINES } from '../../../domain/permissions.js';
import { toWireTime } from '../../../domain/time.js';
import type { StreamMessage } from '../../../services/action-changes.js';
import { EXTENSIONS_ROOT, type Operation } from '../../operation.js';
import { REQUEST_ID_HEADER, machineActionToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Type } from 'typebox';

/**
 * A client that reads slower than changes arrive is cut off once this much is waiting for it,
 * rather than held in memory without bound; it reconnects and re-reads.
 */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** setTimeout's longest delay; a token living longer (an external issuer's) is cut there. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The token's expiry (the authenticator has verified it); the stream ends then. */
function tokenExpiry(authorization: string | undefined): number | null {
  const token = authorization ? /^Bearer +(\S+)$/i.exec(authorization.trim())?.[1] : undefined;
  if (!token) return null;
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** A change is serialised once, however many streams it goes to (the hub sends one message to all). */
const changeFrames = new WeakMap<StreamMessage, string>();
function changeFrame(message: Extract<StreamMessage, { type: 'change' }>): string {
  let text = changeFrames.get(message);
  if (text === undefined) changeFrames.set(message, (text = frame('action', { change: message.change, action: machineActionToWire(message.action) })));
  return text;
}

/**
 * GET /countermand/v1/events: every change of every action the caller may see, as server-sent
 * events (docs/action-center.md). Countermand's own extension; the permissions and visibility of
 * GET /api/machineactions (tenant, device groups). Heartbeats keep proxies from closing an idle
 * stream; the stream ends when the token expires or the server shuts down; a caller holds at
 * most `streamsPerCaller` streams on one node (429 beyond).
 */
export const streamActionChanges: Operation = {
  name: 'StreamActionChanges',
  method: 'GET',
  root: EXTENSIONS_ROOT,
  path: '/events',
  permissions: READ_MACHINES,
  doc: {
    tag: TAGS.events,
    summary: 'Every change of the machine actions the caller may see, as server-sent events',
    description:
      "Countermand's own extension (docs/action-center.md): `ready`, then an `action` event per change (`{change, action}`), heartbeat comments, `resync` and `end`; the permissions and visibility of GET /api/machineactions. At most eventStreamsPerCaller streams per caller per node (then 429).",
    response: { status: 200, description: 'The stream, open until the token expires or the server shuts down.', contentType: 'text/event-stream; charset=utf-8', schema: Type.String() },
  },
  async handler(request, ctx, reply) {
    const { changes, heartbeatMs, streamsPerCaller, clock } = ctx.events;
    const now = clock?.now ?? Date.now;
    const headers = {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // Tells nginx-style proxies to pass each event on instead of buffering the response.
      'x-accel-buffering': 'no',
      [REQUEST_ID_HEADER]: request.id,
    };
    if (request.method === 'HEAD') {
      reply.hijack();
      reply.raw.writeHead(200, headers).end();
      return null;
    }
    const raw = reply.raw;
    let open = true;
    // Every way a stream ends comes through here once: the subscription and timers go with it.
    const stop = (reason: string, last?: string) => {
      if (!open) return;
      open = false;
      subscription?.close();
      clearInterval(heartbeat);
      expiry?.();
      if (last !== undefined && !raw.destroyed) raw.end(last);
      else raw.destroy();
      request.log.info({ reason, openStreams: changes.size }, 'event stream ended');
    };
    const write = (chunk: string) => {
      if (!open) return;
      raw.write(chunk);
      if (raw.writableLength > MAX_BUFFERED_BYTES) stop('client-too-slow');
    };
    const onMessage = (message: StreamMessage) => {
      if (message.type === 'resync') write(frame('resync', {}));
      else if (message.type === 'end') stop(message.reason, frame('end', { reason: message.reason }));
      else write(changeFrame(message));
    };
    // Counted and registered in one synchronous step; nothing is delivered before the headers
    // below are written, since deliveries are sent on a later turn of the event loop.
    const subscription = changes.subscribe(request.caller, streamsPerCaller, onMessage);
    if (!subscription) throw ERRORS.TooManyStreams(streamsPerCaller);
    reply.hijack();
    raw.writeHead(200, headers);
    const expiresAt = tokenExpiry(request.headers.authorization);
    raw.write(frame('ready', { heartbeatSeconds: heartbeatMs / 1000, tokenExpiresDateTimeUtc: toWireTime(expiresAt) }));
    const heartbeat = setInterval(() => write(`: heartbeat ${toWireTime(now())}\n\n`), heartbeatMs);
    const expire = () => stop('token-expired', frame('end', { reason: 'token-expired' }));
    // The emulator's clock issued the token, so it says when it expires (an advance fires it).
    let expiry: (() => void) | undefined;
    if (expiresAt !== null && clock) expiry = clock.schedule(expiresAt, expire);
    else if (expiresAt !== null) {
      const timer = setTimeout(expire, Math.min(MAX_TIMER_MS, Math.max(0, expiresAt - Date.now())));
      expiry = () => clearTimeout(timer);
    }
    raw.on('close', () => stop('client-closed'));
    request.log.info({ openStreams: changes.size }, 'event stream opened');
    return null;
  },
};
