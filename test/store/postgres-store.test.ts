import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'vitest';
import { PostgresBlobStore } from '../../src/artifacts/pg-blob-store.js';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';
import { artifactsContract } from './artifacts-contract.js';
import { storeContract } from './store-contract.js';

if (PG_URL) {
  storeContract('postgres', async () => {
    const db = await freshDatabase();
    const store = await PostgresStore.connect(db.url);
    return {
      store,
      async dispose() {
        await store.close();
        await db.drop();
      },
    };
  });
  artifactsContract('postgres with blob chunks', async () => {
    const db = await freshDatabase();
    const store = await PostgresStore.connect(db.url);
    const staging = mkdtempSync(join(tmpdir(), 'countermand-pg-staging-'));
    const blobs = await PostgresBlobStore.open(store.pool, staging);
    return {
      store,
      blobs,
      async tamper(sha256) {
        await store.pool.query('UPDATE blob_chunks SET data = set_byte(data, 0, (get_byte(data, 0) + 1) % 256) WHERE sha256 = $1 AND n = 0', [sha256]);
      },
      async residue() {
        const rows = await store.pool.query('SELECT COUNT(*)::int AS n FROM blobs');
        return { blobs: rows.rows[0].n as number, staging: existsSync(staging) ? readdirSync(staging).length : 0 };
      },
      async dispose() {
        await store.close();
        await db.drop();
        rmSync(staging, { recursive: true, force: true });
      },
    };
  });
} else {
  describe.skip(`Store contract: postgres (${PG_SKIP_REASON})`, () => undefined);
  describe.skip(`artifacts contract: postgres (${PG_SKIP_REASON})`, () => undefined);
}
