/**
 * The schema, one entry per version, written once and rendered for each backend (the only
 * differences are integer widths, how an insertion sequence is declared, and PostgreSQL's shared
 * rate-limit table). Applied in order, each in its own transaction, recorded in
 * schema_migrations. Never edit a released entry: add a new one.
 */

export interface Dialect {
  /** A 64-bit integer column (epoch milliseconds, ids). */
  int: string;
  /** An auto-incrementing primary key giving insertion order. */
  serialKey: string;
  postgres: boolean;
}

export const SQLITE: Dialect = { int: 'INTEGER', serialKey: 'INTEGER PRIMARY KEY AUTOINCREMENT', postgres: false };
export const POSTGRES: Dialect = { int: 'BIGINT', serialKey: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY', postgres: true };

export interface Migration {
  version: number;
  name: string;
  sql: (d: Dialect) => string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'machine actions',
    sql: (d) => `
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL
);

CREATE TABLE machines (
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  id TEXT NOT NULL,
  computer_dns_name TEXT NOT NULL,
  first_seen ${d.int},
  last_seen ${d.int},
  os_platform TEXT,
  os_version TEXT,
  os_processor TEXT,
  version TEXT,
  os_build ${d.int},
  last_ip_address TEXT,
  last_external_ip_address TEXT,
  agent_version TEXT,
  os_architecture TEXT,
  health_status TEXT NOT NULL,
  defender_av_status TEXT,
  onboarding_status TEXT,
  device_value TEXT,
  rbac_group_id ${d.int},
  rbac_group_name TEXT,
  risk_score TEXT,
  exposure_level TEXT,
  is_aad_joined INTEGER NOT NULL DEFAULT 0,
  aad_device_id TEXT,
  machine_tags TEXT NOT NULL DEFAULT '[]',
  ip_addresses TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX machines_by_dns_name ON machines (tenant_id, lower(computer_dns_name));
CREATE INDEX machines_by_aad_device_id ON machines (tenant_id, aad_device_id);

CREATE TABLE machine_actions (
  seq ${d.serialKey},
  id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL,
  type TEXT NOT NULL,
  title TEXT,
  requestor TEXT NOT NULL,
  requestor_id TEXT NOT NULL,
  requestor_comment TEXT,
  status TEXT NOT NULL,
  machine_id TEXT NOT NULL,
  computer_dns_name TEXT,
  created_at ${d.int} NOT NULL,
  updated_at ${d.int} NOT NULL,
  cancellation_requestor TEXT,
  cancellation_comment TEXT,
  cancelled_at ${d.int},
  error_hresult ${d.int} NOT NULL DEFAULT 0,
  scope TEXT,
  external_id TEXT,
  request_source TEXT NOT NULL,
  related_file_info TEXT,
  commands TEXT NOT NULL DEFAULT '[]',
  troubleshoot_info TEXT,
  conflict_key TEXT NOT NULL,
  started_at ${d.int},
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
-- The conflict-group rule (contract §4) enforced by the database itself.
CREATE UNIQUE INDEX machine_actions_one_active ON machine_actions (tenant_id, machine_id, conflict_key)
  WHERE status IN ('Pending', 'InProgress');
CREATE INDEX machine_actions_by_time ON machine_actions (tenant_id, created_at, seq);
CREATE INDEX machine_actions_by_machine ON machine_actions (tenant_id, machine_id, status, created_at);
CREATE INDEX machine_actions_active ON machine_actions (status, created_at)
  WHERE status IN ('Pending', 'InProgress');

CREATE TABLE action_events (
  seq ${d.serialKey},
  tenant_id TEXT NOT NULL,
  action_id TEXT NOT NULL REFERENCES machine_actions (id),
  at ${d.int} NOT NULL,
  actor TEXT NOT NULL,
  kind TEXT NOT NULL,
  from_status TEXT,
  to_status TEXT,
  comment TEXT,
  detail TEXT
);
CREATE INDEX action_events_by_action ON action_events (action_id, seq);
`,
  },
  {
    version: 2,
    name: 'identity',
    sql: (d) => `
CREATE TABLE applications (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  client_id TEXT NOT NULL,
  object_id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  roles TEXT NOT NULL,
  created_at ${d.int} NOT NULL,
  PRIMARY KEY (tenant_id, client_id)
);

CREATE TABLE users (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  object_id TEXT NOT NULL,
  upn TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  scopes TEXT NOT NULL,
  role_permissions TEXT NOT NULL,
  device_groups TEXT,
  created_at ${d.int} NOT NULL,
  PRIMARY KEY (tenant_id, object_id)
);
CREATE UNIQUE INDEX users_by_upn ON users (tenant_id, lower(upn));

CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL,
  private_pem TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  created_at ${d.int} NOT NULL,
  retired_at ${d.int}
);
${
      d.postgres
        ? `
-- rate-limiter-flexible's table, shared by every server node.
CREATE TABLE rate_limits (
  key VARCHAR(255) PRIMARY KEY,
  points INTEGER NOT NULL DEFAULT 0,
  expire BIGINT
);
`
        : ''
    }`,
  },
  {
    version: 3,
    name: 'agents',
    sql: (d) => `
CREATE TABLE enrollment_secrets (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  label TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  rbac_group_id ${d.int},
  rbac_group_name TEXT,
  created_at ${d.int} NOT NULL
);
CREATE INDEX enrollment_secrets_by_tenant ON enrollment_secrets (tenant_id, label);

CREATE TABLE agent_credentials (
  token_hash TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  machine_id TEXT NOT NULL,
  created_at ${d.int} NOT NULL,
  revoked_at ${d.int},
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX agent_credentials_by_machine ON agent_credentials (tenant_id, machine_id);
CREATE INDEX machines_by_health ON machines (health_status, last_seen);
`,
  },
  {
    version: 4,
    name: 'report ids',
    // A machine's report is recorded once: its id is unique per action, so a retried or
    // duplicated report inserts nothing, decided by the database.
    sql: () => `
ALTER TABLE action_events ADD COLUMN report_id TEXT;
CREATE UNIQUE INDEX action_events_one_report ON action_events (action_id, report_id) WHERE report_id IS NOT NULL;
`,
  },
  {
    version: 5,
    name: 'machine ownership',
    // offboarded_at: when a Succeeded Offboard ended the machine (null while onboarded); it then
    // takes no actions and no agent re-attaches without a re-enroll grant. A grant is one-time
    // proof, issued by an administrator for one machine: only its SHA-256 is kept.
    sql: (d) => `
ALTER TABLE machines ADD COLUMN offboarded_at ${d.int};

CREATE TABLE reenroll_grants (
  token_hash TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  machine_id TEXT NOT NULL,
  created_at ${d.int} NOT NULL,
  expires_at ${d.int} NOT NULL,
  used_at ${d.int},
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX reenroll_grants_by_machine ON reenroll_grants (tenant_id, machine_id);
`,
  },
  {
    version: 6,
    name: 'artifacts',
    // Blobs are content-addressed (sha256). Their bytes live under the data dir with SQLite and in
    // blob_chunks with PostgreSQL (so every node reads them); `blobs` indexes both, and a blob is
    // removed only when no library file or action artifact refers to it.
    sql: (d) => `
CREATE TABLE blobs (
  sha256 TEXT PRIMARY KEY,
  size ${d.int} NOT NULL,
  touched_at ${d.int} NOT NULL
);
CREATE INDEX blobs_by_touch ON blobs (touched_at);

CREATE TABLE library_files (
  seq ${d.serialKey},
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  name_key TEXT NOT NULL,
  file_name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size ${d.int} NOT NULL,
  description TEXT,
  parameters_description TEXT,
  has_parameters INTEGER NOT NULL DEFAULT 0,
  created_by TEXT NOT NULL,
  created_at ${d.int} NOT NULL,
  updated_at ${d.int} NOT NULL
);
CREATE UNIQUE INDEX library_files_by_name ON library_files (tenant_id, name_key);
CREATE INDEX library_files_by_blob ON library_files (sha256);

CREATE TABLE action_artifacts (
  tenant_id TEXT NOT NULL,
  action_id TEXT NOT NULL REFERENCES machine_actions (id),
  slot TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size ${d.int} NOT NULL,
  file_name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  created_at ${d.int} NOT NULL,
  action_created_at ${d.int} NOT NULL,
  PRIMARY KEY (action_id, slot)
);
CREATE INDEX action_artifacts_by_blob ON action_artifacts (sha256);
CREATE INDEX action_artifacts_by_age ON action_artifacts (action_created_at);

-- The key download links are signed with: created once, shared by every node.
CREATE TABLE link_keys (
  id TEXT PRIMARY KEY,
  secret TEXT NOT NULL,
  created_at ${d.int} NOT NULL
);
${
      d.postgres
        ? `
CREATE TABLE blob_chunks (
  sha256 TEXT NOT NULL REFERENCES blobs (sha256) ON DELETE CASCADE,
  n INTEGER NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (sha256, n)
);
`
        : ''
    }`,
  },
  {
    version: 7,
    name: 'ip history, alerts, investigations',
    sql: (d) => `
-- Each machine's IP history (findbyip): when it was seen with an address. An open range
-- (last_seen NULL) lasts until machines.ip_ranges_seen, the last check-in that confirmed the
-- addresses in machines.ip_ranges_key, so a check-in that keeps its addresses writes only the
-- machine's row.
CREATE TABLE machine_ip_ranges (
  seq ${d.serialKey},
  tenant_id TEXT NOT NULL,
  machine_id TEXT NOT NULL,
  ip_address TEXT NOT NULL,
  first_seen ${d.int} NOT NULL,
  last_seen ${d.int},
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX machine_ip_ranges_by_ip ON machine_ip_ranges (tenant_id, ip_address, first_seen);
CREATE INDEX machine_ip_ranges_by_machine ON machine_ip_ranges (tenant_id, machine_id, seq);
CREATE INDEX machine_ip_ranges_closed ON machine_ip_ranges (last_seen) WHERE last_seen IS NOT NULL;
ALTER TABLE machines ADD COLUMN ip_ranges_key TEXT;
ALTER TABLE machines ADD COLUMN ip_ranges_seen ${d.int};

-- Alerts: raised only by what a machine reports finding, linked to the action that found it.
CREATE TABLE alerts (
  seq ${d.serialKey},
  id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL,
  machine_id TEXT NOT NULL,
  action_id TEXT NOT NULL REFERENCES machine_actions (id),
  incident_id ${d.int},
  investigation_id ${d.int},
  investigation_state TEXT,
  assigned_to TEXT,
  severity TEXT NOT NULL,
  status TEXT NOT NULL,
  classification TEXT,
  determination TEXT,
  detection_source TEXT NOT NULL,
  detector_id TEXT NOT NULL,
  category TEXT NOT NULL,
  threat_family_name TEXT,
  threat_name TEXT,
  title TEXT NOT NULL,
  description TEXT NOT NULL,
  created_at ${d.int} NOT NULL,
  first_event_at ${d.int},
  last_event_at ${d.int},
  updated_at ${d.int} NOT NULL,
  resolved_at ${d.int},
  computer_dns_name TEXT,
  rbac_group_name TEXT,
  mitre_techniques TEXT NOT NULL DEFAULT '[]',
  related_user TEXT,
  comments TEXT NOT NULL DEFAULT '[]',
  evidence TEXT NOT NULL DEFAULT '[]',
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX alerts_by_time ON alerts (tenant_id, created_at, seq);
CREATE INDEX alerts_by_machine ON alerts (tenant_id, machine_id, created_at);
CREATE INDEX alerts_by_action ON alerts (action_id);

-- Investigations: each owns the CollectInvestigationPackage action it runs; seq is its id.
CREATE TABLE investigations (
  seq ${d.serialKey},
  tenant_id TEXT NOT NULL,
  machine_id TEXT NOT NULL,
  computer_dns_name TEXT,
  action_id TEXT NOT NULL UNIQUE REFERENCES machine_actions (id),
  state TEXT NOT NULL,
  status_details TEXT,
  cancelled_by TEXT,
  start_time ${d.int} NOT NULL,
  end_time ${d.int},
  triggering_alert_id TEXT REFERENCES alerts (id),
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX investigations_by_time ON investigations (tenant_id, start_time, seq);
CREATE INDEX investigations_by_machine ON investigations (tenant_id, machine_id, start_time);
`,
  },
];
