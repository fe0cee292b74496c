import Database from 'better-sqlite3';
import { accessSync, chmodSync, closeSync, constants, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { OperatorError } from './operator-error.js';

/**
 * The data dir holds what one server keeps on its own disk: the embedded database (with its WAL
 * and shared-memory files), the lock, the demo fleet's agent state. The database holds the
 * private signing keys, so the dir is its owner's only (0700) and so is everything directly in
 * it (files 0600, directories 0700), whatever the umask: modes are set, not inherited.
 */
export const DATABASE_FILE = 'countermand.db';
export const LOCK_FILE = 'countermand.lock';

export class DataDirError extends OperatorError {
  override name = 'DataDirError';
}

const DATA_DIR_HINT = 'give another one with --data-dir (COUNTERMAND_DATA_DIR)';

/** Files and directories this process creates from now on are its owner's only. */
export function restrictUmask(): void {
  process.umask(0o077);
}

const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, '0');

/** What an fs error means, without the path (the message names it once). */
function reason(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  switch (e.code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return 'read-only file system';
    case 'ENOTDIR':
      return 'a part of the path is a file, not a directory';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'ENOENT':
      return 'no such directory';
    default:
      return e.code ?? e.message;
  }
}

export interface PrepareOptions {
  /** `serve` creates the data dir and its database; the admin commands only open an existing one. */
  create: boolean;
  /** Whether a database file is expected (the embedded store) or only node-local state (PostgreSQL). */
  database: boolean;
  /** Start even if the data dir stays open to other users (a filesystem without modes). */
  allowOpen: boolean;
  /** Told what was tightened, or that the dir stays open. */
  warn(message: string): void;
}

/**
 * Makes the data dir ready and private, and returns its absolute path: creates it (0700) and the
 * database file (0600) when `create`, else refuses a dir without a database; tightens an
 * existing dir and what is directly in it; refuses a dir it cannot write, and one that stays
 * readable by others unless `allowOpen`.
 */
export function prepareDataDir(dir: string, options: PrepareOptions): string {
  const abs = resolve(dir);
  const database = join(abs, DATABASE_FILE);
  if (!options.create) {
    if (!isFile(database, abs)) {
      throw new DataDirError(
        `no database in ${abs} (${DATABASE_FILE} not found); give the server's data dir with --data-dir (COUNTERMAND_DATA_DIR), or create one with \`countermand init\``,
      );
    }
  } else {
    try {
      mkdirSync(abs, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new DataDirError(`cannot create the data dir ${abs}: ${reason(error)}; ${DATA_DIR_HINT}`);
    }
  }
  const stat = statSync(abs);
  if (!stat.isDirectory()) throw new DataDirError(`the data dir ${abs} is not a directory; ${DATA_DIR_HINT}`);
  try {
    accessSync(abs, constants.W_OK | constants.X_OK);
  } catch (error) {
    throw new DataDirError(
      `cannot write in the data dir ${abs}: ${reason(error)} (owner uid ${stat.uid}, mode ${octal(stat.mode)}); run Countermand as its owner, or ${DATA_DIR_HINT}`,
    );
  }

  const tightened: string[] = [];
  const tighten = (path: string, name: string, mode: number, current: number) => {
    if ((current & 0o077) === 0) return;
    try {
      chmodSync(path, mode);
      tightened.push(`${name} ${octal(current)} -> ${octal(mode)}`);
    } catch {
      // Not ours to change: the dir check below decides whether that matters.
    }
  };
  tighten(abs, 'the data dir', 0o700, stat.mode);
  for (const name of readdirSync(abs).sort()) {
    const path = join(abs, name);
    const entry = lstatSync(path);
    if (entry.isSymbolicLink()) continue; // chmod would follow it out of the data dir
    tighten(path, name, entry.isDirectory() ? 0o700 : 0o600, entry.mode);
  }
  if (tightened.length > 0) options.warn(`made private what other users could read in ${abs}: ${tightened.join(', ')}`);

  const after = statSync(abs).mode;
  if ((after & 0o077) !== 0) {
    const what = `the data dir ${abs} is open to other users (mode ${octal(after)}) and could not be made private`;
    if (!options.allowOpen) {
      throw new DataDirError(`${what}; chmod 700 it as its owner, or ${DATA_DIR_HINT} (--allow-open-data-dir starts anyway)`);
    }
    options.warn(`${what}; starting anyway (allowOpenDataDir): other local users may read the signing keys`);
  }

  if (options.create && options.database) createPrivateFile(database, abs);
  return abs;
}

function isFile(path: string, dir: string): boolean {
  try {
    return statSync(path).isFile();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new DataDirError(`cannot read ${path}: ${reason(error)}; run Countermand as the owner of ${dir}, or ${DATA_DIR_HINT}`);
  }
}

/** Creates `path` empty and 0600 if it is missing (SQLite gives its WAL and SHM the same mode). */
function createPrivateFile(path: string, dir: string): void {
  try {
    closeSync(openSync(path, constants.O_CREAT | constants.O_WRONLY, 0o600));
    chmodSync(path, 0o600);
  } catch (error) {
    throw new DataDirError(`cannot create ${path}: ${reason(error)}; check who owns ${dir}, or ${DATA_DIR_HINT}`);
  }
}

export interface DataDirLock {
  release(): void;
}

/**
 * Holds the data dir for this process: an exclusive POSIX lock (SQLite's own locking) on
 * `countermand.lock`, kept until `release()` or until the process ends in any way, SIGKILL
 * included: the kernel drops the lock with the process, so a stale lock cannot exist. A second
 * server on the same data dir is refused at once.
 */
export function lockDataDir(dir: string): DataDirLock {
  const path = join(dir, LOCK_FILE);
  createPrivateFile(path, dir);
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { timeout: 0 });
    db.pragma('journal_mode = MEMORY'); // nothing to journal: no -journal file beside it
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    db?.close();
    if ((error as { code?: string }).code === 'SQLITE_BUSY') {
      const pid = lockHolder(path);
      throw new DataDirError(
        `another Countermand server${pid ? ` (pid ${pid})` : ''} is using the data dir ${dir}; stop it, or give this one its own --data-dir (COUNTERMAND_DATA_DIR)`,
      );
    }
    throw new DataDirError(`cannot lock the data dir ${dir} (${path}): ${(error as Error).message}`);
  }
  const held = db;
  return { release: () => held.close() };
}

/** The pid holding a POSIX lock on `path`, from /proc/locks (Linux), for the message only. */
function lockHolder(path: string): number | null {
  try {
    const inode = String(statSync(path).ino);
    for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
      const fields = line.trim().split(/\s+/);
      // "1: POSIX  ADVISORY  WRITE 15624 fe:00:2146354 1073741824 1073742335"
      if (fields[1] === 'POSIX' && fields[5]?.split(':')[2] === inode) return Number(fields[4]);
    }
  } catch {
    /* not Linux, or not readable: the message goes without it */
  }
  return null;
}
