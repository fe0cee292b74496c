import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync, readlinkSync } from 'node:fs';
import { delimiter, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionOutcome } from '../../../src/agent/executor.js';
import type { RestoreResult } from '../../../src/agent/executors/linux/index.js';
import { runCommand, type RunResult } from '../../../src/agent/executors/linux/command.js';
import type { Job, Upload } from './run-executor.js';
import type { LiveResponseCommand } from '../../../src/domain/model.js';
import { runAs, type Unprivileged } from '../../support/unprivileged.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const RUNNER = join(ROOT, 'test/e2e/linux/run-executor.ts');

const SEARCH_PATH = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** The absolute path of a program, or null. */
export function which(name: string): string | null {
  for (const dir of SEARCH_PATH) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* next */
    }
  }
  return null;
}

/**
 * Why these tests cannot run here, or null: not Linux, not root, a missing program, or no
 * permission to create namespaces (e.g. an unprivileged container).
 */
export function skipReason(tools: string[], namespaces: string[] = []): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'needs root';
  const missing = tools.filter((t) => which(t) === null);
  if (missing.length > 0) return `missing ${missing.join(', ')} (apt-get install nftables clamav iproute2 util-linux)`;
  if (namespaces.length > 0) {
    const probe = spawnSync(which('unshare')!, [...namespaces, 'true'], { timeout: 5000 });
    if (probe.status !== 0) return `cannot create namespaces (${namespaces.join(' ')}): ${String(probe.stderr).trim() || probe.error?.message}`;
  }
  return null;
}

/** Title suffix and a console warning for a skipped suite. */
export function announce(suite: string, reason: string | null): string {
  if (reason) console.warn(`[linux e2e] skipping "${suite}": ${reason}`);
  return reason ? `${suite} (skipped: ${reason})` : suite;
}

/** Runs a program to completion (bounded); never throws for a non-zero exit. */
export function sh(file: string, args: string[], timeoutMs = 15_000): Promise<RunResult> {
  return runCommand(file, args, { timeoutMs });
}

/** Runs a program and throws unless it exits 0. */
export async function must(file: string, args: string[], timeoutMs = 15_000): Promise<RunResult> {
  const r = await sh(file, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr || r.stdout}`);
  return r;
}

export interface RunnerResult {
  outcome?: ExecutionOutcome;
  restore?: RestoreResult;
  /** Every progress() call of a LiveResponse, in order. */
  progress?: LiveResponseCommand[][];
  uploads?: Upload[];
  error?: string;
  stderr: string;
}

/**
 * Runs run-executor.ts with `job`, behind `prefix` (e.g. ['ip', 'netns', 'exec', ns]) so it
 * runs inside a namespace. The prefix must end with something that execs its arguments.
 */
export async function runJob(prefix: string[], job: Job, timeoutMs = 40_000): Promise<RunnerResult> {
  const [file, ...rest] = prefix.length > 0 ? prefix : [process.execPath];
  const args = prefix.length > 0 ? [...rest, process.execPath, '--import', 'tsx', RUNNER, JSON.stringify(job)] : ['--import', 'tsx', RUNNER, JSON.stringify(job)];
  return runnerResult(await runCommandIn(file!, args, timeoutMs));
}

/** Runs run-executor.ts with `job` as nobody (test/support/unprivileged.ts). */
export async function runJobAsNobody(runner: Unprivileged, job: Job, timeoutMs = 40_000): Promise<RunnerResult> {
  const r = await runAs(runner, runner.nodeScript(relative(ROOT, RUNNER), [JSON.stringify(job)]), { timeoutMs });
  return runnerResult({ ...r, signal: null, truncated: false });
}

function runnerResult(r: RunResult): RunnerResult {
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return { ...(JSON.parse(last) as Omit<RunnerResult, 'stderr'>), stderr: r.stderr };
  } catch {
    throw new Error(`runner printed no result (exit ${r.code ?? r.signal}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

function runCommandIn(file: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, truncated: false });
    });
  });
}

/** A long-running helper process the test owns (listener, namespace holder, payload). */
export interface Owned {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL it (if still running) and wait for it to exit. */
  stop(): Promise<void>;
}

export function start(file: string, args: string[]): Owned {
  const child = spawn(file, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (text += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
    child.on('error', () => resolve({ code: null, signal: null }));
  });
  return {
    child,
    output: () => text,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    },
  };
}

export async function waitUntil<T>(what: string, probe: () => T | null | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Host-side pids of a process's children (from /proc/<pid>/task/<pid>/children). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function namespaceOf(pid: number | 'self', kind: 'mnt' | 'pid' | 'net'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return null;
  }
}

/** Whether a pid is gone or a zombie. */
export function isDead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}
