import { investigationProgress } from '../../domain/investigations.js';
import { IP_RANGE_GAP_MS, reportedAddresses } from '../../domain/ip.js';
import type {
  ActionArtifact,
  ActionEvent,
  ArtifactSlot,
  LibraryFile,
  AgentCredential,
  Alert,
  AlertEvidence,
  Application,
  EnrollmentSecret,
  Investigation,
  Machine,
  MachineAction,
  ReenrollGrant,
  SigningKey,
  Tenant,
  User,
} from '../../domain/model.js';
import { libraryNameKey } from '../../domain/library.js';
import { OFFBOARDED } from '../../domain/model.js';
import { ALERT_SET, INVESTIGATION_SET, LIBRARY_FILE_SET, MACHINE_ACTION_SET } from '../../domain/query-sets.js';
import type {
  AttachProof,
  CheckinInfo,
  EventInput,
  InsertOutcome,
  LibraryPutOutcome,
  ListQuery,
  Overdue,
  Page,
  Store,
  Transition,
  World,
} from '../../domain/store.js';
import type { EntitySetDef } from '../../odata/index.js';
import * as A from './artifacts.js';
import * as Q from './queries.js';
import * as R from './rows.js';
import type { Row } from './rows.js';

/**
 * One statement of a write. Writes of several statements are written once, as generators that
 * yield their statements and receive each one's result, and every backend drives them its own
 * way inside a transaction: SQLite synchronously within its group commit, PostgreSQL awaiting
 * each round trip.
 */
export interface Step {
  sql: string;
  params: unknown[];
  /** PostgreSQL: lock the rows read until the transaction ends (SELECT ... FOR UPDATE). */
  forUpdate?: boolean;
  /**
   * PostgreSQL: share-lock the rows read (SELECT ... FOR SHARE): readers that take it run side by
   * side, a writer of those rows waits for them (and they for it).
   */
  forShare?: boolean;
  /** PostgreSQL: serialise with every other transaction taking this key (SQLite writes are serial). */
  lock?: string;
  /** Only on this backend (a statement the other has no equivalent of, or no need for). */
  only?: 'sqlite' | 'postgres';
}

export interface StepResult {
  rows: Row[];
  changes: number;
}

export type Operation<T> = Generator<Step, T, StepResult>;

function* insertEvent(
  tenantId: string,
  actionId: string,
  kind: ActionEvent['kind'],
  from: string | null,
  to: string | null,
  e: EventInput,
): Operation<boolean> {
  const { changes } = yield {
    sql: Q.INSERT_EVENT,
    params: [tenantId, actionId, e.at, e.actor, kind, from, to, e.comment, e.detail ? JSON.stringify(e.detail) : null, e.reportId ?? null],
  };
  return changes > 0;
}

function* insertAction(action: MachineAction, event: EventInput, limit: number | undefined): Operation<InsertOutcome> {
  // Read under a share lock: an Offboard succeeding meanwhile (it updates this row) is either
  // seen here or waits until this action exists.
  const { rows: machine } = yield { sql: Q.SELECT_MACHINE_OFFBOARDED, params: [action.tenantId, action.machineId], forShare: true };
  if (machine[0] && machine[0].offboarded_at !== null) return 'offboarded';
  if (limit !== undefined) {
    const { rows } = yield {
      sql: Q.COUNT_ACTIVE_OF_TYPE,
      params: [action.tenantId, action.type],
      lock: `${action.tenantId}:${action.type}`,
    };
    if (Number(rows[0]!.n) >= limit) return 'limit';
  }
  // The conflict-group index refuses a second active action: then nothing is inserted.
  const { changes } = yield { sql: Q.INSERT_ACTION, params: R.actionParams(action) };
  if (changes === 0) return 'conflict';
  yield* insertEvent(action.tenantId, action.id, 'created', null, action.status, event);
  return 'inserted';
}

