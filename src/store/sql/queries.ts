import { compileFilter, compileOrderBy, type EntitySetDef } from '../../odata/index.js';
import type { CheckinInfo, ListQuery, Overdue } from '../../domain/store.js';
import { IP_RANGE_GAP_MS, IP_RANGES_PER_MACHINE } from '../../domain/ip.js';
import {
  ACTION_COLUMNS,
  AGENT_CREDENTIAL_COLUMNS,
  ALERT_COLUMNS,
  APPLICATION_COLUMNS,
  ENROLLMENT_SECRET_COLUMNS,
  INVESTIGATION_COLUMNS,
  MACHINE_COLUMNS,
  REENROLL_GRANT_COLUMNS,
  SIGNING_KEY_COLUMNS,
  USER_COLUMNS,
  placeholders,
} from './rows.js';

/**
 * The SQL every backend shares, written with `?` placeholders (a backend rewrites them if its
 * driver wants another style). Identifiers come only from this file and the query sets.
 */

export interface Sql {
  sql: string;
  params: unknown[];
}

const upsert = (table: string, columns: readonly string[], key: readonly string[]) =>
  `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${placeholders(columns.length)})
  ON CONFLICT (${key.join(', ')}) DO UPDATE SET ${columns
    .filter((c) => !key.includes(c))
    .map((c) => `${c} = excluded.${c}`)
    .join(', ')}`;

export const INSERT_ACTION = `INSERT INTO machine_actions (${ACTION_COLUMNS.join(', ')})
  VALUES (${placeholders(ACTION_COLUMNS.length)}) ON CONFLICT DO NOTHING`;

export const INSERT_EVENT = `INSERT INTO action_events
  (tenant_id, action_id, at, actor, kind, from_status, to_status, comment, detail, report_id)
  VALUES (${placeholders(10)}) ON CONFLICT DO NOTHING`;

export const UPSERT_MACHINE = upsert('machines', MACHINE_COLUMNS, ['tenant_id', 'id']);
/** A machine that must be new: an existing one is left as it is (no rows changed). */
export const INSERT_NEW_MACHINE = `INSERT INTO machines (${MACHINE_COLUMNS.join(', ')})
  VALUES (${placeholders(MACHINE_COLUMNS.length)}) ON CONFLICT DO NOTHING`;
export const SELECT_MACHINE_OFFBOARDED = 'SELECT offboarded_at FROM machines WHERE tenant_id = ? AND id = ?';
/** Parameters: at, healthStatus, onboardingStatus, tenant, machine (what an offboarded machine reads as). */
export const OFFBOARD_MACHINE = `UPDATE machines SET offboarded_at = ?, health_status = ?, onboarding_status = ?
  WHERE tenant_id = ? AND id = ?`;
export const UPSERT_TENANT = upsert('tenants', ['id', 'name'], ['id']);

export const COUNT_ACTIVE_OF_TYPE = `SELECT COUNT(*) AS n FROM machine_actions
  WHERE tenant_id = ? AND type = ? AND status IN ('Pending', 'InProgress')`;

export const SELECT_ACTION = 'SELECT a.* FROM machine_actions a WHERE a.tenant_id = ? AND a.id = ?';
export const SELECT_ACTION_STATUS = 'SELECT status FROM machine_actions WHERE tenant_id = ? AND id = ?';
export const SELECT_EVENTS = 'SELECT * FROM action_events WHERE tenant_id = ? AND action_id = ? ORDER BY seq';

/**
 * A machine by one of its keys, in the order they are tried: each is a point lookup on its own
 * index (one OR query would let the planner scan the tenant's machines).
 */
export const SELECT_MACHINE_BY = {
  id: 'SELECT m.* FROM machines m WHERE m.tenant_id = ? AND m.id = ?',
  aadDeviceId: 'SELECT m.* FROM machines m WHERE m.tenant_id = ? AND m.aad_device_id = ? LIMIT 1',
  computerDnsName: 'SELECT m.* FROM machines m WHERE m.tenant_id = ? AND lower(m.computer_dns_name) = lower(?) LIMIT 1',
} as const;

