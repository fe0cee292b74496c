import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import type { RunContext } from '../lib/context.js';
import { withoutCountermandSettings } from '../lib/processes.js';
import { median, round, sleep } from '../lib/stats.js';

/**
 * Time from start to ready: from spawning `node <cli> serve --port P --data-dir D` (the embedded
 * default: SQLite, demo fleet of 3 on, default settings) to the first HTTP response from it
 * (GET /api/machines without a token: 401), polled every POLL_MS over fresh connections. Cold:
 * an empty data directory each time (creates the database, the signing key, the demo tenant and
 * application). Warm: again on a data directory a cold start left. The baseline: the bare
 * Fastify server, same polling. The port is chosen free just before each start (the issue's
 * `--port 0` cannot be polled without reading the server's output).
 */

const POLL_MS = 5;

export interface StartRun {
  readyMs: number;
  /** Until Countermand printed "listening" (after the demo fleet has enrolled), when it did. */
  listeningLineMs: number | null;
}

export interface StartupResults {
  cold: StartRun[];
  warm: StartRun[];
  baseline: StartRun[];
  coldMedianMs: number;
  warmMedianMs: number;
  baselineMedianMs: number;
  pollMs: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api/machines', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(true));
    });
    req.on('error', () => resolve(false));
    req.setTimeout(2_000, () => {
      req.destroy();
      resolve(false);
    });
  });
}

async function timeStart(args: string[], env: NodeJS.ProcessEnv, port: number, listening: RegExp | null): Promise<StartRun> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let listeningLineMs: number | null = null;
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
    if (listeningLineMs === null && listening?.test(stderr)) listeningLineMs = performance.now() - t0;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the process exited before answering:\n${stderr}`);
      if (await answers(port)) break;
      if (performance.now() - t0 > 60_000) throw new Error(`no answer within 60 s:\n${stderr}`);
      await sleep(POLL_MS);
    }
    const readyMs = performance.now() - t0;
    // Let the demo fleet finish enrolling (the data dir is reused warm), then stop.
    if (listening) {
      const until = performance.now() + 30_000;
      while (listeningLineMs === null && performance.now() < until) await sleep(20);
    }
    return { readyMs: round(readyMs, 1), listeningLineMs: listeningLineMs === null ? null : round(listeningLineMs, 1) };
  } finally {
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(kill);
  }
}

export async function runStartup(ctx: RunContext): Promise<StartupResults> {
  const env = withoutCountermandSettings(process.env);
  const cold: StartRun[] = [];
  const warm: StartRun[] = [];
  const baseline: StartRun[] = [];
  const listening = /Countermand is listening on/;
  for (let i = 0; i < ctx.sizes.startRuns; i++) {
    const dataDir = join(ctx.workDir, `start-${i}`);
    mkdirSync(dataDir, { recursive: true });
    let port = await freePort();
    cold.push(await timeStart([ctx.build.cli, 'serve', '--port', String(port), '--data-dir', dataDir], env, port, listening));
    port = await freePort();
    warm.push(await timeStart([ctx.build.cli, 'serve', '--port', String(port), '--data-dir', dataDir], env, port, listening));
    port = await freePort();
    baseline.push(
      await timeStart([ctx.build.baseline], { ...env, BENCH_PORT: String(port), BENCH_FIXED_ACTION: ctx.fixedActionPath }, port, null),
    );
    ctx.log(`  start ${i + 1}/${ctx.sizes.startRuns}: cold ${cold[i]!.readyMs} ms, warm ${warm[i]!.readyMs} ms, baseline ${baseline[i]!.readyMs} ms`);
  }
  return {
    cold,
    warm,
    baseline,
    coldMedianMs: median(cold.map((r) => r.readyMs)),
    warmMedianMs: median(warm.map((r) => r.readyMs)),
    baselineMedianMs: median(baseline.map((r) => r.readyMs)),
    pollMs: POLL_MS,
  };
}
