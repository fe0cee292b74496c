import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create as createTar } from 'tar';
import { ACTION_TYPES, COMMAND_TYPES, type ActionType, type CommandType, type LiveResponseCommand } from '../../domain/model.js';
import {
  DEFAULT_SCRIPT_TIMEOUT_SECONDS,
  failed,
  HRESULT,
  succeeded,
  type AgentAction,
  type ExecutionContext,
  type ExecutionOutcome,
  type Executor,
} from '../executor.js';

/** How one live-response command type behaves on a simulated machine. */
export interface CommandSimulation {
  /** How long the command takes (default: the action's duration shared among its commands). */
  durationMs?: number;
  /** Failed stops the commands after it, as on a real machine. */
  outcome?: 'Completed' | 'Failed';
  /** The command's error when it fails. */
  error?: string;
  /** RunScript: the script's exit code in its result (default 0; the command still completes). */
  exitCode?: number;
}

/** How one action type behaves on a simulated machine. */
export interface SimulationSpec {
  /** How long it stays Pending once the machine has it, before the machine starts it. */
  pendingMs?: number;
  /** How long it runs (live response: spread over its commands). */
  durationMs?: number;
  outcome?: 'Succeeded' | 'Failed';
  /** The failure code reported with outcome Failed (default E_FAIL). */
  errorHResult?: number;
  troubleshootInfo?: string;
  /**
   * Reported as the outcome's detail, as a real executor reports what it found: e.g. for
   * RunAntiVirusScan `{"findings": [{"path": "/tmp/eicar.com", "signature": "Eicar-Signature"}]}`,
   * which the server turns into an alert (docs/agents.md).
   */
  detail?: Record<string, unknown>;
  /** LiveResponse: per command type; a Failed command stops the ones after it and fails the action. */
  commands?: Partial<Record<CommandType, CommandSimulation>>;
}

/** Per action type, with `*` as the default for the others. */
export type Simulation = Partial<Record<ActionType | '*', SimulationSpec>>;

export const DEFAULT_SIMULATION: Required<Pick<SimulationSpec, 'pendingMs' | 'durationMs' | 'outcome'>> = {
  pendingMs: 0,
  durationMs: 2000,
  outcome: 'Succeeded',
};

/**
 * Who decides instead of the per-type simulation (the emulator's lifecycle rules): what an
 * action does, and when it may finish. The executor still does the work (commands, files).
 */
export interface SimulationSteering {
  spec(action: AgentAction): SimulationSpec;
  /** Resolves true when the action may finish, false when `signal` aborts first. */
  finish(action: AgentAction, signal: AbortSignal): Promise<boolean>;
}

export function parseSimulation(value: unknown): Simulation {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('a simulation is a JSON object keyed by action type');
  for (const [key, spec] of Object.entries(value)) {
    if (key !== '*' && !(ACTION_TYPES as readonly string[]).includes(key)) throw new Error(`unknown action type in the simulation: ${key}`);
    const s = spec as SimulationSpec;
    if (typeof s !== 'object' || s === null) throw new Error(`simulation.${key} must be an object`);
    if (s.durationMs !== undefined && !(Number.isFinite(s.durationMs) && s.durationMs >= 0)) throw new Error(`simulation.${key}.durationMs must be a number >= 0`);
    if (s.pendingMs !== undefined && !(Number.isFinite(s.pendingMs) && s.pendingMs >= 0)) throw new Error(`simulation.${key}.pendingMs must be a number >= 0`);
    if (s.outcome !== undefined && s.outcome !== 'Succeeded' && s.outcome !== 'Failed') throw new Error(`simulation.${key}.outcome must be Succeeded or Failed`);
    if (s.errorHResult !== undefined && !Number.isInteger(s.errorHResult)) throw new Error(`simulation.${key}.errorHResult must be an integer`);
    if (s.detail !== undefined && (typeof s.detail !== 'object' || s.detail === null || Array.isArray(s.detail))) {
      throw new Error(`simulation.${key}.detail must be an object`);
    }
    if (s.commands !== undefined) {
      if (typeof s.commands !== 'object' || s.commands === null) throw new Error(`simulation.${key}.commands must be an object`);
      for (const [type, c] of Object.entries(s.commands)) {
        const where = `simulation.${key}.commands.${type}`;
        if (!(COMMAND_TYPES as readonly string[]).includes(type)) throw new Error(`unknown command type in the simulation: ${type}`);
        if (typeof c !== 'object' || c === null) throw new Error(`${where} must be an object`);
        if (c.durationMs !== undefined && !(Number.isFinite(c.durationMs) && c.durationMs >= 0)) throw new Error(`${where}.durationMs must be a number >= 0`);
        if (c.outcome !== undefined && c.outcome !== 'Completed' && c.outcome !== 'Failed') throw new Error(`${where}.outcome must be Completed or Failed`);
        if (c.exitCode !== undefined && !Number.isInteger(c.exitCode)) throw new Error(`${where}.exitCode must be an integer`);
      }
    }
  }
  return value as Simulation;
}

