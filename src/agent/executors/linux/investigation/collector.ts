import { lstat, mkdir, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CommandError, lastLines, runCommand } from '../command.js';
import { AbortedError, throwIfAborted } from '../env.js';
import { debianPackageOf } from '../outcome.js';
import { describeKind, readRegular, resolveInHome } from '../files.js';

/**
 * The investigation package's machinery: each item (a program's output, a copied file, a
 * listing, something generated from /proc) is collected on its own, bounded in time and size,
 * and recorded in the manifest however it ended. A missing program or file is an entry in the
 * manifest, never a failure of the package.
 */

/**
 * collected: complete. truncated: cut at the item's (or the package's) size limit. absent: the
 * file or directory does not exist here. missing: the program is not installed. failed: it ran
 * and failed, or the file could not be read. timeout: killed at its time limit (what it wrote
 * until then is kept). skipped: the package's time or size limit was reached before it.
 */
export type ItemStatus = 'collected' | 'truncated' | 'absent' | 'missing' | 'failed' | 'timeout' | 'skipped';

export interface ManifestItem {
  /** Path inside the archive; absent when nothing was written. */
  path: string | null;
  /** Where it came from: a command line, a path on the machine, or what it was generated from. */
  source: string;
  kind: 'command' | 'file' | 'listing' | 'generated';
  status: ItemStatus;
  bytes: number;
  durationMs: number;
  exitCode?: number | null;
  /** Why it is not complete, or what the program said on stderr. */
  note?: string;
}

export interface ManifestSection {
  name: string;
  title: string;
  items: ManifestItem[];
}

export interface CollectorLimits {
  itemMaxBytes: number;
  maxBytes: number;
  commandTimeoutMs: number;
  timeoutMs: number;
}

export interface ListingEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'char-device' | 'block-device' | 'other';
  mode: string;
  uid: number;
  gid: number;
  size: number;
  mtime: string;
  target?: string;
}

/** The environment of every program the package runs: C locale, no pager, no colours. */
const COMMAND_ENV: NodeJS.ProcessEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LC_ALL: 'C',
  SYSTEMD_PAGER: '',
  SYSTEMD_COLORS: '0',
  PAGER: 'cat',
  COLUMNS: '400',
};

export class Collector {
  readonly sections: ManifestSection[] = [];
  /** Programs that were not installed. */
  readonly missingPrograms = new Set<string>();
  private current: ManifestSection | null = null;
  private written = 0;
  private readonly paths = new Set<string>();
  private readonly deadline: number;

  constructor(
    private readonly dir: string,
    private readonly limits: CollectorLimits,
    private readonly signal: AbortSignal,
  ) {
    this.deadline = Date.now() + limits.timeoutMs;
  }

  get bytesWritten(): number {
    return this.written;
  }

  section(name: string, title: string): void {
    this.current = { name, title, items: [] };
    this.sections.push(this.current);
  }

  private get prefix(): string {
    return this.current!.name;
  }

  /** Where a copy of the machine's `path` goes in this section: `<section>/files/<path>`. */
  filePath(path: string): string {
    return `${this.prefix}/files${path.startsWith('/') ? path : `/${path}`}`;
  }

  /** What is left of the item's and the package's size limits; 0 when the package is full. */
  private room(): number {
    return Math.max(0, Math.min(this.limits.itemMaxBytes, this.limits.maxBytes - this.written));
  }

  private async write(path: string, data: Buffer | string): Promise<number> {
    const target = join(this.dir, path);
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    await writeFile(target, data, { mode: 0o600, flag: 'wx' });
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.written += bytes;
    return bytes;
  }

  private record(item: ManifestItem): ManifestItem {
    this.current!.items.push(item);
    return item;
  }