interface ListShape {
  from: string;
  /** SQL restricting rows to some device groups; `%GROUPS%` is replaced by placeholders. */
  deviceGroupClause: string;
  /** Appended to every ORDER BY so pages are stable. */
  tiebreak: string;
}

export const ACTION_LIST: ListShape = {
  from: 'machine_actions a',
  deviceGroupClause:
    'a.machine_id IN (SELECT m.id FROM machines m WHERE m.tenant_id = a.tenant_id AND m.rbac_group_id IN (%GROUPS%))',
  tiebreak: 'a.seq DESC',
};

export const MACHINE_LIST: ListShape = {
  from: 'machines m',
  deviceGroupClause: 'm.rbac_group_id IN (%GROUPS%)',
  tiebreak: 'm.id ASC',
};

export const ALERT_LIST: ListShape = {
  from: 'alerts al',
  deviceGroupClause:
    'al.machine_id IN (SELECT m.id FROM machines m WHERE m.tenant_id = al.tenant_id AND m.rbac_group_id IN (%GROUPS%))',
  tiebreak: 'al.seq DESC',
};

export const INVESTIGATION_LIST: ListShape = {
  from: 'investigations i',
  deviceGroupClause:
    'i.machine_id IN (SELECT m.id FROM machines m WHERE m.tenant_id = i.tenant_id AND m.rbac_group_id IN (%GROUPS%))',
  tiebreak: 'i.seq DESC',
};

/** The page query (asks for one extra row to learn whether more exist) and the count query. */
export function listSql(shape: ListShape, set: EntitySetDef, tenantId: string, q: ListQuery, defaultOrder: string) {
  const alias = shape.from.split(' ')[1];
  const where = [`${alias}.tenant_id = ?`];
  const params: unknown[] = [tenantId];
  if (q.deviceGroups !== null) {
    if (q.deviceGroups.length === 0) where.push('1 = 0');
    else {
      where.push(shape.deviceGroupClause.replace('%GROUPS%', placeholders(q.deviceGroups.length)));
      params.push(...q.deviceGroups);
    }
  }
  if (q.filter) {
    const f = compileFilter(q.filter, set);
    where.push(f.sql);
    params.push(...f.params);
  }
  const whereSql = where.join(' AND ');
  const order = q.orderBy.length > 0 ? compileOrderBy([...q.orderBy], set) : defaultOrder;
  // LIMIT and OFFSET are written into the SQL, not bound: with them known when the statement is
  // prepared, SQLite sorts a page through a bounded heap (measured: 63 us -> 24 us for a
  // machine's active actions). They are integers the OData parser has already bounded, never text.
  if (!Number.isSafeInteger(q.top) || !Number.isSafeInteger(q.skip) || q.top < 0 || q.skip < 0) {
    throw new Error(`invalid page: top ${q.top}, skip ${q.skip}`);
  }
  const page: Sql = {
    sql: `SELECT ${alias}.* FROM ${shape.from} WHERE ${whereSql} ORDER BY ${order}, ${shape.tiebreak} LIMIT ${q.top + 1} OFFSET ${q.skip}`,
    params,
  };
  const count: Sql = { sql: `SELECT COUNT(*) AS n FROM ${shape.from} WHERE ${whereSql}`, params };
  return { page, count };
}

export const SELECT_TENANTS = 'SELECT id, name FROM tenants ORDER BY name, id';

export const UPSERT_APPLICATION = upsert('applications', APPLICATION_COLUMNS, ['tenant_id', 'client_id']);
export const SELECT_APPLICATION = 'SELECT * FROM applications WHERE tenant_id = ? AND client_id = ?';
export const SELECT_APPLICATIONS = 'SELECT * FROM applications WHERE tenant_id = ? ORDER BY display_name, client_id';
export const DELETE_APPLICATION = 'DELETE FROM applications WHERE tenant_id = ? AND client_id = ?';

