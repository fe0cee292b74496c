import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * The machine-local record of what the executor did: JSON-lines log entries, and small JSON
 * state files holding what undoing an action needs. Both are root-only (0600 files, 0700 dirs).
 */

export interface LogEntry {
  action: string;
  type: string;
  event: string;
  [key: string]: unknown;
}

export async function appendLog(logFile: string, entry: LogEntry): Promise<void> {
  await mkdir(dirname(logFile), { recursive: true, mode: 0o700 });
  await appendFile(logFile, `${JSON.stringify({ time: new Date().toISOString(), pid: process.pid, ...entry })}\n`, { mode: 0o600 });
}

export async function readState<T>(stateDir: string, name: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(join(stateDir, `${name}.json`), 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Writes a state file atomically (temporary file + rename), so a crash leaves the old or the new one. */
export async function writeState(stateDir: string, name: string, value: unknown): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const target = join(stateDir, `${name}.json`);
  const temp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  await rename(temp, target);
}

export async function removeState(stateDir: string, name: string): Promise<void> {
  await rm(join(stateDir, `${name}.json`), { force: true });
}

/** Runs tasks with the same key one after the other (e.g. two restrict actions never interleave). */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const next = previous.then(task, task);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}
