import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BENCH_TENANT_ID, machineId } from '../lib/dataset.js';
import { benchToken, dataDirWithCopy, expectStatus, SERVER_SETTINGS, type RunContext } from '../lib/context.js';
import { pool, runLoad, runLoadRaw, settle, type LoadResult, type RawLoad } from '../lib/load.js';
import { startBaseline, startCountermand, type ServerProcess } from '../lib/processes.js';

/**
 * Action creation and cancel throughput on SQLite (synchronous=FULL, group commit).
 *
 * Creations run for a fixed time per round. Creation k (counted over all rounds) goes to idle
 * machine k mod M in conflict group floor(k / M) (Isolation, RunAntiVirusScan,
 * CollectInvestigationPackage, CodeExecution), and past 4M creations to StopAndQuarantineFile
 * with a fresh file hash, so no request is refused for an active action of its group. After
 * each creation round, the actions it created (at most writeCancelMax, in random order) are
 * cancelled at the same concurrency. Rounds alternate which server goes first. Before the
 * rounds, both servers get a warm-up of StopAndQuarantineFile creations on the busy machines
 * and their cancels, which touch none of the measured conflict groups.
 */

export interface WriteResults {
  create: { server: LoadResult; baseline: LoadResult };
  cancel: { server: LoadResult; baseline: LoadResult };
  /** Pending actions Countermand's creation rounds left for the cancel rounds. */
  cancelTargets: number;
  serverWarnings: string[];
}

const GROUPS = [
  { route: 'isolate', body: JSON.stringify({ Comment: 'bench create', IsolationType: 'Full' }) },
  { route: 'runAntiVirusScan', body: JSON.stringify({ Comment: 'bench create', ScanType: 'Quick' }) },
  { route: 'collectInvestigationPackage', body: JSON.stringify({ Comment: 'bench create' }) },
  { route: 'restrictCodeExecution', body: JSON.stringify({ Comment: 'bench create' }) },
] as const;
const CANCEL_BODY = JSON.stringify({ Comment: 'bench cancel' });

/** The creation workload: path and body of request k, in order, over all rounds. */
function creations(machines: number): { path: () => string; body: () => string } {
  let k = 0;
  let body = '';
  return {
    path: () => {
      const group = GROUPS[Math.floor(k / machines)];
      const machine = machineId(k % machines);
      k++;
      if (group) {
        body = group.body;
        return `/api/machines/${machine}/${group.route}`;
      }
      body = JSON.stringify({ Comment: 'bench create', Sha1: randomBytes(20).toString('hex') });
      return `/api/machines/${machine}/StopAndQuarantineFile`;
    },
    body: () => body,
  };
}

interface Side {
  process: ServerProcess;
  headers: Record<string, string>;
  /** The Pending actions created since `since` by the warm-up or a measured round (which got `created` 2xx). */
  pendingSince(since: number, type: 'warmup' | 'measured', created: number): string[];
  work: { path: () => string; body: () => string };
  creates: RawLoad[];
  cancels: RawLoad[];
  cancelTargets: number;
}

function cancelLoad(ctx: RunContext, side: Side, ids: string[]) {
  let c = 0;
  return runLoadRaw({
    url: side.process.url,
    connections: Math.min(ctx.sizes.writeConnections, ids.length),
    amount: ids.length,
    method: 'POST',
    headers: side.headers,
    body: CANCEL_BODY,
    path: () => `/api/machineactions/${ids[c++]}/cancel`,
  });
}

async function warmUp(ctx: RunContext, side: Side): Promise<void> {
  const busy = ctx.dataset.busyMachineIds;
  let k = 0;
  const since = Date.now();
  const warmed = await runLoad({
    url: side.process.url,
    connections: ctx.sizes.writeConnections,
    amount: ctx.sizes.writeWarmup,
    method: 'POST',
    headers: side.headers,
    path: () => `/api/machines/${busy[k++ % busy.length]}/StopAndQuarantineFile`,
    bodyFor: () => JSON.stringify({ Comment: 'bench warm-up', Sha1: randomBytes(20).toString('hex') }),
  });
  await settle(side.process.url);
  const ids = side.pendingSince(since, 'warmup', warmed.ok);
  if (ids.length === 0) throw new Error(`${side.process.name}: the warm-up created nothing: ${JSON.stringify(warmed.statusCodes)}`);
  await cancelLoad(ctx, side, ids);
}

