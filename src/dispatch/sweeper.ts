import type { FastifyBaseLogger } from 'fastify';
import { ACTION_DEFINITIONS } from '../domain/catalog.js';
import { FINDBYIP_WINDOW_MS, IP_HISTORY_MS } from '../domain/ip.js';
import type { ActionType } from '../domain/model.js';
import type { Store } from '../domain/store.js';
import type { ActionsService } from '../services/actions.js';

export interface SweeperOptions {
  store: Store;
  actions: ActionsService;
  /** An action not picked up within this becomes TimeOut (contract §4: 3 days). */
  deliveryWindowSeconds: number;
  /** Seconds an action of a type may stay InProgress. */
  executionDeadline: (type: ActionType) => number;
  /** An Active machine silent this long becomes Inactive. */
  inactiveAfterSeconds: number;
  intervalSeconds: number;
  logger: FastifyBaseLogger;
  now?: () => number;
}

const BATCH = 500;
/** IP history older than findbyip can ask about is removed at most this often. */
const IP_HISTORY_PRUNE_EVERY_MS = 3_600_000;

/**
 * Ends overdue actions with TimeOut and marks silent machines Inactive, on a timer. Safe to run
 * on every server node at once: each TimeOut is a conditional update from the status it saw,
 * so of two nodes racing, one changes the action and the other changes nothing.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly now: () => number;
  /** Action types grouped by deadline, so long-running types never crowd out the others' batch. */
  private readonly byDeadline = new Map<number, ActionType[]>();
  private lastIpHistoryPrune = -Infinity;

  constructor(private readonly options: SweeperOptions) {
    this.now = options.now ?? Date.now;
    for (const { type } of ACTION_DEFINITIONS) {
      const seconds = options.executionDeadline(type);
      this.byDeadline.set(seconds, [...(this.byDeadline.get(seconds) ?? []), type]);
    }
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.sweep()
        .catch((error: unknown) => this.options.logger.error({ err: error }, 'sweep failed'))
        .finally(() => (this.running = undefined));
    }, this.options.intervalSeconds * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass; returns what it changed. (Investigations time out with their actions.) */
  async sweep(): Promise<{ timedOut: number; inactive: number; ipRangesRemoved: number }> {
    const { store, actions } = this.options;
    const now = this.now();
    let timedOut = 0;
    const pending = await store.listOverdueActions({ status: 'Pending', before: now - this.options.deliveryWindowSeconds * 1000 }, BATCH);
    for (const action of pending) if (await actions.timeOut(action, 'delivery')) timedOut++;
    for (const [seconds, types] of this.byDeadline) {
      const overdue = await store.listOverdueActions({ status: 'InProgress', types, before: now - seconds * 1000 }, BATCH);
      for (const action of overdue) if (await actions.timeOut(action, 'execution')) timedOut++;
    }
    const inactive = await store.markInactiveMachines(now - this.options.inactiveAfterSeconds * 1000);
    let ipRangesRemoved = 0;
    if (now - this.lastIpHistoryPrune >= IP_HISTORY_PRUNE_EVERY_MS) {
      // Nothing findbyip may still ask about: a range that ended before its oldest window.
      ipRangesRemoved = await store.pruneIpHistory(now - IP_HISTORY_MS - FINDBYIP_WINDOW_MS);
      this.lastIpHistoryPrune = now;
    }
    if (timedOut > 0 || inactive > 0 || ipRangesRemoved > 0) this.options.logger.info({ timedOut, inactive, ipRangesRemoved }, 'sweep');
    return { timedOut, inactive, ipRangesRemoved };
  }
}