function* transitionAction(change: Transition): Operation<MachineAction | null> {
  const { rows } = yield { sql: Q.SELECT_ACTION_STATUS, params: [change.tenantId, change.actionId], forUpdate: true };
  const current = rows[0];
  if (!current || !change.from.includes(current.status as MachineAction['status'])) return null;
  const patch = R.patchAssignments(change.patch);
  const updated = yield {
    sql: `UPDATE machine_actions SET status = ?, updated_at = ?${patch.sql.map((s) => `, ${s}`).join('')}
      WHERE tenant_id = ? AND id = ? AND status IN (${R.placeholders(change.from.length)}) RETURNING *`,
    params: [change.to, change.event.at, ...patch.params, change.tenantId, change.actionId, ...change.from],
  };
  const row = updated.rows[0];
  if (!row) return null;
  yield* insertEvent(change.tenantId, change.actionId, change.event.kind ?? 'transition', String(current.status), change.to, change.event);
  const action = R.rowToAction(row);
  if (change.offboardsMachine) {
    const at = change.event.at;
    yield { sql: Q.OFFBOARD_MACHINE, params: [at, OFFBOARDED.healthStatus, OFFBOARDED.onboardingStatus, action.tenantId, action.machineId] };
    yield { sql: Q.REVOKE_AGENT_CREDENTIALS, params: [at, action.tenantId, action.machineId] };
    yield { sql: Q.DELETE_UNUSED_REENROLL_GRANTS, params: [action.tenantId, action.machineId] };
  }
  // What the report found is raised with it: an acknowledged report and its alerts are one commit.
  for (const alert of change.alerts ?? []) yield { sql: Q.INSERT_ALERT, params: R.alertParams(alert) };
  if (action.type === 'CollectInvestigationPackage') yield* followInvestigation(action);
  return action;
}

function* attachAgent(machine: Machine, credential: AgentCredential, proof: AttachProof): Operation<boolean> {
  const at = credential.createdAt;
  const key = [machine.tenantId, machine.id];
  if (proof.kind === 'new') {
    if ((yield { sql: Q.INSERT_NEW_MACHINE, params: R.machineParams(machine) }).changes === 0) return false;
  } else {
    // The proof is spent first: of two attaches with one proof, the second changes nothing here.
    const spent =
      proof.kind === 'credential'
        ? yield { sql: Q.SPEND_AGENT_CREDENTIAL, params: [at, proof.tokenHash, ...key] }
        : yield { sql: Q.SPEND_REENROLL_GRANT, params: [at, proof.tokenHash, ...key, at] };
    if (spent.changes === 0) return false;
    yield { sql: Q.UPSERT_MACHINE, params: R.machineParams(machine) };
    yield { sql: Q.REVOKE_AGENT_CREDENTIALS, params: [at, ...key] };
  }
  yield { sql: Q.INSERT_AGENT_CREDENTIAL, params: R.agentCredentialParams(credential) };
  return true;
}

/** An investigation's state follows its package collection, in the action's own transaction. */
function* followInvestigation(action: MachineAction): Operation<void> {
  const { rows } = yield { sql: Q.SELECT_INVESTIGATION_OF_ACTION, params: [action.id] };
  if (!rows[0]) return;
  const investigation = R.rowToInvestigation(rows[0]);
  let trigger: AlertEvidence[] | null = null;
  if (investigation.triggeringAlertId !== null) {
    const alert = yield { sql: Q.SELECT_ALERT_EVIDENCE, params: [action.tenantId, investigation.triggeringAlertId] };
    trigger = alert.rows[0] ? (JSON.parse(String(alert.rows[0].evidence)) as AlertEvidence[]) : null;
  }
  const next = investigationProgress(action, trigger);
  yield { sql: Q.UPDATE_INVESTIGATION, params: [next.state, next.statusDetails, next.cancelledBy, next.endTime, Number(investigation.id)] };
  if (investigation.triggeringAlertId !== null) {
    yield {
      sql: Q.FOLLOW_INVESTIGATION_STATE,
      params: [next.state, action.lastUpdateDateTimeUtc, action.tenantId, investigation.triggeringAlertId, Number(investigation.id)],
    };
  }
}

