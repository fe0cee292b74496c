import { describe } from 'vitest';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';
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
} else {
  describe.skip(`Store contract: postgres (${PG_SKIP_REASON})`, () => undefined);
}
