import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createReenrollGrant } from '../../src/dispatch/enrollment.js';
import { Directory } from '../../src/identity/directory.js';
import { loadFixtures } from '../../src/server.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import {
  Ledger,
  ProtocolAgent,
  call,
  freePort,
  integrityOfCopy,
  pick,
  readAction,
  sleep,
  verifyDatabase,
  wireProblems,
  type CreateAck,
  type Phase,
} from '../support/crash.js';
import { appToken, cleanup, makeFixtures } from '../support/harness.js';
import { spawnCli, type Spawned } from '../support/process.js';

/**
 * Crash safety: `countermand serve` (SQLite, WAL, synchronous=FULL, group commit) is SIGKILLed
 * KILLS times at a random moment of mixed load (creates, cancels, agents starting, reporting
 * progress and outcomes) and restarted on the same data directory each time. Then every change
 * a client saw acknowledged with a 2xx must be in the database, no action may have a history the
 * lifecycle does not allow, and the file must pass SQLite's integrity and foreign-key checks
 * (also checked on a copy of the files as each crash left them).
 */

const KILLS = 20;
const MACHINES = 40;
/** Machines with an agent; the others' actions stay Pending until cancelled. */
const AGENTS = 30;
/** Agent machines Offboard is aimed at (an offboarded machine takes no more actions). */
const OFFBOARDABLE = 5;
const CREATORS = 6;
const CANCELLERS = 3;

const setup = makeFixtures(MACHINES);
const root = mkdtempSync(join(tmpdir(), 'countermand-crash-'));
const dataDir = join(root, 'data');
const dbPath = join(dataDir, 'countermand.db');
const fixturesPath = join(root, 'fixtures.json');
let server: Spawned | null = null;
/** Load that is running; stopped in afterAll if the test fails mid-phase. */
const phases: Phase[] = [];