export const UPSERT_USER = upsert('users', USER_COLUMNS, ['tenant_id', 'object_id']);
export const SELECT_USER_BY_OID = 'SELECT * FROM users WHERE tenant_id = ? AND object_id = ?';
export const SELECT_USER_BY_UPN = 'SELECT * FROM users WHERE tenant_id = ? AND lower(upn) = lower(?)';
export const SELECT_USERS = 'SELECT * FROM users WHERE tenant_id = ? ORDER BY upn';
export const DELETE_USER = 'DELETE FROM users WHERE tenant_id = ? AND object_id = ?';

export const INSERT_SIGNING_KEY = `INSERT INTO signing_keys (${SIGNING_KEY_COLUMNS.join(', ')}) VALUES (${placeholders(SIGNING_KEY_COLUMNS.length)})`;
export const RETIRE_SIGNING_KEYS = 'UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL AND kid <> ?';
export const PRUNE_SIGNING_KEYS = 'DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?';
export const SELECT_SIGNING_KEYS = 'SELECT * FROM signing_keys ORDER BY created_at DESC, kid';
export const REPLACE_SIGNING_KEY_PEM = 'UPDATE signing_keys SET private_pem = ? WHERE kid = ? AND private_pem = ?';

export const SELECT_ACTIVE_FOR_MACHINE = `SELECT a.* FROM machine_actions a
  WHERE a.tenant_id = ? AND a.machine_id = ? AND a.status IN ('Pending', 'InProgress') ORDER BY a.seq`;

export function selectActionsOfMachine(count: number): string {
  return `SELECT a.* FROM machine_actions a WHERE a.tenant_id = ? AND a.machine_id = ? AND a.id IN (${placeholders(count)})`;
}

export function overdueSql(overdue: Overdue, limit: number): Sql {
  if (overdue.status === 'Pending') {
    return {
      sql: "SELECT a.* FROM machine_actions a WHERE a.status = 'Pending' AND a.created_at < ? ORDER BY a.created_at LIMIT ?",
      params: [overdue.before, limit],
    };
  }
  return {
    sql: `SELECT a.* FROM machine_actions a WHERE a.status = 'InProgress' AND a.type IN (${placeholders(overdue.types.length)})
      AND a.started_at < ? ORDER BY a.started_at LIMIT ?`,
    params: [...overdue.types, overdue.before, limit],
  };
}

export const UPSERT_ENROLLMENT_SECRET = upsert('enrollment_secrets', ENROLLMENT_SECRET_COLUMNS, ['id']);
export const SELECT_ENROLLMENT_SECRET = 'SELECT * FROM enrollment_secrets WHERE id = ?';
export const SELECT_ENROLLMENT_SECRETS = 'SELECT * FROM enrollment_secrets WHERE tenant_id = ? ORDER BY created_at';
export const DELETE_ENROLLMENT_SECRETS = 'DELETE FROM enrollment_secrets WHERE tenant_id = ? AND label = ?';
export const DELETE_ENROLLMENT_SECRET = 'DELETE FROM enrollment_secrets WHERE tenant_id = ? AND id = ?';

export const INSERT_AGENT_CREDENTIAL = `INSERT INTO agent_credentials (${AGENT_CREDENTIAL_COLUMNS.join(', ')})
  VALUES (${placeholders(AGENT_CREDENTIAL_COLUMNS.length)})`;
export const SELECT_AGENT_CREDENTIAL = 'SELECT * FROM agent_credentials WHERE token_hash = ?';
export const REVOKE_AGENT_CREDENTIALS =
  'UPDATE agent_credentials SET revoked_at = ? WHERE tenant_id = ? AND machine_id = ? AND revoked_at IS NULL';
/** Proof by the current credential: it is revoked by the re-attach it proves, so it proves one. */
export const SPEND_AGENT_CREDENTIAL = `UPDATE agent_credentials SET revoked_at = ?
  WHERE token_hash = ? AND tenant_id = ? AND machine_id = ? AND revoked_at IS NULL`;

