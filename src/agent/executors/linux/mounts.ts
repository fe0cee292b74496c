import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';

/** Reading the mount table (/proc/self/mountinfo) and finding which mount a path is on. */

export interface MountEntry {
  id: number;
  parentId: number;
  /** major:minor of the filesystem */
  device: string;
  /** The directory of the filesystem this mount shows (e.g. `/sub` for a bind mount of a subdirectory). */
  root: string;
  mountPoint: string;
  /** Per-mount options as the kernel lists them, e.g. ['rw', 'nosuid', 'nodev', 'relatime']. */
  options: string[];
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
export function decodeMountPath(value: string): string {
  return value.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields.length < dash + 3) continue;
    entries.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      device: fields[2]!,
      root: decodeMountPath(fields[3]!),
      mountPoint: decodeMountPath(fields[4]!),
      options: fields[5]!.split(','),
      fsType: fields[dash + 1]!,
      source: decodeMountPath(fields[dash + 2]!),
    });
  }
  return entries;
}

export async function readMountInfo(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

// O_PATH: open without reading, without triggering device side effects. Node does not export it.
const O_PATH: number | undefined = (
  { x64: 0o10000000, ia32: 0o10000000, arm: 0o10000000, arm64: 0o10000000, ppc64: 0o10000000, s390x: 0o10000000, riscv64: 0o10000000, loong64: 0o10000000 } as Record<
    string,
    number
  >
)[process.arch];

/**
 * The id of the mount `path` resolves to (the topmost mount when several are stacked there), read
 * from /proc/self/fdinfo of an O_PATH descriptor. This is exact where comparing device numbers is
 * not (bind mounts of one filesystem share a device).
 */
export async function mountIdOf(path: string): Promise<number> {
  const handle = await open(path, (O_PATH ?? constants.O_RDONLY) | constants.O_NOFOLLOW);
  try {
    const info = await readFile(`/proc/self/fdinfo/${handle.fd}`, 'utf8');
    const m = /^mnt_id:\s*(\d+)/m.exec(info);
    if (!m) throw new Error(`no mnt_id in fdinfo for ${path}`);
    return Number(m[1]);
  } finally {
    await handle.close();
  }
}

const ATIME = new Set(['noatime', 'relatime', 'strictatime']);

/**
 * The `-o` value for `mount -o remount,bind,...`: the per-mount options as listed, with exec
 * or noexec as asked. Every flag is spelled out (strictatime included) so the result does not
 * depend on how mount(8) merges options.
 */
export function remountOptions(original: string[], noexec: boolean): string {
  const kept = original.filter((o) => o !== 'noexec' && o !== 'exec' && o !== '');
  if (!kept.some((o) => ATIME.has(o))) kept.push('strictatime');
  return ['remount', 'bind', ...kept, noexec ? 'noexec' : 'exec'].join(',');
}
