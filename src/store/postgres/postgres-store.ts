import pg from 'pg';
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
import { MACHINE_ACTION_SET, MACHINE_SET } from '../../domain/query-sets.js';
import type { CheckinInfo, EventInput, Overdue, InsertOutcome, ListQuery, Page, Store, Transition } from '../../domain/store.js';
import type { EntitySetDef } from '../../odata/index.js';
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
import { POSTGRES_MIGRATIONS } from './migrations.js';

/** BIGINT columns hold epoch milliseconds and counts: well inside a double's exact range. */
const types = {
  getTypeParser(oid: number, format?: string) {
    if (oid === pg.types.builtins.INT8) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/** `?` placeholders to `$1, $2, ...`; queries never inline literals, so no `?` is ever quoted. */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

const MIGRATION_LOCK = 727_001;

/** The same schema and queries as SQLite, with PostgreSQL's JSON functions for tags. */
const MACHINE_SET_PG: EntitySetDef = {
  ...MACHINE_SET,
  properties: MACHINE_SET.properties.map((p) =>
    p.type === 'tags'
      ? { ...p, existsSql: 'EXISTS (SELECT 1 FROM jsonb_array_elements_text(m.machine_tags::jsonb) AS tag(v) WHERE tag.v = ?)' }
      : p,
  ),
};

/**
 * PostgreSQL store for several server nodes. Each write is its own transaction; a status change
 * locks the action's row (SELECT ... FOR UPDATE) and updates it conditionally, so concurrent
 * changes from any node have exactly one winner.
 */
export class PostgresStore implements Store {
  readonly backend = 'postgres' as const;

  private constructor(readonly pool: pg.Pool) {}

  static async connect(url: string, options: { max?: number } = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10, types });
    // An idle connection that the server closes (restart, failover) is dropped from the pool and
    // replaced on next use; without a listener the event would crash the process.
    pool.on('error', () => undefined);
    const store = new PostgresStore(pool);
    try {
      await store.migrate();
    } catch (error) {
      await pool.end();
      throw error;
    }
    return store;
  }

  private async migrate(): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await c.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
      );
      const applied = new Set((await c.query('SELECT version FROM schema_migrations')).rows.map((r) => Number(r.version)));
      for (const m of POSTGRES_MIGRATIONS) {
        if (applied.has(m.version)) continue;
        await c.query(m.sql);
        await c.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async query(sql: string, params: unknown[], client: pg.Pool | pg.PoolClient = this.pool): Promise<Row[]> {
    return (await client.query(numbered(sql), params)).rows as Row[];
  }

  private async tx<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  private insertEvent(
    client: pg.PoolClient,
    tenantId: string,
    actionId: string,
    kind: ActionEvent['kind'],
    from: string | null,
    to: string | null,
    e: EventInput,
  ) {
    return this.query(
      INSERT_EVENT,
      [tenantId, actionId, e.at, e.actor, kind, from, to, e.comment, e.detail ? JSON.stringify(e.detail) : null],
      client,
    );
  }

  async upsertTenant(tenant: Tenant): Promise<void> {
    await this.query(UPSERT_TENANT, [tenant.id, tenant.name]);
  }

  getTenant(id: string): Promise<Tenant | null> {
    return this.one('SELECT id, name FROM tenants WHERE id = ?', [id], (r) => ({ id: String(r.id), name: String(r.name) }));
  }

  async listTenants(): Promise<Tenant[]> {
    return (await this.query(SELECT_TENANTS, [])).map((r) => ({ id: String(r.id), name: String(r.name) }));
  }

  /** One statement in its own transaction; resolves with the number of rows it changed. */
  private async exec(sql: string, params: unknown[]): Promise<number> {
    return (await this.pool.query(numbered(sql), params)).rowCount ?? 0;
  }

  private async one<T>(sql: string, params: unknown[], map: (r: Row) => T): Promise<T | null> {
    const [row] = await this.query(sql, params);
    return row ? map(row) : null;
  }

  async upsertApplication(app: Application): Promise<void> {
    await this.exec(UPSERT_APPLICATION, applicationParams(app));
  }

  getApplication(tenantId: string, clientId: string): Promise<Application | null> {
    return this.one(SELECT_APPLICATION, [tenantId, clientId], rowToApplication);
  }

  async listApplications(tenantId: string): Promise<Application[]> {
    return (await this.query(SELECT_APPLICATIONS, [tenantId])).map(rowToApplication);
  }

  async deleteApplication(tenantId: string, clientId: string): Promise<boolean> {
    return (await this.exec(DELETE_APPLICATION, [tenantId, clientId])) > 0;
  }

  async upsertUser(user: User): Promise<void> {
    await this.exec(UPSERT_USER, userParams(user));
  }

  getUserByObjectId(tenantId: string, objectId: string): Promise<User | null> {
    return this.one(SELECT_USER_BY_OID, [tenantId, objectId], rowToUser);
  }

  getUserByUpn(tenantId: string, upn: string): Promise<User | null> {
    return this.one(SELECT_USER_BY_UPN, [tenantId, upn], rowToUser);
  }

  async listUsers(tenantId: string): Promise<User[]> {
    return (await this.query(SELECT_USERS, [tenantId])).map(rowToUser);
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
    return (await this.query(SELECT_SIGNING_KEYS, [])).map(rowToSigningKey);
  }

  async upsertMachine(machine: Machine): Promise<void> {
    await this.query(UPSERT_MACHINE, machineParams(machine));
  }

  async findMachine(tenantId: string, key: string, also: { aadDeviceId: boolean; computerDnsName: boolean }): Promise<Machine | null> {
    const params: unknown[] = [tenantId, key];
    if (also.aadDeviceId) params.push(key);
    if (also.computerDnsName) params.push(key);
    params.push(key);
    const [row] = await this.query(selectMachine(also), params);
    return row ? rowToMachine(row) : null;
  }

  listMachines(tenantId: string, query: ListQuery): Promise<Page<Machine>> {
    return this.page(listSql(MACHINE_LIST, MACHINE_SET_PG, tenantId, query, 'm.computer_dns_name ASC'), query, rowToMachine);
  }

  insertAction(action: MachineAction, event: EventInput, limit?: number): Promise<InsertOutcome> {
    return this.tx(async (c) => {
      if (limit !== undefined) {
        // Serialises the count-then-insert of one tenant's actions of this type across nodes.
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${action.tenantId}:${action.type}`]);
        const [row] = await this.query(COUNT_ACTIVE_OF_TYPE, [action.tenantId, action.type], c);
        if (Number(row!.n) >= limit) return 'limit' as const;
      }
      const result = await c.query(numbered(INSERT_ACTION), actionParams(action));
      if (result.rowCount === 0) return 'conflict' as const;
      await this.insertEvent(c, action.tenantId, action.id, 'created', null, action.status, event);
      return 'inserted' as const;
    });
  }

  async getAction(tenantId: string, id: string): Promise<MachineAction | null> {
    const [row] = await this.query(SELECT_ACTION, [tenantId, id]);
    return row ? rowToAction(row) : null;
  }

  listActions(tenantId: string, query: ListQuery): Promise<Page<MachineAction>> {
    return this.page(listSql(ACTION_LIST, MACHINE_ACTION_SET, tenantId, query, 'a.created_at DESC'), query, rowToAction);
  }

  transitionAction(change: Transition): Promise<MachineAction | null> {
    return this.tx(async (c) => {
      const [current] = await this.query(`${SELECT_ACTION_STATUS} FOR UPDATE`, [change.tenantId, change.actionId], c);
      if (!current || !change.from.includes(current.status as MachineAction['status'])) return null;
      const patch = patchAssignments(change.patch);
      const [row] = await this.query(
        `UPDATE machine_actions SET status = ?, updated_at = ?${patch.sql.map((s) => `, ${s}`).join('')}
          WHERE tenant_id = ? AND id = ? AND status IN (${placeholders(change.from.length)}) RETURNING *`,
        [change.to, change.event.at, ...patch.params, change.tenantId, change.actionId, ...change.from],
        c,
      );
      if (!row) return null;
      await this.insertEvent(c, change.tenantId, change.actionId, change.event.kind ?? 'transition', String(current.status), change.to, change.event);
      return rowToAction(row);
    });
  }

  async listEvents(tenantId: string, actionId: string): Promise<ActionEvent[]> {
    return (await this.query(SELECT_EVENTS, [tenantId, actionId])).map(rowToEvent);
  }

  appendEvent(tenantId: string, actionId: string, kind: ActionEvent['kind'], event: EventInput): Promise<void> {
    return this.tx(async (c) => {
      const [row] = await this.query(SELECT_ACTION_STATUS, [tenantId, actionId], c);
      if (!row) return;
      await this.insertEvent(c, tenantId, actionId, kind, String(row.status), String(row.status), event);
    });
  }

  async listActiveActionsForMachine(tenantId: string, machineId: string): Promise<MachineAction[]> {
    return (await this.query(SELECT_ACTIVE_FOR_MACHINE, [tenantId, machineId])).map(rowToAction);
  }

  async getActionsOfMachine(tenantId: string, machineId: string, ids: readonly string[]): Promise<MachineAction[]> {
    if (ids.length === 0) return [];
    return (await this.query(selectActionsOfMachine(ids.length), [tenantId, machineId, ...ids])).map(rowToAction);
  }

  async listOverdueActions(overdue: Overdue, limit: number): Promise<MachineAction[]> {
    const q = overdueSql(overdue, limit);
    return (await this.query(q.sql, q.params)).map(rowToAction);
  }

  async upsertEnrollmentSecret(secret: EnrollmentSecret): Promise<void> {
    await this.exec(UPSERT_ENROLLMENT_SECRET, enrollmentSecretParams(secret));
  }

  getEnrollmentSecret(id: string): Promise<EnrollmentSecret | null> {
    return this.one(SELECT_ENROLLMENT_SECRET, [id], rowToEnrollmentSecret);
  }

  async listEnrollmentSecrets(tenantId: string): Promise<EnrollmentSecret[]> {
    return (await this.query(SELECT_ENROLLMENT_SECRETS, [tenantId])).map(rowToEnrollmentSecret);
  }

  async deleteEnrollmentSecrets(tenantId: string, label: string): Promise<void> {
    await this.exec(DELETE_ENROLLMENT_SECRETS, [tenantId, label]);
  }

  async insertAgentCredential(credential: AgentCredential): Promise<void> {
    await this.exec(INSERT_AGENT_CREDENTIAL, agentCredentialParams(credential));
  }

  findAgentCredential(tokenHash: string): Promise<AgentCredential | null> {
    return this.one(SELECT_AGENT_CREDENTIAL, [tokenHash], rowToAgentCredential);
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

  private async page<T>(q: { page: Sql; count: Sql }, query: ListQuery, map: (r: Row) => T): Promise<Page<T>> {
    const rows = await this.query(q.page.sql, q.page.params);
    const hasMore = rows.length > query.top;
    const items = (hasMore ? rows.slice(0, query.top) : rows).map(map);
    const count = query.count ? Number((await this.query(q.count.sql, q.count.params))[0]!.n) : null;
    return { items, count, hasMore };
  }
}
