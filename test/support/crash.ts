import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { allowedFrom, isFinal } from '../../src/domain/lifecycle.js';
import type { ActionStatus } from '../../src/domain/model.js';
import { toWireTime } from '../../src/domain/time.js';

/**
 * Support for the crash-safety test (test/e2e/crash-safety.test.ts): a bounded HTTP call that
 * turns any network failure into "not acknowledged", a ledger of what clients sent and what the
 * server acknowledged, a raw agent-protocol client, and the verifier that checks a database
 * file against the ledger and against the lifecycle rules.
 */

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

/**
 * A free TCP port below Linux's ephemeral range (32768-60999), so that while the server is down
 * between a kill and its restart no outgoing connection or `listen(0)` elsewhere takes it.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const server = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise<void>((r) => server.close(() => r()));
      return port;
    }
  }
}

export interface Reply {
  status: number;
  body: any;
}

/**
 * One HTTP request with a bounded time. Resolves with the reply, or null when there is none
 * (connection refused or reset, server killed mid-request, timeout): not acknowledged.
 */
export async function call(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  timeoutMs = 3000,
): Promise<Reply | null> {
  try {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { status: response.status, body: parsed };
  } catch {
    return null;
  }
}

/** The investigation package an agent uploads for an action: a small gzip, the same on every retry. */
export function packageFor(actionId: string): Buffer {
  return gzipSync(Buffer.from(`package of ${actionId}\n`));
}

/** The one outcome an agent ever reports for an action, derived from its id (so it is checkable). */
export function outcomeFor(actionId: string): { reportId: string; status: 'Succeeded' | 'Failed'; errorHResult: number } {
  const h = createHash('sha256').update(actionId).digest();
  const failed = h[0]! % 3 === 0;
  return {
    reportId: `report-${actionId}`,
    status: failed ? 'Failed' : 'Succeeded',
    errorHResult: failed ? -2147024891 - (h[1]! % 7) : 0,
  };
}

export interface CreateAck {
  id: string;
  type: string;
  machineId: string;
  computerDnsName: string;
  requestor: string;
  requestorComment: string;
  creationDateTimeUtc: string;
  scope: string | null;
  relatedFileInfo: { fileIdentifier: string; fileIdentifierType: string } | null;
}

/** What the clients sent, and what the server acknowledged (from HTTP responses only). */
export class Ledger {
  /** Every create sent, by its (unique) comment. */
  readonly sentCreates = new Map<string, { type: string; machineId: string }>();
  /** Every cancel comment sent, by action id. */
  readonly sentCancels = new Map<string, Set<string>>();
  /** 201 Created. */
  readonly creates = new Map<string, CreateAck>();
  /** 200 on cancel: every acknowledged comment (at most one may ever be). */
  readonly cancels = new Map<string, string[]>();
  /** start answered 200 with run: true. */
  readonly starts = new Set<string>();
  /** report answered 200 with applied: true. */
  readonly reports = new Map<string, { status: string; errorHResult: number }[]>();
  /** An investigation package upload answered 200: the SHA-256 the server said it stored. */
  readonly packages = new Map<string, string>();
  /** Replies that are neither what a client asked nor a documented refusal. */
  readonly unexpected: string[] = [];
  readonly statusCounts = new Map<string, number>();

  count(what: string, status: number | null): void {
    const key = `${what} ${status ?? 'no reply'}`;
    this.statusCounts.set(key, (this.statusCounts.get(key) ?? 0) + 1);
  }

  sendCancel(id: string, comment: string): void {
    let set = this.sentCancels.get(id);
    if (!set) this.sentCancels.set(id, (set = new Set()));
    set.add(comment);
  }

  ackCancel(id: string, comment: string): void {
    this.cancels.set(id, [...(this.cancels.get(id) ?? []), comment]);
  }

  ackReport(id: string, status: string, errorHResult: number): void {
    this.reports.set(id, [...(this.reports.get(id) ?? []), { status, errorHResult }]);
  }

  get reportCount(): number {
    let n = 0;
    for (const list of this.reports.values()) n += list.length;
    return n;
  }
}

export interface Phase {
  live: boolean;
}

/**
 * An agent speaking the raw protocol (docs/agent-protocol.md) for one machine. Its journal lives
 * in the test process, so it survives the server's deaths: an unfinished action is started or
 * reported again in the next phase, with the same reportId and the same outcome.
 */
