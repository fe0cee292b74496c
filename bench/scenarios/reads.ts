import { benchToken, dataDirWithCopy, expectStatus, pick, SERVER_SETTINGS, type RunContext } from '../lib/context.js';
import { pool, runLoad, runLoadRaw, settle, type LoadResult, type LoadSpec, type RawLoad } from '../lib/load.js';
import { startBaseline, startCountermand, type ServerProcess } from '../lib/processes.js';

/**
 * GET /api/machineactions/{id} and the per-machine active-actions list over the prepared
 * database, with the same autocannon settings against the baseline and against Countermand.
 * Both servers run (the idle one costs nothing); each workload is measured in rounds that
 * alternate which server goes first, so a burst of noise on the shared machine lands on both.
 */

export interface ReadPair {
  server: LoadResult;
  baseline: LoadResult;
}

export interface ReadResults {
  getById: ReadPair;
  list: ReadPair;
  /** One real response of each kind, to show what was measured. */
  sampleBytes: { getById: number; list: number; listItems: number };
  /** Seconds Countermand kept answering requests that were queued when a run ended. */
  serverBacklogSeconds: { getById: number; list: number };
  serverWarnings: string[];
}

export const listPath = (machine: string) =>
  `/api/machineactions?$filter=${encodeURIComponent(`machineId eq '${machine}' and status in ('Pending','InProgress')`)}&$top=100`;

interface Side {
  process: ServerProcess;
  headers: Record<string, string>;
}

/**
 * Warm-up on both, then `rounds` alternating measurements. Returns the pooled results and how
 * long the server needed to work off what was queued when its runs ended.
 */
async function measurePair(ctx: RunContext, server: Side, baseline: Side, path: () => string, label: string): Promise<ReadPair & { backlog: number }> {
  const { readConnections: connections, readWarmupSeconds, readSeconds, readRounds } = ctx.sizes;
  const spec = (side: Side, duration: number): LoadSpec => ({ url: side.process.url, connections, duration, method: 'GET', headers: side.headers, path });
  ctx.log(`  ${label}: warm-up ${readWarmupSeconds} s each, then ${readRounds} x ${readSeconds / readRounds} s each at ${connections} connections`);
  for (const side of [baseline, server]) {
    await runLoad(spec(side, readWarmupSeconds));
    await settle(side.process.url);
  }
  const runs = new Map<Side, RawLoad[]>([
    [server, []],
    [baseline, []],
  ]);
  let backlog = 0;
  for (let round = 0; round < readRounds; round++) {
    for (const side of round % 2 === 0 ? [baseline, server] : [server, baseline]) {
      const run = await runLoadRaw(spec(side, readSeconds / readRounds));
      runs.get(side)!.push(run);
      const drained = await settle(side.process.url);
      if (side === server) backlog = Math.max(backlog, drained);
      ctx.log(`    ${side.process.name}: ${run.result.okPerSecond} 2xx/s, p50 ${run.result.latencyMs.p50} ms, p99 ${run.result.latencyMs.p99} ms, non-2xx ${run.result.non2xx}, errors ${run.result.errors}`);
    }
  }
  if (backlog > 1) ctx.log(`    countermand kept working off queued requests for ${backlog.toFixed(1)} s after a run`);
  return { server: pool(runs.get(server)!), baseline: pool(runs.get(baseline)!), backlog };
}

export async function runReads(ctx: RunContext): Promise<ReadResults> {
  const ids = ctx.dataset.sampleActionIds;
  const busy = ctx.dataset.busyMachineIds;
  const byId = () => `/api/machineactions/${pick(ids)}`;
  const list = () => listPath(pick(busy));

  const baselineProcess = await startBaseline({ build: ctx.build, fixedActionPath: ctx.fixedActionPath, pollSeconds: 120, probe: false });
  let serverProcess: ServerProcess | undefined;
  try {
    serverProcess = await startCountermand({
      build: ctx.build,
      dataDir: dataDirWithCopy(ctx, 'reads'),
      fixturesPath: ctx.dataset.fixturesPath,
      settings: { ...SERVER_SETTINGS },
      probe: false,
    });
    const server: Side = { process: serverProcess, headers: { authorization: `Bearer ${await benchToken(serverProcess.url)}` } };
    // The baseline gets an Authorization header of the same shape (and ignores it).
    const baseline: Side = { process: baselineProcess, headers: { authorization: server.headers.authorization! } };

    const one = (await expectStatus(`${server.process.url}${byId()}`, 200, server.headers)) as { id?: string };
    if (!one.id) throw new Error('GET by id returned no action');
    const listed = (await expectStatus(`${server.process.url}${listPath(busy[0]!)}`, 200, server.headers)) as { value?: unknown[] };
    if (!listed.value || listed.value.length === 0) throw new Error('the list of a busy machine is empty');

    const getById = await measurePair(ctx, server, baseline, byId, 'GET /api/machineactions/{id}');
    const listed2 = await measurePair(ctx, server, baseline, list, "GET /api/machineactions?$filter=machineId eq '...' and status in (...)&$top=100");
    return {
      getById: { server: getById.server, baseline: getById.baseline },
      list: { server: listed2.server, baseline: listed2.baseline },
      sampleBytes: { getById: JSON.stringify(one).length, list: JSON.stringify(listed).length, listItems: listed.value.length },
      serverBacklogSeconds: { getById: getById.backlog, list: listed2.backlog },
      serverWarnings: serverProcess.warnings,
    };
  } finally {
    await serverProcess?.stop();
    await baselineProcess.stop();
  }
}