function* insertInvestigation(action: MachineAction, event: EventInput): Operation<Investigation | 'conflict' | 'offboarded'> {
  const inserted = yield* insertAction(action, event, undefined);
  if (inserted === 'offboarded' || inserted === 'conflict') return inserted;
  const trigger = yield { sql: Q.SELECT_TRIGGERING_ALERT, params: [action.tenantId, action.machineId] };
  const triggeringAlertId = trigger.rows[0] ? String(trigger.rows[0].id) : null;
  const progress = investigationProgress(action, null);
  const draft: Omit<Investigation, 'id'> = {
    tenantId: action.tenantId,
    startTime: action.creationDateTimeUtc,
    endTime: progress.endTime,
    state: progress.state,
    cancelledBy: progress.cancelledBy,
    statusDetails: progress.statusDetails,
    machineId: action.machineId,
    computerDnsName: action.computerDnsName,
    triggeringAlertId,
    actionId: action.id,
  };
  const { rows } = yield { sql: Q.INSERT_INVESTIGATION, params: R.investigationParams(draft) };
  const id = Number(rows[0]!.seq);
  if (triggeringAlertId !== null) {
    yield { sql: Q.LINK_ALERT_TO_INVESTIGATION, params: [id, draft.state, action.creationDateTimeUtc, action.tenantId, triggeringAlertId] };
  }
  return { ...draft, id: String(id) };
}

/**
 * A check-in whose addresses differ from the machine's open IP ranges, or that comes after a
 * gap: ranges of addresses no longer reported end at their last confirmation (all of them after
 * a gap), new addresses open ranges, and the machine keeps its newest ranges only.
 */
function* recordAddressChange(tenantId: string, machineId: string, at: number, info: CheckinInfo, addresses: readonly string[]): Operation<void> {
  const { rows } = yield { sql: Q.SELECT_IP_RANGES_STATE, params: [tenantId, machineId], forUpdate: true };
  const row = rows[0];
  if (!row) return;
  const seen = row.ip_ranges_seen === null || row.ip_ranges_seen === undefined ? null : Number(row.ip_ranges_seen);
  const continuing = seen !== null && seen >= at - IP_RANGE_GAP_MS;
  const open = continuing && row.ip_ranges_key ? String(row.ip_ranges_key).split(',') : [];
  const ending = open.filter((ip) => !addresses.includes(ip));
  if (!continuing) {
    yield { sql: Q.closeIpRangesSql('all'), params: [seen ?? at, tenantId, machineId] };
  } else if (ending.length > 0) {
    yield { sql: Q.closeIpRangesSql(ending.length), params: [seen, tenantId, machineId, ...ending] };
  }
  const opening = addresses.filter((ip) => !open.includes(ip));
  for (const ip of opening) yield { sql: Q.OPEN_IP_RANGE, params: [tenantId, machineId, ip, at] };
  if (opening.length > 0) yield { sql: Q.PRUNE_MACHINE_IP_RANGES, params: [tenantId, machineId, tenantId, machineId] };
  const update = Q.checkinChangingAddresses(tenantId, machineId, at, info, addresses.join(','));
  yield { sql: update.sql, params: update.params };
}

function* appendEvent(tenantId: string, actionId: string, kind: ActionEvent['kind'], event: EventInput): Operation<boolean> {
  const { rows } = yield { sql: Q.SELECT_ACTION_STATUS, params: [tenantId, actionId], forUpdate: true };
  if (!rows[0]) return false;
  const status = String(rows[0].status);
  return yield* insertEvent(tenantId, actionId, kind, status, status, event);
}

