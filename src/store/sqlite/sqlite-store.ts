import Database from 'better-sqlite3';
import { MACHINE_SET } from '../../domain/query-sets.js';
import type { Row } from '../sql/rows.js';
import { MIGRATIONS, SQLITE } from '../sql/schema.js';
import { SqlStore, type Operation, type Step, type StepResult } from '../sql/sql-store.js';
import { Checkpointer } from './checkpointer.js';

type Db = Database.Database;

interface PendingWrite {
  operation: () => Operation<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

const STATEMENT_CACHE_LIMIT = 256;
/** How often the query planner's statistics are refreshed (PRAGMA optimize). */
const OPTIMIZE_EVERY_MS = 60 * 60 * 1000;
const CHECKPOINT_EVERY_MS = 1000;

export interface SqliteOptions {
  synchronous?: 'FULL' | 'NORMAL';
  /** Told when the background checkpoint fails (it is retried on the next interval). */
  onWarning?: (message: string) => void;
}

/**
 * The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a committed
 * transaction survives a crash or power loss. Writes are grouped: every write issued during one
 * turn of the event loop runs in one transaction (each inside its own savepoint, so one failing
 * write does not undo the others), and all their promises resolve after the single COMMIT.
 * That keeps one fsync per batch instead of one per request. Reads run directly; since a
 * batch runs synchronously, no read ever sees a write that is not yet committed.
 */
export class SqliteStore extends SqlStore {
  readonly backend = 'sqlite' as const;
  protected readonly machineSet = MACHINE_SET;
  private readonly db: Db;
  private readonly statements = new Map<string, Database.Statement>();
  private queue: PendingWrite[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly checkpointer: Checkpointer;
  private readonly optimizer: NodeJS.Timeout;

  private constructor(db: Db, path: string, options: SqliteOptions) {
    super();
    this.db = db;
    this.checkpointer = new Checkpointer(path, CHECKPOINT_EVERY_MS, options.onWarning ?? (() => undefined));
    this.optimizer = setInterval(() => this.db.pragma('optimize'), OPTIMIZE_EVERY_MS).unref();
  }

  static open(path: string, options: SqliteOptions = {}): SqliteStore {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    db.pragma('cache_size = -65536'); // 64 MiB of pages, instead of SQLite's 2 MiB
    // Reads through a memory map instead of a read() per page: point lookups become cheap.
    db.pragma('mmap_size = 1073741824');
    // Checkpoints run in a worker thread, never inside a COMMIT on the event loop.
    db.pragma('wal_autocheckpoint = 0');
    const store = new SqliteStore(db, path, options);
    store.migrate();
    // The planner needs statistics: without them, a filtered list walked a 1M-row index to
    // avoid a sort (seconds instead of microseconds). Bounded, so opening stays fast.
    db.pragma('analysis_limit = 1000');
    db.pragma('optimize = 0x10002');
    return store;
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
    );
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      this.db
        .transaction(() => {
          this.db.exec(m.sql(SQLITE));
          this.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
        })
        .immediate();
    }
  }

  /** Runs an integrity check; used by tests and `countermand` diagnostics. */
  integrityCheck(): string {
    return String(this.db.pragma('integrity_check', { simple: true }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    clearInterval(this.optimizer);
    await this.checkpointer.stop();
    this.db.pragma('optimize');
    this.db.close();
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      if (this.statements.size >= STATEMENT_CACHE_LIMIT) {
        const oldest = this.statements.keys().next().value as string;
        this.statements.delete(oldest);
      }
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  protected async query(sql: string, params: unknown[]): Promise<Row[]> {
    return this.stmt(sql).all(...params) as Row[];
  }

  /** One step, synchronously: statements that return rows are read, the others run. */
  private step(step: Step): StepResult {
    if (step.only === 'postgres') return { rows: [], changes: 0 };
    const statement = this.stmt(step.sql);
    if (statement.reader) return { rows: statement.all(...step.params) as Row[], changes: 0 };
    return { rows: [], changes: statement.run(...step.params).changes };
  }

  protected transaction<T>(operation: () => Operation<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ operation, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private drive(operation: () => Operation<unknown>): unknown {
    const steps = operation();
    let next = steps.next();
    while (!next.done) next = steps.next(this.step(next.value));
    return next.value;
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.stmt('BEGIN IMMEDIATE').run();
      for (const write of batch) {
        this.stmt('SAVEPOINT w').run();
        try {
          outcomes.push({ ok: true, value: this.drive(write.operation) });
          this.stmt('RELEASE w').run();
        } catch (error) {
          this.stmt('ROLLBACK TO w').run();
          this.stmt('RELEASE w').run();
          outcomes.push({ ok: false, value: error });
        }
      }
      this.stmt('COMMIT').run();
    } catch (error) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      for (const write of batch) write.reject(error);
      return;
    }
    batch.forEach((write, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) write.resolve(outcome.value);
      else write.reject(outcome.value);
    });
  }
}