afterAll(async () => {
  for (const phase of phases) phase.live = false;
  if (server && server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  cleanup(root);
});

const SHA1S = [randomBytes(20).toString('hex'), randomBytes(20).toString('hex'), randomBytes(20).toString('hex')];
const CREATES: { route: string; type: string; body: () => Record<string, unknown> }[] = [
  { route: 'isolate', type: 'Isolate', body: () => ({ IsolationType: pick(['Full', 'Selective']) }) },
  { route: 'unisolate', type: 'Unisolate', body: () => ({}) },
  { route: 'runAntiVirusScan', type: 'RunAntiVirusScan', body: () => ({ ScanType: pick(['Quick', 'Full']) }) },
  { route: 'collectInvestigationPackage', type: 'CollectInvestigationPackage', body: () => ({}) },
  { route: 'restrictCodeExecution', type: 'RestrictCodeExecution', body: () => ({}) },
  { route: 'unrestrictCodeExecution', type: 'UnrestrictCodeExecution', body: () => ({}) },
  { route: 'offboard', type: 'Offboard', body: () => ({}) },
  { route: 'StopAndQuarantineFile', type: 'StopAndQuarantineFile', body: () => ({ Sha1: pick(SHA1S) }) },
  {
    route: 'runliveresponse',
    type: 'LiveResponse',
    body: () => ({ Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/var/log/syslog' }] }] }),
  },
];

async function startServer(port: number): Promise<Spawned> {
  const p = spawnCli(
    ['serve', '--port', String(port), '--data-dir', dataDir, '--fixtures', fixturesPath, '--log-level', 'warn'],
    { COUNTERMAND_DEMO_FLEET: '0', COUNTERMAND_RATE_LIMITS_ENABLED: 'false', COUNTERMAND_AGENT_POLL_SECONDS: '2' },
  );
  server = p;
  await p.waitFor(/listening on/, 30_000);
  return p;
}

/** Server log lines at warn or above (the server logs at warn): worth a look after a run. */
function warnings(output: string): string[] {
  return output.split('\n').filter((l) => /"level":(40|50|60)/.test(l));
}

describe('crash safety', () => {
  it(`SIGKILLed ${KILLS} times under mixed load, it keeps every acknowledged change and only possible histories`, async () => {
    const began = Date.now();
    writeFileSync(fixturesPath, JSON.stringify(setup.fixtures));
    mkdirSync(dataDir, { recursive: true });
    // The agents' re-enroll grants are made in the store file itself, before the server ever runs.
    const store = SqliteStore.open(dbPath);
    await loadFixtures(store, new Directory(store), setup.fixtures);
    const grants = await Promise.all(setup.machines.slice(0, AGENTS).map((m) => createReenrollGrant(store, setup.tenantId, m.id)));
    await store.close();

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const ledger = new Ledger();
    const serverWarnings: string[] = [];
    let p = await startServer(port);
    let auth = { authorization: `Bearer ${await appToken({ url: base }, setup.tenantId, setup.clientId)}` };

    // Agents re-attach to the first AGENTS fixture machines with a grant each (enrollment is not under test).
    const agents = setup.machines
      .slice(0, AGENTS)
      .map((m, i) => new ProtocolAgent(base, grants[i]!.grant, m.id, m.computerDnsName, ledger));
    const offboardable = setup.machines.slice(AGENTS - OFFBOARDABLE, AGENTS);
    const always: Phase = { live: true };
    phases.push(always);
    await Promise.all(agents.map((a) => a.enroll(always)));

    let createSeq = 0;
    let cancelSeq = 0;
    /** Acknowledged creates not known to be final, newest last: what cancellers aim at. */
    const open: string[] = [];

    const creator = async (phase: Phase) => {
      while (phase.live) {
        const kind = pick(CREATES);
        const machine = pick(kind.type === 'Offboard' ? offboardable : setup.machines);
        const comment = `create-${++createSeq}`;
        ledger.sentCreates.set(comment, { type: kind.type, machineId: machine.id });
        const res = await call(base, 'POST', `/api/machines/${machine.id}/${kind.route}`, { Comment: comment, ...kind.body() }, auth);
        ledger.count('create', res?.status ?? null);
        if (res?.status === 201) {
          const body = res.body as CreateAck;
          ledger.creates.set(body.id, body);
          open.push(body.id);
        } else if (!res) {
          await sleep(30);
        } else if (
          !(res.status === 400 && res.body?.error?.code === 'ActiveRequestAlreadyExists') &&
          !(res.status === 400 && res.body?.error?.code === 'InvalidInput' && /is offboarded/.test(res.body.error.message)) &&
          res.status !== 429
        ) {
          ledger.unexpected.push(`create ${kind.type}: ${res.status} ${JSON.stringify(res.body)}`);
        }
        await sleep(Math.random() * 8);
      }
    };

    const cancelOne = async (id: string) => {
      const comment = `cancel-${++cancelSeq}`;
      ledger.sendCancel(id, comment);
      const res = await call(base, 'POST', `/api/machineactions/${id}/cancel`, { Comment: comment }, auth);
      ledger.count('cancel', res?.status ?? null);
      if (res?.status === 200) {
        ledger.ackCancel(id, comment);
        if (res.body.status !== 'Cancelled' || res.body.cancellationComment !== comment) {
          ledger.unexpected.push(`cancel ${id} answered 200 with ${res.body.status}/${res.body.cancellationComment}`);
        }
      } else if (res && !(res.status === 400 && res.body?.error?.code === 'BadRequest')) {
        ledger.unexpected.push(`cancel ${id}: ${res.status} ${JSON.stringify(res.body)}`);
      }
      return res;
    };

    const canceller = async (phase: Phase) => {
      while (phase.live) {
        if (open.length === 0) {
          await sleep(10);
          continue;
        }
        // Mostly recent actions (still active, racing the agents), sometimes old ones.
        const index = Math.random() < 0.8 ? Math.max(0, open.length - 1 - Math.floor(Math.random() * 60)) : Math.floor(Math.random() * open.length);
        const id = open[index]!;
        // One in five is cancelled twice at once: at most one of the two may be acknowledged.
        const replies = await Promise.all(Math.random() < 0.2 ? [cancelOne(id), cancelOne(id)] : [cancelOne(id)]);
        const at = open.indexOf(id); // another canceller may have taken it out meanwhile
        if (replies.some((r) => r !== null) && at >= 0) open.splice(at, 1);
        if (replies.every((r) => r === null)) await sleep(30);
        await sleep(Math.random() * 15);
      }
    };

    const phaseLengths: number[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      if (!server) p = await startServer(port);
      const phase: Phase = { live: true };
      phases.push(phase);
      const workers = [
        ...Array.from({ length: CREATORS }, () => creator(phase)),
        ...Array.from({ length: CANCELLERS }, () => canceller(phase)),
        ...agents.map((a) => a.run(phase)),
      ];
      const after = 300 + Math.random() * 1200;
      phaseLengths.push(Math.round(after));
      await sleep(after);
      p.child.kill('SIGKILL');
      const exit = await p.exited;
      expect(exit.signal, `the server died on its own before kill ${kill}:\n${p.output()}`).toBe('SIGKILL');
      serverWarnings.push(...warnings(p.output()));
      server = null;
      phase.live = false;
      await Promise.all(workers);
      // The files exactly as the crash left them: a copy must open and pass the integrity check.
      expect(integrityOfCopy(dbPath), `integrity after kill ${kill}`).toBe('ok');
    }

    // Once more, to read through the API what clients would now see.
    p = await startServer(port);
    auth = { authorization: `Bearer ${await appToken({ url: base }, setup.tenantId, setup.clientId)}` };
    const sample = new Set<string>();
    const acked = [...ledger.cancels.keys(), ...ledger.reports.keys(), ...ledger.creates.keys()];
    while (sample.size < Math.min(120, acked.length)) sample.add(pick(acked));
    const wire = new Map<string, any>();
    const apiProblems: string[] = [];
    await Promise.all(
      [...sample].map(async (id) => {
        const res = await call(base, 'GET', `/api/machineactions/${id}`, undefined, auth, 10_000);
        if (res?.status === 200) wire.set(id, res.body);
        else apiProblems.push(`GET ${id}: ${res?.status ?? 'no reply'}`);
      }),
    );
    p.child.kill('SIGTERM');
    expect((await p.exited).code).toBe(0);
    serverWarnings.push(...warnings(p.output()));
    server = null;

    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.pragma('foreign_key_check')).toEqual([]);
      const result = verifyDatabase(db, setup.tenantId, ledger, join(dataDir, 'blobs'));
      apiProblems.push(...[...wire].flatMap(([id, body]) => wireProblems(body, readAction(db, id))));
      // An agent stops only when its machine was offboarded.
      const offboarded = new Set(
        (db.prepare('SELECT id FROM machines WHERE tenant_id = ? AND offboarded_at IS NOT NULL').all(setup.tenantId) as { id: string }[]).map((r) => r.id),
      );
      for (const a of agents) if (a.stopped && !offboarded.has(a.machineId)) apiProblems.push(`the agent of ${a.machineId} was refused, but its machine is not offboarded`);
      const problems = [...result.problems, ...apiProblems];

      const seconds = ((Date.now() - began) / 1000).toFixed(1);
      console.log(
        [
          `crash safety: ${KILLS} SIGKILLs (after ${phaseLengths.join(', ')} ms of load), ${seconds} s in all`,
          `  acknowledged: ${ledger.creates.size} creates, ${ledger.cancels.size} cancels, ${ledger.starts.size} starts, ${ledger.reportCount} applied reports, ${ledger.packages.size} package uploads`,
          `  database: ${result.actions} actions (${JSON.stringify(result.byStatus)}), ${result.events} events; ` +
            `${result.unacknowledgedCreates} creates committed but never acknowledged`,
          `  checked: ${result.actions} histories, ${wire.size} actions through GET; ${offboarded.size} machines offboarded; ${problems.length} problems`,
          `  replies: ${[...ledger.statusCounts].sort().map(([k, n]) => `${k}: ${n}`).join(', ')}`,
          ...(ledger.unexpected.length ? [`  unexpected replies (${ledger.unexpected.length}):`, ...ledger.unexpected.slice(0, 10).map((u) => `    ${u}`)] : []),
          ...(serverWarnings.length ? [`  server warnings (${serverWarnings.length}):`, ...serverWarnings.slice(0, 10).map((w) => `    ${w}`)] : []),
          ...problems.slice(0, 30).map((x) => `  PROBLEM ${x}`),
        ].join('\n'),
      );
      expect(problems).toEqual([]);
      expect(ledger.unexpected).toEqual([]);
      // The load did what it is for: every kind of change was acknowledged, in numbers.
      expect(ledger.creates.size).toBeGreaterThan(200);
      expect(ledger.cancels.size).toBeGreaterThan(50);
      expect(ledger.starts.size).toBeGreaterThan(50);
      expect(ledger.reportCount).toBeGreaterThan(50);
      expect(ledger.packages.size).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  }, 180_000);
});