/** Parameters per statement when loading a world: below SQLite's and PostgreSQL's limits. */
const MAX_PARAMS = 30_000;

/** Multi-row INSERTs of `values` (one parameter array per row), a few hundred rows at a time. */
function* insertAll(table: string, columns: readonly string[], values: unknown[][]): Operation<void> {
  const per = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
  for (let i = 0; i < values.length; i += per) {
    const chunk = values.slice(i, i + per);
    yield { sql: Q.insertRows(table, columns, chunk.length), params: chunk.flat() };
  }
}

function* replaceWorld(world: World): Operation<void> {
  // One lock for the whole world: a second reset on another node waits for this one.
  yield { sql: 'SELECT 1', params: [], lock: 'world' };
  for (const table of Q.WORLD_TABLES) yield { sql: `DELETE FROM ${table}`, params: [] };
  // Ids that come from a sequence (investigations') start again, so a reset world repeats them.
  yield { sql: `DELETE FROM sqlite_sequence WHERE name IN (${Q.SEQUENCED_TABLES.map((t) => `'${t}'`).join(', ')})`, params: [], only: 'sqlite' };
  for (const table of Q.SEQUENCED_TABLES) yield { sql: `ALTER TABLE ${table} ALTER COLUMN seq RESTART WITH 1`, params: [], only: 'postgres' };
  yield* insertAll('tenants', ['id', 'name'], world.tenants.map((t) => [t.id, t.name]));
  yield* insertAll('applications', R.APPLICATION_COLUMNS, world.applications.map(R.applicationParams));
  yield* insertAll('users', R.USER_COLUMNS, world.users.map(R.userParams));
  yield* insertAll('machines', R.MACHINE_COLUMNS, world.machines.map(R.machineParams));
  yield* insertAll('machine_actions', R.ACTION_COLUMNS, world.actions.map(R.actionParams));
  const events = world.actions.flatMap((a) =>
    a.events.map((e) => [
      a.tenantId,
      a.id,
      e.at,
      e.actor,
      e.kind,
      e.fromStatus,
      e.toStatus,
      e.comment,
      e.detail ? JSON.stringify(e.detail) : null,
      e.reportId,
    ]),
  );
  yield* insertAll('action_events', Q.EVENT_COLUMNS, events);
}

function* deleteMachine(tenantId: string, machineId: string): Operation<boolean> {
  const key = [tenantId, machineId];
  yield { sql: Q.DELETE_MACHINE_INVESTIGATIONS, params: key };
  yield { sql: Q.DELETE_MACHINE_ALERTS, params: key };
  yield { sql: Q.DELETE_MACHINE_IP_RANGES, params: key };
  yield { sql: Q.DELETE_MACHINE_EVENTS, params: key };
  yield { sql: Q.DELETE_MACHINE_ARTIFACTS, params: key };
  yield { sql: Q.DELETE_MACHINE_ACTIONS, params: key };
  yield { sql: Q.DELETE_MACHINE_CREDENTIALS, params: key };
  yield { sql: Q.DELETE_MACHINE_GRANTS, params: key };
  return (yield { sql: Q.DELETE_MACHINE, params: key }).changes > 0;
}

/**
 * Every Store method, written once over two primitives a backend provides: `query` (a read)
 * and `transaction` (drives an Operation). The shared contract suite (test/store) runs every
 * backend through all of them.
 */
export abstract class SqlStore implements Store {
  abstract readonly backend: 'sqlite' | 'postgres';
  /** The machines' filterable properties, with this backend's SQL for tags. */
  protected abstract readonly machineSet: EntitySetDef;

  abstract close(): Promise<void>;
  protected abstract query(sql: string, params: unknown[]): Promise<Row[]>;
  protected abstract transaction<T>(operation: () => Operation<T>): Promise<T>;

  /** A write of one statement; resolves with the number of rows it changed. */
  protected exec(sql: string, params: unknown[]): Promise<number> {
    return this.transaction(function* () {
      return (yield { sql, params }).changes;
    });
  }