/** What a simulated command will do: decided in one place, so the behaviour can be steered. */
export interface CommandPlan {
  durationMs: number;
  outcome: 'Completed' | 'Failed';
  error: string;
  exitCode: number;
}

/**
 * The plan of command `index` of `count`: its type's simulation, else an even share of the
 * action's duration. As before per-command settings existed, an action whose outcome is Failed
 * fails its last command.
 */
export function planCommand(spec: SimulationSpec & typeof DEFAULT_SIMULATION, command: LiveResponseCommand, count: number): CommandPlan {
  const own = spec.commands?.[command.command.type] ?? {};
  const failLast = spec.outcome === 'Failed' && command.index === count - 1;
  return {
    durationMs: own.durationMs ?? spec.durationMs / count,
    outcome: own.outcome ?? (failLast ? 'Failed' : 'Completed'),
    error: own.error ?? spec.troubleshootInfo ?? 'simulated failure',
    exitCode: own.exitCode ?? 0,
  };
}

export interface SimulatedExecutorOptions {
  /** Where live-response files and packages are assembled (one folder per action, removed after). */
  workDir?: string;
  /** The machine name shown in plausible output. */
  machineName?: string;
  /** The emulator's lifecycle rules, deciding outcomes and timing instead of the simulation. */
  steering?: SimulationSteering;
  /** The clock command times and plausible output are read from (the emulator's). */
  now?: () => number;
}

/** A command that could not do its work: its error, and the HRESULT the action fails with. */
class CommandFailure extends Error {
  constructor(
    message: string,
    readonly hresult: number = HRESULT.fail,
  ) {
    super(message);
  }
}

const param = (command: LiveResponseCommand, key: string) => command.command.params.find((p) => p.key === key)?.value ?? '';

/**
 * A machine that only pretends: each action takes its configured time and ends with its
 * configured outcome. It stops at once when the action is cancelled, like a real executor
 * should. Live response really moves files: PutFile and RunScript fetch the library file (so a
 * missing or altered file fails the command), RunScript uploads a JSON result, GetFile uploads
 * plausible bytes. A collection uploads a small, real tar.gz of plausible machine state.
 */
export class SimulatedExecutor implements Executor {
  readonly name = 'simulated';
  private readonly workDir: string;
  private readonly machineName: string;
  private readonly steering: SimulationSteering | undefined;
  private readonly now: () => number;

  constructor(
    private readonly simulation: Simulation = {},
    options: SimulatedExecutorOptions = {},
  ) {
    this.workDir = options.workDir ?? join(tmpdir(), 'countermand-simulated');
    this.machineName = options.machineName ?? 'simulated-machine';
    this.steering = options.steering;
    this.now = options.now ?? Date.now;
  }

  private spec(action: AgentAction) {
    const steered = this.steering?.spec(action);
    return { ...DEFAULT_SIMULATION, ...(steered ?? { ...this.simulation['*'], ...this.simulation[action.type] }) };
  }

  /** How long the machine leaves a new action Pending before starting it (its `pendingMs`). */
  admit(action: AgentAction, signal: AbortSignal): Promise<boolean> {
    return sleep(this.spec(action).pendingMs, signal);
  }

