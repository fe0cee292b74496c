import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// Absolute, so the command runs from any working directory.
const TSX = pathToFileURL(createRequire(join(ROOT, 'package.json')).resolve('tsx')).href;
const CLI = ['--import', TSX, join(ROOT, 'src/cli/main.ts')];

export interface SpawnOptions {
  /** Working directory (default: the checkout). */
  cwd?: string;
  /** Run under this umask (e.g. 0o022, a common default), whatever the test runner's. */
  umask?: number;
}

export interface Spawned {
  child: ChildProcess;
  /** stdout and stderr as they came. */
  output(): string;
  /** Resolves with the first match of `pattern` in stdout+stderr. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs the `countermand` command from source, as a user would run the installed one. */
/** A spawned `countermand`, its two streams also apart (e.g. --json on stdout, notes on stderr). */
export interface SpawnedCli extends Spawned {
  stdout(): string;
  stderr(): string;
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, options: SpawnOptions = {}): SpawnedCli {
  const command = [process.execPath, ...CLI, ...args];
  const [file, ...argv] =
    options.umask === undefined ? command : ['/bin/sh', '-c', `umask ${options.umask.toString(8).padStart(4, '0')} && exec "$@"`, 'sh', ...command];
  const child = spawn(file!, argv, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const streams = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    text += chunk.toString('utf8');
    streams[stream] += chunk.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData('stdout'));
  child.stderr!.on('data', onData('stderr'));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      for (const l of listeners) l();
      resolve({ code, signal });
    }),
  );
  return {
    child,
    output: () => text,
    stdout: () => streams.stdout,
    stderr: () => streams.stderr,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = text.match(pattern);
          if (m) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`process exited before ${pattern}:\n${text}`));
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern}:\n${text}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}

/** Runs the command to completion. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, options: SpawnOptions = {}) {
  const p = spawnCli(args, env, options);
  const { code } = await p.exited;
  return { code, output: p.output(), stdout: p.stdout(), stderr: p.stderr() };
}
