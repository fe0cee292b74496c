import http from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AgentFleet, request, type BenchAgent } from '../lib/agents.js';
import { benchToken, dataDirWithCopy, POLL_SECONDS, SERVER_SETTINGS, type RunContext } from '../lib/context.js';
import { agentToken, machineId } from '../lib/dataset.js';
import { roundSummary } from '../lib/load.js';
import { startBaseline, startCountermand, type MemorySnapshot, type ServerProcess } from '../lib/processes.js';
import { round, sleep, summarize, type Summary } from '../lib/stats.js';

/**
 * Dispatch and cancel latency with N connected agents, and the memory each idle agent costs.
 *
 * N agents each hold one check-in open (raw node:http, one keep-alive socket each). Memory: the
 * server's anonymous resident memory (RssAnon, after a forced full GC) with the N check-ins
 * parked, minus the same with none, divided by N. Latency, for a sample of the agents, one at a time:
 *   dispatch = t(POST /api/machines/{id}/isolate written) -> t(that agent's check-in answer
 *              carrying the new action has fully arrived);
 *   then the agent starts it (POST /agent/v1/actions/{id}/start) and checks in again with it in
 *   `running`; after PARK_MS (so the check-in is parked, not in flight)
 *   cancel   = t(POST /api/machineactions/{id}/cancel written) -> t(the check-in answer with it in
 *              `stop` as Cancelled has arrived).
 * All times are taken in this process with performance.now().
 */

const PARK_MS = 25;

export interface LevelResult {
  agents: number;
  samples: number;
  failures: number;
  dispatchMs: Summary;
  cancelMs: Summary;
  /** The API calls' own latency (create answered, cancel answered), for context. */
  createApiMs: Summary;
  cancelApiMs: Summary;
  /** Seconds to open the check-ins of this level until the server had taken them all in. */
  connectSeconds: number;
}

export interface MemoryPoint {
  agents: number;
  snapshot: MemorySnapshot;
  rssPerAgentBytes: number;
  heapPerAgentBytes: number;
}

export interface TargetDispatch {
  idle: MemorySnapshot;
  memory: MemoryPoint[];
  levels: LevelResult[];
  problems: string[];
  /** Check-ins that timed out (empty answers) during the phase: should be 0 with a 120 s poll. */
  emptyAnswers: number;
}

export interface DispatchResults {
  server: TargetDispatch;
  baseline: TargetDispatch;
  levels: number[];
  pollSeconds: number;
  parkMs: number;
  serverWarnings: string[];
}

interface Target {
  process: ServerProcess;
  apiHeaders: Record<string, string>;
  /**
   * How many of the fleet's check-ins the server holds, given that `before` were held when the
   * fleet last grew, at `since` (epoch ms).
   */
  checkedIn(before: number, since: number): Promise<number>;
}

async function waitCheckedIn(ctx: RunContext, target: Target, before: number, expected: number, since: number): Promise<void> {
  const deadline = Date.now() + 180_000;
  let seen = 0;
  while ((seen = await target.checkedIn(before, since)) < expected) {
    if (Date.now() > deadline) throw new Error(`${target.process.name}: only ${seen} of ${expected} check-ins arrived within 180 s`);
    await sleep(250);
  }
  ctx.log(`  ${target.process.name}: ${seen} check-ins parked`);
  await sleep(1_000);
}

