import { createHash } from 'node:crypto';
import { constants, createReadStream, type Stats } from 'node:fs';
import { chmod, chown, copyFile, lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failed, HRESULT, succeeded, type ExecutionOutcome } from '../../executor.js';
import { throwIfAborted, type ActionEnv } from './env.js';
import { appendLog } from './journal.js';

/**
 * StopAndQuarantineFile: find every process whose executable has the SHA-1, move the
 * executable into quarantine, then SIGKILL the processes. Files are found through the running
 * processes (/proc/<pid>/exe), plus the original paths of earlier quarantines of the same
 * SHA-1 ("known files"); the file system is not searched. Nothing running and nothing known:
 * the action fails with fileNotFound.
 *
 * Layout: `<quarantineDir>/<sha1>/<n>` (the file, mode 000, owner root) and `<n>.json` (its
 * QuarantineRecord). restoreQuarantined() puts files back.
 */

export const SHA1 = /^[0-9a-f]{40}$/;

export interface QuarantineRecord {
  version: 1;
  sha1: string;
  /** Where the file was, as the process that ran it saw the path. */
  originalPath: string;
  /**
   * false when the path could not be reached from the agent's mount namespace (the file had been
   * deleted, or lives in a container): the quarantined file is a copy taken from /proc/<pid>/exe.
   */
  originalInAgentNamespace: boolean;
  /** 'moved': the file itself was moved here. 'copied': its content was copied (see above). */
  method: 'moved' | 'copied';
  /** Permission bits (including setuid/setgid/sticky) before quarantine. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  quarantinedAt: string;
  actionId: string | null;
  killedPids: number[];
  /** The entry's file name inside `<quarantineDir>/<sha1>/`. */
  file: string;
}

interface ProcessExe {
  pid: number;
  /** readlink(/proc/<pid>/exe), " (deleted)" removed. */
  exePath: string;
  deleted: boolean;
  dev: number;
  ino: number;
  startTime: string;
  stats: Stats;
}

/** SHA-1 of file contents, cached by (dev, inode, size, mtime, ctime) so unchanged executables are read once. */
export class HashCache {
  private readonly map = new Map<string, string>();
  constructor(private readonly maxEntries = 4096) {}

  static key(s: Stats): string {
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  }

  async hash(path: string, stats: Stats, signal: AbortSignal): Promise<string> {
    const key = HashCache.key(stats);
    const hit = this.map.get(key);
    if (hit) return hit;
    const digest = await sha1File(path, signal);
    if (this.map.size >= this.maxEntries) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, digest);
    return digest;
  }
}

export async function sha1File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha1');
  for await (const chunk of createReadStream(path, signal ? { signal } : {})) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Field 3 (state) and 22 (start time) of /proc/<pid>/stat; null when the process is gone. */
async function procStat(pid: number): Promise<{ state: string; startTime: string } | null> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', startTime: rest[19] ?? '' };
  } catch {
    return null;
  }
}

/** Every process with an executable, except pid 1 and the agent itself (kernel threads have none). */
async function listProcesses(): Promise<ProcessExe[]> {
  const result: ProcessExe[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === 1 || pid === process.pid) continue;
    try {
      const [stats, link, ps] = await Promise.all([stat(`/proc/${pid}/exe`), readlink(`/proc/${pid}/exe`), procStat(pid)]);
      if (!ps || !stats.isFile()) continue;
      const deleted = link.endsWith(' (deleted)');
      result.push({ pid, exePath: deleted ? link.slice(0, -' (deleted)'.length) : link, deleted, dev: stats.dev, ino: stats.ino, startTime: ps.startTime, stats });
    } catch {
      // exited meanwhile, kernel thread, or no access
    }
  }
  return result;
}

function mode(stats: Stats): number {
  return stats.mode & 0o7777;
}

async function nextEntryName(dir: string): Promise<string> {
  let max = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = /^(\d+)(\.json)?$/.exec(name);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return String(max + 1);
}

async function ensureAbsent(path: string): Promise<void> {
  try {
    await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  throw new Error(`${path} already exists`);
}

/** rename(2), or copy + unlink across filesystems. Never overwrites `to`. */
async function moveFile(from: string, to: string): Promise<void> {
  await ensureAbsent(to);
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(from, to, constants.COPYFILE_EXCL);
    await unlink(from);
  }
}

