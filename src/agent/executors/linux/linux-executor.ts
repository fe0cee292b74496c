import { failed, HRESULT, succeeded, type ExecutionContext, type ExecutionOutcome, type Executor } from '../../executor.js';
import type { ActionType } from '../../../domain/model.js';
import { runAntiVirusScan } from './antivirus.js';
import { makeRun, type ActionEnv } from './env.js';
import { buildIsolationRuleset, buildUnisolationScript, hasTable, isolationMode } from './isolation.js';
import { collectInvestigationPackage } from './investigation/index.js';
import { appendLog, KeyedMutex, readState, removeState, writeState } from './journal.js';
import { liveResponse } from './live-response.js';
import { resolveOptions, type LinuxExecutorOptions, type ResolvedOptions } from './options.js';
import { HashCache, stopAndQuarantineFile } from './quarantine.js';
import { outcomeOf } from './outcome.js';
import { restrictCodeExecution, unrestrictCodeExecution } from './restrict.js';

export { outcomeOf };

export const ISOLATION_STATE = 'isolation';

/** Action types that change the machine and so need root. */
const NEEDS_ROOT: ReadonlySet<ActionType> = new Set([
  'Isolate',
  'Unisolate',
  'RestrictCodeExecution',
  'UnrestrictCodeExecution',
  'RunAntiVirusScan', // as another user clamscan silently skips what it cannot read: a false "clean"
  'StopAndQuarantineFile',
  'LiveResponse', // scripts run as the agent's user, and the working folder must be root's alone
  'CollectInvestigationPackage', // as another user most of /proc, the logs and other users' files are unreadable
]);

/** Which state a pair of actions share, so e.g. Isolate and Unisolate never interleave. */
const LOCK: Partial<Record<ActionType, string>> = {
  Isolate: 'isolation',
  Unisolate: 'isolation',
  RestrictCodeExecution: 'restriction',
  UnrestrictCodeExecution: 'restriction',
  StopAndQuarantineFile: 'quarantine',
  RunAntiVirusScan: 'scan',
  LiveResponse: 'live-response', // one command at a time, whichever action it belongs to
  CollectInvestigationPackage: 'package',
};

export interface IsolationState {
  version: 1;
  actionId: string;
  since: string;
  table: string;
  mode: 'Full' | 'Selective';
  scope: string | null;
  serverAddresses: string[];
  serverPort: number | null;
  allowList: string[];
}

/**
 * Carries out response actions on a Linux machine, as root: nftables for isolation, noexec
 * remounts for restricting code execution, ClamAV for scans, /proc for stop-and-quarantine,
 * live response (PutFile, RunScript, GetFile) and the investigation package.
 * What each action does and how to undo it by hand: docs/linux-executor.md.
 *
 * The constructor throws on invalid options; execute() never throws: every failure is an
 * outcome with an HRESULT and a short troubleshootInfo.
 */
export class LinuxExecutor implements Executor {
  readonly name = 'linux';
  readonly options: ResolvedOptions;
  private readonly hashes = new HashCache();
  private readonly locks = new KeyedMutex();
  private readonly isRoot: () => boolean;

  constructor(options: LinuxExecutorOptions = {}) {
    this.options = resolveOptions(options);
    this.isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;
  }

  async execute(context: ExecutionContext): Promise<ExecutionOutcome> {
    try {
      return await this.dispatch(context);
    } catch (err) {
      return outcomeOf(err);
    }
  }

  private async dispatch(context: ExecutionContext): Promise<ExecutionOutcome> {
    const { action } = context;
    switch (action.type) {
      case 'Offboard':
        // Nothing to do on the machine here: the agent runtime, on this outcome, stops itself
        // and revokes its own credential, so the server never hears from it again.
        safeLog(context, 'offboard acknowledged: the agent stops and revokes its credential');
        await appendLog(this.options.logFile, this.entry(context, 'offboard', {})).catch(() => undefined);
        return succeeded({ note: 'the agent stops itself and revokes its credential' });
      case 'LiveResponse':
      case 'CollectInvestigationPackage':
      case 'Isolate':
      case 'Unisolate':
      case 'RestrictCodeExecution':
      case 'UnrestrictCodeExecution':
      case 'RunAntiVirusScan':
      case 'StopAndQuarantineFile':
        break;
      default:
        return failed(HRESULT.notImplemented, `Unknown action type ${JSON.stringify(action.type)}`);
    }
    if (NEEDS_ROOT.has(action.type) && !this.isRoot()) {
      return failed(HRESULT.accessDenied, `${action.type} needs root; the agent runs as uid ${process.getuid?.() ?? '?'}`);
    }
    if (context.signal.aborted) return failed(HRESULT.aborted, `${action.type} was cancelled before it started`);

    return this.locks.run(LOCK[action.type] ?? action.type, async () => {
      const env = this.env(context);
      try {
        await appendLog(this.options.logFile, this.entry(context, 'start', { scope: action.scope, sha1: action.sha1, comment: action.comment, ...(action.commands.length ? { commands: action.commands.map((c) => c.command) } : {}) }));
      } catch (err) {
        return failed(HRESULT.fail, `Cannot write the action log ${this.options.logFile}: ${(err as Error).message}`);
      }
      let outcome: ExecutionOutcome;
      try {
        outcome = await this.perform(env);
      } catch (err) {
        outcome = outcomeOf(err);
      }
      await env.note('end', {
        status: outcome.status,
        errorHResult: outcome.errorHResult,
        troubleshootInfo: outcome.troubleshootInfo,
      });
      return outcome;
    });
  }