  private async one<T>(sql: string, params: unknown[], map: (r: Row) => T): Promise<T | null> {
    const [row] = await this.query(sql, params);
    return row ? map(row) : null;
  }

  private async many<T>(sql: string, params: unknown[], map: (r: Row) => T): Promise<T[]> {
    return (await this.query(sql, params)).map(map);
  }

  private async page<T>(q: { page: Q.Sql; count: Q.Sql }, query: ListQuery, map: (r: Row) => T): Promise<Page<T>> {
    const rows = await this.query(q.page.sql, q.page.params);
    const hasMore = rows.length > query.top;
    const items = (hasMore ? rows.slice(0, query.top) : rows).map(map);
    const count = query.count ? Number((await this.query(q.count.sql, q.count.params))[0]!.n) : null;
    return { items, count, hasMore };
  }

  async upsertTenant(tenant: Tenant): Promise<void> {
    await this.exec(Q.UPSERT_TENANT, [tenant.id, tenant.name]);
  }

  getTenant(id: string): Promise<Tenant | null> {
    return this.one('SELECT id, name FROM tenants WHERE id = ?', [id], rowToTenant);
  }

  listTenants(): Promise<Tenant[]> {
    return this.many(Q.SELECT_TENANTS, [], rowToTenant);
  }

  async upsertApplication(app: Application): Promise<void> {
    await this.exec(Q.UPSERT_APPLICATION, R.applicationParams(app));
  }

  getApplication(tenantId: string, clientId: string): Promise<Application | null> {
    return this.one(Q.SELECT_APPLICATION, [tenantId, clientId], R.rowToApplication);
  }

  listApplications(tenantId: string): Promise<Application[]> {
    return this.many(Q.SELECT_APPLICATIONS, [tenantId], R.rowToApplication);
  }

  async deleteApplication(tenantId: string, clientId: string): Promise<boolean> {
    return (await this.exec(Q.DELETE_APPLICATION, [tenantId, clientId])) > 0;
  }

  async upsertUser(user: User): Promise<void> {
    await this.exec(Q.UPSERT_USER, R.userParams(user));
  }

  getUserByObjectId(tenantId: string, objectId: string): Promise<User | null> {
    return this.one(Q.SELECT_USER_BY_OID, [tenantId, objectId], R.rowToUser);
  }

  getUserByUpn(tenantId: string, upn: string): Promise<User | null> {
    return this.one(Q.SELECT_USER_BY_UPN, [tenantId, upn], R.rowToUser);
  }

  listUsers(tenantId: string): Promise<User[]> {
    return this.many(Q.SELECT_USERS, [tenantId], R.rowToUser);
  }

  async deleteUser(tenantId: string, objectId: string): Promise<boolean> {
    return (await this.exec(Q.DELETE_USER, [tenantId, objectId])) > 0;
  }

  async insertSigningKey(key: SigningKey): Promise<void> {
    await this.exec(Q.INSERT_SIGNING_KEY, R.signingKeyParams(key));
  }

  async retireSigningKeysExcept(kid: string, at: number): Promise<void> {
    await this.exec(Q.RETIRE_SIGNING_KEYS, [at, kid]);
  }

  async pruneSigningKeys(before: number): Promise<void> {
    await this.exec(Q.PRUNE_SIGNING_KEYS, [before]);
  }

  listSigningKeys(): Promise<SigningKey[]> {
    return this.many(Q.SELECT_SIGNING_KEYS, [], R.rowToSigningKey);
  }

  async replaceSigningKeyPem(kid: string, from: string, to: string): Promise<boolean> {
    return (await this.exec(Q.REPLACE_SIGNING_KEY_PEM, [to, kid, from])) > 0;
  }

  async upsertMachine(machine: Machine): Promise<void> {
    await this.exec(Q.UPSERT_MACHINE, R.machineParams(machine));
  }

