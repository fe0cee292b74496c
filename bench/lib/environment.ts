import { execFileSync, execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** The machine, the versions and the commit a run measured. */
export interface Environment {
  cpuModel: string;
  cores: number;
  memTotalBytes: number;
  kernel: string;
  node: string;
  npm: string;
  sqlite: string;
  fastify: string;
  betterSqlite3: string;
  autocannon: string;
  gitCommit: string;
  gitShort: string;
  /** Files changed relative to the commit when the run started (other work in the tree). */
  gitDirty: string[];
  openFilesLimit: number;
  loadAverageAtStart: number[];
}

const packageVersion = (root: string, name: string): string =>
  (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

const run = (command: string, cwd: string): string => {
  try {
    return execSync(command, { cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString('utf8').trim();
  } catch {
    return 'unknown';
  }
};

export function describeEnvironment(root: string): Environment {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const memDb = new Database(':memory:');
  const sqlite = String((memDb.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v);
  memDb.close();
  const commit = run('git rev-parse HEAD', root);
  return {
    cpuModel: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memTotalBytes: Number(/MemTotal:\s+(\d+) kB/.exec(meminfo)?.[1] ?? 0) * 1024,
    kernel: release(),
    node: process.version,
    npm: run('npm -v', root),
    sqlite,
    fastify: packageVersion(root, 'fastify'),
    betterSqlite3: packageVersion(root, 'better-sqlite3'),
    autocannon: packageVersion(root, 'autocannon'),
    gitCommit: commit,
    gitShort: commit === 'unknown' ? 'nogit' : commit.slice(0, 7),
    gitDirty: run('git status --porcelain', root).split('\n').filter(Boolean),
    openFilesLimit: openFilesLimit(),
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** The soft limit on open files this process (and the servers it spawns) runs with. */
export function openFilesLimit(): number {
  try {
    const raw = execFileSync('sh', ['-c', 'ulimit -n']).toString('utf8').trim();
    return raw === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(raw);
  } catch {
    return 1024;
  }
}