async function oneSample(agent: BenchAgent, target: Target, api: http.Agent): Promise<{ dispatch: number; cancel: number; createApi: number; cancelApi: number }> {
  const url = new URL(target.process.url);
  const headers = target.apiHeaders;
  const delivered = agent.nextAnswer(15_000);
  const t0 = performance.now();
  const created = await request(api, url, 'POST', `/api/machines/${agent.credentials.machineId}/isolate`, headers, {
    Comment: 'bench dispatch',
    IsolationType: 'Full',
  });
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body).slice(0, 300)}`);
  const id = (created.body as { id: string }).id;
  const got = await delivered;
  if (!got.body.actions.some((a) => a.id === id)) throw new Error(`the agent's answer did not carry ${id}: ${JSON.stringify(got.body).slice(0, 300)}`);

  const start = await agent.call('POST', `/agent/v1/actions/${id}/start`);
  if ((start.body as { run?: boolean }).run !== true) throw new Error(`start answered ${start.status}: ${JSON.stringify(start.body)}`);
  await agent.poll([id]);
  await sleep(PARK_MS);
  const told = agent.nextAnswer(15_000);
  const t2 = performance.now();
  const cancelled = await request(api, url, 'POST', `/api/machineactions/${id}/cancel`, headers, { Comment: 'bench cancel' });
  if (cancelled.status !== 200) throw new Error(`cancel answered ${cancelled.status}: ${JSON.stringify(cancelled.body).slice(0, 300)}`);
  const stop = await told;
  if (!stop.body.stop.some((s) => s.id === id && s.status === 'Cancelled')) throw new Error(`the agent was not told to stop ${id}: ${JSON.stringify(stop.body)}`);
  await agent.poll([]);
  return { dispatch: got.at - t0, cancel: stop.at - t2, createApi: created.at - t0, cancelApi: cancelled.at - t2 };
}

async function sampleLevel(ctx: RunContext, target: Target, fleet: AgentFleet, level: number, connectSeconds: number): Promise<LevelResult> {
  const api = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const dispatch: number[] = [];
  const cancel: number[] = [];
  const createApi: number[] = [];
  const cancelApi: number[] = [];
  let failures = 0;
  const samples = ctx.sizes.samples;
  // A few unrecorded rounds first, so JIT and caches are as warm as for the load figures.
  for (let s = -10; s < samples; s++) {
    const index = s < 0 ? level - 1 + s : Math.floor(((s + 0.5) * level) / samples);
    const agent = fleet.agents[index]!;
    try {
      const r = await oneSample(agent, target, api);
      if (s < 0) continue;
      dispatch.push(r.dispatch);
      cancel.push(r.cancel);
      createApi.push(r.createApi);
      cancelApi.push(r.cancelApi);
    } catch (error) {
      failures++;
      fleet.problem(`sample ${s} (agent ${index}): ${(error as Error).message}`);
      if (failures > samples / 10) throw new Error(`${target.process.name}: too many failed samples: ${fleet.problems.join('\n')}`);
      agent.disconnect();
      await agent.poll([]);
    }
    await sleep(2);
  }
  api.destroy();
  const result: LevelResult = {
    agents: level,
    samples: dispatch.length,
    failures,
    dispatchMs: roundSummary(summarize(dispatch)),
    cancelMs: roundSummary(summarize(cancel)),
    createApiMs: roundSummary(summarize(createApi)),
    cancelApiMs: roundSummary(summarize(cancelApi)),
    connectSeconds: round(connectSeconds, 2),
  };
  ctx.log(
    `  ${target.process.name} @${level} agents: dispatch p50 ${result.dispatchMs.p50} / p99 ${result.dispatchMs.p99} ms; cancel p50 ${result.cancelMs.p50} / p99 ${result.cancelMs.p99} ms; failures ${failures}`,
  );
  return result;
}

