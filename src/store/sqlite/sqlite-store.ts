import Database from 'better-sqlite3';
import { MACHINE_ACTION_SET, MACHINE_SET } from '../../domain/query-sets.js';
import type {
  ActionEvent,
  AgentCredential,
  Application,
  EnrollmentSecret,
  Machine,
  MachineAction,
  SigningKey,
  Tenant,
  User,
} from '../../domain/model.js';
import type { CheckinInfo, EventInput, Overdue, InsertOutcome, ListQuery, Page, Store, Transition } from '../../domain/store.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import {
  ACTION_LIST,
  COUNT_ACTIVE_OF_TYPE,
  INSERT_ACTION,
  INSERT_EVENT,
  MACHINE_LIST,
  SELECT_ACTION,
  SELECT_ACTION_STATUS,
  SELECT_EVENTS,
  UPSERT_MACHINE,
  UPSERT_TENANT,
  SELECT_TENANTS,
  UPSERT_APPLICATION,
  SELECT_APPLICATION,
  SELECT_APPLICATIONS,
  DELETE_APPLICATION,
  UPSERT_USER,
  SELECT_USER_BY_OID,
  SELECT_USER_BY_UPN,
  SELECT_USERS,
  DELETE_USER,
  INSERT_SIGNING_KEY,
  RETIRE_SIGNING_KEYS,
  PRUNE_SIGNING_KEYS,
  SELECT_SIGNING_KEYS,
  SELECT_ACTIVE_FOR_MACHINE,
  selectActionsOfMachine,
  overdueSql,
  UPSERT_ENROLLMENT_SECRET,
  SELECT_ENROLLMENT_SECRET,
  SELECT_ENROLLMENT_SECRETS,
  DELETE_ENROLLMENT_SECRETS,
  INSERT_AGENT_CREDENTIAL,
  SELECT_AGENT_CREDENTIAL,
  REVOKE_AGENT_CREDENTIALS,
  recordCheckinSql,
  checkinParams,
  MARK_INACTIVE,
  listSql,
  selectMachine,
  type Sql,
} from '../sql/queries.js';
import {
  actionParams,
  machineParams,
  patchAssignments,
  placeholders,
  rowToAction,
  rowToEvent,
  rowToMachine,
  applicationParams,
  rowToApplication,
  userParams,
  rowToUser,
  signingKeyParams,
  rowToSigningKey,
  enrollmentSecretParams,
  rowToEnrollmentSecret,
  agentCredentialParams,
  rowToAgentCredential,
  type Row,
} from '../sql/rows.js';

type Db = Database.Database;

interface PendingWrite {
  run: (db: Db) => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

const STATEMENT_CACHE_LIMIT = 256;

/**
 * The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a committed
 * transaction survives a crash or power loss. Writes are grouped: every write issued during one
 * turn of the event loop runs in one transaction (each inside its own savepoint, so one failing
 * write does not undo the others), and all their promises resolve after the single COMMIT.
 * That keeps one fsync per batch instead of one per request. Reads run directly.
 */
export class SqliteStore implements Store {
  readonly backend = 'sqlite' as const;
  private readonly db: Db;
  private readonly statements = new Map<string, Database.Statement>();
  private queue: PendingWrite[] = [];
  private flushScheduled = false;
  private closed = false;

  private constructor(db: Db) {
    this.db = db;
  }