export class ProtocolAgent {
  private token: string | null = null;
  private enrolling: Promise<void> | null = null;
  /** Refused its credential: the machine was offboarded (nothing else re-attaches it here). */
  stopped = false;
  private readonly journal = new Map<string, { stage: 'start' | 'progress' | 'package' | 'report' | 'done'; commands: any[]; type: string }>();

  constructor(
    private readonly baseUrl: string,
    /** A re-enroll grant for its machine: how it takes the fixture machine over, once. */
    private readonly reenrollGrant: string,
    readonly machineId: string,
    private readonly name: string,
    private readonly ledger: Ledger,
  ) {}

  /** Re-attaches to its machine with its grant, until it has a credential or the phase ends. */
  async enroll(phase: Phase): Promise<void> {
    this.enrolling ??= (async () => {
      while (phase.live) {
        const res = await call(this.baseUrl, 'POST', '/agent/v1/enroll', {
          reenrollGrant: this.reenrollGrant,
          machineId: this.machineId,
          machine: { computerDnsName: this.name, osPlatform: 'Linux', agentVersion: '0.1.0' },
        });
        this.ledger.count('enroll', res?.status ?? null);
        if (res?.status === 201) {
          if (res.body.machineId !== this.machineId) this.ledger.unexpected.push(`enroll re-attached to ${res.body.machineId}, not ${this.machineId}`);
          this.token = res.body.agentToken as string;
          return;
        }
        if (res) this.ledger.unexpected.push(`enroll: ${res.status} ${JSON.stringify(res.body)}`);
        await sleep(100);
      }
    })().finally(() => (this.enrolling = null));
    await this.enrolling;
  }

  private async post(phase: Phase, path: string, body: unknown): Promise<Reply | null> {
    const token = this.token;
    if (!token || this.stopped) return null;
    const res = await call(this.baseUrl, 'POST', path, body, { authorization: `Bearer ${token}` });
    if (res?.status === 401) {
      // A Succeeded Offboard revoked the credential: the agent stops, as the real one does.
      this.stopped = true;
      return null;
    }
    return res;
  }

