import { createHash, randomUUID } from 'node:crypto';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { ActionStatus, ActionType, LiveResponseCommand, Machine, MachineAction } from '../../src/domain/model.js';
import { KNOWN_APP_ROLES } from '../../src/domain/permissions.js';
import type { Fixtures } from '../../src/fixtures.js';
import {
  INSERT_ACTION,
  INSERT_AGENT_CREDENTIAL,
  UPSERT_MACHINE,
  UPSERT_TENANT,
} from '../../src/store/sql/queries.js';
import { actionParams, agentCredentialParams, machineParams } from '../../src/store/sql/rows.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

/**
 * The prepared database: one tenant, machines, a long history of machine actions with their
 * events, and agent credentials, written straight into the SQLite file (with the product's own
 * migrations, column lists and row mappings) before the server starts. Enrolling through the API
 * would cost one scrypt per machine and creating a million actions over HTTP would take longer
 * than the benchmark itself.
 *
 * Layout (indices are stable, so scenarios can compute ids and tokens without reading the file):
 * - machines 0 .. idle-1 are "idle": only final actions, one agent credential each (dispatch
 *   benchmarks connect agents for them; write benchmarks create actions on them);
 * - machines idle .. idle+busy-1 are "busy": final history plus one or two Pending/InProgress
 *   actions in distinct conflict groups (the list benchmark queries them).
 */

export const BENCH_TENANT_ID = 'be4c0000-0000-4000-8000-000000000001';
export const BENCH_CLIENT_ID = 'be4c0000-0000-4000-8000-0000000000a1';
export const BENCH_CLIENT_SECRET = 'countermand-bench-secret-0123456789';
export const BENCH_APP_NAME = 'Bench SOAR playbooks';

export interface DatasetSpec {
  actions: number;
  idleMachines: number;
  busyMachines: number;
  /** History spread over this many days before now. */
  historyDays: number;
  seed: number;
}

export interface Dataset {
  spec: DatasetSpec;
  dir: string;
  dbPath: string;
  fixturesPath: string;
  /** A uniform sample of action ids (for GET /api/machineactions/{id}). */
  sampleActionIds: string[];
  /** Ids of the busy machines (they have Pending/InProgress actions). */
  busyMachineIds: string[];
  counts: { machines: number; actions: number; activeActions: number; events: number; agentCredentials: number; byStatus: Record<string, number> };
  dbBytes: number;
  preparedInSeconds: number;
  preparedAt: number;
}

export const machineId = (i: number): string => createHash('sha1').update(`countermand-bench-machine-${i}`).digest('hex');
export const machineName = (i: number): string => `bench-${String(i).padStart(5, '0')}.bench.local`;
/** An agent credential as the gateway expects it: `cma_` and 43 base64url characters. */
export const agentToken = (i: number): string =>
  `cma_${createHash('sha256').update(`countermand-bench-agent-${i}`).digest('base64url')}`;
const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** mulberry32: a small deterministic PRNG, so two preparations of one spec look alike. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function weighted<T>(random: () => number, table: readonly (readonly [T, number])[]): T {
  let r = random();
  for (const [value, weight] of table) {
    if (r < weight) return value;
    r -= weight;
  }
  return table[table.length - 1]![0];
}

const HISTORY_TYPES: readonly (readonly [ActionType, number])[] = [
  ['Isolate', 0.22],
  ['Unisolate', 0.18],
  ['RunAntiVirusScan', 0.25],
  ['CollectInvestigationPackage', 0.12],
  ['RestrictCodeExecution', 0.06],
  ['UnrestrictCodeExecution', 0.05],
  ['StopAndQuarantineFile', 0.1],
  ['LiveResponse', 0.02],
];
const FINAL_STATUSES: readonly (readonly [ActionStatus, number])[] = [
  ['Succeeded', 0.87],
  ['Failed', 0.05],
  ['Cancelled', 0.05],
  ['TimeOut', 0.03],
];
/** The four conflict groups an active action can hold, with the type that holds each. */
const ACTIVE_GROUPS: readonly (readonly [ActionType, string])[] = [
  ['Isolate', 'Isolation'],
  ['RunAntiVirusScan', 'RunAntiVirusScan'],
  ['CollectInvestigationPackage', 'CollectInvestigationPackage'],
  ['RestrictCodeExecution', 'CodeExecution'],
];
const USERS = ['alice@contoso.com', 'bob@contoso.com', 'soc-oncall@contoso.com'];
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

