import { spawn, type ChildProcess } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import { killTree } from './processes.js';

/**
 * Runs one external program: argument array (never a shell), bounded output, a timeout, and
 * cancellation through an AbortSignal. Every program the Linux executor starts goes through here.
 */

export interface RunOptions {
  /** Kill the program (SIGKILL) after this long. */
  timeoutMs: number;
  /** Aborting kills the program (SIGTERM, then SIGKILL after 2 s; with processTree: SIGKILL at once). */
  signal?: AbortSignal;
  /** Written to the program's stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string;
  /** Keep at most this many bytes of stdout and of stderr (the rest is counted, not kept). */
  maxOutputBytes?: number;
  /** Called with each complete stdout line as it arrives (lines longer than 64 KiB are cut). */
  onStdoutLine?: (line: string) => void;
  /** Working directory. Default: the agent's. */
  cwd?: string;
  /** The program's whole environment. Default: the agent's, with LC_ALL=C. */
  env?: NodeJS.ProcessEnv;
  /**
   * Run the program as the leader of a session of its own and treat everything it starts as
   * part of it: a timeout or an abort SIGKILLs the whole tree (see killTree). When the program
   * exits by itself, what it left running is left alone, and output such a process still holds
   * open is no longer read after 2 s.
   */
  processTree?: boolean;
}

export interface RunResult {
  /** Exit code, or null when the program was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when stdout or stderr was longer than maxOutputBytes. */
  truncated: boolean;
  /** What the program wrote in total (kept or not). */
  stdoutBytes?: number;
  stderrBytes?: number;
}

export type CommandFailureKind = 'notFound' | 'timeout' | 'aborted' | 'spawn' | 'exit';