  /** An investigation package upload (raw bytes), with the same credential handling as post(). */
  private async putPackage(id: string, bytes: Buffer): Promise<Reply | null> {
    const token = this.token;
    if (!token || this.stopped) return null;
    try {
      const response = await fetch(`${this.baseUrl}/agent/v1/actions/${id}/package`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' },
        body: bytes,
        signal: AbortSignal.timeout(3000),
      });
      const text = await response.text();
      if (response.status === 401) {
        this.stopped = true;
        return null;
      }
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    } catch {
      return null;
    }
  }

  /** Check-in loop plus one handler per action, until the phase ends. */
  async run(phase: Phase): Promise<void> {
    const handlers: Promise<void>[] = [];
    for (const [id, entry] of this.journal) if (entry.stage !== 'done') handlers.push(this.handle(id, phase));
    while (phase.live && !this.stopped) {
      const running = [...this.journal].filter(([, e]) => e.stage !== 'done').map(([id]) => id);
      const res = await this.post(phase, '/agent/v1/checkin', { running, maxWaitSeconds: 1, agentVersion: '0.1.0' });
      this.ledger.count('checkin', res?.status ?? null);
      if (!res) {
        await sleep(50 + Math.random() * 50);
        continue;
      }
      if (res.status !== 200) {
        this.ledger.unexpected.push(`checkin: ${res.status} ${JSON.stringify(res.body)}`);
        await sleep(100);
        continue;
      }
      for (const action of res.body.actions as { id: string; type: string; commands: any[] }[]) {
        if (this.journal.has(action.id)) continue; // being handled (or, if done, a stale delivery)
        this.journal.set(action.id, { stage: 'start', commands: action.commands, type: action.type });
        handlers.push(this.handle(action.id, phase));
      }
    }
    await Promise.all(handlers);
  }

  private async handle(id: string, phase: Phase): Promise<void> {
    const entry = this.journal.get(id)!;
    const outcome = outcomeFor(id);
    while (phase.live && !this.stopped && entry.stage !== 'done') {
      if (entry.stage === 'start') {
        const res = await this.post(phase, `/agent/v1/actions/${id}/start`, {});
        this.ledger.count('start', res?.status ?? null);
        if (!res) {
          await sleep(50);
          continue;
        }
        if (res.status !== 200) {
          this.ledger.unexpected.push(`start ${id}: ${res.status} ${JSON.stringify(res.body)}`);
          entry.stage = 'done';
          continue;
        }
        if (res.body.run === true) {
          this.ledger.starts.add(id);
          // A collection that succeeds uploads its package first, as a real agent does.
          entry.stage =
            entry.type === 'LiveResponse' ? 'progress' : entry.type === 'CollectInvestigationPackage' && outcome.status === 'Succeeded' ? 'package' : 'report';
          await sleep(Math.random() * 150); // "executing"
        } else {
          entry.stage = 'done'; // it ended meanwhile (cancelled): not run, not reported
        }
      } else if (entry.stage === 'package') {
        const res = await this.putPackage(id, packageFor(id));
        this.ledger.count('package', res?.status ?? null);
        if (!res) {
          await sleep(50);
          continue;
        }
        if (res.status === 200) this.ledger.packages.set(id, res.body.sha256 as string);
        // 409: the action ended meanwhile (cancelled); its report will be history only.
        else if (res.status !== 409) this.ledger.unexpected.push(`package ${id}: ${res.status} ${JSON.stringify(res.body)}`);
        entry.stage = 'report';
      } else if (entry.stage === 'progress') {
        const commands = entry.commands.map((c) => ({ ...c, startTime: Date.now(), commandStatus: 'Created' }));
        const res = await this.post(phase, `/agent/v1/actions/${id}/progress`, { commands });
        this.ledger.count('progress', res?.status ?? null);
        if (!res) {
          await sleep(50);
          continue;
        }
        if (res.status !== 200) this.ledger.unexpected.push(`progress ${id}: ${res.status} ${JSON.stringify(res.body)}`);
        entry.stage = 'report';
      } else {
        const commands =
          entry.type === 'LiveResponse'
            ? { commands: entry.commands.map((c) => ({ ...c, startTime: 1, endTime: 2, commandStatus: outcome.status === 'Succeeded' ? 'Completed' : 'Failed' })) }
            : {};
        const res = await this.post(phase, `/agent/v1/actions/${id}/report`, {
          reportId: outcome.reportId,
          status: outcome.status,
          errorHResult: outcome.errorHResult,
          troubleshootInfo: outcome.status === 'Failed' ? 'simulated failure' : null,
          ...commands,
        });
        this.ledger.count('report', res?.status ?? null);
        if (!res) {
          await sleep(50);
          continue;
        }
        if (res.status !== 200) {
          this.ledger.unexpected.push(`report ${id}: ${res.status} ${JSON.stringify(res.body)}`);
        } else if (res.body.applied === true) {
          if (res.body.status !== outcome.status) this.ledger.unexpected.push(`report ${id} applied but answered status ${res.body.status}`);
          this.ledger.ackReport(id, outcome.status, outcome.errorHResult);
        }
        entry.stage = 'done';
      }
    }
  }
}

