import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { machineActionToWire, entityContext } from '../../src/api/wire.js';
import type { MachineAction } from '../../src/domain/model.js';
import { analyzeDatabase, BENCH_APP_NAME, BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, BENCH_TENANT_ID, copyDatabase, machineId, machineName, type Dataset, type DatasetSpec } from './dataset.js';
import { httpJson } from './load.js';
import type { Build } from './processes.js';

/** Sizes and durations of one run; `quick` shrinks them all and is labelled as such. */
export interface Sizes {
  mode: 'full' | 'quick';
  dataset: DatasetSpec;
  /** autocannon connections for the read figures (the 50). */
  readConnections: number;
  readWarmupSeconds: number;
  /** Seconds measured per server and workload, split into `readRounds` alternating rounds. */
  readSeconds: number;
  readRounds: number;
  /** autocannon connections for creation and cancel. */
  writeConnections: number;
  /**
   * Seconds of creations measured per server, split into `writeRounds` alternating rounds; after
   * each round, the actions it created are cancelled (at most writeCancelMax per round).
   */
  writeSeconds: number;
  writeRounds: number;
  writeCancelMax: number;
  /** Creations (and their cancels) before the measurement, on machines the measurement does not use. */
  writeWarmup: number;
  /** Connected agents at which dispatch latency is sampled (the largest also gives memory). */
  agentLevels: number[];
  samples: number;
  startRuns: number;
}

export const FULL: Sizes = {
  mode: 'full',
  dataset: { actions: 1_000_000, idleMachines: 10_000, busyMachines: 2_000, historyDays: 90, seed: 20251127 },
  readConnections: 50,
  readWarmupSeconds: 5,
  readSeconds: 30,
  readRounds: 3,
  writeConnections: 100,
  writeSeconds: 15,
  writeRounds: 3,
  writeCancelMax: 30_000,
  writeWarmup: 2_000,
  agentLevels: [1_000, 10_000],
  samples: 500,
  startRuns: 7,
};

export const QUICK: Sizes = {
  mode: 'quick',
  dataset: { actions: 100_000, idleMachines: 1_000, busyMachines: 200, historyDays: 90, seed: 20251127 },
  readConnections: 50,
  readWarmupSeconds: 2,
  readSeconds: 6,
  readRounds: 2,
  writeConnections: 100,
  writeSeconds: 5,
  writeRounds: 1,
  writeCancelMax: 10_000,
  writeWarmup: 500,
  agentLevels: [1_000],
  samples: 200,
  startRuns: 3,
};

/** The settings every Countermand start in the benchmarks gets (through its environment). */
export const POLL_SECONDS = 120;
export const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  COUNTERMAND_LOG_LEVEL: 'warn',
  COUNTERMAND_DEMO_FLEET: '0',
  COUNTERMAND_RATE_LIMITS_ENABLED: 'true',
  COUNTERMAND_RATE_LIMIT_SCALE: '1000000',
  COUNTERMAND_AGENT_POLL_SECONDS: String(POLL_SECONDS),
  // Every benchmark client and agent (10,000 of them) connects from loopback: no per-source cap.
  COUNTERMAND_MAX_CONNECTIONS_PER_SOURCE: '0',
};

export interface RunContext {
  root: string;
  sizes: Sizes;
  build: Build;
  dataset: Dataset;
  workDir: string;
  /** The fixed MachineAction the baseline returns. */
  fixedActionPath: string;
  /**
   * What-if only (--what-if-analyze): give SQLite's planner statistics (PRAGMA optimize) on each
   * copy before the server opens it. The product does not do this; results are labelled.
   */
  analyze: boolean;
  log(line: string): void;
}

/** A fresh data directory holding a private copy of the prepared database. */
export function dataDirWithCopy(ctx: RunContext, name: string): string {
  const dir = join(ctx.workDir, name);
  mkdirSync(dir, { recursive: true });
  copyDatabase(ctx.dataset, dir);
  if (ctx.analyze) analyzeDatabase(join(dir, 'countermand.db'));
  return dir;
}

/**
 * The baseline's fixed body: a finished Isolate shaped like the dataset's actions, serialised by
 * the product's own wire mapping (same fields, order and time format as the server's answers).
 */
export function writeFixedAction(workDir: string): string {
  const at = Date.UTC(2025, 10, 20, 10, 0, 0, 123);
  const action: MachineAction = {
    id: '2f1d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b',
    tenantId: BENCH_TENANT_ID,
    type: 'Isolate',
    title: null,
    requestor: BENCH_APP_NAME,
    requestorId: BENCH_CLIENT_ID,
    requestorComment: 'bench: Isolate requested by playbook run 123456789',
    status: 'Succeeded',
    machineId: machineId(0),
    computerDnsName: machineName(0),
    creationDateTimeUtc: at,
    lastUpdateDateTimeUtc: at + 42_000,
    cancellationRequestor: null,
    cancellationComment: null,
    cancellationDateTimeUtc: null,
    errorHResult: 0,
    scope: 'Full',
    externalId: null,
    requestSource: 'PublicApi',
    relatedFileInfo: null,
    commands: [],
    troubleshootInfo: null,
    conflictKey: 'Isolation',
    startedAt: at + 3_000,
  };
  const path = join(workDir, 'fixed-action.json');
  writeFileSync(path, JSON.stringify({ '@odata.context': entityContext('http://127.0.0.1:8080', 'MachineActions'), ...machineActionToWire(action) }));
  return path;
}

/** A bearer token from the server's own token endpoint (client credentials), as a SOAR client gets one. */
export async function benchToken(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/${BENCH_TENANT_ID}/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: BENCH_CLIENT_ID,
      client_secret: BENCH_CLIENT_SECRET,
      scope: 'https://api.securitycenter.microsoft.com/.default',
    }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

/** Fails loudly when a probe request does not answer as the benchmark expects. */
export async function expectStatus(url: string, status: number, headers: Record<string, string>, method = 'GET', body?: unknown): Promise<unknown> {
  const res = await httpJson(method, url, body, headers);
  if (res.status !== status) throw new Error(`${method} ${url}: expected ${status}, got ${res.status}: ${res.text.slice(0, 400)}`);
  return res.body;
}

/** A uniform random element. */
export const pick = <T>(values: readonly T[]): T => values[Math.floor(Math.random() * values.length)]!;
