import { randomUUID } from 'node:crypto';
import type { AgentActionWire, EnrollRequest } from '../dispatch/protocol.js';
import type { LiveResponseCommand } from '../domain/model.js';
import { AgentClient, ServerError } from './client.js';
import type { ExecutionOutcome, Executor } from './executor.js';
import type { AgentState, JournalEntry } from './state.js';

export const AGENT_VERSION = '0.1.0';

export interface AgentOptions {
  serverUrl: string;
  ca?: string | Buffer;
  /** Needed on first start, and to re-enroll if the credential is revoked. */
  enrollmentToken?: string;
  machine: EnrollRequest['machine'];
  state: AgentState;
  executor: Executor;
  /** The longest a check-in may wait for work (the server picks its own, shorter, wait). */
  maxWaitSeconds?: number;
  log?: AgentLog;
}

/** Where the agent tells what it does; 'warn' marks trouble (the server unreachable, a refusal). */
export type AgentLog = (message: string, detail?: Record<string, unknown>, level?: 'info' | 'warn') => void;

type StopReason = 'cancelled' | 'shutdown';

/** Backoff between failed calls: 0.5 s doubling to 30 s, with jitter. */
function backoff(attempt: number): number {
  return Math.min(30_000, 500 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
}

const delay = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

/**
 * The endpoint agent: enrolls once, then long-polls the server for actions, runs each with its
 * executor (several at once when they differ), reports progress and outcomes, and stops an
 * action as soon as the server says it ended. Survives restarts through its state's journal.
 */
export class Agent {
  private readonly client: AgentClient;
  private readonly running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly log: AgentLog;
  machineId: string | null = null;
  /** Why the agent stopped on its own (offboarded, credential refused), if it did. */
  stoppedBecause: string | null = null;

  constructor(private readonly options: AgentOptions) {
    this.client = new AgentClient({ serverUrl: options.serverUrl, ...(options.ca ? { ca: options.ca } : {}) });
    this.log = options.log ?? (() => undefined);
  }

  async start(): Promise<void> {
    await this.ensureEnrolled(false);
    this.loop = this.run();
  }

  /** Resolves when the agent stops: after stop(), or on its own (offboarded, refused). */
  get finished(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  /** Stops polling and interrupts running actions without reporting them: they resume on restart. */
  async stop(): Promise<void> {
    this.stopping.abort();
    for (const { controller } of this.running.values()) controller.abort('shutdown' satisfies StopReason);
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    await this.loop;
    this.client.close();
  }

  private async ensureEnrolled(replace: boolean): Promise<void> {
    const saved = replace ? null : await this.options.state.loadCredentials();
    if (saved && saved.serverUrl === this.options.serverUrl) {
      this.client.token = saved.agentToken;
      this.machineId = saved.machineId;
      return;
    }
    if (!this.options.enrollmentToken) throw new Error('not enrolled: an enrollment token is needed');
    const previous = saved ?? (await this.options.state.loadCredentials());
    const enrolled = await this.client.enroll({
      enrollmentToken: this.options.enrollmentToken,
      ...(previous?.machineId ? { machineId: previous.machineId } : {}),
      machine: { agentVersion: AGENT_VERSION, ...this.options.machine },
    });
    await this.options.state.saveCredentials({ serverUrl: this.options.serverUrl, ...enrolled });
    this.client.token = enrolled.agentToken;
    this.machineId = enrolled.machineId;
    this.log('enrolled', { machineId: enrolled.machineId });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping.signal.aborted) {
      try {
        const work = await this.client.checkin(
          {
            running: [...this.running.keys()],
            maxWaitSeconds: this.options.maxWaitSeconds ?? 60,
            agentVersion: AGENT_VERSION,
            // The address this machine reaches the server from, once known; else what it enrolled with.
            ...((this.client.localAddress ?? this.options.machine.lastIpAddress)
              ? { lastIpAddress: this.client.localAddress ?? this.options.machine.lastIpAddress }
              : {}),
          },
          this.stopping.signal,
        );
        failures = 0;
        for (const ended of work.stop) {
          this.log('stop', { actionId: ended.id, status: ended.status });
          this.running.get(ended.id)?.controller.abort('cancelled' satisfies StopReason);
        }
        for (const action of work.actions) if (!this.running.has(action.id)) this.begin(action);
      } catch (error) {
        if (this.stopping.signal.aborted) break;
        if (error instanceof ServerError && error.status === 401) {
          if (this.stoppedBecause) break;
          if (!this.options.enrollmentToken) {
            this.stoppedBecause = 'the server refused the agent credential';
            break;
          }
          try {
            await this.ensureEnrolled(true);
            continue;
          } catch (enrollError) {
            this.log('re-enrollment failed', { error: String(enrollError) }, 'warn');
          }
        }
        this.log('check-in failed', { error: String(error) }, 'warn');
        await delay(backoff(failures++), this.stopping.signal);
      }
    }
  }

  private begin(action: AgentActionWire): void {
    const controller = new AbortController();
    const done = this.handle(action, controller)
      .catch((error: unknown) => this.log('action handling failed', { actionId: action.id, error: String(error) }, 'warn'))
      .finally(() => this.running.delete(action.id));
    this.running.set(action.id, { controller, done });
  }

  private async handle(action: AgentActionWire, controller: AbortController): Promise<void> {
    const state = this.options.state;
    let entry = await state.journal(action.id);
    if (entry?.phase === 'finished') {
      // It finished before a restart; only the report was missing.
      await this.report(action, entry);
      return;
    }
    if (action.status === 'Pending') {
      const started = await this.retry(() => this.client.start(action.id), controller.signal);
      if (!started?.run) {
        this.log('not started: the action ended first', { actionId: action.id, status: started?.status });
        return;
      }
    }
    entry = { actionId: action.id, type: action.type, phase: 'started', at: Date.now() };
    await state.writeJournal(entry);
    state.log({ actionId: action.id, type: action.type, event: action.resume ? 'resumed' : 'started', scope: action.scope });

    let commands: LiveResponseCommand[] | undefined;
    const outcome: ExecutionOutcome = await this.options.executor.execute({
      action: { id: action.id, type: action.type, scope: action.scope, sha1: action.sha1, commands: action.commands, comment: action.comment },
      signal: controller.signal,
      log: (message, detail) => state.log({ actionId: action.id, message, ...detail }),
      progress: async (current) => {
        commands = current;
        await this.client.progress(action.id, { commands: current }).catch((error: unknown) =>
          this.log('progress not delivered', { actionId: action.id, error: String(error) }, 'warn'),
        );
      },
    });
    if (controller.signal.reason === 'shutdown') {
      state.log({ actionId: action.id, event: 'interrupted', reason: 'agent shutdown' });
      return; // the journal still says 'started': it runs again after the restart
    }
    const finished: JournalEntry = {
      ...entry,
      phase: 'finished',
      reportId: randomUUID(),
      outcome,
      ...(commands ? { commands } : {}),
      at: Date.now(),
    };
    await state.writeJournal(finished);
    state.log({ actionId: action.id, type: action.type, event: 'completed', status: outcome.status, errorHResult: outcome.errorHResult });
    await this.report(action, finished);
  }

  private async report(action: AgentActionWire, entry: JournalEntry): Promise<void> {
    const outcome = entry.outcome!;
    const result = await this.retry(
      () =>
        this.client.report(action.id, {
          reportId: entry.reportId!,
          status: outcome.status,
          errorHResult: outcome.errorHResult,
          troubleshootInfo: outcome.troubleshootInfo,
          ...(entry.commands ? { commands: entry.commands } : {}),
          ...(outcome.detail ? { detail: outcome.detail } : {}),
        }),
      undefined,
    );
    await this.options.state.removeJournal(action.id);
    this.log('reported', { actionId: action.id, status: result?.status, applied: result?.applied });
    if (action.type === 'Offboard' && result?.status === 'Succeeded') {
      // The server revoked this agent's credential; nothing more to do on this machine.
      this.stoppedBecause = 'offboarded';
      await this.options.state.clearCredentials();
      this.stopping.abort();
    }
  }

  /** Retries transient failures; gives up on a refusal (4xx) or when `signal` aborts. */
  private async retry<T>(call: () => Promise<T>, signal: AbortSignal | undefined): Promise<T | null> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (error instanceof ServerError && error.status >= 400 && error.status < 500 && error.status !== 429) {
          this.log('refused by the server', { error: error.message, code: error.code }, 'warn');
          return null;
        }
        if (signal?.aborted || (this.stopping.signal.aborted && attempt > 3)) return null;
        await delay(backoff(attempt));
      }
    }
  }
}