async function readRecords(dir: string): Promise<QuarantineRecord[]> {
  const records: QuarantineRecord[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!/^\d+\.json$/.test(name)) continue;
    try {
      records.push(JSON.parse(await readFile(join(dir, name), 'utf8')) as QuarantineRecord);
    } catch {
      /* unreadable record: ignored here, left for a human */
    }
  }
  return records.sort((a, b) => Number(a.file) - Number(b.file));
}

interface Captured {
  record: QuarantineRecord;
  inode: string;
}

export interface QuarantineContext {
  env: ActionEnv;
  cache: HashCache;
}

export async function stopAndQuarantineFile({ env, cache }: QuarantineContext): Promise<ExecutionOutcome> {
  const { options, context } = env;
  const signal = context.signal;
  const sha1 = (context.action.sha1 ?? '').toLowerCase();
  if (!SHA1.test(sha1)) return failed(HRESULT.fail, `Invalid SHA-1 ${JSON.stringify(context.action.sha1)}: expected 40 hex characters`);

  // Never quarantine the agent's own runtime or init: the machine (or the agent, and with it
  // every later action) would not survive it.
  for (const [pid, what] of [
    ['self', "the agent's own executable"],
    ['1', 'the executable of pid 1 (init)'],
  ] as const) {
    const st = await stat(`/proc/${pid}/exe`).catch(() => null);
    if (!st) continue;
    const digest = await cache.hash(`/proc/${pid}/exe`, st, signal).catch(() => null);
    if (digest === sha1) {
      await env.note('quarantine.refused', { sha1, reason: what });
      return failed(HRESULT.accessDenied, `Refusing to stop and quarantine ${what} (SHA-1 ${sha1})`);
    }
  }

  const dir = join(options.quarantineDir, sha1);
  const captured = new Map<string, Captured>();
  const killed = new Set<number>();
  const warnings: string[] = [];
  const captureErrors: string[] = [];
  let scanned = 0;

  const ensureDir = async () => {
    await mkdir(options.quarantineDir, { recursive: true, mode: 0o700 });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  };

  /** Moves (or copies, for a file this namespace cannot reach) one executable into quarantine. */
  const capture = async (proc: ProcessExe): Promise<void> => {
    const inode = `${proc.dev}:${proc.ino}`;
    if (captured.has(inode)) return;
    await ensureDir();
    const name = await nextEntryName(dir);
    const dest = join(dir, name);
    const candidates = proc.deleted ? [] : [proc.exePath, `/proc/${proc.pid}/root${proc.exePath}`];
    let source: string | null = null;
    for (const candidate of candidates) {
      const s = await lstat(candidate).catch(() => null);
      if (s && s.isFile() && s.dev === proc.dev && s.ino === proc.ino) {
        source = candidate;
        break;
      }
    }
    const st = proc.stats;
    const record: QuarantineRecord = {
      version: 1,
      sha1,
      originalPath: proc.exePath,
      originalInAgentNamespace: source === proc.exePath,
      method: source ? 'moved' : 'copied',
      mode: mode(st),
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      mtimeMs: st.mtimeMs,
      quarantinedAt: new Date().toISOString(),
      actionId: context.action.id,
      killedPids: [],
      file: name,
    };
    const sameInode = (x: Stats | null) => !!x && x.dev === proc.dev && x.ino === proc.ino;
    let raced = false;
    if (source) {
      // Moving a running executable is allowed; the process keeps its mapping until killed,
      // and nothing can start it again from its path meanwhile.
      await ensureAbsent(dest);
      try {
        await rename(source, dest);
        if (!sameInode(await lstat(dest))) {
          // The path changed between the check and the rename: put back what we moved.
          await rename(dest, source).catch(() => undefined);
          raced = true;
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        await copyFile(source, dest, constants.COPYFILE_EXCL);
        if (sameInode(await lstat(source).catch(() => null))) await unlink(source);
        else {
          await rm(dest, { force: true });
          raced = true;
        }
      }
    }
    if (!source || raced) {
      await ensureAbsent(dest);
      await copyFile(`/proc/${proc.pid}/exe`, dest, constants.COPYFILE_EXCL);
      record.method = 'copied';
      record.originalInAgentNamespace = false;
      warnings.push(
        raced
          ? `${proc.exePath} changed while being quarantined; a copy of the running executable was kept instead`
          : proc.deleted
            ? `${proc.exePath} had been deleted; its content was copied from the running process`
            : `${proc.exePath} is not reachable from the agent's mount namespace (container?); its content was copied and the original left in place`,
      );
    }
    await chown(dest, 0, 0);
    await chmod(dest, 0o000);
    captured.set(inode, { record, inode });
    await writeRecord(dir, record);
    await env.note('quarantine.file', { sha1, originalPath: record.originalPath, quarantined: dest, method: record.method });
  };

  // Several rounds: a matching process may fork or be restarted between the scan and the kill.
  for (let round = 0; round < 5; round++) {
    throwIfAborted(signal, 'while looking for processes');
    const processes = await listProcesses();
    scanned = Math.max(scanned, processes.length);
    const matching: ProcessExe[] = [];
    for (const proc of processes) {
      throwIfAborted(signal, 'while hashing executables');
      try {
        if ((await cache.hash(`/proc/${proc.pid}/exe`, proc.stats, signal)) === sha1) matching.push(proc);
      } catch (err) {
        if (signal.aborted) throw err;
        // the process exited while being read
      }
    }
    if (matching.length === 0) break;
    for (const proc of matching) {
      try {
        await capture(proc);
      } catch (err) {
        // Stopping the process matters more: kill it anyway, and fail the action below.
        captureErrors.push(`${proc.exePath}: ${(err as Error).message}`);
        await env.note('quarantine.error', { sha1, pid: proc.pid, exe: proc.exePath, error: (err as Error).message });
      }
    }
    for (const proc of matching) {
      // Guard against pid reuse: same start time and same executable inode right before the kill.
      const now = await procStat(proc.pid);
      const exe = await stat(`/proc/${proc.pid}/exe`).catch(() => null);
      if (!now || now.startTime !== proc.startTime || !exe || exe.dev !== proc.dev || exe.ino !== proc.ino) continue;
      try {
        process.kill(proc.pid, 'SIGKILL');
        killed.add(proc.pid);
        const c = captured.get(`${proc.dev}:${proc.ino}`);
        if (c) c.record.killedPids.push(proc.pid);
        await env.note('quarantine.kill', { sha1, pid: proc.pid, exe: proc.exePath });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    await waitForDeath([...killed], 3000);
  }

  if (captureErrors.length > 0) {
    for (const c of captured.values()) await writeRecord(dir, c.record).catch(() => undefined);
    const uniqueErrors = [...new Set(captureErrors)];
    return failed(
      HRESULT.fail,
      `Killed ${killed.size} process${killed.size === 1 ? '' : 'es'} but could not quarantine: ${uniqueErrors.slice(0, 3).join('; ')}`.slice(0, 1000),
      { sha1, killedPids: [...killed].sort((a, b) => a - b), quarantined: [...captured.values()].map((c) => c.record.originalPath), errors: uniqueErrors.slice(0, 20) },
    );
  }

  // Known files: earlier quarantines of this SHA-1 name paths where it was found before.
  if (captured.size === 0 && killed.size === 0) {
    const previous = await readRecords(dir);
    const paths = [...new Set(previous.filter((r) => r.originalInAgentNamespace).map((r) => r.originalPath))];
    for (const path of paths) {
      throwIfAborted(signal, 'while checking known files');
      const s = await lstat(path).catch(() => null);
      if (!s || !s.isFile()) continue;
      if ((await sha1File(path, signal)) !== sha1) continue;
      await capture({ pid: -1, exePath: path, deleted: false, dev: s.dev, ino: s.ino, startTime: '', stats: s });
    }
    if (captured.size === 0) {
      await env.note('quarantine.notFound', { sha1, processesScanned: scanned, earlierQuarantines: previous.length });
      const earlier = previous.length > 0 ? ` (${previous.length} earlier quarantined cop${previous.length === 1 ? 'y is' : 'ies are'} in ${dir})` : '';
      return failed(
        HRESULT.fileNotFound,
        `No running process or known file had SHA-1 ${sha1}: ${scanned} processes checked${earlier}`,
        { sha1, processesScanned: scanned, earlierQuarantines: previous.length },
      );
    }
  }

  // Rewrite the records with the final list of killed pids.
  for (const c of captured.values()) await writeRecord(dir, c.record);
  const stillRunning = await aliveAmong([...killed]);
  if (stillRunning.length > 0) warnings.push(`processes ${stillRunning.join(', ')} had not exited 3 s after SIGKILL`);
  const files = [...captured.values()].map(({ record }) => ({
    originalPath: record.originalPath,
    quarantinedPath: join(dir, record.file),
    method: record.method,
    size: record.size,
    killedPids: record.killedPids,
  }));
  return succeeded({ sha1, killedPids: [...killed].sort((a, b) => a - b), files, processesScanned: scanned, ...(warnings.length ? { warnings } : {}) });
}

async function writeRecord(dir: string, record: QuarantineRecord): Promise<void> {
  await writeFile(join(dir, `${record.file}.json`), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
}

async function aliveAmong(pids: number[]): Promise<number[]> {
  const alive: number[] = [];
  for (const pid of pids) {
    const s = await procStat(pid);
    if (s && s.state !== 'Z' && s.state !== 'X') alive.push(pid);
  }
  return alive;
}

async function waitForDeath(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && (await aliveAmong(pids)).length > 0) await sleep(25);
}

export interface RestoreResult {
  restored: { originalPath: string; from: string }[];
  skipped: { originalPath: string; from: string; reason: string }[];
}

/**
 * Puts the files quarantined for `sha1` back where they were, with their mode, owner and
 * modification time, and removes them (and their records) from quarantine. A file whose
 * original path is occupied, whose directory is gone, that came from another mount namespace,
 * or whose content no longer has the SHA-1 is skipped (and stays in quarantine). With
 * `options.logFile` (e.g. the executor's), the restore is appended to the action log.
 */
export async function restoreQuarantined(quarantineDir: string, sha1: string, options: { logFile?: string } = {}): Promise<RestoreResult> {
  const normalized = sha1.toLowerCase();
  if (!SHA1.test(normalized)) throw new Error(`invalid SHA-1 ${JSON.stringify(sha1)}`);
  const dir = join(quarantineDir, normalized);
  const result: RestoreResult = { restored: [], skipped: [] };
  for (const record of await readRecords(dir)) {
    const from = join(dir, record.file);
    const skip = (reason: string) => result.skipped.push({ originalPath: record.originalPath, from, reason });
    if (!/^\d+$/.test(record.file)) {
      skip('invalid record');
      continue;
    }
    if (!record.originalInAgentNamespace) {
      skip('the original was deleted or outside this mount namespace: restore it by hand');
      continue;
    }
    if (await lstat(record.originalPath).then(() => true, () => false)) {
      skip('a file exists at the original path');
      continue;
    }
    if (!(await stat(dirname(record.originalPath)).then((s) => s.isDirectory(), () => false))) {
      skip('the original directory no longer exists');
      continue;
    }
    const actual = await sha1File(from).catch(() => null);
    if (actual !== normalized) {
      skip(actual === null ? 'the quarantined file is missing' : `the quarantined file's SHA-1 is now ${actual}`);
      continue;
    }
    await moveFile(from, record.originalPath);
    await chown(record.originalPath, record.uid, record.gid);
    await chmod(record.originalPath, record.mode); // after chown, which clears setuid/setgid
    const mtime = record.mtimeMs / 1000; // seconds, keeping sub-millisecond precision
    await utimes(record.originalPath, mtime, mtime);
    await rm(`${from}.json`, { force: true });
    result.restored.push({ originalPath: record.originalPath, from });
  }
  const left = await readdir(dir).catch(() => null);
  if (left && left.length === 0) await rm(dir, { recursive: true, force: true });
  if (options.logFile) {
    await appendLog(options.logFile, { action: 'manual', type: 'RestoreQuarantined', event: 'quarantine.restore', sha1: normalized, ...result }).catch(() => undefined);
  }
  return result;
}