  private perform(env: ActionEnv): Promise<ExecutionOutcome> {
    switch (env.context.action.type) {
      case 'Isolate':
        return this.isolate(env);
      case 'Unisolate':
        return this.unisolate(env);
      case 'RestrictCodeExecution':
        return restrictCodeExecution(env);
      case 'UnrestrictCodeExecution':
        return unrestrictCodeExecution(env);
      case 'RunAntiVirusScan':
        return runAntiVirusScan(env);
      case 'StopAndQuarantineFile':
        return stopAndQuarantineFile({ env, cache: this.hashes });
      case 'LiveResponse':
        return liveResponse(env);
      case 'CollectInvestigationPackage':
        return collectInvestigationPackage(env);
      default:
        return Promise.resolve(failed(HRESULT.notImplemented, `${env.context.action.type} is not available on the Linux executor`));
    }
  }

  private entry(context: ExecutionContext, event: string, detail: Record<string, unknown>) {
    return { action: context.action.id, type: context.action.type, event, ...detail };
  }

  private env(context: ExecutionContext): ActionEnv {
    return {
      options: this.options,
      context,
      run: makeRun(this.options, context.signal),
      note: async (event, detail = {}) => {
        safeLog(context, `${context.action.type} ${event}`, detail);
        try {
          await appendLog(this.options.logFile, this.entry(context, event, detail));
        } catch (err) {
          safeLog(context, `could not append to ${this.options.logFile}: ${(err as Error).message}`);
        }
      },
    };
  }

  private async isolate(env: ActionEnv): Promise<ExecutionOutcome> {
    const { options, context } = env;
    const mode = isolationMode(context.action.scope);
    if (!mode) return failed(HRESULT.fail, `Unsupported isolation type ${JSON.stringify(context.action.scope)}: expected Full, Selective or UnManagedDevice`);
    if (options.serverAddresses.length === 0) {
      // Isolating without a way back would leave the machine unreachable for Unisolate.
      return failed(HRESULT.fail, 'Refusing to isolate: no serverAddresses are configured, so the agent could not be told to unisolate');
    }
    const allowList = mode === 'Selective' ? options.selectiveAllowList : [];
    const script = buildIsolationRuleset({
      table: options.nftTable,
      mode,
      serverAddresses: options.serverAddresses,
      serverPort: options.serverPort,
      allowList,
      allowDhcp: options.allowDhcp,
      actionId: context.action.id,
    });
    const previous = await readState<IsolationState>(options.stateDir, ISOLATION_STATE);
    // Recorded before the change, so the state never misses a table that exists.
    const state: IsolationState = {
      version: 1,
      actionId: context.action.id,
      since: new Date().toISOString(),
      table: options.nftTable,
      mode,
      scope: context.action.scope,
      serverAddresses: options.serverAddresses,
      serverPort: options.serverPort,
      allowList,
    };
    await writeState(options.stateDir, ISOLATION_STATE, state);
    try {
      await env.run(options.nftPath, ['-f', '-'], { input: script });
    } catch (err) {
      // nft applies a script as one transaction: on failure the previous table (if any) is intact.
      if (previous) await writeState(options.stateDir, ISOLATION_STATE, previous);
      else await removeState(options.stateDir, ISOLATION_STATE);
      throw err;
    }
    await env.note('isolate.applied', { table: `inet ${options.nftTable}`, mode, serverAddresses: options.serverAddresses, serverPort: options.serverPort, allowList, ruleset: script });
    return succeeded({
      table: `inet ${options.nftTable}`,
      mode,
      serverAddresses: options.serverAddresses,
      serverPort: options.serverPort,
      allowList,
      alreadyIsolated: previous !== null,
    });
  }

  private async unisolate(env: ActionEnv): Promise<ExecutionOutcome> {
    const { options } = env;
    const listed = await env.run(options.nftPath, ['list', 'tables']);
    const existed = hasTable(listed.stdout, options.nftTable);
    // Deletes the table if present; absent is fine (one transaction, see buildUnisolationScript).
    await env.run(options.nftPath, ['-f', '-'], { input: buildUnisolationScript(options.nftTable) });
    await removeState(options.stateDir, ISOLATION_STATE);
    await env.note('unisolate.removed', { table: `inet ${options.nftTable}`, existed });
    return succeeded({ table: `inet ${options.nftTable}`, wasIsolated: existed });
  }
}

function safeLog(context: ExecutionContext, message: string, detail?: Record<string, unknown>): void {
  try {
    context.log(message, detail);
  } catch {
    /* a broken logger must not break the action */
  }
}
