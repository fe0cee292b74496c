import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Where the benchmark's private build lives (bench/.build, ignored by git). */
export interface Build {
  /** The product's CLI, compiled with tsconfig.build.json into bench/.build/dist. */
  cli: string;
  baseline: string;
  probe: string;
  seconds: number;
}

/**
 * Compiles the product exactly as `npm run build` does (same tsconfig.build.json), only into a
 * private directory, so a concurrent `npm run build` in the working tree cannot swap files
 * under a running benchmark; and the baseline server and the memory probe next to it.
 */
export function buildAll(root: string, log: (line: string) => void): Build {
  const started = performance.now();
  const out = join(root, 'bench', '.build');
  const tsc = join(root, 'node_modules', '.bin', 'tsc');
  log('build: tsc -p tsconfig.build.json --outDir bench/.build/dist');
  execFileSync(tsc, ['-p', 'tsconfig.build.json', '--outDir', join(out, 'dist')], { cwd: root, stdio: 'inherit' });
  log('build: tsc -p bench/tsconfig.build.json');
  execFileSync(tsc, ['-p', join('bench', 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  return {
    cli: join(out, 'dist', 'cli', 'main.js'),
    baseline: join(out, 'servers', 'baseline.js'),
    probe: join(out, 'servers', 'probe.js'),
    seconds: (performance.now() - started) / 1000,
  };
}

export interface MemorySnapshot {
  /** RssAnon from /proc/<pid>/status, bytes, after a full GC. */
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export interface ServerProcess {
  name: string;
  url: string;
  pid: number;
  /** Log lines at warn or above (Countermand logs JSON at warn in the benchmarks). */
  warnings: string[];
  memory(): Promise<MemorySnapshot>;
  stop(): Promise<void>;
}

/**
 * The anonymous resident memory of a process (RssAnon: heaps, stacks, buffers), in bytes. Not
 * VmRSS: the server reads its database through a memory map, and the file's pages that a
 * measurement touches are page cache (shared, reclaimable), not memory the process holds.
 */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /RssAnon:\s+(\d+) kB/.exec(status)?.[1];
  if (!kb) throw new Error(`no RssAnon for ${pid}`);
  return Number(kb) * 1024;
}

interface Spawned {
  child: ChildProcess;
  /** Resolves with the first capture of `ready` in stderr. */
  ready: Promise<string>;
  probeLines: string[];
  onProbe: (() => void) | undefined;
  warnings: string[];
}

/**
 * Pins this process (the load generator, with all its threads) to every CPU but the last, and
 * makes servers started from now on run on the last one (BENCH_SERVER_CPU), so the load
 * generator and the server under test never share a core. Null on a single-CPU machine or
 * without taskset.
 */
export function pinCpus(): { server: string; generator: string } | null {
  const n = cpus().length;
  if (n < 2) return null;
  const server = String(n - 1);
  const generator = n === 2 ? '0' : `0-${n - 2}`;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', generator, String(process.pid)], { stdio: 'ignore' });
  } catch {
    return null;
  }
  process.env.BENCH_SERVER_CPU = server;
  return { server, generator };
}

/** The command that starts a server: under `taskset -c $BENCH_SERVER_CPU` when the run pins. */
export function serverCommand(args: string[]): [string, string[]] {
  const cpu = process.env.BENCH_SERVER_CPU;
  return cpu ? ['taskset', ['-c', cpu, process.execPath, ...args]] : [process.execPath, args];
}

function spawnWatched(name: string, args: string[], env: NodeJS.ProcessEnv, ready: RegExp, timeoutMs: number): Spawned {
  const [command, argv] = serverCommand(args);
  const child = spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const spawned: Spawned = { child, ready: Promise.resolve(''), probeLines: [], onProbe: undefined, warnings: [] };
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
    // pino levels: 40 warn, 50 error, 60 fatal.
    if (/"level":(4|5|6)0/.test(line) && spawned.warnings.length < 50) spawned.warnings.push(line.slice(0, 500));
  };
  let stdoutRest = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (stdoutRest + chunk.toString('utf8')).split('\n');
    stdoutRest = lines.pop() ?? '';
    lines.forEach(keep);
  });
  spawned.ready = new Promise<string>((resolve, reject) => {
    let rest = '';
    const timer = setTimeout(() => reject(new Error(`${name} was not ready within ${timeoutMs} ms:\n${tail.join('\n')}`)), timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('BENCH-PROBE ')) {
          spawned.probeLines.push(line.slice('BENCH-PROBE '.length));
          spawned.onProbe?.();
          continue;
        }
        keep(line);
        const match = ready.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1] ?? '');
        }
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before it was ready:\n${tail.join('\n')}`));
    });
  });
  return spawned;
}

function wrap(name: string, url: string, s: Spawned): ServerProcess {
  const pid = s.child.pid!;
  return {
    name,
    url,
    pid,
    warnings: s.warnings,
    async memory() {
      const before = s.probeLines.length;
      const got = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: no memory probe answer (started without the probe?)`)), 15_000);
        s.onProbe = () => {
          if (s.probeLines.length > before) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
      s.child.kill('SIGUSR2');
      await got;
      const usage = JSON.parse(s.probeLines[s.probeLines.length - 1]!) as NodeJS.MemoryUsage;
      return { rss: rssOf(pid), heapUsed: usage.heapUsed, heapTotal: usage.heapTotal, external: usage.external, arrayBuffers: usage.arrayBuffers };
    },
    async stop() {
      if (s.child.exitCode !== null || s.child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => s.child.once('exit', () => resolve()));
      s.child.kill('SIGTERM');
      const timer = setTimeout(() => s.child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface CountermandOptions {
  build: Build;
  dataDir: string;
  fixturesPath: string;
  /** COUNTERMAND_* settings (strings, as in the environment). */
  settings: Record<string, string>;
  /** Preload the memory probe (with --expose-gc). */
  probe: boolean;
  /** Extra node flags (bench/profile.ts passes --cpu-prof). */
  nodeArgs?: string[];
}

/** The server under test, `node <build>/dist/cli/main.js serve`, on a port of its choosing. */
export async function startCountermand(options: CountermandOptions): Promise<ServerProcess> {
  const nodeArgs = [...(options.nodeArgs ?? []), ...(options.probe ? ['--expose-gc', '--import', pathToFileURL(options.build.probe).href] : [])];
  const args = [...nodeArgs, options.build.cli, 'serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', options.dataDir, '--fixtures', options.fixturesPath];
  const env = { ...withoutCountermandSettings(process.env), ...options.settings };
  const spawned = spawnWatched('countermand', args, env, /Countermand is listening on (\S+)/, 180_000);
  const url = await spawned.ready;
  return wrap('countermand', url, spawned);
}

export interface BaselineOptions {
  build: Build;
  fixedActionPath: string;
  pollSeconds: number;
  probe: boolean;
}

export async function startBaseline(options: BaselineOptions): Promise<ServerProcess> {
  const nodeArgs = options.probe ? ['--expose-gc', '--import', pathToFileURL(options.build.probe).href] : [];
  const env = {
    ...withoutCountermandSettings(process.env),
    BENCH_PORT: '0',
    BENCH_FIXED_ACTION: options.fixedActionPath,
    BENCH_POLL_SECONDS: String(options.pollSeconds),
  };
  const spawned = spawnWatched('baseline', [...nodeArgs, options.build.baseline], env, /BASELINE LISTENING (\S+)/, 30_000);
  const url = await spawned.ready;
  return wrap('baseline', url, spawned);
}

/** The caller's environment without COUNTERMAND_* variables, so only the benchmark's settings apply. */
export function withoutCountermandSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('COUNTERMAND_')));
}
