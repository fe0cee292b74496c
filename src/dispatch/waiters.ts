import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { ACTION_CHANGE_KINDS, type ActionChangeRef, type ActionChanges } from '../services/action-changes.js';

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

/**
 * Tells the waiters and the event streams of every server node: in-process, or through
 * PostgreSQL NOTIFY.
 */
export interface Notifier {
  notify(tenantId: string, machineId: string): void;
  /** An action changed: every node's streams are told (by id; each node reads the action). */
  publish(change: ActionChangeRef): void;
  close(): Promise<void>;
}

export class LocalNotifier implements Notifier {
  constructor(
    private readonly waiters: Waiters,
    private readonly changes?: ActionChanges,
  ) {}

  notify(tenantId: string, machineId: string): void {
    this.waiters.wake(Waiters.key(tenantId, machineId));
  }

  publish(change: ActionChangeRef): void {
    this.changes?.deliver(change);
  }

  async close(): Promise<void> {}
}

const CHANNEL = 'countermand_dispatch';
const CHANGES_CHANNEL = 'countermand_changes';
/** References per NOTIFY: about 85 bytes each, well inside PostgreSQL's 8000-byte payload. */
const CHANGES_PER_NOTIFY = 80;
const CHANGE_KINDS: ReadonlySet<string> = new Set(ACTION_CHANGE_KINDS);

/**
 * Cross-node wake-ups: every node LISTENs on one channel; a change on any node is NOTIFY'd with
 * the machine's key. Local waiters are woken at once, without the round trip. If the listening
 * connection drops, it is re-established and every local waiter is woken once, since
 * notifications may have been missed meanwhile.
 *
 * Action changes for the event streams go the same way on a second channel: this node's streams
 * are told at once, and the references made during one event-loop turn leave in one NOTIFY
 * (`<node>:<tenant>/<action>/<change>;...`), which the other nodes read; a node skips its own.
 * After a reconnect, streams are told to re-read (`resync`), since changes may have been missed.
 */
export class PostgresNotifier implements Notifier {
  private listener: pg.PoolClient | null = null;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly node = randomBytes(6).toString('hex');
  private outbox: ActionChangeRef[] = [];
  private sending: Promise<void> | null = null;

  private constructor(
    private readonly waiters: Waiters,
    private readonly pool: pg.Pool,
    private readonly onError: (error: unknown) => void,
    private readonly changes: ActionChanges | undefined,
  ) {}

  static async start(waiters: Waiters, pool: pg.Pool, onError: (error: unknown) => void, changes?: ActionChanges): Promise<PostgresNotifier> {
    const notifier = new PostgresNotifier(waiters, pool, onError, changes);
    await notifier.listen();
    return notifier;
  }

  private async listen(): Promise<void> {
    const client = await this.pool.connect();
    client.on('notification', (message) => {
      if (!message.payload) return;
      if (message.channel === CHANNEL) this.waiters.wake(message.payload);
      else if (message.channel === CHANGES_CHANNEL) this.received(message.payload);
    });
    client.on('error', (error) => {
      if (this.listener !== client) return; // closed or already replaced
      this.listener = null;
      this.onError(error);
      client.release(true);
      this.reconnect();
    });
    await client.query(`LISTEN ${CHANNEL}`);
    if (this.changes) await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    this.listener = client;
  }

  private received(payload: string): void {
    const colon = payload.indexOf(':');
    if (colon < 0 || payload.slice(0, colon) === this.node) return;
    for (const ref of payload.slice(colon + 1).split(';')) {
      const [tenantId, actionId, change] = ref.split('/');
      if (tenantId && actionId && change && CHANGE_KINDS.has(change)) {
        this.changes?.deliver({ tenantId, actionId, change: change as ActionChangeRef['change'] });
      }
    }
  }

  private reconnect(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.listen().then(
        () => {
          this.waiters.wakeAll();
          this.changes?.resync();
        },
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

  publish(change: ActionChangeRef): void {
    if (!this.changes || this.closed) return;
    this.changes.deliver(change);
    // Other nodes get the reference only: they read the action themselves.
    this.outbox.push({ tenantId: change.tenantId, actionId: change.actionId, change: change.change });
    if (this.outbox.length === 1) setImmediate(() => this.sendChanges());
  }

  /**
   * One NOTIFY at a time: two sent at once on different pool connections could commit in either
   * order, and a stream must never see an action start before it was created. What is published
   * meanwhile waits and leaves together.
   */
  private sendChanges(): Promise<void> {
    if (this.sending) return this.sending;
    if (this.outbox.length === 0) return Promise.resolve();
    const payload = this.outbox
      .splice(0, CHANGES_PER_NOTIFY)
      .map((r) => `${r.tenantId}/${r.actionId}/${r.change}`)
      .join(';');
    this.sending = this.pool
      .query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, `${this.node}:${payload}`])
      .then(
        () => undefined,
        (error: unknown) => this.onError(error),
      )
      .finally(() => {
        this.sending = null;
      })
      .then(() => this.sendChanges());
    return this.sending;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.sendChanges();
    clearTimeout(this.retry);
    const client = this.listener;
    this.listener = null;
    if (client) {
      await client.query('UNLISTEN *').catch(() => undefined);
      // Destroyed rather than returned to the pool: it carries this notifier's listeners.
      client.release(true);
    }
  }
}
