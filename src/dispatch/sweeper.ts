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
  /** Seconds a live-response RunScript may run (the agent kills it then; the sweeper is the backstop). */
  scriptTimeoutSeconds?: number;
  /** Artifact retention: run on every sweep (src/artifacts/artifacts.ts). */
  artifacts?: { sweep(now: number): Promise<{ artifacts: number; blobs: number }> };
}

const BATCH = 500;
/** IP history older than findbyip can ask about is removed at most this often. */
const IP_HISTORY_PRUNE_EVERY_MS = 3_600_000;
/** How long past its timeout a script may still be reported stopped by its agent before the server ends the action. */
export const SCRIPT_TIMEOUT_GRACE_SECONDS = 60;

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

  /**
   * One pass as of `now` (tests pass a later time instead of waiting); returns what it changed.
   * (Investigations time out with their actions.)
   */
  async sweep(now = this.now()): Promise<{ timedOut: number; inactive: number; ipRangesRemoved: number }> {
    const { store, actions } = this.options;
    let timedOut = 0;
    const pending = await store.listOverdueActions({ status: 'Pending', before: now - this.options.deliveryWindowSeconds * 1000 }, BATCH);
    for (const action of pending) if (await actions.timeOut(action, 'delivery')) timedOut++;
    for (const [seconds, types] of this.byDeadline) {
      const overdue = await store.listOverdueActions({ status: 'InProgress', types, before: now - seconds * 1000 }, BATCH);
      for (const action of overdue) if (await actions.timeOut(action, 'execution')) timedOut++;
    }
    timedOut += await this.overdueScripts(now);
    const inactive = await store.markInactiveMachines(now - this.options.inactiveAfterSeconds * 1000);
    let ipRangesRemoved = 0;
    if (now - this.lastIpHistoryPrune >= IP_HISTORY_PRUNE_EVERY_MS) {
      // Nothing findbyip may still ask about: a range that ended before its oldest window.
      ipRangesRemoved = await store.pruneIpHistory(now - IP_HISTORY_MS - FINDBYIP_WINDOW_MS);
      this.lastIpHistoryPrune = now;
    }
    const removed = (await this.options.artifacts?.sweep(now)) ?? { artifacts: 0, blobs: 0 };
    if (timedOut > 0 || inactive > 0 || ipRangesRemoved > 0 || removed.artifacts > 0 || removed.blobs > 0) {
      this.options.logger.info({ timedOut, inactive, ipRangesRemoved, ...removed }, 'sweep');
    }
    return { timedOut, inactive, ipRangesRemoved };
  }

  /**
   * The backstop of the RunScript timeout: the agent kills a script at the timeout and reports
   * the command failed; if it has not within the grace after it, the action ends in TimeOut with
   * that command marked failed, and the agent is told to stop.
   */
  private async overdueScripts(now: number): Promise<number> {
    if (this.options.scriptTimeoutSeconds === undefined) return 0;
    const cutoff = now - (this.options.scriptTimeoutSeconds + SCRIPT_TIMEOUT_GRACE_SECONDS) * 1000;
    const candidates = await this.options.store.listOverdueActions({ status: 'InProgress', types: ['LiveResponse'], before: cutoff }, BATCH);
    let timedOut = 0;
    for (const action of candidates) {
      const stuck = action.commands.find(
        (c) => c.command.type === 'RunScript' && c.startTime !== null && c.endTime === null && c.startTime < cutoff,
      );
      if (!stuck) continue;
      const commands = action.commands.map((c) =>
        c === stuck
          ? { ...c, endTime: now, commandStatus: 'Failed' as const, errors: [...c.errors, `The script ran longer than ${this.options.scriptTimeoutSeconds} seconds.`] }
          : c,
      );
      if (await this.options.actions.timeOut(action, 'script', commands)) timedOut++;
    }
    return timedOut;
  }
}
