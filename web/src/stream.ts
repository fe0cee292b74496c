import { createParser } from 'eventsource-parser';
import { EXTENSIONS } from './api.js';
import type { ChangeKind, MachineAction } from './model.js';

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'stopped';

export interface StreamHandlers {
  change(change: ChangeKind, action: MachineAction): void;
  /** Changes may have been missed (a reconnect, or the server said so): re-read what is shown. */
  resync(): void;
  state(state: StreamState): void;
  /** The token is no longer accepted (401, or the stream ended at its expiry). */
  unauthorized(): void;
}

const BACKOFF_MS = [1000, 2000, 5000, 10_000, 30_000];

/**
 * The event stream (docs/action-center.md), read with fetch so the bearer token can travel in
 * the Authorization header (EventSource cannot send one). It reconnects with backoff; after a
 * reconnect it asks for a re-read, since the stream does not replay what it missed. A stream
 * silent for three heartbeats is taken as dead and reopened.
 */
export class ChangeStream {
  private abort: AbortController | null = null;
  private stopped = false;
  private failures = 0;

  constructor(
    private readonly token: string,
    private readonly handlers: StreamHandlers,
  ) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.handlers.state('stopped');
  }

  private async run(): Promise<void> {
    let first = true;
    while (!this.stopped) {
      this.handlers.state(first ? 'connecting' : 'reconnecting');
      const outcome = await this.once(!first).catch(() => 'retry' as const);
      first = false;
      if (outcome === 'unauthorized') {
        this.handlers.unauthorized();
        return;
      }
      if (this.stopped) return;
      this.handlers.state('reconnecting');
      const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)]!;
      this.failures++;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /** One connection, until it ends. */
  private async once(reconnect: boolean): Promise<'retry' | 'unauthorized'> {
    const abort = (this.abort = new AbortController());
    const response = await fetch(`${EXTENSIONS}/events`, {
      headers: { authorization: `Bearer ${this.token}`, accept: 'text/event-stream' },
      credentials: 'omit',
      cache: 'no-store',
      signal: abort.signal,
    });
    if (response.status === 401) return 'unauthorized';
    if (!response.ok || !response.body) return 'retry';
    let heartbeatMs = 15_000;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => abort.abort(), heartbeatMs * 3);
    };
    let ending: 'retry' | 'unauthorized' = 'retry';
    const parser = createParser({
      onEvent: (message) => {
        const data = JSON.parse(message.data) as Record<string, unknown>;
        if (message.event === 'ready') {
          heartbeatMs = Number(data.heartbeatSeconds) * 1000 || heartbeatMs;
          this.failures = 0;
          this.handlers.state('live');
          if (reconnect) this.handlers.resync();
        } else if (message.event === 'action') {
          this.handlers.change(data.change as ChangeKind, data.action as MachineAction);
        } else if (message.event === 'resync') {
          this.handlers.resync();
        } else if (message.event === 'end' && data.reason === 'token-expired') {
          ending = 'unauthorized';
        }
      },
    });
    alive();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        alive();
        parser.feed(value);
      }
    } catch {
      // aborted (stop, or the watchdog) or the connection broke
    } finally {
      clearTimeout(watchdog);
    }
    return ending;
  }
}
