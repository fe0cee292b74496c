/**
 * `npx tsx bench/event-stream-cost.ts [--pg postgres://...]`
 *
 * What the event stream costs the hot paths when nobody listens (docs/action-center.md): the same
 * create-then-cancel workload through ActionsService, in alternating rounds, without an observer
 * (the baseline: the code before the stream existed) and with the server's observer (the notifier
 * and this node's ActionChanges, no stream open). Prints the median throughput of each and their
 * ratio. With --pg, the same on PostgreSQL, and how many changes each NOTIFY carried.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { LocalNotifier, PostgresNotifier, Waiters, type Notifier } from '../src/dispatch/waiters.js';
import type { Caller } from '../src/domain/caller.js';
import type { Store } from '../src/domain/store.js';
import { fixtureMachine } from '../src/fixtures.js';
import { ActionChanges } from '../src/services/action-changes.js';
import { ActionsService } from '../src/services/actions.js';
import { MachinesService } from '../src/services/machines.js';
import { PostgresStore } from '../src/store/postgres/postgres-store.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';

const MACHINES = 200;
const PER_ROUND = 2000;
const CONCURRENCY = 50;
const ROUNDS = 7;

async function seed(store: Store): Promise<{ caller: Caller; machineIds: string[] }> {
  const tenantId = randomUUID();
  await store.upsertTenant({ id: tenantId, name: 'bench' });
  const machineIds: string[] = [];
  for (let i = 0; i < MACHINES; i++) {
    const id = randomUUID().replace(/-/g, '') + randomUUID().slice(0, 8);
    await store.upsertMachine(fixtureMachine(tenantId, { id, computerDnsName: `m${i}.bench`, rbacGroupId: 1 } as never, Date.now()));
    machineIds.push(id);
  }
  const caller: Caller = {
    tenantId,
    kind: 'application',
    id: randomUUID(),
    displayName: 'bench',
    permissions: new Set(),
    rolePermissions: null,
    deviceGroups: null,
  };
  return { caller, machineIds };
}

/** Create-then-cancel, CONCURRENCY at a time; returns operations (creates + cancels) per second. */
async function round(actions: ActionsService, caller: Caller, machineIds: string[]): Promise<number> {
  const began = process.hrtime.bigint();
  let next = 0;
  const worker = async (w: number) => {
    for (;;) {
      const i = next++;
      if (i >= PER_ROUND) return;
      const machine = machineIds[(i * CONCURRENCY + w) % machineIds.length]!;
      const action = await actions.create(caller, machine, 'RunAntiVirusScan', { Comment: 'bench', ScanType: 'Quick' }).catch(() => null);
      if (action) await actions.cancel(caller, action, 'bench');
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  return (PER_ROUND * 2) / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function compare(label: string, store: Store, notifier: (changes: ActionChanges) => Promise<Notifier>): Promise<void> {
  const { caller, machineIds } = await seed(store);
  const machines = new MachinesService(store);
  const bare = new ActionsService({ store, machines });
  const observed = new ActionsService({ store, machines });
  const changes = new ActionChanges(store);
  const n = await notifier(changes);
  observed.observeChanges((change) => n.publish(change));
  await round(bare, caller, machineIds); // warm-up
  await round(observed, caller, machineIds);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    a.push(await round(bare, caller, machineIds));
    b.push(await round(observed, caller, machineIds));
  }
  await n.close();
  const [ma, mb] = [median(a), median(b)];
  console.log(`${label}: without observer ${ma.toFixed(0)} ops/s, with the stream's observer ${mb.toFixed(0)} ops/s, ratio ${(mb / ma).toFixed(3)} (median of ${ROUNDS} alternating rounds of ${PER_ROUND} create+cancel)`);
}

const dir = mkdtempSync(join(tmpdir(), 'countermand-bench-stream-'));
try {
  const sqlite = SqliteStore.open(join(dir, 'bench.db'));
  await compare('SQLite', sqlite, async (changes) => new LocalNotifier(new Waiters(), changes));
  await sqlite.close();

  const pgIndex = process.argv.indexOf('--pg');
  if (pgIndex > 0) {
    const url = process.argv[pgIndex + 1]!;
    const name = `cm_bench_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const dbUrl = new URL(url);
    dbUrl.pathname = `/${name}`;
    const store = await PostgresStore.connect(dbUrl.toString());
    const listener = new pg.Client({ connectionString: dbUrl.toString() });
    await listener.connect();
    let messages = 0;
    let refs = 0;
    listener.on('notification', (m) => {
      if (m.channel !== 'countermand_changes') return;
      messages++;
      refs += (m.payload ?? '').split(';').length;
    });
    await listener.query('LISTEN countermand_changes');
    await compare('PostgreSQL', store, (changes) => PostgresNotifier.start(new Waiters(), store.pool, (e) => console.error(e), changes));
    await new Promise((r) => setTimeout(r, 500));
    console.log(`PostgreSQL: ${refs} changes in ${messages} NOTIFY messages (${(refs / Math.max(1, messages)).toFixed(1)} per message)`);
    await listener.end();
    await store.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