export const INSERT_REENROLL_GRANT = `INSERT INTO reenroll_grants (${REENROLL_GRANT_COLUMNS.join(', ')})
  VALUES (${placeholders(REENROLL_GRANT_COLUMNS.length)})`;
export const SELECT_REENROLL_GRANT = 'SELECT * FROM reenroll_grants WHERE token_hash = ?';
/** Uses a grant once: of concurrent uses only one changes the row. Parameters: at, hash, tenant, machine, at. */
export const SPEND_REENROLL_GRANT = `UPDATE reenroll_grants SET used_at = ?
  WHERE token_hash = ? AND tenant_id = ? AND machine_id = ? AND used_at IS NULL AND expires_at > ?`;
export const DELETE_UNUSED_REENROLL_GRANTS = 'DELETE FROM reenroll_grants WHERE tenant_id = ? AND machine_id = ? AND used_at IS NULL';

/** recordCheckinSql's parameters, in its order. */
export function checkinParams(tenantId: string, machineId: string, at: number, info: CheckinInfo): unknown[] {
  const params: unknown[] = [at];
  if (info.agentVersion !== undefined) params.push(info.agentVersion);
  if (info.lastIpAddress !== undefined) params.push(info.lastIpAddress);
  if (info.ipAddresses !== undefined) params.push(JSON.stringify(info.ipAddresses));
  params.push(tenantId, machineId);
  return params;
}

function checkinSets(info: CheckinInfo): string[] {
  const sets = ["last_seen = ?", "health_status = 'Active'"];
  if (info.agentVersion !== undefined) sets.push('agent_version = ?');
  if (info.lastIpAddress !== undefined) sets.push('last_ip_address = ?');
  if (info.ipAddresses !== undefined) sets.push('ip_addresses = ?');
  return sets;
}

/** An offboarded machine stays inactive, even if a check-in authenticated just before the offboard. */
const ONBOARDED_MACHINE = 'tenant_id = ? AND id = ? AND offboarded_at IS NULL';

export function recordCheckinSql(info: CheckinInfo): string {
  return `UPDATE machines SET ${checkinSets(info).join(', ')} WHERE ${ONBOARDED_MACHINE}`;
}

/**
 * A check-in that reports the addresses of the machine's open IP ranges, within the range gap
 * of their last confirmation: the ranges simply go on, so this one UPDATE is all it writes.
 * Changes nothing (0 rows) otherwise, and the caller records the change.
 */
export function checkinKeepingAddresses(tenantId: string, machineId: string, at: number, info: CheckinInfo, key: string): Sql {
  return {
    sql: `UPDATE machines SET ${[...checkinSets(info), 'ip_ranges_seen = ?'].join(', ')}
      WHERE ${ONBOARDED_MACHINE} AND ip_ranges_key = ? AND ip_ranges_seen >= ?`,
    params: [...checkinParams(tenantId, machineId, at, info).slice(0, -2), at, tenantId, machineId, key, at - IP_RANGE_GAP_MS],
  };
}

/** The same check-in after its addresses changed: also sets the open ranges' key. */
export function checkinChangingAddresses(tenantId: string, machineId: string, at: number, info: CheckinInfo, key: string): Sql {
  return {
    sql: `UPDATE machines SET ${[...checkinSets(info), 'ip_ranges_key = ?', 'ip_ranges_seen = ?'].join(', ')} WHERE ${ONBOARDED_MACHINE}`,
    params: [...checkinParams(tenantId, machineId, at, info).slice(0, -2), key, at, tenantId, machineId],
  };
}

export const SELECT_IP_RANGES_STATE = `SELECT ip_ranges_key, ip_ranges_seen FROM machines WHERE ${ONBOARDED_MACHINE}`;

/** Ends the machine's open ranges (of the named addresses, or all) at `?`. */
export function closeIpRangesSql(count: number | 'all'): string {
  return `UPDATE machine_ip_ranges SET last_seen = ? WHERE tenant_id = ? AND machine_id = ? AND last_seen IS NULL${
    count === 'all' ? '' : ` AND ip_address IN (${placeholders(count)})`
  }`;
}

