import type { Caller } from '../domain/caller.js';
import { ERRORS } from '../domain/errors.js';
import type { MachineAction } from '../domain/model.js';
import type { Store } from '../domain/store.js';
import { canSee } from './machines.js';

/**
 * What happened to an action, as the event stream names it (docs/action-center.md):
 * created; started (Pending -> InProgress); progress (a live-response command moved); ended
 * (Succeeded, Failed, TimeOut); cancelled; late-report (the machine reported after the action
 * was final: history only, the action is unchanged).
 */
export const ACTION_CHANGE_KINDS = ['created', 'started', 'progress', 'ended', 'cancelled', 'late-report'] as const;
export type ActionChangeKind = (typeof ACTION_CHANGE_KINDS)[number];

/** A change by reference: small enough for a PostgreSQL NOTIFY; each node reads the action itself. */
export interface ActionChangeRef {
  tenantId: string;
  actionId: string;
  change: ActionChangeKind;
  /**
   * The action as this change left it, on the node that made the change (never sent to other
   * nodes): its own streams get exactly that state, without a read.
   */
  action?: MachineAction;
}

/** One open stream: who it is for, and where its messages go. */
export interface ChangeSubscription {
  close(): void;
}

/**
 * What a stream is sent: a change with the action as it is when sent; `resync` when changes may
 * have been missed (the node's PostgreSQL listener reconnected) and the client should re-read;
 * `end` when the server closes every stream (shutdown).
 */
export type StreamMessage =
  | { type: 'change'; change: ActionChangeKind; action: MachineAction }
  | { type: 'resync' }
  | { type: 'end'; reason: string };

type Send = (message: StreamMessage) => void;

interface Subscriber {
  caller: Caller;
  send: Send;
}

/**
 * This node's event streams. Every change on any node reaches `deliver` (through the Notifier);
 * a change in a tenant nobody here listens to is dropped at once, without a read. A change made
 * on this node carries the action as it left it; one from another node is read here, and changes
 * that arrive together are read together (one read of each action, and of its machine when a
 * device group must be checked). They are sent in the order they happened to every stream whose
 * caller may see the action: its tenant and, for delegated users, its machine's device group,
 * exactly as GET /api/machineactions decides.
 */
export class ActionChanges {
  private readonly byTenant = new Map<string, Set<Subscriber>>();
  private readonly openPerCaller = new Map<string, number>();
  private queue: ActionChangeRef[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /**
   * Opens a stream for `caller`, or returns null when the caller already holds `maxPerCaller`
   * (checked and counted in one synchronous step, so a burst cannot overshoot it).
   */
  subscribe(caller: Caller, maxPerCaller: number, send: Send): ChangeSubscription | null {
    if (this.closed) throw ERRORS.ServiceUnavailable('The server is shutting down; try again shortly.');
    const key = `${caller.tenantId}/${caller.kind}/${caller.id}`;
    const open = this.openPerCaller.get(key) ?? 0;
    if (open >= maxPerCaller) return null;
    this.openPerCaller.set(key, open + 1);
    const subscriber: Subscriber = { caller, send };
    let set = this.byTenant.get(caller.tenantId);
    if (!set) this.byTenant.set(caller.tenantId, (set = new Set()));
    set.add(subscriber);
    let closed = false;
    return {
      close: () => {
        if (closed) return;
        closed = true;
        const current = this.byTenant.get(caller.tenantId);
        current?.delete(subscriber);
        if (current?.size === 0) this.byTenant.delete(caller.tenantId);
        const left = (this.openPerCaller.get(key) ?? 1) - 1;
        if (left > 0) this.openPerCaller.set(key, left);
        else this.openPerCaller.delete(key);
      },
    };
  }

  /** Streams open on this node. */
  get size(): number {
    let n = 0;
    for (const set of this.byTenant.values()) n += set.size;
    return n;
  }

  /** A change happened (here or on another node). Costs a map lookup when nobody here listens. */
  deliver(ref: ActionChangeRef): void {
    if (!this.byTenant.has(ref.tenantId)) return;
    this.queue.push(ref);
    if (this.queue.length === 1) setImmediate(() => this.flush());
  }

  /** Batches are sent one after another, so every stream sees changes in the order they came. */
  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.flushing = this.flushing.then(() => this.send(batch)).catch(this.onError);
  }

  private async send(batch: readonly ActionChangeRef[]): Promise<void> {
    const actions = new Map<string, MachineAction | null>();
    const groups = new Map<string, number | null | undefined>();
    for (const ref of batch) {
      const subscribers = this.byTenant.get(ref.tenantId);
      if (!subscribers) continue;
      const key = `${ref.tenantId}/${ref.actionId}`;
      if (!ref.action && !actions.has(key)) actions.set(key, await this.store.getAction(ref.tenantId, ref.actionId));
      const action = ref.action ?? actions.get(key);
      if (!action) continue;
      const machineKey = `${action.tenantId}/${action.machineId}`;
      // One message for every stream, so each stream's writer can serialise it once.
      const message: StreamMessage = { type: 'change', change: ref.change, action };
      for (const subscriber of [...subscribers]) {
        if (subscriber.caller.deviceGroups !== null) {
          if (!groups.has(machineKey)) {
            const machine = await this.store.findMachine(action.tenantId, action.machineId, { aadDeviceId: false, computerDnsName: false });
            groups.set(machineKey, machine ? machine.rbacGroupId : undefined);
          }
          const group = groups.get(machineKey);
          if (group === undefined || !canSee(subscriber.caller, { rbacGroupId: group })) continue;
        }
        this.sendTo(subscriber, message);
      }
    }
  }

  /** Changes may have been missed: every stream is told to re-read. */
  resync(): void {
    this.broadcast({ type: 'resync' });
  }

  /** Ends every stream (before the server closes, which would otherwise wait for them). */
  closeAll(reason: string): void {
    this.closed = true;
    this.endAll(reason);
  }

  /** Ends every open stream; new ones are still welcome (the emulator's reset). */
  endAll(reason: string): void {
    this.broadcast({ type: 'end', reason });
  }

  private broadcast(message: StreamMessage): void {
    for (const set of [...this.byTenant.values()]) for (const subscriber of [...set]) this.sendTo(subscriber, message);
  }

  /** One stream's failure (a socket gone bad) is its own; the others still get the change. */
  private sendTo(subscriber: Subscriber, message: StreamMessage): void {
    try {
      subscriber.send(message);
    } catch (error) {
      this.onError(error);
    }
  }

  /** Waits until what was delivered so far has been sent (tests, shutdown). */
  async settled(): Promise<void> {
    if (this.queue.length > 0) this.flush();
    await this.flushing;
  }
}
