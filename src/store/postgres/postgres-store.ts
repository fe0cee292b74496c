import pg from 'pg';
import { MACHINE_SET } from '../../domain/query-sets.js';
import type { EntitySetDef } from '../../odata/index.js';
import type { Row } from '../sql/rows.js';
import { MIGRATIONS, POSTGRES } from '../sql/schema.js';
import { SqlStore, type Operation } from '../sql/sql-store.js';

/** BIGINT columns hold epoch milliseconds and counts: well inside a double's exact range. */
const types = {
  getTypeParser(oid: number, format?: string) {
    if (oid === pg.types.builtins.INT8) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/** `?` placeholders to `$1, $2, ...`; queries never inline literals, so no `?` is ever quoted. */
export function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

const MIGRATION_LOCK = 727_001;

/** The same schema and queries as SQLite, with PostgreSQL's JSON functions for tags. */
const MACHINE_SET_PG: EntitySetDef = {
  ...MACHINE_SET,
  properties: MACHINE_SET.properties.map((p) =>
    p.type === 'tags'
      ? { ...p, existsSql: 'EXISTS (SELECT 1 FROM jsonb_array_elements_text(m.machine_tags::jsonb) AS tag(v) WHERE tag.v = ?)' }
      : p,
  ),
};

/**
 * PostgreSQL store for several server nodes. Each write is its own transaction; a status change
 * locks the action's row (SELECT ... FOR UPDATE) and updates it conditionally, so concurrent
 * changes from any node have exactly one winner.
 */
export class PostgresStore extends SqlStore {
  readonly backend = 'postgres' as const;
  protected readonly machineSet = MACHINE_SET_PG;

  private constructor(readonly pool: pg.Pool) {
    super();
  }

  static async connect(url: string, options: { max?: number } = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10, types });
    // An idle connection that the server closes (restart, failover) is dropped from the pool and
    // replaced on next use; without a listener the event would crash the process.
    pool.on('error', () => undefined);
    const store = new PostgresStore(pool);
    try {
      await store.migrate();
    } catch (error) {
      await pool.end();
      throw error;
    }
    return store;
  }

  private async migrate(): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await c.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
      );
      const applied = new Set((await c.query('SELECT version FROM schema_migrations')).rows.map((r) => Number(r.version)));
      for (const m of MIGRATIONS) {
        if (applied.has(m.version)) continue;
        await c.query(m.sql(POSTGRES));
        await c.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  protected async query(sql: string, params: unknown[]): Promise<Row[]> {
    return (await this.pool.query(numbered(sql), params)).rows as Row[];
  }

  /** A single statement needs no explicit transaction. */
  protected override async exec(sql: string, params: unknown[]): Promise<number> {
    return (await this.pool.query(numbered(sql), params)).rowCount ?? 0;
  }

  private async tx<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  protected transaction<T>(operation: () => Operation<T>): Promise<T> {
    return this.tx(async (client) => {
      const steps = operation();
      let next = steps.next();
      while (!next.done) {
        const step = next.value;
        if (step.only === 'sqlite') {
          next = steps.next({ rows: [], changes: 0 });
          continue;
        }
        if (step.lock) await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [step.lock]);
        const locking = step.forUpdate ? ' FOR UPDATE' : step.forShare ? ' FOR SHARE' : '';
        const result = await client.query(numbered(`${step.sql}${locking}`), step.params);
        next = steps.next({ rows: result.rows as Row[], changes: result.rowCount ?? 0 });
      }
      return next.value;
    });
  }
}