export const OPEN_IP_RANGE = `INSERT INTO machine_ip_ranges (tenant_id, machine_id, ip_address, first_seen, last_seen)
  VALUES (?, ?, ?, ?, NULL)`;

/** Keeps a machine's newest IP_RANGES_PER_MACHINE ranges (open ones always). */
export const PRUNE_MACHINE_IP_RANGES = `DELETE FROM machine_ip_ranges
  WHERE tenant_id = ? AND machine_id = ? AND last_seen IS NOT NULL AND seq < (
    SELECT r.seq FROM machine_ip_ranges r WHERE r.tenant_id = ? AND r.machine_id = ?
    ORDER BY r.seq DESC LIMIT 1 OFFSET ${IP_RANGES_PER_MACHINE - 1})`;

/** Ranges that ended before `?`: closed ones, and open ones of machines silent since. */
export const PRUNE_IP_HISTORY = [
  'DELETE FROM machine_ip_ranges WHERE last_seen IS NOT NULL AND last_seen < ?',
  `DELETE FROM machine_ip_ranges WHERE last_seen IS NULL AND EXISTS (SELECT 1 FROM machines m
    WHERE m.tenant_id = machine_ip_ranges.tenant_id AND m.id = machine_ip_ranges.machine_id AND m.ip_ranges_seen < ?)`,
] as const;

/** Machines with a range of the address meeting [from, to]; an open range lasts until the machine's ip_ranges_seen. */
export function machinesByIpSql(tenantId: string, ip: string, from: number, to: number, deviceGroups: readonly number[] | null, limit: number): Sql {
  const params: unknown[] = [tenantId, ip, to, from, from];
  let groups = '';
  if (deviceGroups !== null) {
    groups = deviceGroups.length === 0 ? ' AND 1 = 0' : ` AND m.rbac_group_id IN (${placeholders(deviceGroups.length)})`;
    params.push(...deviceGroups);
  }
  if (!Number.isSafeInteger(limit) || limit < 0) throw new Error(`invalid limit ${limit}`);
  return {
    sql: `SELECT m.* FROM machines m WHERE m.tenant_id = ? AND m.id IN (
        SELECT r.machine_id FROM machine_ip_ranges r WHERE r.tenant_id = m.tenant_id AND r.ip_address = ? AND r.first_seen <= ?
          AND (r.last_seen >= ? OR (r.last_seen IS NULL AND m.ip_ranges_seen >= ?)))${groups}
      ORDER BY m.computer_dns_name, m.id LIMIT ${limit}`,
    params,
  };
}

export const INSERT_ALERT = `INSERT INTO alerts (${ALERT_COLUMNS.join(', ')}) VALUES (${placeholders(ALERT_COLUMNS.length)})`;
export const SELECT_ALERT = 'SELECT al.* FROM alerts al WHERE al.tenant_id = ? AND al.id = ?';
export const SELECT_ALERT_EVIDENCE = 'SELECT evidence FROM alerts WHERE tenant_id = ? AND id = ?';
/** The alert an investigation started on the machine investigates: its newest one not Resolved. */
export const SELECT_TRIGGERING_ALERT = `SELECT al.id FROM alerts al WHERE al.tenant_id = ? AND al.machine_id = ? AND al.status <> 'Resolved'
  ORDER BY al.created_at DESC, al.seq DESC LIMIT 1`;
export const LINK_ALERT_TO_INVESTIGATION =
  'UPDATE alerts SET investigation_id = ?, investigation_state = ?, updated_at = ? WHERE tenant_id = ? AND id = ?';
/** Only while the alert is linked to that investigation (a later one may have taken it). */
export const FOLLOW_INVESTIGATION_STATE =
  'UPDATE alerts SET investigation_state = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND investigation_id = ?';

export const INSERT_INVESTIGATION = `INSERT INTO investigations (${INVESTIGATION_COLUMNS.join(', ')})
  VALUES (${placeholders(INVESTIGATION_COLUMNS.length)}) RETURNING seq`;
