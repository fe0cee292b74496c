import { createReadStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import type { Store } from '../domain/store.js';
import { clearStaging, fsyncFile, SHA256_HEX, stageFile, verifying, type BlobReader, type BlobStore, type StagedBlob, type StageOptions } from './blob-store.js';

const COLLECT_BATCH = 500;

/**
 * Blobs as files under `<data dir>/blobs/`: `sha256/<first two hex digits>/<sha256>`, written to
 * a staging name in `tmp/`, fsynced, renamed into place, and the folder fsynced, so a blob is
 * either whole under its name or absent. The `blobs` table indexes them.
 *
 * The embedded store serves one process, so a commit and a collection of the same blob are
 * serialised here in memory (a collection must never remove a file a commit just renamed).
 */
export class FilesystemBlobStore implements BlobStore {
  readonly kind = 'filesystem' as const;
  private readonly staging: string;
  private readonly locks = new Map<string, Promise<unknown>>();

  private constructor(
    private readonly root: string,
    private readonly store: Store,
    private readonly now: () => number,
  ) {
    this.staging = join(root, 'tmp');
  }

  static async open(root: string, store: Store, now: () => number = Date.now): Promise<FilesystemBlobStore> {
    await mkdir(join(root, 'sha256'), { recursive: true, mode: 0o700 });
    await clearStaging(join(root, 'tmp'));
    return new FilesystemBlobStore(root, store, now);
  }

  private path(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a SHA-256: ${sha256}`);
    return join(this.root, 'sha256', sha256.slice(0, 2), sha256);
  }

  /** Runs `work` after any other work on the same blob has finished. */
  private async exclusive<T>(sha256: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(sha256) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.locks.set(sha256, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(sha256) === next) this.locks.delete(sha256);
    }
  }

  async stage(source: Readable, options: StageOptions): Promise<StagedBlob> {
    const staged = await stageFile(source, this.staging, options);
    let done = false;
    return {
      sha256: staged.sha256,
      size: staged.size,
      commit: () =>
        this.exclusive(staged.sha256, async () => {
          if (done) return;
          const target = this.path(staged.sha256);
          await mkdir(dirname(target), { recursive: true, mode: 0o700 });
          // Same name, same content: renaming over an existing copy changes nothing.
          await rename(staged.path, target);
          // A rename is durable once its folder is fsynced.
          await fsyncFile(dirname(target));
          done = true;
          await this.store.touchBlob(staged.sha256, staged.size, this.now());
        }),
      discard: async () => {
        if (!done) await rm(staged.path, { force: true });
        done = true;
      },
    };
  }

  async open(sha256: string): Promise<BlobReader | null> {
    const path = this.path(sha256);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    const file = createReadStream(path, { highWaterMark: 256 * 1024 });
    // pipeline() closes the file however the reader ends (done, failed, or gone away).
    return { size, stream: pipeline(file, verifying(sha256, size), () => undefined) };
  }

  async collect(before: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const candidates = await this.store.listCollectableBlobs(before, COLLECT_BATCH);
      let round = 0;
      for (const sha256 of candidates) {
        const gone = await this.exclusive(sha256, async () => {
          if (!(await this.store.forgetBlob(sha256, before))) return false;
          await rm(this.path(sha256), { force: true });
          return true;
        });
        if (gone) round++;
      }
      removed += round;
      if (candidates.length < COLLECT_BATCH || round === 0) return removed;
    }
  }
}

