/**
 * PostgreSQL schema, one entry per version, applied under an advisory lock so that several
 * server nodes starting together migrate once. Mirrors the SQLite schema column for column.
 */
export const POSTGRES_MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'machine actions',
    sql: `
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL
);

CREATE TABLE machines (
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  id TEXT NOT NULL,
  computer_dns_name TEXT NOT NULL,
  first_seen BIGINT,
  last_seen BIGINT,
  os_platform TEXT,
  os_version TEXT,
  os_processor TEXT,
  version TEXT,
  os_build BIGINT,
  last_ip_address TEXT,
  last_external_ip_address TEXT,
  agent_version TEXT,
  os_architecture TEXT,
  health_status TEXT NOT NULL,
  defender_av_status TEXT,
  onboarding_status TEXT,
  device_value TEXT,
  rbac_group_id BIGINT,
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
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  cancellation_requestor TEXT,
  cancellation_comment TEXT,
  cancelled_at BIGINT,
  error_hresult BIGINT NOT NULL DEFAULT 0,
  scope TEXT,
  external_id TEXT,
  request_source TEXT NOT NULL,
  related_file_info TEXT,
  commands TEXT NOT NULL DEFAULT '[]',
  troubleshoot_info TEXT,
  conflict_key TEXT NOT NULL,
  started_at BIGINT,
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE UNIQUE INDEX machine_actions_one_active ON machine_actions (tenant_id, machine_id, conflict_key)
  WHERE status IN ('Pending', 'InProgress');
CREATE INDEX machine_actions_by_time ON machine_actions (tenant_id, created_at, seq);
CREATE INDEX machine_actions_by_machine ON machine_actions (tenant_id, machine_id, status, created_at);
CREATE INDEX machine_actions_active ON machine_actions (status, created_at)
  WHERE status IN ('Pending', 'InProgress');

CREATE TABLE action_events (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  action_id TEXT NOT NULL REFERENCES machine_actions (id),
  at BIGINT NOT NULL,
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
    sql: `
CREATE TABLE applications (
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  client_id TEXT NOT NULL,
  object_id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  roles TEXT NOT NULL,
  created_at BIGINT NOT NULL,
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
  created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, object_id)
);
CREATE UNIQUE INDEX users_by_upn ON users (tenant_id, lower(upn));

CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL,
  private_pem TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  retired_at BIGINT
);

-- rate-limiter-flexible's table, shared by every server node.
CREATE TABLE rate_limits (
  key VARCHAR(255) PRIMARY KEY,
  points INTEGER NOT NULL DEFAULT 0,
  expire BIGINT
);
`,
  },
  {
    version: 3,
    name: 'agents',
    sql: `
CREATE TABLE enrollment_secrets (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  label TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  rbac_group_id BIGINT,
  rbac_group_name TEXT,
  created_at BIGINT NOT NULL
);
CREATE INDEX enrollment_secrets_by_tenant ON enrollment_secrets (tenant_id, label);

CREATE TABLE agent_credentials (
  token_hash TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  machine_id TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT,
  FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id)
);
CREATE INDEX agent_credentials_by_machine ON agent_credentials (tenant_id, machine_id);
CREATE INDEX machines_by_health ON machines (health_status, last_seen);
`,
  },
];
