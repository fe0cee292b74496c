import { constants, type Stats } from 'node:fs';
import { lstat, open, realpath, stat } from 'node:fs/promises';

/**
 * Reading the machine's files without being led astray: only regular files are opened (never a
 * FIFO that would block, nor a device whose open has side effects), and never more than a
 * bound. Used by GetFile's checks and by the investigation package, which reads files in
 * users' homes without following symlinks out of the home (so a user cannot make the package
 * carry, say, /etc/shadow).
 */

export type ReadResult =
  | { kind: 'file'; data: Buffer; size: number; truncated: boolean; stats: Stats }
  | { kind: 'absent' }
  | { kind: 'other'; what: string };

export function describeKind(s: Stats): string {
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

export interface ReadOptions {
  max: number;
  /** Keep the end rather than the beginning (logs), starting at a line boundary. */
  tail?: boolean;
  /** Do not follow a symlink at the last component (the caller resolved the path itself). */
  noFollow?: boolean;
  /** With tail: start at a multiple of this many bytes (fixed-size records) instead of a line. */
  align?: number;
}

/** A regular file's content, at most `max` bytes of it. Files in /proc report size 0 and are read to their end (bounded). */
export async function readRegular(path: string, options: ReadOptions): Promise<ReadResult> {
  let before: Stats;
  try {
    before = options.noFollow ? await lstat(path) : await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'absent' };
    throw err;
  }
  if (!before.isFile()) return { kind: 'other', what: describeKind(before) };
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | (options.noFollow ? constants.O_NOFOLLOW : 0);
  const handle = await open(path, flags);
  try {
    const s = await handle.stat();
    if (!s.isFile() || s.ino !== before.ino || s.dev !== before.dev) return { kind: 'other', what: 'a file that changed while it was opened' };
    const max = options.max;
    if (options.tail && s.size > max) {
      const align = options.align;
      const start = align ? Math.ceil((s.size - max) / align) * align : s.size - max;
      const data = Buffer.alloc(s.size - start);
      const { bytesRead } = await handle.read(data, 0, data.length, start);
      let part = data.subarray(0, bytesRead);
      const nl = part.indexOf(0x0a);
      if (!align && nl >= 0 && nl < part.length - 1) part = part.subarray(nl + 1); // start at a whole line
      return { kind: 'file', data: part, size: s.size, truncated: true, stats: s };
    }
    // Read to the end (bounded): sizes in /proc are 0, and a file may grow meanwhile.
    const chunks: Buffer[] = [];
    let total = 0;
    let truncated = false;
    for (;;) {
      const want = Math.min(64 * 1024, max + 1 - total);
      if (want <= 0) {
        truncated = true;
        break;
      }
      const buf = Buffer.alloc(want);
      const { bytesRead } = await handle.read(buf, 0, want, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
    }
    let data = Buffer.concat(chunks);
    if (data.length > max) {
      data = data.subarray(0, max);
      truncated = true;
    }
    return { kind: 'file', data, size: Math.max(s.size, total), truncated, stats: s };
  } finally {
    await handle.close();
  }
}

/** Where `path` leads with its symlinks resolved, and whether that stays inside `home` (itself resolved). */
export async function resolveInHome(home: string, path: string): Promise<{ real: string; inside: boolean } | null> {
  try {
    const realHome = await realpath(home);
    const real = await realpath(path);
    return { real, inside: real === realHome || real.startsWith(`${realHome}/`) };
  } catch {
    return null; // does not exist (or cannot be reached)
  }
}
