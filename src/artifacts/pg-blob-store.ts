import { open, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { pipeline, Readable } from 'node:stream';
import type pg from 'pg';
import { numbered } from '../store/postgres/postgres-store.js';
import { FORGET_BLOB, INSERT_BLOB, RETOUCH_BLOB, SELECT_BLOB_SIZE, SELECT_COLLECTABLE_BLOBS } from '../store/sql/artifacts.js';
import { BlobDigestMismatch, clearStaging, stageFile, verifying, type BlobReader, type BlobStore, type StagedBlob, type StageOptions } from './blob-store.js';

/** Bytes per row of blob_chunks: large enough for few round trips, small enough to hold one in memory. */
export const CHUNK_BYTES = 1024 * 1024;
const COLLECT_BATCH = 500;
/** A staging file untouched this long belongs to no upload in flight. */
const STALE_STAGING_MS = 24 * 3600 * 1000;

const INSERT_CHUNK = 'INSERT INTO blob_chunks (sha256, n, data) VALUES ($1, $2, $3)';
const SELECT_CHUNK = 'SELECT data FROM blob_chunks WHERE sha256 = $1 AND n = $2';

/**
 * Blobs inside PostgreSQL: the `blobs` row and its `blob_chunks` (1 MiB each) are written in one
 * transaction, so every node behind the database reads every blob and nothing else has to run.
 *
 * An upload is staged to a local file first and copied in afterwards: the transaction then
 * lasts as long as reading a local file, not as long as a slow client takes to send, so uploads
 * never hold database connections hostage. Reads fetch one chunk at a time.
 */
export class PostgresBlobStore implements BlobStore {
  readonly kind = 'postgres' as const;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly staging: string,
    private readonly now: () => number,
  ) {}

  static async open(pool: pg.Pool, stagingDir: string, now: () => number = Date.now): Promise<PostgresBlobStore> {
    // Several nodes may share a data dir: only what is surely abandoned goes.
    await clearStaging(stagingDir, now() - STALE_STAGING_MS);
    return new PostgresBlobStore(pool, stagingDir, now);
  }

  async stage(source: Readable, options: StageOptions): Promise<StagedBlob> {
    const staged = await stageFile(source, this.staging, options);
    let done = false;
    return {
      sha256: staged.sha256,
      size: staged.size,
      commit: async () => {
        if (done) return;
        await this.copyIn(staged.path, staged.sha256, staged.size);
        done = true;
        await rm(staged.path, { force: true });
      },
      discard: async () => {
        done = true;
        await rm(staged.path, { force: true });
      },
    };
  }

  /**
   * Inserts the blob's row and chunks, or only marks it used when it exists. A collection racing
   * with this either ran first (the insert then creates the blob anew) or sees the fresh touch
   * and leaves the blob alone: the database's row lock decides.
   */
  private async copyIn(path: string, sha256: string, size: number): Promise<void> {
    const client = await this.pool.connect();
    try {
      for (let attempt = 0; ; attempt++) {
        await client.query('BEGIN');
        try {
          const at = this.now();
          const inserted = (await client.query(numbered(INSERT_BLOB), [sha256, size, at])).rowCount ?? 0;
          if (inserted === 0) {
            const touched = (await client.query(numbered(RETOUCH_BLOB), [at, sha256])).rowCount ?? 0;
            if (touched === 0 && attempt < 3) {
              // Collected between the two statements: start again and create it.
              await client.query('ROLLBACK');
              continue;
            }
          } else {
            await this.insertChunks(client, path, sha256, size);
          }
          await client.query('COMMIT');
          return;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }
    } finally {
      client.release();
    }
  }

  private async insertChunks(client: pg.PoolClient, path: string, sha256: string, size: number): Promise<void> {
    const handle = await open(path, 'r');
    const hash = createHash('sha256');
    try {
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      let offset = 0;
      for (let n = 0; offset < size; n++) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(CHUNK_BYTES, size - offset), offset);
        if (bytesRead === 0) throw new Error(`staged blob ${sha256} ended early`);
        const chunk = buffer.subarray(0, bytesRead);
        hash.update(chunk);
        await client.query(INSERT_CHUNK, [sha256, n, chunk]);
        offset += bytesRead;
      }
    } finally {
      await handle.close();
    }
    // The staging file was hashed as it was written; this catches a local disk that changed it since.
    const actual = hash.digest('hex');
    if (actual !== sha256) throw new BlobDigestMismatch(sha256, actual);
  }

  async open(sha256: string): Promise<BlobReader | null> {
    const row = (await this.pool.query(numbered(SELECT_BLOB_SIZE), [sha256])).rows[0] as { size: number | string } | undefined;
    if (!row) return null;
    const size = Number(row.size);
    const chunks = Math.ceil(size / CHUNK_BYTES);
    const pool = this.pool;
    let n = 0;
    const source = new Readable({
      highWaterMark: CHUNK_BYTES,
      read() {
        if (n >= chunks) {
          this.push(null);
          return;
        }
        const index = n++;
        pool.query(SELECT_CHUNK, [sha256, index]).then(
          (result) => {
            const data = (result.rows[0] as { data: Buffer } | undefined)?.data;
            if (!data) this.destroy(new Error(`blob ${sha256} lacks chunk ${index}`));
            else this.push(data);
          },
          (error: unknown) => this.destroy(error as Error),
        );
      },
    });
    return { size, stream: pipeline(source, verifying(sha256, size), () => undefined) };
  }

  async collect(before: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const candidates = (await this.pool.query(numbered(SELECT_COLLECTABLE_BLOBS), [before, COLLECT_BATCH])).rows as { sha256: string }[];
      let round = 0;
      // The row's chunks go with it (ON DELETE CASCADE), in the same statement's transaction.
      for (const { sha256 } of candidates) round += (await this.pool.query(numbered(FORGET_BLOB), [sha256, before, sha256])).rowCount ?? 0;
      removed += round;
      if (candidates.length < COLLECT_BATCH || round === 0) return removed;
    }
  }
}