/** Copies a database (with its WAL) as a crash left it, and runs an integrity check on the copy. */
export function integrityOfCopy(dbPath: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-crash-copy-'));
  try {
    const copy = join(dir, 'copy.db');
    copyFileSync(dbPath, copy);
    for (const suffix of ['-wal', '-shm']) if (existsSync(dbPath + suffix)) copyFileSync(dbPath + suffix, copy + suffix);
    const db = new Database(copy);
    try {
      return String(db.pragma('integrity_check', { simple: true }));
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ActionRow {
  id: string;
  type: string;
  requestor: string;
  requestor_comment: string | null;
  status: ActionStatus;
  machine_id: string;
  computer_dns_name: string | null;
  created_at: number;
  updated_at: number;
  cancellation_requestor: string | null;
  cancellation_comment: string | null;
  cancelled_at: number | null;
  error_hresult: number;
  scope: string | null;
  related_file_info: string | null;
  started_at: number | null;
}

interface EventRow {
  seq: number;
  action_id: string;
  at: number;
  kind: string;
  from_status: string | null;
  to_status: string | null;
  comment: string | null;
  detail: string | null;
}

/** The problems of one action's history (empty when it is a possible one). */
export function historyProblems(row: ActionRow, events: readonly EventRow[]): string[] {
  const problems: string[] = [];
  const say = (what: string) => problems.push(`action ${row.id}: ${what}`);
  const first = events[0];
  if (!first) return [`action ${row.id}: no history`];
  if (first.kind !== 'created' || first.from_status !== null || first.to_status !== 'Pending') {
    say(`first event is ${first.kind} ${first.from_status}->${first.to_status}, not created null->Pending`);
  }
  let status: string = 'Pending';
  let lastAt = first.at;
  let finals = 0;
  let started = false;
  for (const e of events.slice(1)) {
    const at = `event ${e.seq} (${e.kind} ${e.from_status}->${e.to_status})`;
    if (e.kind === 'transition') {
      if (isFinal(status as ActionStatus)) say(`${at} after the final status ${status}`);
      if (e.from_status !== status) say(`${at} does not start from the previous status ${status}`);
      if (!allowedFrom(e.to_status as ActionStatus).includes(e.from_status as ActionStatus)) say(`${at} is not an allowed transition`);
      if (e.from_status === 'Pending' && e.to_status === 'InProgress') started = true;
      status = String(e.to_status);
      lastAt = e.at;
      if (isFinal(status as ActionStatus)) finals++;
    } else if (e.kind === 'progress') {
      if (status !== 'InProgress' || e.from_status !== 'InProgress' || e.to_status !== 'InProgress') say(`${at} while ${status}`);
      lastAt = e.at;
    } else if (e.kind === 'late-report') {
      if (!isFinal(status as ActionStatus) || e.from_status !== status || e.to_status !== status) say(`${at} while ${status}`);
    } else {
      say(`${at} is not possible here`);
    }
  }
  if (finals > 1) say(`${finals} transitions into a final status`);
  if (row.status !== status) say(`row status ${row.status}, but its history ends in ${status}`);
  if (row.updated_at !== lastAt) say(`lastUpdateDateTimeUtc ${toWireTime(row.updated_at)} is not its last change's time ${toWireTime(lastAt)}`);
  if (started !== (row.started_at !== null)) say(`started_at ${row.started_at} but ${started ? 'a' : 'no'} Pending->InProgress in its history`);
  const cancelled = row.status === 'Cancelled';
  const cancelFields = [row.cancellation_comment, row.cancellation_requestor, row.cancelled_at];
  if (cancelled ? cancelFields.some((f) => f === null) : cancelFields.some((f) => f !== null)) {
    say(`status ${row.status} with cancellation fields ${JSON.stringify(cancelFields)}`);
  }
  return problems;
}

export interface Verification {
  problems: string[];
  actions: number;
  events: number;
  /** Actions in the database whose create was never acknowledged (committed, then the server died). */
  unacknowledgedCreates: number;
  byStatus: Record<string, number>;
}

/**
 * Checks the database against the ledger (every acknowledged change is there; nothing is there
 * that no client asked for) and every action's history against the lifecycle.
 */
export function verifyDatabase(db: Database.Database, tenantId: string, ledger: Ledger, blobDir?: string): Verification {
  const problems: string[] = [];
  const rows = db.prepare('SELECT * FROM machine_actions WHERE tenant_id = ?').all(tenantId) as ActionRow[];
  const byId = new Map(rows.map((r) => [r.id, r]));
  const eventRows = db.prepare('SELECT * FROM action_events WHERE tenant_id = ? ORDER BY seq').all(tenantId) as EventRow[];
  const events = new Map<string, EventRow[]>();
  for (const e of eventRows) {
    let list = events.get(e.action_id);
    if (!list) events.set(e.action_id, (list = []));
    list.push(e);
  }
  for (const id of events.keys()) if (!byId.has(id)) problems.push(`events for an action that does not exist: ${id}`);

  // Acknowledged creates are present, with the fields the 201 showed.
  for (const [id, ack] of ledger.creates) {
    const row = byId.get(id);
    if (!row) {
      problems.push(`acknowledged create ${id} (${ack.type}, ${ack.requestorComment}) is missing`);
      continue;
    }
    const seen = {
      type: row.type,
      machineId: row.machine_id,
      computerDnsName: row.computer_dns_name,
      requestor: row.requestor,
      requestorComment: row.requestor_comment,
      creationDateTimeUtc: toWireTime(row.created_at),
      scope: row.scope,
      relatedFileInfo: row.related_file_info === null ? null : JSON.parse(row.related_file_info),
    };
    for (const [field, value] of Object.entries(seen)) {
      if (JSON.stringify(value) !== JSON.stringify(ack[field as keyof CreateAck])) {
        problems.push(`acknowledged create ${id}: ${field} is ${JSON.stringify(value)}, the 201 said ${JSON.stringify(ack[field as keyof CreateAck])}`);
      }
    }
  }

  // Acknowledged cancels: exactly one per action, and it is the one that landed.
  for (const [id, comments] of ledger.cancels) {
    if (comments.length !== 1) problems.push(`action ${id}: ${comments.length} cancels acknowledged (${comments.join(', ')})`);
    const row = byId.get(id);
    if (!row) {
      problems.push(`acknowledged cancel of a missing action ${id}`);
      continue;
    }
    if (row.status !== 'Cancelled') problems.push(`acknowledged cancel of ${id}, but it is ${row.status}`);
    if (!comments.includes(String(row.cancellation_comment))) {
      problems.push(`acknowledged cancel of ${id} with ${comments.join(', ')}, but its cancellationComment is ${row.cancellation_comment}`);
    }
  }

  // Acknowledged reports: at most one applied per action, and it is the action's outcome.
  for (const [id, acks] of ledger.reports) {
    if (acks.length !== 1) problems.push(`action ${id}: ${acks.length} reports acknowledged as applied`);
    const row = byId.get(id);
    if (!row) {
      problems.push(`acknowledged report of a missing action ${id}`);
      continue;
    }
    for (const ack of acks) {
      if (row.status !== ack.status || row.error_hresult !== ack.errorHResult) {
        problems.push(`acknowledged report ${id} ${ack.status}/${ack.errorHResult}, but it is ${row.status}/${row.error_hresult}`);
      }
    }
  }

  // Acknowledged package uploads are kept (row and blob), and no collection Succeeded without one.
  const artifacts = new Map(
    (db.prepare("SELECT r.action_id, r.sha256, b.sha256 AS blob FROM action_artifacts r LEFT JOIN blobs b ON b.sha256 = r.sha256 WHERE r.tenant_id = ? AND r.slot = 'package'").all(tenantId) as { action_id: string; sha256: string; blob: string | null }[]).map((r) => [r.action_id, r]),
  );
  for (const [id, sha256] of ledger.packages) {
    const artifact = artifacts.get(id);
    if (!artifact) problems.push(`acknowledged package of ${id} is missing`);
    else if (artifact.sha256 !== sha256 || artifact.blob === null) problems.push(`acknowledged package of ${id}: stored ${artifact.sha256}, blob ${artifact.blob ?? 'missing'}`);
    else if (blobDir && !existsSync(join(blobDir, 'sha256', sha256.slice(0, 2), sha256))) problems.push(`acknowledged package of ${id}: its blob file is missing`);
  }
  for (const row of rows) {
    if (row.type === 'CollectInvestigationPackage' && row.status === 'Succeeded' && !artifacts.has(row.id)) {
      problems.push(`collection ${row.id} Succeeded without a package`);
    }
  }

  // Acknowledged starts: the action got to InProgress.
  for (const id of ledger.starts) {
    const history = events.get(id) ?? [];
    if (!history.some((e) => e.kind === 'transition' && e.from_status === 'Pending' && e.to_status === 'InProgress')) {
      problems.push(`acknowledged start of ${id}, but its history has no Pending->InProgress`);
    }
  }

  // A successful Offboard revokes the machine's credential in the same transaction
  // (docs/agent-protocol.md): no Offboard may have ended Succeeded with a credential left valid.
  const credentials = db
    .prepare('SELECT machine_id, created_at, revoked_at FROM agent_credentials WHERE tenant_id = ?')
    .all(tenantId) as { machine_id: string; created_at: number; revoked_at: number | null }[];
  for (const row of rows) {
    if (row.type !== 'Offboard' || row.status !== 'Succeeded') continue;
    const at = (events.get(row.id) ?? []).find((e) => e.kind === 'transition' && e.to_status === 'Succeeded')?.at ?? row.updated_at;
    const outlived = credentials.filter(
      (c) => c.machine_id === row.machine_id && c.created_at <= at && (c.revoked_at === null || c.revoked_at > at),
    );
    if (outlived.length === 0) continue;
    problems.push(
      `Offboard ${row.id} Succeeded at ${toWireTime(at)}, but ${outlived.length} earlier credential(s) of ${row.machine_id} stayed valid (revoked ${outlived.map((c) => (c.revoked_at === null ? 'never' : toWireTime(c.revoked_at))).join(', ')})`,
    );
  }

  // The machine is offboarded in the Offboard's own transaction: offboarded exactly when (and
  // since) one Succeeded, reading as Inactive / CanBeOnboarded, and no action created after it.
  const machines = db
    .prepare('SELECT id, offboarded_at, health_status, onboarding_status FROM machines WHERE tenant_id = ?')
    .all(tenantId) as { id: string; offboarded_at: number | null; health_status: string; onboarding_status: string }[];
  for (const machine of machines) {
    const offboards = rows.filter((r) => r.machine_id === machine.id && r.type === 'Offboard' && r.status === 'Succeeded');
    if (offboards.length > 1) problems.push(`machine ${machine.id}: ${offboards.length} Offboards Succeeded`);
    const succeeded = offboards[0] && (events.get(offboards[0].id) ?? []).find((e) => e.kind === 'transition' && e.to_status === 'Succeeded');
    if (!succeeded) {
      if (machine.offboarded_at !== null) problems.push(`machine ${machine.id} is offboarded without a Succeeded Offboard`);
      continue;
    }
    if (machine.offboarded_at !== succeeded.at || machine.health_status !== 'Inactive' || machine.onboarding_status !== 'CanBeOnboarded') {
      problems.push(
        `machine ${machine.id}: Offboard ${offboards[0]!.id} Succeeded at ${toWireTime(succeeded.at)}, but the machine has offboarded_at ` +
          `${toWireTime(machine.offboarded_at)}, ${machine.health_status}, ${machine.onboarding_status}`,
      );
    }
    for (const row of rows) {
      if (row.machine_id !== machine.id) continue;
      const created = (events.get(row.id) ?? [])[0];
      if (created && created.seq > succeeded.seq) problems.push(`action ${row.id} was created on ${machine.id} after its Offboard succeeded`);
    }
  }

  // Everything present was asked for by a client, and every history is possible.
  let unacknowledgedCreates = 0;
  const byStatus: Record<string, number> = {};
  for (const row of rows) {
    byStatus[row.status] = (byStatus[row.status] ?? 0) + 1;
    if (!ledger.creates.has(row.id)) unacknowledgedCreates++;
    const sent = row.requestor_comment === null ? undefined : ledger.sentCreates.get(row.requestor_comment);
    if (!sent || sent.type !== row.type || sent.machineId !== row.machine_id) {
      problems.push(`action ${row.id} (${row.type} on ${row.machine_id}, ${row.requestor_comment}) was never requested`);
    }
    if (row.status === 'Cancelled' && !ledger.sentCancels.get(row.id)?.has(String(row.cancellation_comment))) {
      problems.push(`action ${row.id} is Cancelled with ${row.cancellation_comment}, which no client sent for it`);
    }
    const history = events.get(row.id) ?? [];
    if (row.status === 'Succeeded' || row.status === 'Failed') {
      const expected = outcomeFor(row.id);
      if (row.status !== expected.status || row.error_hresult !== expected.errorHResult) {
        problems.push(`action ${row.id} ended ${row.status}/${row.error_hresult}; its agent only ever reports ${expected.status}/${expected.errorHResult}`);
      }
      const final = history.find((e) => e.kind === 'transition' && e.to_status === row.status);
      const reportId = final?.detail ? (JSON.parse(final.detail) as { reportId?: string }).reportId : undefined;
      if (reportId !== expected.reportId) problems.push(`action ${row.id}: its final transition carries report ${reportId}`);
    } else if (row.error_hresult !== 0) {
      problems.push(`action ${row.id} is ${row.status} with errorHResult ${row.error_hresult}`);
    }
    if (row.status === 'TimeOut') problems.push(`action ${row.id} timed out, which nothing in this test can cause`);
    problems.push(...historyProblems(row, history));
  }
  return { problems, actions: rows.length, events: eventRows.length, unacknowledgedCreates, byStatus };
}

/** Differences between the API's view of an action and its row. */
export function wireProblems(wire: any, row: ActionRow | undefined): string[] {
  if (!row) return [`GET ${wire?.id}: no such row`];
  const expected: Record<string, unknown> = {
    id: row.id,
    type: row.type,
    status: row.status,
    machineId: row.machine_id,
    requestorComment: row.requestor_comment,
    creationDateTimeUtc: toWireTime(row.created_at),
    lastUpdateDateTimeUtc: toWireTime(row.updated_at),
    cancellationComment: row.cancellation_comment,
    cancellationDateTimeUtc: toWireTime(row.cancelled_at),
    errorHResult: row.error_hresult,
  };
  return Object.entries(expected)
    .filter(([k, v]) => JSON.stringify(wire?.[k]) !== JSON.stringify(v))
    .map(([k, v]) => `GET ${row.id}: ${k} is ${JSON.stringify(wire?.[k])}, the database has ${JSON.stringify(v)}`);
}

export function readAction(db: Database.Database, id: string): ActionRow | undefined {
  return db.prepare('SELECT * FROM machine_actions WHERE id = ?').get(id) as ActionRow | undefined;
}
