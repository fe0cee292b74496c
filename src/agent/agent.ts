import { randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { AgentActionWire, CheckinRequest, EnrollRequest } from '../dispatch/protocol.js';
import type { IpAddress, LiveResponseCommand } from '../domain/model.js';
import { AgentClient, ServerError } from './client.js';
import type { AgentAction, ExecutionOutcome, Executor } from './executor.js';
import { checkServerUrl } from './server-url.js';
import type { AgentCredentials, AgentState, JournalEntry } from './state.js';

export const AGENT_VERSION = '0.1.0';

export interface AgentOptions {
  serverUrl: string;
  ca?: string | Buffer;
  /** Plain HTTP to a server that is not on loopback (the credentials travel in clear). */
  insecureHttp?: boolean;
  /** Needed on first start: enrolls a new machine. */
  enrollmentToken?: string;
  /**
   * From `countermand enrollment reenroll`: re-attaches to an existing machine when there is no
   * saved credential, or when the server refuses the saved one. Used at most once.
   */
  reenrollGrant?: string;
  machine: EnrollRequest['machine'];
  state: AgentState;
  executor: Executor;
  /** The longest a check-in may wait for work (the server picks its own, shorter, wait). */
  maxWaitSeconds?: number;
  /**
   * The machine's addresses now, read at every check-in (a real machine's change: DHCP, a new
   * interface). Without it, check-ins report `machine.ipAddresses`.
   */
  addresses?: () => IpAddress[];
  log?: AgentLog;
}

/** Every machine has these: they say nothing about which machine it is. */
function isLoopback(address: string): boolean {
  const ip = address.replace(/^::ffff:/i, '');
  return ip.startsWith('127.') || ip === '::1' || ip === '0.0.0.0' || ip === '::';
}

/** Where the agent tells what it does; 'warn' marks trouble (the server unreachable, a refusal). */
export type AgentLog = (message: string, detail?: Record<string, unknown>, level?: 'info' | 'warn') => void;

type StopReason = 'cancelled' | 'shutdown';

/** The agent cannot go on without an operator: the message says what to do. */
export class AgentRefusal extends Error {
  override name = 'AgentRefusal';
}

const refusedByServer = (error: unknown) => error instanceof ServerError && (error.status === 401 || error.status === 403);

/** Tries of one file transfer before the executor is told it failed. */
const TRANSFER_ATTEMPTS = 5;

/** An investigation package's content type, by its first bytes: a gzip (tar.gz) or a zip. */
export async function packageType(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(4), 0, 4, 0);
    if (bytesRead >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return 'application/gzip';
    if (bytesRead === 4 && buffer.readUInt32LE(0) === 0x04034b50) return 'application/zip';
    throw new Error(`${path} is neither a gzip nor a zip archive`);
  } finally {
    await handle.close();
  }
}

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
  private tenantId: string | null = null;
  /** Why the agent stopped on its own (offboarded, credential refused), if it did. */
  stoppedBecause: string | null = null;
  private grantTried = false;

  constructor(private readonly options: AgentOptions) {
    this.log = options.log ?? (() => undefined);
    let warning: string | null;
    try {
      warning = checkServerUrl(options.serverUrl, options.insecureHttp ?? false);
    } catch (error) {
      throw new AgentRefusal((error as Error).message);
    }
    if (warning) this.log(warning, { serverUrl: options.serverUrl }, 'warn');
    this.client = new AgentClient({ serverUrl: options.serverUrl, ...(options.ca ? { ca: options.ca } : {}) });
  }

  async start(): Promise<void> {
    await this.enrollAtStart();
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

  /**
   * The saved credential when it is for this server; else the machine is proven (the saved
   * credential for a server whose URL changed, or a re-enroll grant) or, with no machine yet,
   * enrolled with the enrollment token. An agent never takes a machine over with an enrollment
   * token, and never silently enrolls again as a new machine.
   */
  private async enrollAtStart(): Promise<void> {
    const saved = await this.options.state.loadCredentials();
    if (saved?.offboardedAt) {
      if (this.options.reenrollGrant) return this.enrollWithGrant(saved.machineId);
      throw new AgentRefusal(this.offboardedMessage(saved));
    }
    if (saved && saved.serverUrl === this.options.serverUrl) {
      this.client.token = saved.agentToken;
      this.machineId = saved.machineId;
      this.tenantId = saved.tenantId;
      return;
    }
    if (saved) {
      // The server's URL changed: the saved credential proves the machine, and is replaced.
      try {
        return await this.enroll({ machineId: saved.machineId }, saved.agentToken);
      } catch (error) {
        if (!refusedByServer(error)) throw error;
        this.log('the server refused the saved credential', { machineId: saved.machineId, error: String(error) }, 'warn');
      }
    }
    if (this.options.reenrollGrant) return this.enrollWithGrant(saved?.machineId);
    if (saved) throw new AgentRefusal(this.refusedMessage(saved.machineId, saved.tenantId));
    if (!this.options.enrollmentToken) {
      throw new AgentRefusal('not enrolled: an enrollment token is needed (--enrollment-token), or a re-enroll grant (--reenroll-grant) for a machine enrolled before');
    }
    await this.enroll({ enrollmentToken: this.options.enrollmentToken });
  }

  private async enrollWithGrant(machineId: string | undefined): Promise<void> {
    this.grantTried = true;
    try {
      await this.enroll({ reenrollGrant: this.options.reenrollGrant!, ...(machineId ? { machineId } : {}) });
    } catch (error) {
      if (!refusedByServer(error)) throw error;
      throw new AgentRefusal(`the server refused the re-enroll grant: ${(error as ServerError).message}`);
    }
  }

  private async enroll(proof: Pick<EnrollRequest, 'enrollmentToken' | 'reenrollGrant' | 'machineId'>, credential?: string): Promise<void> {
    const enrolled = await this.client.enroll({ ...proof, machine: { agentVersion: AGENT_VERSION, ...this.options.machine } }, credential);
    await this.options.state.saveCredentials({ serverUrl: this.options.serverUrl, ...enrolled });
    this.client.token = enrolled.agentToken;
    this.machineId = enrolled.machineId;
    this.tenantId = enrolled.tenantId;
    const how = proof.enrollmentToken ? 'enrollment token' : proof.reenrollGrant ? 're-enroll grant' : 'current credential';
    this.log('enrolled', { machineId: enrolled.machineId, with: how });
  }

  private howToReattach(machineId: string, tenantId: string | null): string {
    const where = this.options.state.location ? `remove ${this.options.state.location}/credentials.json` : "clear the agent's saved credentials";
    return (
      `To re-attach this agent to it, an administrator issues a grant with ` +
      `\`countermand enrollment reenroll --tenant ${tenantId ?? '<tenant id>'} --machine ${machineId}\` ` +
      `and the agent is started again with --reenroll-grant <grant>; to enroll it as a new machine instead, ${where}.`
    );
  }

  private refusedMessage(machineId: string, tenantId: string | null): string {
    return (
      `the server refused the agent credential of machine ${machineId} (the machine was offboarded, or re-attached to ` +
      `another agent, or this server does not know it). ${this.howToReattach(machineId, tenantId)}`
    );
  }

  private offboardedMessage(saved: AgentCredentials): string {
    return `machine ${saved.machineId} was offboarded at ${new Date(saved.offboardedAt!).toISOString()}. ${this.howToReattach(saved.machineId, saved.tenantId)}`;
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
            ...this.addresses(),
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
          if (this.options.reenrollGrant && !this.grantTried) {
            try {
              await this.enrollWithGrant(this.machineId ?? undefined);
              continue;
            } catch (enrollError) {
              if (enrollError instanceof AgentRefusal) {
                this.refused(enrollError.message);
                break;
              }
              this.grantTried = false; // not answered: try it again after the backoff
              this.log('re-enrollment failed', { error: String(enrollError) }, 'warn');
            }
          } else {
            // Without proof of this machine, stop: never loop, never take another machine's place.
            this.refused(this.refusedMessage(this.machineId!, this.tenantId));
            break;
          }
        }
        if (error instanceof ServerError && error.status === 429) {
          // The server says when a check-in will be accepted again: wait that long, not less.
          const seconds = error.retryAfterSeconds ?? backoff(failures++) / 1000;
          this.log('check-ins rate-limited by the server', { retryAfterSeconds: seconds }, 'warn');
          await delay(seconds * 1000 + Math.random() * 250, this.stopping.signal);
          continue;
        }
        this.log('check-in failed', { error: String(error) }, 'warn');
        await delay(backoff(failures++), this.stopping.signal);
      }
    }
  }

  /**
   * Stops on a refusal: running actions are interrupted as on shutdown (their journal entries
   * stay), so an agent that gets the machine back resumes them.
   */
  private refused(reason: string): void {
    this.stoppedBecause = reason;
    for (const { controller } of this.running.values()) controller.abort('shutdown' satisfies StopReason);
  }

  /**
   * What a check-in says of the machine's addresses (the server keeps their history for
   * findbyip): its interfaces, and as lastIpAddress the address it reaches the server from,
   * unless that is a loopback address (a server on the same machine, the simulated fleet): then
   * its first IPv4 address, else the one it was started with.
   */
  private addresses(): Pick<CheckinRequest, 'lastIpAddress' | 'ipAddresses'> {
    const ipAddresses = this.options.addresses ? this.options.addresses() : this.options.machine.ipAddresses;
    const socket = this.client.localAddress;
    const lastIpAddress =
      socket && !isLoopback(socket)
        ? socket.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')
        : (ipAddresses?.find((a) => !a.ipAddress.includes(':'))?.ipAddress ?? this.options.machine.lastIpAddress);
    return {
      ...(lastIpAddress ? { lastIpAddress } : {}),
      ...(ipAddresses ? { ipAddresses } : {}),
    };
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
    const agentAction: AgentAction = {
      id: action.id,
      type: action.type,
      scope: action.scope,
      sha1: action.sha1,
      commands: action.commands,
      comment: action.comment,
      ...(action.scriptTimeoutSeconds !== undefined ? { scriptTimeoutSeconds: action.scriptTimeoutSeconds } : {}),
    };
    if (action.status === 'Pending') {
      if (this.options.executor.admit && !(await this.options.executor.admit(agentAction, controller.signal))) {
        this.log('not started: the action ended while Pending', { actionId: action.id });
        return;
      }
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
    const signal = controller.signal;
    const outcome: ExecutionOutcome = await this.options.executor.execute({
      action: agentAction,
      signal,
      log: (message, detail) => state.log({ actionId: action.id, message, ...detail }),
      progress: async (current) => {
        commands = current;
        await this.client.progress(action.id, { commands: current }).catch((error: unknown) =>
          this.log('progress not delivered', { actionId: action.id, error: String(error) }, 'warn'),
        );
      },
      fetchLibraryFile: async (fileName, destination) => {
        await this.transfer(() => this.client.fetchLibraryFile(action.id, fileName, destination, signal), signal);
        state.log({ actionId: action.id, event: 'library file fetched', fileName });
      },
      uploadCommandResult: async (index, source) => {
        const stored = await this.transfer(
          () => this.client.upload(`/actions/${action.id}/commands/${index}/result`, source, 'application/octet-stream', signal),
          signal,
        );
        state.log({ actionId: action.id, event: 'result uploaded', index, ...stored });
      },
      uploadPackage: async (source) => {
        const contentType = await packageType(source);
        const stored = await this.transfer(() => this.client.upload(`/actions/${action.id}/package`, source, contentType, signal), signal);
        state.log({ actionId: action.id, event: 'package uploaded', ...stored });
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
      // The server revoked this agent's credential; nothing more to do on this machine. The state
      // remembers it, so a restart does not quietly enroll the machine again.
      this.stoppedBecause = 'offboarded';
      const saved = await this.options.state.loadCredentials();
      if (saved) await this.options.state.saveCredentials({ ...saved, offboardedAt: Date.now() });
      this.stopping.abort();
    }
  }

  /**
   * A file transfer for an executor: retried a few times on transient failures (the network, a
   * 5xx, 429), since every transfer can be repeated safely; a refusal (4xx) or too many failures
   * reject, with the server's reason, and the executor fails the command.
   */
  private async transfer<T>(call: () => Promise<T>, signal: AbortSignal): Promise<T> {
    for (let attempt = 0, failures = 0; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (signal.aborted) throw error;
        // A refused credential is the agent's matter, not the command's: the check-in loop either
        // gets the machine back (then this succeeds) or stops, interrupting the action as a shutdown.
        const credential = error instanceof ServerError && error.status === 401;
        const refused = !credential && error instanceof ServerError && error.status >= 400 && error.status < 500 && error.status !== 429;
        if (refused || (!credential && ++failures >= TRANSFER_ATTEMPTS)) throw error;
        this.log('transfer failed, retrying', { error: String(error), attempt }, 'warn');
        await delay(backoff(Math.min(attempt, 6)), signal);
      }
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
        const retryAfter = error instanceof ServerError ? error.retryAfterSeconds : null;
        await delay(retryAfter !== null ? retryAfter * 1000 : backoff(attempt));
      }
    }
  }
}