async function runTarget(ctx: RunContext, target: Target, levels: number[]): Promise<TargetDispatch> {
  const max = levels[levels.length - 1]!;
  const fleet = new AgentFleet(
    target.process.url,
    Array.from({ length: max }, (_, i) => ({ index: i, machineId: machineId(i), token: agentToken(i) })),
  );
  try {
    await sleep(1_000);
    const idle = await target.process.memory();
    ctx.log(`  ${target.process.name}: idle RSS ${(idle.rss / 2 ** 20).toFixed(1)} MiB, heap ${(idle.heapUsed / 2 ** 20).toFixed(1)} MiB`);
    const memory: MemoryPoint[] = [];
    const connectSeconds = new Map<number, number>();
    let connected = 0;
    for (const level of levels) {
      const since = Date.now();
      const t = performance.now();
      await fleet.connect(connected, level);
      await waitCheckedIn(ctx, target, connected, level, since);
      connectSeconds.set(level, (performance.now() - t) / 1000);
      connected = level;
      const snapshot = await target.process.memory();
      const point = {
        agents: level,
        snapshot,
        rssPerAgentBytes: Math.round((snapshot.rss - idle.rss) / level),
        heapPerAgentBytes: Math.round((snapshot.heapUsed - idle.heapUsed) / level),
      };
      memory.push(point);
      ctx.log(`  ${target.process.name} @${level} idle agents: RSS +${(point.rssPerAgentBytes / 1000).toFixed(1)} KB/agent, heap +${(point.heapPerAgentBytes / 1000).toFixed(1)} KB/agent`);
    }

    const results: LevelResult[] = [];
    // Latency from the smallest level up: the agents above it are disconnected, then reconnected.
    fleet.disconnect(levels[0]!, max);
    await sleep(2_000);
    connected = levels[0]!;
    for (const level of levels) {
      if (level > connected) {
        const since = Date.now();
        const t = performance.now();
        await fleet.connect(connected, level);
        await waitCheckedIn(ctx, target, connected, level, since);
        connectSeconds.set(level, (performance.now() - t) / 1000);
        connected = level;
      }
      results.push(await sampleLevel(ctx, target, fleet, level, connectSeconds.get(level) ?? 0));
    }
    return {
      idle,
      memory,
      levels: results,
      problems: [...fleet.problems],
      emptyAnswers: fleet.agents.reduce((n, a) => n + a.emptyAnswers, 0),
    };
  } finally {
    fleet.close();
  }
}

/** The levels this process can hold sockets for (one per agent, plus slack), given `ulimit -n`. */
export function feasibleLevels(levels: number[], openFiles: number): number[] {
  return levels.filter((n) => n + 512 <= openFiles);
}

export async function runDispatch(ctx: RunContext, levels: number[]): Promise<DispatchResults> {
  ctx.log('dispatch: baseline');
  const baselineProcess = await startBaseline({ build: ctx.build, fixedActionPath: ctx.fixedActionPath, pollSeconds: POLL_SECONDS, probe: true });
  let baseline: TargetDispatch;
  try {
    baseline = await runTarget(
      ctx,
      {
        process: baselineProcess,
        apiHeaders: { authorization: 'Bearer x.y.z' },
        // The baseline says how many check-ins it holds parked.
        checkedIn: async () => {
          const res = await fetch(`${baselineProcess.url}/__bench/waiting`);
          return ((await res.json()) as { waiting: number }).waiting;
        },
      },
      levels,
    );
  } finally {
    await baselineProcess.stop();
  }

  ctx.log('dispatch: countermand');
  const dataDir = dataDirWithCopy(ctx, 'dispatch');
  const server = await startCountermand({ build: ctx.build, dataDir, fixturesPath: ctx.dataset.fixturesPath, settings: { ...SERVER_SETTINGS }, probe: true });
  const db = new Database(join(dataDir, 'countermand.db'), { readonly: true, fileMustExist: true });
  const count = db.prepare(`SELECT COUNT(*) AS n FROM machines WHERE health_status = 'Active' AND last_seen >= ?`);
  try {
    const token = await benchToken(server.url);
    const measured = await runTarget(
      ctx,
      {
        process: server,
        apiHeaders: { authorization: `Bearer ${token}` },
        // Every check-in records last_seen (committed before it parks): the machines seen since
        // the fleet grew are the new check-ins.
        checkedIn: async (before, since) => before + Number((count.get(since) as { n: number }).n),
      },
      levels,
    );
    return { server: measured, baseline, levels, pollSeconds: POLL_SECONDS, parkMs: PARK_MS, serverWarnings: server.warnings };
  } finally {
    db.close();
    await server.stop();
  }
}