  /** An exact id wins over an alias that happens to equal another machine's id. */
  async findMachine(tenantId: string, key: string, also: { aadDeviceId: boolean; computerDnsName: boolean }): Promise<Machine | null> {
    const byId = await this.one(Q.SELECT_MACHINE_BY.id, [tenantId, key], R.rowToMachine);
    if (byId || (!also.aadDeviceId && !also.computerDnsName)) return byId;
    const byAad = also.aadDeviceId ? await this.one(Q.SELECT_MACHINE_BY.aadDeviceId, [tenantId, key], R.rowToMachine) : null;
    if (byAad || !also.computerDnsName) return byAad;
    return this.one(Q.SELECT_MACHINE_BY.computerDnsName, [tenantId, key], R.rowToMachine);
  }

  listMachines(tenantId: string, query: ListQuery): Promise<Page<Machine>> {
    return this.page(Q.listSql(Q.MACHINE_LIST, this.machineSet, tenantId, query, 'm.computer_dns_name ASC'), query, R.rowToMachine);
  }

  insertAction(action: MachineAction, event: EventInput, limit?: number): Promise<InsertOutcome> {
    return this.transaction(() => insertAction(action, event, limit));
  }

  getAction(tenantId: string, id: string): Promise<MachineAction | null> {
    return this.one(Q.SELECT_ACTION, [tenantId, id], R.rowToAction);
  }

  listActions(tenantId: string, query: ListQuery): Promise<Page<MachineAction>> {
    return this.page(Q.listSql(Q.ACTION_LIST, MACHINE_ACTION_SET, tenantId, query, 'a.created_at DESC'), query, R.rowToAction);
  }

  transitionAction(change: Transition): Promise<MachineAction | null> {
    return this.transaction(() => transitionAction(change));
  }

  listEvents(tenantId: string, actionId: string): Promise<ActionEvent[]> {
    return this.many(Q.SELECT_EVENTS, [tenantId, actionId], R.rowToEvent);
  }

  appendEvent(tenantId: string, actionId: string, kind: ActionEvent['kind'], event: EventInput): Promise<boolean> {
    return this.transaction(() => appendEvent(tenantId, actionId, kind, event));
  }

  listActiveActionsForMachine(tenantId: string, machineId: string): Promise<MachineAction[]> {
    return this.many(Q.SELECT_ACTIVE_FOR_MACHINE, [tenantId, machineId], R.rowToAction);
  }

  async getActionsOfMachine(tenantId: string, machineId: string, ids: readonly string[]): Promise<MachineAction[]> {
    if (ids.length === 0) return [];
    return this.many(Q.selectActionsOfMachine(ids.length), [tenantId, machineId, ...ids], R.rowToAction);
  }

  listOverdueActions(overdue: Overdue, limit: number): Promise<MachineAction[]> {
    const q = Q.overdueSql(overdue, limit);
    return this.many(q.sql, q.params, R.rowToAction);
  }

  async upsertEnrollmentSecret(secret: EnrollmentSecret): Promise<void> {
    await this.exec(Q.UPSERT_ENROLLMENT_SECRET, R.enrollmentSecretParams(secret));
  }

  getEnrollmentSecret(id: string): Promise<EnrollmentSecret | null> {
    return this.one(Q.SELECT_ENROLLMENT_SECRET, [id], R.rowToEnrollmentSecret);
  }

  listEnrollmentSecrets(tenantId: string): Promise<EnrollmentSecret[]> {
    return this.many(Q.SELECT_ENROLLMENT_SECRETS, [tenantId], R.rowToEnrollmentSecret);
  }

  async deleteEnrollmentSecrets(tenantId: string, label: string): Promise<void> {
    await this.exec(Q.DELETE_ENROLLMENT_SECRETS, [tenantId, label]);
  }