/** A program that could not be run, or did not end the way its caller needed. */
export class CommandError extends Error {
  constructor(
    readonly kind: CommandFailureKind,
    readonly command: string,
    message: string,
    readonly result?: RunResult,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export const DEFAULT_MAX_OUTPUT = 1024 * 1024;
const MAX_LINE = 64 * 1024;
const TERM_GRACE_MS = 2000;
/** processTree: how long output is still read after the program exited. */
const DRAIN_MS = 2000;

/** Keeps the first `max` bytes of a stream and counts the rest. */
class Capture {
  private readonly chunks: Buffer[] = [];
  kept = 0;
  total = 0;
  constructor(private readonly max: number) {}
  add(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.kept >= this.max) return;
    const part = chunk.length > this.max - this.kept ? chunk.subarray(0, this.max - this.kept) : chunk;
    this.chunks.push(part);
    this.kept += part.length;
  }
  get truncated(): boolean {
    return this.total > this.kept;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** Runs `file` with `args`; resolves with its exit status whatever it is (see runChecked). */
export function runCommand(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const max = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  const tree = options.processTree === true;
  return new Promise<RunResult>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new CommandError('aborted', file, `${file} not started: the action was cancelled`));
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(file, [...args], {
        shell: false,
        stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: options.env ?? { ...process.env, LC_ALL: 'C' },
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        // A session of its own (setsid): the tree can be told apart from the agent and killed whole.
        detached: tree,
      });
    } catch (err) {
      reject(new CommandError('spawn', file, `${file} could not be started: ${(err as Error).message}`));
      return;
    }

    const out = new Capture(max);
    const err = new Capture(max);
    let pendingLine = '';
    const lineDecoder = new StringDecoder('utf8'); // a character split across chunks stays whole
    let failure: CommandError | null = null;
    let settled = false;
    let termTimer: NodeJS.Timeout | undefined;
    let drainTimer: NodeJS.Timeout | undefined;
    let reaping: Promise<unknown> = Promise.resolve();

    const kill = (sig: NodeJS.Signals) => {
      try {
        child.kill(sig);
      } catch {
        /* already gone */
      }
    };
    const killAll = (descendants: boolean) => {
      const pid = child.pid;
      if (pid === undefined) return;
      reaping = Promise.all([reaping, killTree(pid, descendants).catch(() => kill('SIGKILL'))]);
    };
    const timer = setTimeout(() => {
      failure ??= new CommandError('timeout', file, `${file} timed out after ${options.timeoutMs} ms`);
      if (tree) killAll(true);
      else kill('SIGKILL');
    }, options.timeoutMs);
    const onAbort = () => {
      failure ??= new CommandError('aborted', file, `${file} stopped: the action was cancelled`);
      if (tree) {
        killAll(true);
        return;
      }
      kill('SIGTERM');
      termTimer = setTimeout(() => kill('SIGKILL'), TERM_GRACE_MS);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const cleanup = () => {
      clearTimeout(timer);
      if (termTimer) clearTimeout(termTimer);
      if (drainTimer) clearTimeout(drainTimer);
      options.signal?.removeEventListener('abort', onAbort);
    };

    child.stdout!.on('data', (chunk: Buffer) => {
      out.add(chunk);
      if (options.onStdoutLine) {
        pendingLine += lineDecoder.write(chunk);
        let nl: number;
        while ((nl = pendingLine.indexOf('\n')) >= 0) {
          options.onStdoutLine(pendingLine.slice(0, nl));
          pendingLine = pendingLine.slice(nl + 1);
        }
        if (pendingLine.length > MAX_LINE) pendingLine = pendingLine.slice(0, MAX_LINE);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => err.add(chunk));
    if (options.input !== undefined) {
      child.stdin!.on('error', () => {
        /* the program exited without reading everything; its exit status tells the story */
      });
      child.stdin!.end(options.input);
    }
    if (tree) {
      child.on('exit', () => {
        clearTimeout(timer);
        // It ended: what it left running stays (as when a shell script ends), but output such a
        // process holds open is not waited for long.
        drainTimer = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, DRAIN_MS);
      });
    }

    child.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (e.code === 'ENOENT') reject(new CommandError('notFound', file, `${file} not found (is it installed and on PATH?)`));
      else if (e.code === 'EACCES') reject(new CommandError('spawn', file, `${file} could not be executed: permission denied`));
      else reject(new CommandError('spawn', file, `${file} could not be started: ${e.message}`));
    });
    child.on('close', (code, sig) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (options.onStdoutLine) {
        pendingLine += lineDecoder.end();
        if (pendingLine) options.onStdoutLine(pendingLine);
      }
      const result: RunResult = {
        code,
        signal: sig,
        stdout: out.text(),
        stderr: err.text(),
        truncated: out.truncated || err.truncated,
        stdoutBytes: out.total,
        stderrBytes: err.total,
      };
      void reaping.then(() => {
        if (failure) reject(new CommandError(failure.kind, file, failure.message, result));
        else resolve(result);
      });
    });
  });
}

/** Like runCommand, but an exit code outside `okCodes` (default [0]) is a CommandError('exit'). */
export async function runChecked(
  file: string,
  args: readonly string[],
  options: RunOptions & { okCodes?: number[] },
): Promise<RunResult> {
  const result = await runCommand(file, args, options);
  const ok = options.okCodes ?? [0];
  if (result.code === null || !ok.includes(result.code)) {
    const how = result.code === null ? `was killed by ${result.signal}` : `exited with ${result.code}`;
    const why = lastLines(result.stderr) || lastLines(result.stdout);
    throw new CommandError('exit', file, `${[file, ...args.slice(0, 6)].join(' ')} ${how}${why ? `: ${why}` : ''}`, result);
  }
  return result;
}

/** The tail of some program output, short enough for troubleshootInfo. */
export function lastLines(text: string, maxChars = 500): string {
  const trimmed = text.trim();
  if (trimmed.length <= maxChars) return trimmed;
  return `...${trimmed.slice(trimmed.length - maxChars)}`;
}