  /** Runs `work` as one item unless the package is out of time or room; any error becomes a failed item. */
  private async item(
    base: Pick<ManifestItem, 'source' | 'kind'> & { path: string },
    work: (room: number) => Promise<{ data?: Buffer | string; status?: ItemStatus; note?: string; exitCode?: number | null }>,
  ): Promise<ManifestItem> {
    throwIfAborted(this.signal, 'while collecting the investigation package');
    const started = Date.now();
    const skipped = (note: string) => this.record({ ...base, path: null, status: 'skipped', bytes: 0, durationMs: 0, note });
    if (started > this.deadline) return skipped(`the package's time limit (${this.limits.timeoutMs} ms) was reached`);
    const room = this.room();
    if (room === 0) return skipped(`the package's size limit (${this.limits.maxBytes} bytes) was reached`);
    if (this.paths.has(base.path)) return skipped('already collected');
    let r: Awaited<ReturnType<typeof work>>;
    let bytes = 0;
    let path: string | null = null;
    try {
      r = await work(room);
      if (r.data !== undefined && (r.data.length > 0 || r.status === undefined || r.status === 'collected')) {
        bytes = await this.write(base.path, r.data);
        path = base.path;
        this.paths.add(base.path);
      }
    } catch (err) {
      if (err instanceof AbortedError) throw err;
      if (this.signal.aborted) throw new AbortedError('while collecting the investigation package');
      r = { status: 'failed', note: lastLines(String((err as Error).message ?? err), 300) };
    }
    return this.record({
      ...base,
      path,
      status: r.status ?? 'collected',
      bytes,
      durationMs: Date.now() - started,
      ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
      ...(r.note ? { note: r.note } : {}),
    });
  }

  /** A program's standard output (stderr goes to the note). */
  command(name: string, file: string, args: string[], options: { okCodes?: number[] } = {}): Promise<ManifestItem> {
    const source = [file, ...args].join(' ');
    return this.item({ path: `${this.prefix}/${name}`, source, kind: 'command' }, async (room) => {
      const timeoutMs = Math.max(1, Math.min(this.limits.commandTimeoutMs, this.deadline - Date.now()));
      try {
        const r = await runCommand(file, args, { timeoutMs, signal: this.signal, maxOutputBytes: room, env: COMMAND_ENV });
        const ok = r.code !== null && (options.okCodes ?? [0]).includes(r.code);
        const stderr = lastLines(r.stderr, 300);
        if (!ok && r.stdout.length === 0) {
          return { status: 'failed', exitCode: r.code, note: stderr || `exited with ${r.code ?? r.signal}` };
        }
        return {
          data: r.stdout,
          status: r.truncated && (r.stdoutBytes ?? 0) > room ? 'truncated' : 'collected',
          exitCode: r.code,
          ...(stderr ? { note: stderr } : {}),
        };
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        if (err.kind === 'notFound') {
          this.missingPrograms.add(file);
          const pkg = debianPackageOf(file);
          return { status: 'missing', note: `${file} is not installed${pkg ? ` (Debian/Ubuntu package ${pkg})` : ''}` };
        }
        if (err.kind === 'timeout') {
          return { data: err.result?.stdout ?? '', status: 'timeout', exitCode: null, note: `killed after ${timeoutMs} ms` };
        }
        if (err.kind === 'aborted') throw new AbortedError('while collecting the investigation package');
        throw err;
      }
    });
  }

  /**
   * A copy of one file of the machine. `tail` keeps the end (logs). `home`: the file belongs to
   * that user's home and is copied only if, symlinks resolved, it is inside it.
   */
  file(source: string, options: { tail?: boolean; home?: string; as?: string } = {}): Promise<ManifestItem> {
    return this.item({ path: options.as ?? this.filePath(source), source, kind: 'file' }, async (room) => {
      let path = source;
      if (options.home) {
        const resolved = await resolveInHome(options.home, source);
        if (!resolved) {
          return (await lstat(source).catch(() => null)) ? { status: 'failed', note: 'cannot be resolved (a dangling symlink?)' } : { status: 'absent' };
        }
        if (!resolved.inside) return { status: 'failed', note: `leads outside ${options.home} (to ${resolved.real}): not copied` };
        path = resolved.real;
      }
      const r = await readRegular(path, { max: room, tail: options.tail === true, noFollow: options.home !== undefined });
      if (r.kind === 'absent') return { status: 'absent' };
      if (r.kind === 'other') return { status: 'failed', note: `is ${r.what}: not copied` };
      return {
        data: r.data,
        status: r.truncated ? 'truncated' : 'collected',
        ...(r.truncated ? { note: `${r.size} bytes; ${options.tail ? 'the last' : 'the first'} ${r.data.length} kept` } : {}),
      };
    });
  }

