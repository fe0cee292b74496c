import Database from 'better-sqlite3';
import { MACHINE_ACTION_SET } from '../../src/domain/query-sets.js';
import { parseQueryOptions } from '../../src/odata/index.js';
import { ACTION_LIST, listSql, SELECT_ACTION, SELECT_ACTIVE_FOR_MACHINE, SELECT_MACHINE_BY } from '../../src/store/sql/queries.js';
import { BENCH_TENANT_ID, machineId, type Dataset } from './dataset.js';
import { round } from './stats.js';

/**
 * Diagnostics that go with the figures: SQLite's plan for the queries on the measured paths,
 * and their time in this process, on the prepared database as the server gets it (before the
 * server's own `PRAGMA optimize` at open). Built from the product's own SQL.
 */
export interface QueryPlan {
  name: string;
  sql: string;
  plan: string;
  meanMs: number;
}

export function explainHotQueries(dataset: Dataset): QueryPlan[] {
  const db = new Database(dataset.dbPath, { readonly: true, fileMustExist: true });
  try {
    const busy = dataset.busyMachineIds[0]!;
    const filter = parseQueryOptions(
      `$filter=${encodeURIComponent(`machineId eq '${busy}' and status in ('Pending','InProgress')`)}&$top=100`,
      MACHINE_ACTION_SET,
    );
    const list = listSql(ACTION_LIST, MACHINE_ACTION_SET, BENCH_TENANT_ID, { filter: filter.filter, orderBy: [], top: 100, skip: 0, count: false, deviceGroups: null }, 'a.created_at DESC');
    const idle = machineId(0);
    const queries: { name: string; sql: string; params: unknown[] }[] = [
      { name: 'GET /api/machineactions/{id}: the action', sql: SELECT_ACTION, params: [BENCH_TENANT_ID, dataset.sampleActionIds[0]] },
      { name: "GET /api/machineactions?$filter=machineId eq '...' and status in (...)&$top=100", sql: list.page.sql, params: list.page.params },
      { name: 'POST /api/machines/{id}/isolate: the machine by id', sql: SELECT_MACHINE_BY.id, params: [BENCH_TENANT_ID, idle] },
      { name: "Agent check-in: the machine's active actions", sql: SELECT_ACTIVE_FOR_MACHINE, params: [BENCH_TENANT_ID, busy] },
    ];
    return queries.map((q) => {
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${q.sql}`).all(...q.params) as { detail: string }[]).map((r) => r.detail).join('; ');
      const statement = db.prepare(q.sql);
      statement.all(...q.params);
      let runs = 0;
      const started = performance.now();
      while (runs < 200 && performance.now() - started < 3_000) {
        statement.all(...q.params);
        runs++;
      }
      return { name: q.name, sql: q.sql.replace(/\s+/g, ' '), plan, meanMs: round((performance.now() - started) / runs, 3) };
    });
  } finally {
    db.close();
  }
}