async function round(ctx: RunContext, side: Side): Promise<void> {
  const { writeConnections: connections, writeSeconds, writeRounds, writeCancelMax } = ctx.sizes;
  const since = Date.now();
  const create = await runLoadRaw({
    url: side.process.url,
    connections,
    duration: writeSeconds / writeRounds,
    method: 'POST',
    headers: side.headers,
    path: side.work.path,
    bodyFor: side.work.body,
  });
  side.creates.push(create);
  const c = create.result;
  ctx.log(`    ${side.process.name} create: ${c.okPerSecond} 2xx/s, p99 ${c.latencyMs.p99} ms, codes ${JSON.stringify(c.statusCodes)}, errors ${c.errors}`);
  await settle(side.process.url);
  const ids = side.pendingSince(since, 'measured', c.ok).slice(0, writeCancelMax);
  if (ids.length === 0) throw new Error(`${side.process.name}: the creation round created nothing: ${JSON.stringify(c.statusCodes)}`);
  side.cancelTargets += ids.length;
  const cancel = await cancelLoad(ctx, side, ids);
  side.cancels.push(cancel);
  const x = cancel.result;
  ctx.log(`    ${side.process.name} cancel: ${x.okPerSecond} 2xx/s over ${x.requests}, p99 ${x.latencyMs.p99} ms, codes ${JSON.stringify(x.statusCodes)}, errors ${x.errors}`);
  await settle(side.process.url);
}

function shuffle<T>(values: T[]): T[] {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [values[i], values[j]] = [values[j]!, values[i]!];
  }
  return values;
}

export async function runWrites(ctx: RunContext): Promise<WriteResults> {
  const dataDir = dataDirWithCopy(ctx, 'writes');
  const baselineProcess = await startBaseline({ build: ctx.build, fixedActionPath: ctx.fixedActionPath, pollSeconds: 120, probe: false });
  let serverProcess: ServerProcess | undefined;
  let db: Database.Database | undefined;
  try {
    serverProcess = await startCountermand({ build: ctx.build, dataDir, fixturesPath: ctx.dataset.fixturesPath, settings: { ...SERVER_SETTINGS }, probe: false });
    const token = await benchToken(serverProcess.url);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    await expectStatus(`${serverProcess.url}/api/machines/${machineId(0)}`, 200, headers);
    // A read-only view of the server's database, to find the actions a phase created.
    const view = new Database(join(dataDir, 'countermand.db'), { readonly: true, fileMustExist: true });
    db = view;
    const created = view.prepare(`SELECT id FROM machine_actions WHERE tenant_id = ? AND created_at >= ? AND status = 'Pending' AND requestor_comment = ?`);
    const machines = ctx.dataset.spec.idleMachines;
    const server: Side = {
      process: serverProcess,
      headers,
      pendingSince: (since, type) =>
        shuffle((created.all(BENCH_TENANT_ID, since, type === 'warmup' ? 'bench warm-up' : 'bench create') as { id: string }[]).map((r) => r.id)),
      work: creations(machines),
      creates: [],
      cancels: [],
      cancelTargets: 0,
    };
    // The baseline keeps nothing that matters: its cancels get fresh GUIDs, as many as it created.
    const baseline: Side = {
      process: baselineProcess,
      headers,
      pendingSince: (_since, _type, n) => Array.from({ length: n }, () => randomUUID()),
      work: creations(machines),
      creates: [],
      cancels: [],
      cancelTargets: 0,
    };
    ctx.log(`  warm-up: ${ctx.sizes.writeWarmup} creations and their cancels on each server`);
    await warmUp(ctx, baseline);
    await warmUp(ctx, server);
    ctx.log(`  ${ctx.sizes.writeRounds} rounds of ${ctx.sizes.writeSeconds / ctx.sizes.writeRounds} s of creations and their cancels, ${ctx.sizes.writeConnections} connections`);
    for (let r = 0; r < ctx.sizes.writeRounds; r++) {
      for (const side of r % 2 === 0 ? [baseline, server] : [server, baseline]) await round(ctx, side);
    }
    return {
      create: { server: pool(server.creates), baseline: pool(baseline.creates) },
      cancel: { server: pool(server.cancels), baseline: pool(baseline.cancels) },
      cancelTargets: server.cancelTargets,
      serverWarnings: serverProcess.warnings,
    };
  } finally {
    db?.close();
    await serverProcess?.stop();
    await baselineProcess.stop();
  }
}
