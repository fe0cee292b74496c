import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * The blob store port: content-addressed bytes (the key is the SHA-256 of the content), behind
 * one interface with two adapters. Embedded (SQLite): files under the data dir
 * (fs-blob-store.ts). PostgreSQL: chunks in the database itself, so every node behind it reads
 * every blob (pg-blob-store.ts). Both index their blobs in the `blobs` table, and a blob is
 * removed only when no library file and no action artifact refers to it.
 *
 * Writing is two steps so that a refused upload leaves nothing: `stage` streams the bytes to a
 * private file while hashing and counting them; the caller checks what it must (the rest of a
 * form, the expected digest) and then `commit`s or `discard`s.
 */
export interface BlobStore {
  readonly kind: 'filesystem' | 'postgres';
  /** Streams `source` into a staging file. Rejects with BlobTooLarge past `maxBytes`; then nothing remains. */
  stage(source: Readable, options: StageOptions): Promise<StagedBlob>;
  /** The blob's bytes, checked against its SHA-256 as they stream; null when there is no such blob. */
  open(sha256: string): Promise<BlobReader | null>;
  /** Removes blobs nothing refers to and nothing touched since `before`; returns how many. */
  collect(before: number): Promise<number>;
}

export interface StageOptions {
  maxBytes: number;
  /**
   * What to do with bytes past `maxBytes`: 'abort' destroys the source at once (a raw request
   * body, which could be endless); 'drain' reads and drops the rest (a multipart file part,
   * which the form parser already bounds), so the request ends cleanly and the client reads the
   * answer.
   */
  overflow: 'abort' | 'drain';
  /** When given, the content's SHA-256 (hex) the sender announced: a mismatch is refused. */
  expectSha256?: string | undefined;
}

export interface StagedBlob {
  sha256: string;
  size: number;
  /** Makes the blob durable and readable under its SHA-256 (a no-op for content already stored). */
  commit(): Promise<void>;
  /** Removes the staging file. Safe to call after a commit (then it does nothing). */
  discard(): Promise<void>;
}

export interface BlobReader {
  size: number;
  /** Errors (instead of ending) if the bytes no longer match their SHA-256. */
  stream: Readable;
}

export class BlobTooLarge extends Error {
  constructor(readonly maxBytes: number) {
    super(`larger than ${maxBytes} bytes`);
    this.name = 'BlobTooLarge';
  }
}

export class BlobDigestMismatch extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`content SHA-256 ${actual} does not match ${expected}`);
    this.name = 'BlobDigestMismatch';
  }
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** A staged file: where it is and what it holds. */
export interface StagedFile {
  path: string;
  sha256: string;
  size: number;
}

/** Staging files are named `<uuid>.part` in their own folder, so leftovers are easy to find. */
const STAGING_SUFFIX = '.part';

/**
 * Streams `source` to a new file in `dir` (mode 0600), hashing and counting; fsyncs it. On any
 * failure (too large, digest mismatch, the sender hung up) the file is removed before the
 * promise rejects.
 */
export async function stageFile(source: Readable, dir: string, options: StageOptions): Promise<StagedFile> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${randomUUID()}${STAGING_SUFFIX}`);
  const hash = createHash('sha256');
  let size = 0;
  let overflowed = false;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > options.maxBytes) {
        overflowed = true;
        if (options.overflow === 'abort') return callback(new BlobTooLarge(options.maxBytes));
        return callback(); // drained: read and dropped
      }
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(path, { flags: 'wx', mode: 0o600, highWaterMark: 256 * 1024 }));
    if (overflowed) throw new BlobTooLarge(options.maxBytes);
    const sha256 = hash.digest('hex');
    if (options.expectSha256 !== undefined && options.expectSha256.toLowerCase() !== sha256) {
      throw new BlobDigestMismatch(options.expectSha256.toLowerCase(), sha256);
    }
    await fsyncFile(path);
    return { path, sha256, size };
  } catch (error) {
    await rm(path, { force: true });
    throw error;
  }
}

/** fsync flushes the file, whichever descriptor asks. */
export async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Removes staging files a crash left behind (called when a blob store opens): all of them, or
 * with `olderThan` only those not written since (another process may be staging in the folder).
 */
export async function clearStaging(dir: string, olderThan?: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const name of await readdir(dir)) {
    if (!name.endsWith(STAGING_SUFFIX)) continue;
    const path = join(dir, name);
    if (olderThan !== undefined) {
      const info = await stat(path).catch(() => null);
      if (!info || info.mtimeMs >= olderThan) continue;
    }
    await rm(path, { force: true });
  }
}

/**
 * Passes bytes through while hashing them and holds the last chunk back until the digest is
 * known: a reader of a damaged blob gets an error, never a complete-looking wrong body.
 */
export function verifying(sha256: string, size: number): Transform {
  const hash = createHash('sha256');
  let held: Buffer | null = null;
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      seen += chunk.length;
      const previous = held;
      held = chunk;
      callback(null, previous ?? undefined);
    },
    flush(callback) {
      const actual = hash.digest('hex');
      if (actual !== sha256 || seen !== size) return callback(new BlobDigestMismatch(sha256, actual));
      callback(null, held ?? undefined);
    },
  });
}