  async deleteEnrollmentSecret(tenantId: string, id: string): Promise<boolean> {
    return (await this.exec(Q.DELETE_ENROLLMENT_SECRET, [tenantId, id])) > 0;
  }

  async insertReenrollGrant(grant: ReenrollGrant): Promise<void> {
    await this.exec(Q.INSERT_REENROLL_GRANT, R.reenrollGrantParams(grant));
  }

  findReenrollGrant(tokenHash: string): Promise<ReenrollGrant | null> {
    return this.one(Q.SELECT_REENROLL_GRANT, [tokenHash], R.rowToReenrollGrant);
  }

  attachAgent(machine: Machine, credential: AgentCredential, proof: AttachProof): Promise<boolean> {
    return this.transaction(() => attachAgent(machine, credential, proof));
  }

  findAgentCredential(tokenHash: string): Promise<AgentCredential | null> {
    return this.one(Q.SELECT_AGENT_CREDENTIAL, [tokenHash], R.rowToAgentCredential);
  }

  async recordCheckin(tenantId: string, machineId: string, at: number, info: CheckinInfo): Promise<void> {
    const addresses = reportedAddresses(info);
    if (addresses === undefined) {
      await this.exec(Q.recordCheckinSql(info), Q.checkinParams(tenantId, machineId, at, info));
      return;
    }
    // The usual check-in keeps its addresses: one UPDATE, as a check-in without them.
    const keep = Q.checkinKeepingAddresses(tenantId, machineId, at, info, addresses.join(','));
    if ((await this.exec(keep.sql, keep.params)) > 0) return;
    await this.transaction(() => recordAddressChange(tenantId, machineId, at, info, addresses));
  }

  markInactiveMachines(seenBefore: number): Promise<number> {
    return this.exec(Q.MARK_INACTIVE, [seenBefore]);
  }

  findMachinesByIp(tenantId: string, ip: string, from: number, to: number, deviceGroups: readonly number[] | null, limit: number): Promise<Machine[]> {
    const q = Q.machinesByIpSql(tenantId, ip, from, to, deviceGroups, limit);
    return this.many(q.sql, q.params, R.rowToMachine);
  }

  pruneIpHistory(before: number): Promise<number> {
    return this.transaction(function* () {
      let removed = 0;
      for (const sql of Q.PRUNE_IP_HISTORY) removed += (yield { sql, params: [before] }).changes;
      return removed;
    });
  }

  insertInvestigation(action: MachineAction, event: EventInput): Promise<Investigation | 'conflict' | 'offboarded'> {
    return this.transaction(() => insertInvestigation(action, event));
  }

  /** Ids are numbers; anything else names no investigation. */
  async getInvestigation(tenantId: string, id: string): Promise<Investigation | null> {
    // Only the canonical form names an investigation: '007' is not investigation 7.
    if (!/^(0|[1-9][0-9]{0,14})$/.test(id)) return null;
    return this.one(Q.SELECT_INVESTIGATION, [tenantId, Number(id)], R.rowToInvestigation);
  }

  listInvestigations(tenantId: string, query: ListQuery): Promise<Page<Investigation>> {
    return this.page(Q.listSql(Q.INVESTIGATION_LIST, INVESTIGATION_SET, tenantId, query, 'i.start_time DESC'), query, R.rowToInvestigation);
  }

  getAlert(tenantId: string, id: string): Promise<Alert | null> {
    return this.one(Q.SELECT_ALERT, [tenantId, id], R.rowToAlert);
  }

  listAlerts(tenantId: string, query: ListQuery): Promise<Page<Alert>> {
    return this.page(Q.listSql(Q.ALERT_LIST, ALERT_SET, tenantId, query, 'al.created_at DESC'), query, R.rowToAlert);
  }

  listLibraryFiles(tenantId: string, query: ListQuery): Promise<Page<LibraryFile>> {
    const q = Q.listSql(A.LIBRARY_LIST, LIBRARY_FILE_SET, tenantId, { ...query, deviceGroups: null }, 'l.name_key ASC');
    return this.page(q, query, A.rowToLibraryFile);
  }