export function fixturesFor(): Fixtures {
  return {
    tenants: [
      {
        id: BENCH_TENANT_ID,
        name: 'Bench tenant',
        applications: [{ clientId: BENCH_CLIENT_ID, clientSecret: BENCH_CLIENT_SECRET, displayName: BENCH_APP_NAME, roles: [...KNOWN_APP_ROLES] }],
      },
    ],
  };
}

function benchMachine(i: number, now: number, random: () => number): Machine {
  const octet = (n: number) => (n % 250) + 1;
  const ip = `10.${octet(i >> 16)}.${octet(i >> 8)}.${octet(i)}`;
  return {
    tenantId: BENCH_TENANT_ID,
    id: machineId(i),
    computerDnsName: machineName(i),
    firstSeen: now - 180 * DAY + Math.floor(random() * 30 * DAY),
    lastSeen: now - Math.floor(random() * 5 * MINUTE),
    osPlatform: i % 3 === 0 ? 'Debian' : 'Ubuntu',
    osVersion: i % 3 === 0 ? '12' : '22.04',
    osProcessor: 'x64',
    version: null,
    osBuild: null,
    lastIpAddress: ip,
    lastExternalIpAddress: null,
    agentVersion: '0.1.0',
    osArchitecture: '64-bit',
    healthStatus: 'Active',
    defenderAvStatus: null,
    onboardingStatus: 'Onboarded',
    deviceValue: 'Normal',
    rbacGroupId: (i % 4) + 1,
    rbacGroupName: `group-${(i % 4) + 1}`,
    riskScore: 'None',
    exposureLevel: 'None',
    isAadJoined: false,
    aadDeviceId: null,
    machineTags: i % 2 === 0 ? ['prod'] : ['test'],
    ipAddresses: [{ ipAddress: ip, macAddress: null, type: 'eth0', operationalStatus: 'Up' }],
    offboardedAt: null,
  };
}

interface EventRow {
  at: number;
  actor: string;
  kind: 'created' | 'transition';
  from: ActionStatus | null;
  to: ActionStatus;
  comment: string | null;
  detail: Record<string, unknown> | null;
}