  /** Something built by the executor (from /proc, utmp, unit files, ...), written as JSON. */
  generated(name: string, source: string, build: () => Promise<unknown>): Promise<ManifestItem> {
    return this.item({ path: `${this.prefix}/${name}`, source, kind: 'generated' }, async (room) => {
      const text = `${JSON.stringify(await build(), null, 2)}\n`;
      if (Buffer.byteLength(text) > room) {
        return { data: Buffer.from(text).subarray(0, room), status: 'truncated', note: `${Buffer.byteLength(text)} bytes; cut at ${room} (no longer valid JSON)` };
      }
      return { data: text };
    });
  }

  /**
   * A directory: a listing of everything in it (symlinks not followed, with their targets) to
   * `<section>/listings/<dir>.json`, and, with `copy`, a copy of each regular file it holds
   * (depth and count bounded). `home`: as for file().
   */
  async directory(dir: string, options: { copy?: boolean; maxDepth?: number; maxEntries?: number; home?: string; match?: (name: string) => boolean } = {}): Promise<void> {
    const maxDepth = options.maxDepth ?? 3;
    const maxEntries = options.maxEntries ?? 500;
    const entries: ListingEntry[] = [];
    let cut = false;
    let root = dir;
    if (options.home) {
      const resolved = await resolveInHome(options.home, dir);
      if (!resolved || !resolved.inside) {
        await this.item({ path: `${this.prefix}/listings${dir}.json`, source: dir, kind: 'listing' }, async () =>
          resolved ? { status: 'failed', note: `leads outside ${options.home} (to ${resolved.real}): not listed` } : { status: 'absent' },
        );
        return;
      }
      root = resolved.real;
    }
    const listing = await this.item({ path: `${this.prefix}/listings${dir}.json`, source: dir, kind: 'listing' }, async () => {
      const top = await stat(root).catch(() => null);
      if (!top) return { status: 'absent' };
      if (!top.isDirectory()) return { status: 'failed', note: `is ${describeKind(top)}` };
      const walk = async (path: string, shown: string, depth: number): Promise<void> => {
        let names: string[];
        try {
          names = (await readdir(path)).sort();
        } catch {
          return;
        }
        for (const name of names) {
          if (entries.length >= maxEntries) {
            cut = true;
            return;
          }
          throwIfAborted(this.signal, 'while collecting the investigation package');
          const full = join(path, name);
          const s = await lstat(full).catch(() => null);
          if (!s) continue;
          const type: ListingEntry['type'] = s.isFile()
            ? 'file'
            : s.isDirectory()
              ? 'directory'
              : s.isSymbolicLink()
                ? 'symlink'
                : s.isFIFO()
                  ? 'fifo'
                  : s.isSocket()
                    ? 'socket'
                    : s.isCharacterDevice()
                      ? 'char-device'
                      : s.isBlockDevice()
                        ? 'block-device'
                        : 'other';
          const entry: ListingEntry = {
            path: join(shown, name),
            type,
            mode: (s.mode & 0o7777).toString(8).padStart(4, '0'),
            uid: s.uid,
            gid: s.gid,
            size: s.size,
            mtime: s.mtime.toISOString(),
          };
          if (type === 'symlink') entry.target = await readlink(full).catch(() => '?');
          entries.push(entry);
          if (type === 'directory' && depth < maxDepth) await walk(full, entry.path, depth + 1);
        }
      };
      await walk(root, dir, 1);
      return { data: `${JSON.stringify(entries, null, 2)}\n`, ...(cut ? { status: 'truncated' as const, note: `listed the first ${maxEntries} entries` } : {}) };
    });
    if (!options.copy || listing.path === null) return;
    for (const entry of entries) {
      if (entry.type !== 'file') continue;
      const name = entry.path.slice(entry.path.lastIndexOf('/') + 1);
      if (options.match && !options.match(name)) continue;
      await this.file(entry.path, options.home ? { home: options.home } : {});
    }
  }
}