export const SELECT_INVESTIGATION = 'SELECT i.* FROM investigations i WHERE i.tenant_id = ? AND i.seq = ?';
export const SELECT_INVESTIGATION_OF_ACTION = 'SELECT i.* FROM investigations i WHERE i.action_id = ?';
export const UPDATE_INVESTIGATION = 'UPDATE investigations SET state = ?, status_details = ?, cancelled_by = ?, end_time = ? WHERE seq = ?';

export const MARK_INACTIVE = `UPDATE machines SET health_status = 'Inactive'
  WHERE health_status = 'Active' AND last_seen < ?`;

/**
 * The tables a world is made of, children first (the order deletes run in; inserts run in the
 * reverse). Signing keys, link keys and the schema are not part of a world; nor are blobs, which
 * go by themselves once nothing refers to them (the artifacts sweep).
 */
export const WORLD_TABLES = [
  'investigations',
  'alerts',
  'machine_ip_ranges',
  'action_events',
  'action_artifacts',
  'machine_actions',
  'reenroll_grants',
  'agent_credentials',
  'enrollment_secrets',
  'machines',
  'users',
  'applications',
  'library_files',
  'tenants',
] as const;

export const SELECT_ALL_TENANTS = 'SELECT id, name FROM tenants ORDER BY id';
export const SELECT_ALL_APPLICATIONS = 'SELECT * FROM applications ORDER BY tenant_id, client_id';
export const SELECT_ALL_USERS = 'SELECT * FROM users ORDER BY tenant_id, object_id';
export const SELECT_ALL_MACHINES = 'SELECT * FROM machines ORDER BY tenant_id, id';
export const SELECT_ALL_ACTIONS = 'SELECT * FROM machine_actions ORDER BY seq';
export const SELECT_ALL_EVENTS = 'SELECT * FROM action_events ORDER BY seq';

/** One INSERT of `rows` rows of `columns` (a world is loaded a few hundred rows per statement). */
export function insertRows(table: string, columns: readonly string[], rows: number): string {
  const tuple = `(${placeholders(columns.length)})`;
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${Array.from({ length: rows }, () => tuple).join(', ')}`;
}

export const EVENT_COLUMNS = ['tenant_id', 'action_id', 'at', 'actor', 'kind', 'from_status', 'to_status', 'comment', 'detail', 'report_id'] as const;

/** Tables whose sequence is on the wire (investigation ids) or orders rows: restarted with the world. */
export const SEQUENCED_TABLES = ['investigations', 'alerts', 'machine_ip_ranges', 'action_events', 'machine_actions'] as const;

export const DELETE_MACHINE_INVESTIGATIONS = 'DELETE FROM investigations WHERE tenant_id = ? AND machine_id = ?';
export const DELETE_MACHINE_ALERTS = 'DELETE FROM alerts WHERE tenant_id = ? AND machine_id = ?';
export const DELETE_MACHINE_IP_RANGES = 'DELETE FROM machine_ip_ranges WHERE tenant_id = ? AND machine_id = ?';
export const DELETE_MACHINE_EVENTS = `DELETE FROM action_events WHERE action_id IN
  (SELECT id FROM machine_actions WHERE tenant_id = ? AND machine_id = ?)`;
export const DELETE_MACHINE_ARTIFACTS = `DELETE FROM action_artifacts WHERE action_id IN
  (SELECT id FROM machine_actions WHERE tenant_id = ? AND machine_id = ?)`;
export const DELETE_MACHINE_ACTIONS = 'DELETE FROM machine_actions WHERE tenant_id = ? AND machine_id = ?';
export const DELETE_MACHINE_CREDENTIALS = 'DELETE FROM agent_credentials WHERE tenant_id = ? AND machine_id = ?';
export const DELETE_MACHINE_GRANTS = 'DELETE FROM reenroll_grants WHERE tenant_id = ? AND machine_id = ?';
export const DELETE_MACHINE = 'DELETE FROM machines WHERE tenant_id = ? AND id = ?';