/** One action of the history and its events, consistent with what the server would have written. */
function historyAction(
  random: () => number,
  machineIndex: number,
  createdAt: number,
  status: ActionStatus,
  type: ActionType,
  conflictKeyOverride?: string,
): { action: MachineAction; events: EventRow[] } {
  const byUser = random() < 0.3;
  const requestor = byUser ? USERS[Math.floor(random() * USERS.length)]! : BENCH_APP_NAME;
  const requestorId = byUser ? sha256Hex(requestor).slice(0, 32) : BENCH_CLIENT_ID;
  const comment = `bench: ${type} requested by playbook run ${Math.floor(random() * 1e9)}`;
  const name = machineName(machineIndex);
  const sha1 = type === 'StopAndQuarantineFile' ? createHash('sha1').update(String(random())).digest('hex') : null;
  const commands: LiveResponseCommand[] =
    type === 'LiveResponse'
      ? [
          {
            index: 0,
            startTime: null,
            endTime: null,
            commandStatus: 'Created',
            errors: [],
            command: { type: 'RunScript', params: [{ key: 'ScriptName', value: 'collect.sh' }] },
          },
        ]
      : [];
  const conflictKey =
    conflictKeyOverride ??
    ({
      Isolate: 'Isolation',
      Unisolate: 'Isolation',
      RunAntiVirusScan: 'RunAntiVirusScan',
      CollectInvestigationPackage: 'CollectInvestigationPackage',
      RestrictCodeExecution: 'CodeExecution',
      UnrestrictCodeExecution: 'CodeExecution',
      Offboard: 'Offboard',
      StopAndQuarantineFile: `StopAndQuarantineFile:${sha1}`,
      LiveResponse: 'LiveResponse',
    } satisfies Record<ActionType, string>)[type];

  const events: EventRow[] = [{ at: createdAt, actor: requestor, kind: 'created', from: null, to: 'Pending', comment, detail: null }];
  const startedLate = status === 'Cancelled' && random() < 0.5; // cancelled while still Pending
  const started = status !== 'Pending' && !startedLate ? createdAt + 2_000 + Math.floor(random() * 30_000) : null;
  if (started !== null) events.push({ at: started, actor: name, kind: 'transition', from: 'Pending', to: 'InProgress', comment: null, detail: null });
  let updatedAt = started ?? createdAt;
  let errorHResult = 0;
  let troubleshootInfo: string | null = null;
  let cancellation: { by: string; comment: string; at: number } | null = null;
  const from: ActionStatus = started !== null ? 'InProgress' : 'Pending';
  switch (status) {
    case 'Succeeded':
    case 'Failed': {
      updatedAt = started! + 5_000 + Math.floor(random() * 20 * MINUTE);
      if (status === 'Failed') {
        errorHResult = -2147024891;
        troubleshootInfo = 'nft: Operation not permitted';
      }
      const reportId = randomUUID();
      events.push({ at: updatedAt, actor: name, kind: 'transition', from, to: status, comment: troubleshootInfo, detail: { reportId, errorHResult } });
      break;
    }
    case 'Cancelled':
      updatedAt = updatedAt + 1_000 + Math.floor(random() * 5 * MINUTE);
      cancellation = { by: requestor, comment: 'false positive', at: updatedAt };
      events.push({ at: updatedAt, actor: requestor, kind: 'transition', from, to: 'Cancelled', comment: 'false positive', detail: null });
      break;
    case 'TimeOut':
      updatedAt = updatedAt + 60 * MINUTE;
      events.push({ at: updatedAt, actor: 'Countermand', kind: 'transition', from, to: 'TimeOut', comment: 'The action ran past its deadline.', detail: null });
      break;
    default:
      break;
  }
  const action: MachineAction = {
    id: randomUUID(),
    tenantId: BENCH_TENANT_ID,
    type,
    title: null,
    requestor,
    requestorId,
    requestorComment: comment,
    status,
    machineId: machineId(machineIndex),
    computerDnsName: name,
    creationDateTimeUtc: createdAt,
    lastUpdateDateTimeUtc: updatedAt,
    cancellationRequestor: cancellation?.by ?? null,
    cancellationComment: cancellation?.comment ?? null,
    cancellationDateTimeUtc: cancellation?.at ?? null,
    errorHResult,
    scope: type === 'Isolate' ? (random() < 0.8 ? 'Full' : 'Selective') : type === 'RunAntiVirusScan' ? (random() < 0.7 ? 'Quick' : 'Full') : null,
    externalId: null,
    requestSource: 'PublicApi',
    relatedFileInfo: sha1 ? { fileIdentifier: sha1, fileIdentifierType: 'Sha1' } : null,
    commands,
    troubleshootInfo,
    conflictKey,
    startedAt: started,
  };
  return { action, events };
}

/**
 * Writes the dataset into `<dir>/base.db` (never opened by a server: scenarios copy it) and the
 * fixtures file (tenant and application; machines are in the database).
 */