  async execute(context: ExecutionContext): Promise<ExecutionOutcome> {
    const { action, signal } = context;
    const spec = this.spec(action);
    const began = Date.now();
    const stopped = () =>
      failed(HRESULT.aborted, `stopped after ${Date.now() - began} ms: the action was cancelled`, { abortedAfterMs: Date.now() - began });
    // Steered, the action runs once it may finish, its work (commands, files) done without delay.
    if (this.steering && !(await this.steering.finish(action, signal))) return stopped();
    const work = join(this.workDir, action.id);
    try {
      if (action.type === 'LiveResponse' && action.commands.length > 0) {
        const outcome = await this.liveResponse(context, spec, work);
        if (outcome === null) return stopped();
        if (outcome.status === 'Failed') return outcome;
      } else {
        if (!this.steering && !(await sleep(spec.durationMs, signal))) return stopped();
        if (action.type === 'CollectInvestigationPackage' && spec.outcome === 'Succeeded') {
          const problem = await this.collectPackage(context, work).then(
            () => null,
            (error: unknown) => String((error as Error).message ?? error),
          );
          if (signal.aborted) return stopped();
          if (problem) return failed(HRESULT.fail, `the investigation package could not be uploaded: ${problem}`, { simulated: true });
        }
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    context.log(`simulated ${action.type}: ${spec.outcome}`);
    const detail = { simulated: true, ...spec.detail };
    return spec.outcome === 'Succeeded'
      ? succeeded(detail)
      : failed(spec.errorHResult ?? HRESULT.fail, spec.troubleshootInfo ?? `simulated ${action.type} failure`, detail);
  }

  /**
   * Runs the commands one by one, reporting progress as each starts and ends. A failed command
   * stops the ones after it (they stay Created). Null when cancelled.
   */
  private async liveResponse(context: ExecutionContext, spec: ReturnType<SimulatedExecutor['spec']>, work: string): Promise<ExecutionOutcome | null> {
    const { action, signal } = context;
    const commands: LiveResponseCommand[] = action.commands.map((c) => ({ ...c, errors: [...c.errors] }));
    const timeoutMs = (action.scriptTimeoutSeconds ?? DEFAULT_SCRIPT_TIMEOUT_SECONDS) * 1000;
    await mkdir(work, { recursive: true, mode: 0o700 });
    for (const command of commands) {
      const planned = planCommand(spec, command, commands.length);
      const plan = this.steering ? { ...planned, durationMs: 0 } : planned;
      command.startTime = this.now();
      await context.progress?.(commands);
      let failure: CommandFailure | null = null;
      try {
        const ran = await this.runCommand(context, command, plan, timeoutMs, work);
        if (!ran) return null;
        if (plan.outcome === 'Failed') failure = new CommandFailure(plan.error, spec.errorHResult ?? HRESULT.fail);
      } catch (error) {
        if (signal.aborted) return null;
        failure = error instanceof CommandFailure ? error : new CommandFailure(String((error as Error).message ?? error));
      }
      command.endTime = this.now();
      command.commandStatus = failure ? 'Failed' : 'Completed';
      if (failure) command.errors.push(failure.message);
      await context.progress?.(commands);
      if (failure) {
        context.log(`simulated ${command.command.type} failed: ${failure.message}`, { index: command.index });
        return failed(failure.hresult, `Command ${command.index} (${command.command.type}) failed: ${failure.message}`, { simulated: true });
      }
    }
    return succeeded({ simulated: true });
  }

  /** Carries out one command; false when cancelled. Throws CommandFailure when it cannot. */
  private async runCommand(context: ExecutionContext, command: LiveResponseCommand, plan: CommandPlan, timeoutMs: number, work: string): Promise<boolean> {
    const { signal } = context;
    switch (command.command.type) {
      case 'PutFile': {
        const fileName = param(command, 'FileName');
        await this.fetch(context, fileName, join(work, 'downloads', fileName));
        return sleep(plan.durationMs, signal);
      }
      case 'RunScript': {
        const script = param(command, 'ScriptName');
        const path = join(work, 'scripts', script);
        await this.fetch(context, script, path);
        const content = await readFile(path);
        if (plan.durationMs > timeoutMs) {
          if (!(await sleep(timeoutMs, signal))) return false;
          throw new CommandFailure(`The script ran longer than ${timeoutMs / 1000} seconds and was stopped.`, HRESULT.timeout);
        }
        if (!(await sleep(plan.durationMs, signal))) return false;
        const args = param(command, 'Args');
        const digest = createHash('sha256').update(content).digest('hex');
        const result = {
          script_name: script,
          exit_code: plan.exitCode,
          script_output:
            `[simulated] ${this.machineName}: ran ${script}${args ? ` ${args}` : ''}\n` +
            `script sha256 ${digest}, ${content.length} bytes, ${content.toString('utf8').split('\n').length} lines\n`,
          script_errors: plan.exitCode === 0 ? '' : `[simulated] ${script} exited with code ${plan.exitCode}\n`,
        };
        const out = join(work, `${command.index}.result.json`);
        await writeFile(out, JSON.stringify(result), { mode: 0o600 });
        await this.upload(context, command.index, out);
        return true;
      }
      case 'GetFile': {
        const path = param(command, 'Path');
        const segments = path.split(/[/\\]/);
        if (!/^(\/|[A-Za-z]:\\)/.test(path) || segments.includes('..')) {
          throw new CommandFailure(`'${path}' is not an absolute path without '..' segments.`, HRESULT.accessDenied);
        }
        if (!(await sleep(plan.durationMs, signal))) return false;
        const out = join(work, `${command.index}.file`);
        await writeFile(out, plausibleFile(path, this.machineName, this.now()), { mode: 0o600 });
        await this.upload(context, command.index, out);
        return true;
      }
    }
  }

  private async fetch(context: ExecutionContext, fileName: string, destination: string): Promise<void> {
    if (!context.fetchLibraryFile) throw new CommandFailure('this agent cannot fetch library files', HRESULT.notImplemented);
    await mkdir(join(destination, '..'), { recursive: true, mode: 0o700 });
    try {
      await context.fetchLibraryFile(fileName, destination);
    } catch (error) {
      throw new CommandFailure(`could not fetch '${fileName}' from the library: ${(error as Error).message}`, HRESULT.fileNotFound);
    }
  }

  private async upload(context: ExecutionContext, index: number, source: string): Promise<void> {
    if (!context.uploadCommandResult) throw new CommandFailure('this agent cannot upload results', HRESULT.notImplemented);
    try {
      await context.uploadCommandResult(index, source);
    } catch (error) {
      throw new CommandFailure(`could not upload the result: ${(error as Error).message}`);
    }
  }

  /** A small, real tar.gz (layout: docs/investigation-package.md) uploaded as the action's package. */
  private async collectPackage(context: ExecutionContext, work: string): Promise<void> {
    if (!context.uploadPackage) throw new Error('this agent cannot upload packages');
    const root = 'investigation-package';
    const dir = join(work, root);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const files = plausiblePackage(this.machineName, context.action.id, this.now());
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content, { mode: 0o600 });
    const archive = join(work, 'package.tar.gz');
    await createTar({ gzip: true, file: archive, cwd: work, portable: true }, [root]);
    await context.uploadPackage(archive);
  }
}

/** Bytes that look like what the path names, so clients have something real to download. */
function plausibleFile(path: string, machine: string, now: number): string {
  const lines = [`# simulated copy of ${path} on ${machine}`];
  for (let i = 0; i < 20; i++) {
    const at = new Date(now - (20 - i) * 60_000).toISOString();
    lines.push(`${at} ${machine} simulated[${1000 + i}]: line ${i + 1} of ${path}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The files of a simulated investigation package: the sections a real collection has. */
function plausiblePackage(machine: string, actionId: string, now: number): Record<string, string> {
  const at = new Date(now).toISOString();
  return {
    'README.txt': `Investigation package of ${machine} (simulated), collected ${at} for action ${actionId}.\n`,
    'manifest.json': `${JSON.stringify({ machine, actionId, collectedAt: at, simulated: true, sections: SECTIONS }, null, 2)}\n`,
    'processes.txt': 'USER PID PPID CMD\nroot 1 0 /sbin/init\nroot 412 1 /usr/sbin/sshd -D\nwww-data 733 1 nginx: worker process\n',
    'network-connections.txt': 'Proto Local Address Foreign Address State\ntcp 10.0.0.11:22 10.0.0.5:51522 ESTABLISHED\n',
    'listening-sockets.txt': 'Proto Local Address PID/Program\ntcp 0.0.0.0:22 412/sshd\ntcp 0.0.0.0:80 733/nginx\n',
    'logged-on-users.txt': 'USER TTY FROM LOGIN@\nadmin pts/0 10.0.0.5 09:12\n',
    'services.txt': 'UNIT STATE\nssh.service running\nnginx.service running\ncron.service running\n',
    'scheduled-jobs.txt': '# /etc/crontab\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n',
    'installed-packages.txt': 'openssh-server 1:9.2p1-2\nnginx 1.22.1-9\ncron 3.0pl1-162\n',
    'system-logs.txt': `${at} ${machine} sshd[412]: Accepted publickey for admin from 10.0.0.5\n`,
    'autoruns.txt': '/etc/systemd/system/multi-user.target.wants/nginx.service\n/etc/rc.local (absent)\n',
  };
}

const SECTIONS = [
  'processes',
  'network-connections',
  'listening-sockets',
  'logged-on-users',
  'services',
  'scheduled-jobs',
  'installed-packages',
  'system-logs',
  'autoruns',
];

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
