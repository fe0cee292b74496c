import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FilesystemBlobStore } from '../../src/artifacts/fs-blob-store.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { artifactsContract } from './artifacts-contract.js';
import { storeContract } from './store-contract.js';

storeContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-store-'));
  const store = SqliteStore.open(join(dir, 'test.db'));
  return {
    store,
    async dispose() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

artifactsContract('sqlite with blob files', async () => {
  const { readdirSync, writeFileSync, statSync, existsSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'countermand-artifacts-'));
  const store = SqliteStore.open(join(dir, 'test.db'));
  const root = join(dir, 'blobs');
  const blobs = await FilesystemBlobStore.open(root, store);
  const count = (sub: string) => (existsSync(join(root, sub)) ? readdirSync(join(root, sub), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length : 0);
  return {
    store,
    blobs,
    async tamper(sha256) {
      const path = join(root, 'sha256', sha256.slice(0, 2), sha256);
      writeFileSync(path, Buffer.alloc(statSync(path).size, 0x41));
    },
    async residue() {
      return { blobs: count('sha256'), staging: count('tmp') };
    },
    async dispose() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite housekeeping', () => {
  it('checkpoints the WAL in the background: the log is recycled, not grown without bound', async () => {
    const { statSync } = await import('node:fs');
    const { randomUUID } = await import('node:crypto');
    const dir = mkdtempSync(join(tmpdir(), 'countermand-wal-'));
    const path = join(dir, 'wal.db');
    const store = SqliteStore.open(path);
    try {
      const tenantId = randomUUID();
      await store.upsertTenant({ id: tenantId, name: 't' });
      const walSize = () => statSync(`${path}-wal`).size;
      // Write in rounds; between rounds the checkpointer catches up, so the log keeps being reused.
      const sizes: number[] = [];
      for (let round = 0; round < 6; round++) {
        await Promise.all(Array.from({ length: 400 }, (_, i) => store.upsertTenant({ id: randomUUID(), name: `t${round}-${i}-${'x'.repeat(500)}` })));
        await new Promise((r) => setTimeout(r, 1300));
        sizes.push(walSize());
      }
      // 2,400 rows of ~600 bytes each went through it; without checkpoints the log would hold them all.
      const written = 2400 * 600;
      expect(Math.max(...sizes.slice(2))).toBeLessThan(written / 2);
      expect(store.integrityCheck()).toBe('ok');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