export function prepareDataset(spec: DatasetSpec, dir: string, log: (line: string) => void): Dataset {
  const started = performance.now();
  const now = Date.now();
  const dbPath = join(dir, 'base.db');
  const fixturesPath = join(dir, 'fixtures.json');
  writeFileSync(fixturesPath, JSON.stringify(fixturesFor(), null, 2));
  // The product's migrations create the schema, exactly as a first start would.
  void SqliteStore.open(dbPath).close();

  const db = new Database(dbPath);
  db.pragma('journal_mode = OFF');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -262144');
  db.pragma('foreign_keys = OFF');
  const random = prng(spec.seed);
  const insertAction = db.prepare(INSERT_ACTION);
  // Events are written with the columns this schema version has (report_id arrived later).
  const eventColumns = new Set((db.prepare('PRAGMA table_info(action_events)').all() as { name: string }[]).map((c) => c.name));
  const withReportId = eventColumns.has('report_id');
  const insertEvent = db.prepare(
    `INSERT INTO action_events (tenant_id, action_id, at, actor, kind, from_status, to_status, comment, detail${withReportId ? ', report_id' : ''})
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?${withReportId ? ', ?' : ''})`,
  );
  const machineCount = spec.idleMachines + spec.busyMachines;
  const byStatus: Record<string, number> = {};
  let events = 0;
  let actions = 0;
  const sampleActionIds: string[] = [];
  const sampleRate = Math.min(1, 50_000 / spec.actions);

  const write = (action: MachineAction, rows: EventRow[]) => {
    insertAction.run(...actionParams(action));
    for (const e of rows) {
      const params = [BENCH_TENANT_ID, action.id, e.at, e.actor, e.kind, e.from, e.to, e.comment, e.detail ? JSON.stringify(e.detail) : null];
      if (withReportId) params.push(typeof e.detail?.reportId === 'string' ? e.detail.reportId : null);
      insertEvent.run(...params);
    }
    events += rows.length;
    actions++;
    byStatus[action.status] = (byStatus[action.status] ?? 0) + 1;
    if (random() < sampleRate) sampleActionIds.push(action.id);
  };

  db.transaction(() => {
    db.prepare(UPSERT_TENANT).run(BENCH_TENANT_ID, 'Bench tenant');
    const upsertMachine = db.prepare(UPSERT_MACHINE);
    const insertCredential = db.prepare(INSERT_AGENT_CREDENTIAL);
    for (let i = 0; i < machineCount; i++) {
      upsertMachine.run(...machineParams(benchMachine(i, now, random)));
      if (i < spec.idleMachines) {
        insertCredential.run(
          ...agentCredentialParams({ tokenHash: sha256Hex(agentToken(i)), tenantId: BENCH_TENANT_ID, machineId: machineId(i), createdAt: now - DAY, revokedAt: null }),
        );
      }
    }
  })();

  // The active actions are decided first so the history fills the rest of the count.
  const active: { machine: number; group: number; status: ActionStatus }[] = [];
  for (let b = 0; b < spec.busyMachines; b++) {
    const machine = spec.idleMachines + b;
    const first = Math.floor(random() * ACTIVE_GROUPS.length);
    active.push({ machine, group: first, status: random() < 0.5 ? 'Pending' : 'InProgress' });
    if (random() < 0.5) active.push({ machine, group: (first + 1 + Math.floor(random() * 3)) % 4, status: random() < 0.5 ? 'Pending' : 'InProgress' });
  }
  const history = spec.actions - active.length;
  const span = spec.historyDays * DAY;
  const t0 = now - span - 2 * 60 * MINUTE;
  const step = span / history;
  const BATCH = 25_000;
  for (let from = 0; from < history; from += BATCH) {
    db.transaction(() => {
      for (let j = from; j < Math.min(history, from + BATCH); j++) {
        const machine = Math.floor(random() * machineCount);
        const createdAt = Math.floor(t0 + j * step + random() * step);
        const { action, events: rows } = historyAction(random, machine, createdAt, weighted(random, FINAL_STATUSES), weighted(random, HISTORY_TYPES));
        write(action, rows);
      }
    })();
    if ((from / BATCH) % 8 === 0) log(`  dataset: ${Math.min(history, from + BATCH).toLocaleString('en-US')} / ${history.toLocaleString('en-US')} history actions`);
  }
  db.transaction(() => {
    for (const a of active) {
      const [type, group] = ACTIVE_GROUPS[a.group]!;
      const createdAt = now - MINUTE - Math.floor(random() * 9 * MINUTE);
      const { action, events: rows } = historyAction(random, a.machine, createdAt, a.status, type, group);
      write(action, rows);
    }
  })();
  db.pragma('journal_mode = WAL');
  db.close();

  const dataset: Dataset = {
    spec,
    dir,
    dbPath,
    fixturesPath,
    sampleActionIds,
    busyMachineIds: Array.from({ length: spec.busyMachines }, (_, b) => machineId(spec.idleMachines + b)),
    counts: { machines: machineCount, actions, activeActions: active.length, events, agentCredentials: spec.idleMachines, byStatus },
    dbBytes: statSync(dbPath).size,
    preparedInSeconds: (performance.now() - started) / 1000,
    preparedAt: now,
  };
  writeFileSync(join(dir, 'dataset.json'), JSON.stringify(dataset));
  return dataset;
}

/**
 * A dataset prepared earlier in `dir` (kept with --keep) if it was made from the same spec,
 * else null. Its timestamps are as old as the preparation: the active actions age (the sweeper
 * times an InProgress action out after its deadline, one hour for most types).
 */
export function reuseDataset(spec: DatasetSpec, dir: string): Dataset | null {
  try {
    const dataset = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as Dataset;
    return JSON.stringify(dataset.spec) === JSON.stringify(spec) ? dataset : null;
  } catch {
    return null;
  }
}

/** A private copy of the prepared database for one server start (servers write). */
export function copyDatabase(dataset: Dataset, dataDir: string): void {
  copyFileSync(dataset.dbPath, join(dataDir, 'countermand.db'));
}

/** What-if only: planner statistics, as `PRAGMA optimize` on open would gather them. */
export function analyzeDatabase(path: string): void {
  const db = new Database(path);
  db.pragma('optimize = 0x10002');
  db.close();
}