  getLibraryFile(tenantId: string, fileName: string): Promise<LibraryFile | null> {
    return this.one(A.SELECT_LIBRARY_FILE, [tenantId, libraryNameKey(fileName)], A.rowToLibraryFile);
  }

  putLibraryFile(file: LibraryFile, replace: boolean): Promise<LibraryPutOutcome> {
    return this.transaction(() => A.putLibraryFile(file, replace));
  }

  async deleteLibraryFile(tenantId: string, fileName: string): Promise<boolean> {
    return (await this.exec(A.DELETE_LIBRARY_FILE, [tenantId, libraryNameKey(fileName)])) > 0;
  }

  async putArtifact(artifact: ActionArtifact): Promise<void> {
    await this.exec(A.UPSERT_ARTIFACT, A.artifactParams(artifact));
  }

  getArtifact(tenantId: string, actionId: string, slot: ArtifactSlot): Promise<ActionArtifact | null> {
    return this.one(A.SELECT_ARTIFACT, [tenantId, actionId, slot], A.rowToArtifact);
  }

  deleteExpiredArtifacts(before: number, limit: number): Promise<number> {
    return this.transaction(() => A.deleteExpiredArtifacts(before, limit));
  }

  async touchBlob(sha256: string, size: number, at: number): Promise<void> {
    await this.exec(A.TOUCH_BLOB, [sha256, size, at]);
  }

  async listCollectableBlobs(before: number, limit: number): Promise<string[]> {
    return this.many(A.SELECT_COLLECTABLE_BLOBS, [before, limit], (r) => String(r.sha256));
  }

  async forgetBlob(sha256: string, before: number): Promise<boolean> {
    return (await this.exec(A.FORGET_BLOB, [sha256, before, sha256])) > 0;
  }

  async linkKey(id: string, candidate: string, at: number): Promise<string> {
    await this.exec(A.INSERT_LINK_KEY, [id, candidate, at]);
    const secret = await this.one(A.SELECT_LINK_KEY, [id], (r) => String(r.secret));
    if (secret === null) throw new Error(`link key ${id} was not stored`);
    return secret;
  }

  deleteMachine(tenantId: string, machineId: string): Promise<boolean> {
    return this.transaction(() => deleteMachine(tenantId, machineId));
  }

  async exportWorld(): Promise<World> {
    const [tenants, applications, users, machines, actions, events] = await Promise.all([
      this.many(Q.SELECT_ALL_TENANTS, [], rowToTenant),
      this.many(Q.SELECT_ALL_APPLICATIONS, [], R.rowToApplication),
      this.many(Q.SELECT_ALL_USERS, [], R.rowToUser),
      this.many(Q.SELECT_ALL_MACHINES, [], R.rowToMachine),
      this.many(Q.SELECT_ALL_ACTIONS, [], R.rowToAction),
      this.query(Q.SELECT_ALL_EVENTS, []),
    ]);
    const byAction = new Map(actions.map((a) => [a.id, { ...a, events: [] as World['actions'][number]['events'] }]));
    for (const row of events) {
      const e = R.rowToEvent(row);
      byAction.get(e.actionId)?.events.push({
        at: e.at,
        actor: e.actor,
        kind: e.kind,
        fromStatus: e.fromStatus,
        toStatus: e.toStatus,
        comment: e.comment,
        detail: e.detail,
        reportId: row.report_id === null || row.report_id === undefined ? null : String(row.report_id),
      });
    }
    return { tenants, applications, users, machines, actions: [...byAction.values()] };
  }

  replaceWorld(world: World): Promise<void> {
    return this.transaction(() => replaceWorld(world));
  }
}

const rowToTenant = (r: Row): Tenant => ({ id: String(r.id), name: String(r.name) });
