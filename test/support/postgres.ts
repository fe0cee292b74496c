import { randomUUID } from 'node:crypto';
import pg from 'pg';

/**
 * PostgreSQL for tests: COUNTERMAND_TEST_PG_URL names a server (`.ci/run` starts a throwaway
 * one with scripts/throwaway-postgres.sh). Each caller gets a database of its own.
 */
export const PG_URL = process.env.COUNTERMAND_TEST_PG_URL;
export const PG_SKIP_REASON = 'COUNTERMAND_TEST_PG_URL is not set: start one with scripts/throwaway-postgres.sh (CI does)';

if (!PG_URL) {
  // A skipped suite says why, in the output, every time.
  console.warn(`[postgres tests skipped] ${PG_SKIP_REASON}`);
}

export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (!PG_URL) throw new Error(PG_SKIP_REASON);
  const name = `cm_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
