import { request as httpRequest, type IncomingMessage } from 'node:http';
import { createParser } from 'eventsource-parser';

export const STREAM_PATH = '/countermand/v1/events';

export interface StreamEvent {
  event: string;
  data: any;
}

export interface EventStream {
  status: number;
  headers: Headers;
  /** The error body when the stream was refused. */
  body: any;
  /** Everything received so far, as sent. */
  readonly text: string;
  events: StreamEvent[];
  comments: string[];
  /** Resolves when the server ends the response. */
  closed: Promise<void>;
  /** Resolves with the first event (from the start) matching `predicate`. */
  next(predicate: (e: StreamEvent) => boolean, timeoutMs?: number, what?: string): Promise<StreamEvent>;
  /** Resolves once `count` heartbeat comments have arrived. */
  heartbeats(count: number, timeoutMs?: number): Promise<void>;
  close(): void;
}

/**
 * Reads the event stream as a script does (`curl -N -H "Authorization: Bearer ..."`), parsing
 * server-sent events as they arrive.
 */
export async function openEventStream(baseUrl: string, token: string | null, path = STREAM_PATH, method = 'GET'): Promise<EventStream> {
  // node:http without an agent, as curl: one connection per stream, gone when the stream is.
  // (fetch's pool may open a spare connection after an abort, which a closing server waits for.)
  const request = httpRequest(`${baseUrl}${path}`, { method, agent: false, headers: token ? { authorization: `Bearer ${token}` } : {} });
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    request.on('response', resolve);
    request.on('error', reject);
    request.end();
  });
  const headers = new Headers();
  for (const [k, v] of Object.entries(response.headers)) if (typeof v === 'string') headers.set(k, v);
  const status = response.statusCode ?? 0;
  const events: StreamEvent[] = [];
  const comments: string[] = [];
  const listeners = new Set<() => void>();
  const changed = () => {
    for (const l of [...listeners]) l();
  };
  const waitFor = <T>(probe: () => T | undefined, timeoutMs: number, what: string) =>
    new Promise<T>((resolve, reject) => {
      const check = () => {
        const found = probe();
        if (found !== undefined) {
          listeners.delete(check);
          clearTimeout(timer);
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(events.map((e) => [e.event, e.data?.change, e.data?.action?.id]))}`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  const close = () => {
    request.destroy();
  };
  if (status !== 200 || !headers.get('content-type')?.startsWith('text/event-stream')) {
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return {
      status,
      headers,
      body,
      text,
      events,
      comments,
      closed: Promise.resolve(),
      next: () => Promise.reject(new Error(`no stream: ${status} ${text}`)),
      heartbeats: () => Promise.reject(new Error(`no stream: ${status}`)),
      close,
    };
  }
  const parser = createParser({
    onEvent: (message) => {
      events.push({ event: message.event ?? 'message', data: JSON.parse(message.data) });
      changed();
    },
    onComment: (comment) => {
      comments.push(comment);
      changed();
    },
  });
  let text = '';
  const closed = new Promise<void>((resolve) => {
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      text += chunk;
      parser.feed(chunk);
    });
    response.on('close', () => {
      changed();
      resolve();
    });
    response.on('error', () => undefined);
  });
  return {
    status,
    headers,
    body: undefined,
    get text() {
      return text;
    },
    events,
    comments,
    closed,
    next: (predicate, timeoutMs = 15_000, what = 'an event') => waitFor(() => events.find(predicate), timeoutMs, what),
    heartbeats: (count, timeoutMs = 15_000) =>
      waitFor(() => (comments.filter((c) => c.trim().startsWith('heartbeat')).length >= count ? true : undefined), timeoutMs, `${count} heartbeats`).then(
        () => undefined,
      ),
    close,
  };
}

/** The `action` events of one action, as [change, status] pairs. */
export const changesOf = (stream: EventStream, actionId: string) =>
  stream.events.filter((e) => e.event === 'action' && e.data.action.id === actionId).map((e) => [e.data.change, e.data.action.status]);
