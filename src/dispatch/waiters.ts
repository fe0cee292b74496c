import type pg from 'pg';

/**
 * Wakes check-ins that are waiting for a machine's work. A check-in subscribes before it looks
 * for work, so a notification between the look and the wait is never lost.
 */
export class Waiters {
  private readonly byKey = new Map<string, Set<() => void>>();

  static key(tenantId: string, machineId: string): string {
    return `${tenantId}/${machineId}`;
  }

  /** Subscribes; `wait(ms)` resolves true when woken, false after `ms`; `close()` unsubscribes. */
  subscribe(key: string): { wait(ms: number): Promise<boolean>; close(): void } {
    let woken = false;
    let wake: (() => void) | undefined;
    const listener = () => {
      woken = true;
      wake?.();
    };
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    set.add(listener);
    const close = () => {
      const current = this.byKey.get(key);
      current?.delete(listener);
      if (current?.size === 0) this.byKey.delete(key);
    };
    return {
      close,
      wait: (ms) =>
        woken
          ? Promise.resolve(true)
          : new Promise<boolean>((resolve) => {
              const timer = setTimeout(() => resolve(false), ms);
              wake = () => {
                clearTimeout(timer);
                resolve(true);
              };
            }),
    };
  }

  wake(key: string): void {
    const set = this.byKey.get(key);
    if (set) for (const listener of [...set]) listener();
  }

  wakeAll(): void {
    for (const key of [...this.byKey.keys()]) this.wake(key);
  }

  /** Check-ins waiting now (for diagnostics and benchmarks). */
  get size(): number {
    let n = 0;
    for (const set of this.byKey.values()) n += set.size;
    return n;
  }
}

/** Tells the waiters of every server node: in-process, or through PostgreSQL NOTIFY. */
export interface Notifier {
  notify(tenantId: string, machineId: string): void;
  close(): Promise<void>;
}

export class LocalNotifier implements Notifier {
  constructor(private readonly waiters: Waiters) {}

  notify(tenantId: string, machineId: string): void {
    this.waiters.wake(Waiters.key(tenantId, machineId));
  }

  async close(): Promise<void> {}
}

const CHANNEL = 'countermand_dispatch';

/**
 * Cross-node wake-ups: every node LISTENs on one channel; a change on any node is NOTIFY'd with
 * the machine's key. Local waiters are woken at once, without the round trip. If the listening
 * connection drops, it is re-established and every local waiter is woken once, since
 * notifications may have been missed meanwhile.
 */
export class PostgresNotifier implements Notifier {
  private listener: pg.PoolClient | null = null;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  private constructor(
    private readonly waiters: Waiters,
    private readonly pool: pg.Pool,
    private readonly onError: (error: unknown) => void,
  ) {}

  static async start(waiters: Waiters, pool: pg.Pool, onError: (error: unknown) => void): Promise<PostgresNotifier> {
    const notifier = new PostgresNotifier(waiters, pool, onError);
    await notifier.listen();
    return notifier;
  }

  private async listen(): Promise<void> {
    const client = await this.pool.connect();
    client.on('notification', (message) => {
      if (message.channel === CHANNEL && message.payload) this.waiters.wake(message.payload);
    });
    client.on('error', (error) => {
      if (this.listener !== client) return; // closed or already replaced
      this.listener = null;
      this.onError(error);
      client.release(true);
      this.reconnect();
    });
    await client.query(`LISTEN ${CHANNEL}`);
    this.listener = client;
  }

  private reconnect(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.listen().then(
        () => this.waiters.wakeAll(),
        (error: unknown) => {
          this.onError(error);
          this.reconnect();
        },
      );
    }, 1000);
    this.retry.unref();
  }

  notify(tenantId: string, machineId: string): void {
    const key = Waiters.key(tenantId, machineId);
    this.waiters.wake(key);
    this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, key]).catch(this.onError);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    const client = this.listener;
    this.listener = null;
    if (client) {
      await client.query(`UNLISTEN ${CHANNEL}`).catch(() => undefined);
      // Destroyed rather than returned to the pool: it carries this notifier's listeners.
      client.release(true);
    }
  }
}