  static open(path: string, options: { synchronous?: 'FULL' | 'NORMAL' } = {}): SqliteStore {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const store = new SqliteStore(db);
    store.migrate();
    return store;
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
    );
    for (const m of SQLITE_MIGRATIONS) {
      if (applied.has(m.version)) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
      }).immediate();
    }
  }

  /** Runs an integrity check; used by tests and `countermand` diagnostics. */
  integrityCheck(): string {
    return String(this.db.pragma('integrity_check', { simple: true }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.close();
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      if (this.statements.size >= STATEMENT_CACHE_LIMIT) {
        const oldest = this.statements.keys().next().value as string;
        this.statements.delete(oldest);
      }
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private all(q: Sql): Row[] {
    return this.stmt(q.sql).all(...(q.params as unknown[])) as Row[];
  }

  private get(sql: string, params: unknown[]): Row | undefined {
    return this.stmt(sql).get(...params) as Row | undefined;
  }

  private write<T>(run: (db: Db) => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.db.exec('BEGIN IMMEDIATE');
      for (const write of batch) {
        this.db.exec('SAVEPOINT w');
        try {
          outcomes.push({ ok: true, value: write.run(this.db) });
          this.db.exec('RELEASE w');
        } catch (error) {
          this.db.exec('ROLLBACK TO w');
          this.db.exec('RELEASE w');
          outcomes.push({ ok: false, value: error });
        }
      }
      this.db.exec('COMMIT');
    } catch (error) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      for (const write of batch) write.reject(error);
      return;
    }
    batch.forEach((write, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) write.resolve(outcome.value);
      else write.reject(outcome.value);
    });
  }

  private insertEvent(
    tenantId: string,
    actionId: string,
    kind: ActionEvent['kind'],
    from: string | null,
    to: string | null,
    e: EventInput,
  ): void {
    this.stmt(INSERT_EVENT).run(
      tenantId,
      actionId,
      e.at,
      e.actor,
      kind,
      from,
      to,
      e.comment,
      e.detail ? JSON.stringify(e.detail) : null,
    );
  }

  upsertTenant(tenant: Tenant): Promise<void> {
    return this.write(() => {
      this.stmt(UPSERT_TENANT).run(tenant.id, tenant.name);
    });
  }

  async getTenant(id: string): Promise<Tenant | null> {
    const row = this.get('SELECT id, name FROM tenants WHERE id = ?', [id]);
    return row ? { id: String(row.id), name: String(row.name) } : null;
  }

  async listTenants(): Promise<Tenant[]> {
    return this.all({ sql: SELECT_TENANTS, params: [] }).map((r) => ({ id: String(r.id), name: String(r.name) }));
  }

  /** A write of one statement; resolves with the number of rows it changed. */
  private exec(sql: string, params: unknown[]): Promise<number> {
    return this.write(() => this.stmt(sql).run(...params).changes);
  }

  async upsertApplication(app: Application): Promise<void> {
    await this.exec(UPSERT_APPLICATION, applicationParams(app));
  }

  async getApplication(tenantId: string, clientId: string): Promise<Application | null> {
    const row = this.get(SELECT_APPLICATION, [tenantId, clientId]);
    return row ? rowToApplication(row) : null;
  }

  async listApplications(tenantId: string): Promise<Application[]> {
    return this.all({ sql: SELECT_APPLICATIONS, params: [tenantId] }).map(rowToApplication);
  }

  async deleteApplication(tenantId: string, clientId: string): Promise<boolean> {
    return (await this.exec(DELETE_APPLICATION, [tenantId, clientId])) > 0;
  }

  async upsertUser(user: User): Promise<void> {
    await this.exec(UPSERT_USER, userParams(user));
  }

  async getUserByObjectId(tenantId: string, objectId: string): Promise<User | null> {
    const row = this.get(SELECT_USER_BY_OID, [tenantId, objectId]);
    return row ? rowToUser(row) : null;
  }

  async getUserByUpn(tenantId: string, upn: string): Promise<User | null> {
    const row = this.get(SELECT_USER_BY_UPN, [tenantId, upn]);
    return row ? rowToUser(row) : null;
  }

  async listUsers(tenantId: string): Promise<User[]> {
    return this.all({ sql: SELECT_USERS, params: [tenantId] }).map(rowToUser);
  }

  async deleteUser(tenantId: string, objectId: string): Promise<boolean> {
    return (await this.exec(DELETE_USER, [tenantId, objectId])) > 0;
  }

  async insertSigningKey(key: SigningKey): Promise<void> {
    await this.exec(INSERT_SIGNING_KEY, signingKeyParams(key));
  }

  async retireSigningKeysExcept(kid: string, at: number): Promise<void> {
    await this.exec(RETIRE_SIGNING_KEYS, [at, kid]);
  }

  async pruneSigningKeys(before: number): Promise<void> {
    await this.exec(PRUNE_SIGNING_KEYS, [before]);
  }

  async listSigningKeys(): Promise<SigningKey[]> {
    return this.all({ sql: SELECT_SIGNING_KEYS, params: [] }).map(rowToSigningKey);
  }

  upsertMachine(machine: Machine): Promise<void> {
    return this.write(() => {
      this.stmt(UPSERT_MACHINE).run(...machineParams(machine));
    });
  }

  async findMachine(
    tenantId: string,
    key: string,
    also: { aadDeviceId: boolean; computerDnsName: boolean },
  ): Promise<Machine | null> {
    const params: unknown[] = [tenantId, key];
    if (also.aadDeviceId) params.push(key);
    if (also.computerDnsName) params.push(key);
    params.push(key);
    const row = this.get(selectMachine(also), params);
    return row ? rowToMachine(row) : null;
  }

  async listMachines(tenantId: string, query: ListQuery): Promise<Page<Machine>> {
    return this.page(listSql(MACHINE_LIST, MACHINE_SET, tenantId, query, 'm.computer_dns_name ASC'), query, rowToMachine);
  }

  insertAction(action: MachineAction, event: EventInput, limit?: number): Promise<InsertOutcome> {
    return this.write(() => {
      if (limit !== undefined && Number((this.get(COUNT_ACTIVE_OF_TYPE, [action.tenantId, action.type]) as Row).n) >= limit) {
        return 'limit' as const;
      }
      const result = this.stmt(INSERT_ACTION).run(...actionParams(action));
      if (result.changes === 0) return 'conflict' as const;
      this.insertEvent(action.tenantId, action.id, 'created', null, action.status, event);
      return 'inserted' as const;
    });
  }

  async getAction(tenantId: string, id: string): Promise<MachineAction | null> {
    const row = this.get(SELECT_ACTION, [tenantId, id]);
    return row ? rowToAction(row) : null;
  }

  async listActions(tenantId: string, query: ListQuery): Promise<Page<MachineAction>> {
    return this.page(
      listSql(ACTION_LIST, MACHINE_ACTION_SET, tenantId, query, 'a.created_at DESC'),
      query,
      rowToAction,
    );
  }

  transitionAction(change: Transition): Promise<MachineAction | null> {
    return this.write(() => {
      const current = this.get(SELECT_ACTION_STATUS, [change.tenantId, change.actionId]);
      if (!current || !change.from.includes(current.status as MachineAction['status'])) return null;
      const patch = patchAssignments(change.patch);
      const sql = `UPDATE machine_actions SET status = ?, updated_at = ?${patch.sql.map((s) => `, ${s}`).join('')}
        WHERE tenant_id = ? AND id = ? AND status IN (${placeholders(change.from.length)}) RETURNING *`;
      const row = this.stmt(sql).get(
        change.to,
        change.event.at,
        ...patch.params,
        change.tenantId,
        change.actionId,
        ...change.from,
      ) as Row | undefined;
      if (!row) return null;
      this.insertEvent(
        change.tenantId,
        change.actionId,
        change.event.kind ?? 'transition',
        String(current.status),
        change.to,
        change.event,
      );
      return rowToAction(row);
    });
  }

  async listEvents(tenantId: string, actionId: string): Promise<ActionEvent[]> {
    return this.all({ sql: SELECT_EVENTS, params: [tenantId, actionId] }).map(rowToEvent);
  }

  appendEvent(tenantId: string, actionId: string, kind: ActionEvent['kind'], event: EventInput): Promise<void> {
    return this.write(() => {
      const row = this.get(SELECT_ACTION_STATUS, [tenantId, actionId]);
      if (!row) return;
      this.insertEvent(tenantId, actionId, kind, String(row.status), String(row.status), event);
    });
  }

  async listActiveActionsForMachine(tenantId: string, machineId: string): Promise<MachineAction[]> {
    return this.all({ sql: SELECT_ACTIVE_FOR_MACHINE, params: [tenantId, machineId] }).map(rowToAction);
  }

  async getActionsOfMachine(tenantId: string, machineId: string, ids: readonly string[]): Promise<MachineAction[]> {
    if (ids.length === 0) return [];
    return this.all({ sql: selectActionsOfMachine(ids.length), params: [tenantId, machineId, ...ids] }).map(rowToAction);
  }

  async listOverdueActions(overdue: Overdue, limit: number): Promise<MachineAction[]> {
    return this.all(overdueSql(overdue, limit)).map(rowToAction);
  }

  async upsertEnrollmentSecret(secret: EnrollmentSecret): Promise<void> {
    await this.exec(UPSERT_ENROLLMENT_SECRET, enrollmentSecretParams(secret));
  }

  async getEnrollmentSecret(id: string): Promise<EnrollmentSecret | null> {
    const row = this.get(SELECT_ENROLLMENT_SECRET, [id]);
    return row ? rowToEnrollmentSecret(row) : null;
  }

  async listEnrollmentSecrets(tenantId: string): Promise<EnrollmentSecret[]> {
    return this.all({ sql: SELECT_ENROLLMENT_SECRETS, params: [tenantId] }).map(rowToEnrollmentSecret);
  }

  async deleteEnrollmentSecrets(tenantId: string, label: string): Promise<void> {
    await this.exec(DELETE_ENROLLMENT_SECRETS, [tenantId, label]);
  }

  async insertAgentCredential(credential: AgentCredential): Promise<void> {
    await this.exec(INSERT_AGENT_CREDENTIAL, agentCredentialParams(credential));
  }

  async findAgentCredential(tokenHash: string): Promise<AgentCredential | null> {
    const row = this.get(SELECT_AGENT_CREDENTIAL, [tokenHash]);
    return row ? rowToAgentCredential(row) : null;
  }

  async revokeAgentCredentials(tenantId: string, machineId: string, at: number): Promise<void> {
    await this.exec(REVOKE_AGENT_CREDENTIALS, [at, tenantId, machineId]);
  }

  async recordCheckin(tenantId: string, machineId: string, at: number, info: CheckinInfo): Promise<void> {
    await this.exec(recordCheckinSql(info), checkinParams(tenantId, machineId, at, info));
  }

  markInactiveMachines(seenBefore: number): Promise<number> {
    return this.exec(MARK_INACTIVE, [seenBefore]);
  }

  private page<T>(q: { page: Sql; count: Sql }, query: ListQuery, map: (r: Row) => T): Page<T> {
    const rows = this.all(q.page);
    const hasMore = rows.length > query.top;
    const items = (hasMore ? rows.slice(0, query.top) : rows).map(map);
    const count = query.count ? Number((this.get(q.count.sql, q.count.params) as Row).n) : null;
    return { items, count, hasMore };
  }
}
