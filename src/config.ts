import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Type, type Static } from 'typebox';
import { firstError } from './validation.js';

/**
 * The server's one typed configuration. Sources, later ones winning: defaults, a JSON file
 * (`--config` / COUNTERMAND_CONFIG), environment variables (COUNTERMAND_*), command-line flags.
 * Validated once at start; a bad value stops the start with a message naming it.
 */
export const ServerConfigSchema = Type.Object({
  host: Type.String({ minLength: 1 }),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  dataDir: Type.String({ minLength: 1 }),
  /** Start even when the data dir stays readable by other users (it is made 0700 when it can be). */
  allowOpenDataDir: Type.Boolean(),
  /** A PostgreSQL URL; when absent, the embedded SQLite file `<dataDir>/countermand.db`. */
  databaseUrl: Type.Union([Type.String({ pattern: '^postgres(ql)?://' }), Type.Null()]),
  fixtures: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  /** How clients reach this server (for @odata.context and links); default http://<host>:<port>. */
  publicBaseUrl: Type.Union([Type.String({ pattern: '^https?://[^/]+(/.*)?$' }), Type.Null()]),
  logLevel: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  /** json: one JSON object per line (for log pipelines); pretty: human-readable lines for a terminal. */
  logFormat: Type.Enum(['json', 'pretty']),
  /** Bearer token that /metrics on the API's listener requires; without one, /metrics is not served there. */
  metricsToken: Type.Union([Type.String({ minLength: 16 }), Type.Null()]),
  /** A listener of its own for /metrics (0: any free port); none when null. */
  metricsPort: Type.Union([Type.Integer({ minimum: 0, maximum: 65535 }), Type.Null()]),
  /** Where the metrics listener binds (loopback unless a scraper elsewhere must reach it). */
  metricsHost: Type.String({ minLength: 1 }),
  /** Rows per page when a client gives no $top (contract §5). */
  pageSize: Type.Integer({ minimum: 1, maximum: 10000 }),
  bodyLimitBytes: Type.Integer({ minimum: 1024 }),
  /** A request's line and headers must arrive within this (slow headers: 408, then closed). */
  headersTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 3600 }),
  /** The whole request, body included, must arrive within this; a long poll's wait is not counted. */
  requestTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 3600 }),
  /** An idle keep-alive connection (between requests) is closed after this. */
  keepAliveTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 3600 }),
  /** Open connections one client address may hold; more are answered 429 and closed (0: no cap). */
  maxConnectionsPerSource: Type.Integer({ minimum: 0 }),
  cancelRequiresMatchingPermission: Type.Boolean(),
  /** Tokens are issued as `<issuerBase>/<tenant id>/` (MDE's v1.0 tokens: https://sts.windows.net). */
  issuerBase: Type.String({ pattern: '^https?://' }),
  /** Real identity providers whose tokens are accepted, each for one Countermand tenant. */
  trustedIssuers: Type.Array(
    Type.Object(
      {
        issuer: Type.String({ minLength: 1 }),
        jwksUri: Type.String({ pattern: '^https?://' }),
        tenantId: Type.String({ pattern: '^[0-9a-fA-F-]{36}$' }),
      },
      { additionalProperties: false },
    ),
  ),
  rateLimitsEnabled: Type.Boolean(),
  /** Multiplies every rate limit's allowance (e.g. 1000 for load tests). */
  rateLimitScale: Type.Number({ exclusiveMinimum: 0 }),
  /** Multiplies every rate-limit window's length (tests shorten the minute). */
  rateLimitWindowScale: Type.Number({ exclusiveMinimum: 0 }),
  /** How long an agent's check-in waits for work before answering empty (jittered ±10%). */
  agentPollSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 300 }),
  /**
   * Check-ins one agent credential may make per minute (per server node; off with
   * rateLimitsEnabled false). A well-behaved agent checks in once per poll, or once per change
   * of its work: far below this.
   */
  agentCheckinsPerMinute: Type.Integer({ minimum: 1 }),
  /** An action not picked up within this becomes TimeOut (contract §4: 3 days). */
  deliveryWindowSeconds: Type.Number({ exclusiveMinimum: 0 }),
  /** When set, every action type's execution deadline; else each type's own (docs/api-decisions.md). */
  executionDeadlineSeconds: Type.Union([Type.Number({ exclusiveMinimum: 0 }), Type.Null()]),
  /** A machine silent this long becomes Inactive (MDE: 7 days). */
  inactiveAfterSeconds: Type.Number({ exclusiveMinimum: 0 }),
  /** How often the sweeper looks for overdue actions and silent machines. */
  sweepIntervalSeconds: Type.Number({ exclusiveMinimum: 0 }),
  /** Simulated agents started with the server (0: none). */
  demoFleetSize: Type.Integer({ minimum: 0, maximum: 100000 }),
  /** How the demo fleet's simulated actions behave, per action type (docs/agents.md). */
  demoFleetSimulation: Type.Record(Type.String(), Type.Unknown()),
  /** Serve the Action Center web UI at `/` (docs/action-center.md). */
  actionCenter: Type.Boolean(),
  /** The built UI to serve; default the bundle `npm run build` writes to dist/web. */
  actionCenterDir: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  /** Event streams one caller may hold open on one node; more are answered 429. */
  eventStreamsPerCaller: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** How often an idle event stream sends a heartbeat comment. */
  eventHeartbeatSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 3600 }),
  /** Seconds a live-response RunScript may run before the machine kills it (contract §2: 10 minutes). */
  liveResponseScriptTimeoutSeconds: Type.Number({ exclusiveMinimum: 0 }),
  /** How long a live-response result link works (contract §2 row 14: 30 minutes). */
  liveResponseLinkSeconds: Type.Number({ exclusiveMinimum: 0 }),
  /** How long an investigation package link works (contract: 10 minutes). */
  packageLinkSeconds: Type.Number({ exclusiveMinimum: 0 }),
  /** Largest live-response result or investigation package an agent may upload. */
  agentUploadMaxBytes: Type.Integer({ minimum: 1 }),
  /** Results and packages of actions created longer ago than this are removed (library files stay until deleted). */
  artifactRetentionSeconds: Type.Number({ exclusiveMinimum: 0 }),
  /** An unreferenced blob is removed only once this long has passed since it was last written. */
  blobGraceSeconds: Type.Number({ minimum: 0 }),
  /** The emulator's control API under /_countermand/ (docs/emulator.md); off unless asked for. */
  controlEnabled: Type.Boolean(),
  /** Its admin token (at least 16 characters); when neither this nor a file is given, one is generated and printed once. */
  controlToken: Type.Union([Type.String({ minLength: 16 }), Type.Null()]),
  /** A file holding the admin token (its first line). */
  controlTokenFile: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  /** Requests the control API's journal keeps. */
  journalSize: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  /** PEM files to serve HTTPS with. */
  tlsCertFile: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  tlsKeyFile: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  /** Seals the private signing keys at rest (32 bytes, base64 or hex); or the file holding it. */
  keyEncryptionKey: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  keyEncryptionKeyFile: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
});
export type ServerConfig = Static<typeof ServerConfigSchema>;

export const DEFAULT_CONFIG: ServerConfig = {
  host: '127.0.0.1',
  port: 8080,
  dataDir: './data',
  allowOpenDataDir: false,
  databaseUrl: null,
  fixtures: null,
  publicBaseUrl: null,
  logLevel: 'info',
  logFormat: 'json',
  metricsToken: null,
  metricsPort: null,
  metricsHost: '127.0.0.1',
  pageSize: 10000,
  bodyLimitBytes: 1024 * 1024,
  headersTimeoutSeconds: 20,
  requestTimeoutSeconds: 60,
  // Longer than the 60 s idle timeout of common proxies and load balancers in front of a server.
  keepAliveTimeoutSeconds: 72,
  maxConnectionsPerSource: 1024,
  cancelRequiresMatchingPermission: false,
  issuerBase: 'https://sts.windows.net',
  trustedIssuers: [],
  rateLimitsEnabled: true,
  rateLimitScale: 1,
  rateLimitWindowScale: 1,
  agentPollSeconds: 25,
  agentCheckinsPerMinute: 600,
  deliveryWindowSeconds: 3 * 24 * 3600,
  executionDeadlineSeconds: null,
  inactiveAfterSeconds: 7 * 24 * 3600,
  sweepIntervalSeconds: 30,
  demoFleetSize: 3,
  // Slow enough for a person to watch an isolate go Pending (20 s), InProgress (40 s), and cancel it.
  demoFleetSimulation: { '*': { pendingMs: 20_000, durationMs: 40_000 } },
  actionCenter: true,
  actionCenterDir: null,
  eventStreamsPerCaller: 10,
  // Well inside the 60 s idle timeout of common proxies in front of a server.
  eventHeartbeatSeconds: 15,
  liveResponseScriptTimeoutSeconds: 600,
  liveResponseLinkSeconds: 1800,
  packageLinkSeconds: 600,
  agentUploadMaxBytes: 256 * 1024 * 1024,
  artifactRetentionSeconds: 30 * 24 * 3600,
  blobGraceSeconds: 600,
  controlEnabled: false,
  controlToken: null,
  controlTokenFile: null,
  journalSize: 1000,
  tlsCertFile: null,
  tlsKeyFile: null,
  keyEncryptionKey: null,
  keyEncryptionKeyFile: null,
};

/** Environment variable of each setting. */
const ENV: Readonly<Record<keyof ServerConfig, string>> = {
  host: 'COUNTERMAND_HOST',
  port: 'COUNTERMAND_PORT',
  dataDir: 'COUNTERMAND_DATA_DIR',
  allowOpenDataDir: 'COUNTERMAND_ALLOW_OPEN_DATA_DIR',
  databaseUrl: 'COUNTERMAND_DATABASE_URL',
  fixtures: 'COUNTERMAND_FIXTURES',
  publicBaseUrl: 'COUNTERMAND_PUBLIC_URL',
  logLevel: 'COUNTERMAND_LOG_LEVEL',
  logFormat: 'COUNTERMAND_LOG_FORMAT',
  metricsToken: 'COUNTERMAND_METRICS_TOKEN',
  metricsPort: 'COUNTERMAND_METRICS_PORT',
  metricsHost: 'COUNTERMAND_METRICS_HOST',
  pageSize: 'COUNTERMAND_PAGE_SIZE',
  bodyLimitBytes: 'COUNTERMAND_BODY_LIMIT_BYTES',
  headersTimeoutSeconds: 'COUNTERMAND_HEADERS_TIMEOUT_SECONDS',
  requestTimeoutSeconds: 'COUNTERMAND_REQUEST_TIMEOUT_SECONDS',
  keepAliveTimeoutSeconds: 'COUNTERMAND_KEEP_ALIVE_TIMEOUT_SECONDS',
  maxConnectionsPerSource: 'COUNTERMAND_MAX_CONNECTIONS_PER_SOURCE',
  cancelRequiresMatchingPermission: 'COUNTERMAND_CANCEL_REQUIRES_MATCHING_PERMISSION',
  issuerBase: 'COUNTERMAND_ISSUER_BASE',
  trustedIssuers: 'COUNTERMAND_TRUSTED_ISSUERS',
  rateLimitsEnabled: 'COUNTERMAND_RATE_LIMITS_ENABLED',
  rateLimitScale: 'COUNTERMAND_RATE_LIMIT_SCALE',
  rateLimitWindowScale: 'COUNTERMAND_RATE_LIMIT_WINDOW_SCALE',
  agentPollSeconds: 'COUNTERMAND_AGENT_POLL_SECONDS',
  agentCheckinsPerMinute: 'COUNTERMAND_AGENT_CHECKINS_PER_MINUTE',
  deliveryWindowSeconds: 'COUNTERMAND_DELIVERY_WINDOW_SECONDS',
  executionDeadlineSeconds: 'COUNTERMAND_EXECUTION_DEADLINE_SECONDS',
  inactiveAfterSeconds: 'COUNTERMAND_INACTIVE_AFTER_SECONDS',
  sweepIntervalSeconds: 'COUNTERMAND_SWEEP_INTERVAL_SECONDS',
  demoFleetSize: 'COUNTERMAND_DEMO_FLEET',
  demoFleetSimulation: 'COUNTERMAND_DEMO_FLEET_SIMULATION',
  actionCenter: 'COUNTERMAND_ACTION_CENTER',
  actionCenterDir: 'COUNTERMAND_ACTION_CENTER_DIR',
  eventStreamsPerCaller: 'COUNTERMAND_EVENT_STREAMS_PER_CALLER',
  eventHeartbeatSeconds: 'COUNTERMAND_EVENT_HEARTBEAT_SECONDS',
  liveResponseScriptTimeoutSeconds: 'COUNTERMAND_LIVE_RESPONSE_SCRIPT_TIMEOUT_SECONDS',
  liveResponseLinkSeconds: 'COUNTERMAND_LIVE_RESPONSE_LINK_SECONDS',
  packageLinkSeconds: 'COUNTERMAND_PACKAGE_LINK_SECONDS',
  agentUploadMaxBytes: 'COUNTERMAND_AGENT_UPLOAD_MAX_BYTES',
  artifactRetentionSeconds: 'COUNTERMAND_ARTIFACT_RETENTION_SECONDS',
  blobGraceSeconds: 'COUNTERMAND_BLOB_GRACE_SECONDS',
  controlEnabled: 'COUNTERMAND_CONTROL',
  controlToken: 'COUNTERMAND_CONTROL_TOKEN',
  controlTokenFile: 'COUNTERMAND_CONTROL_TOKEN_FILE',
  journalSize: 'COUNTERMAND_JOURNAL_SIZE',
  tlsCertFile: 'COUNTERMAND_TLS_CERT',
  tlsKeyFile: 'COUNTERMAND_TLS_KEY',
  keyEncryptionKey: 'COUNTERMAND_KEY_ENCRYPTION_KEY',
  keyEncryptionKeyFile: 'COUNTERMAND_KEY_ENCRYPTION_KEY_FILE',
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Settings that no longer exist, with what to do instead: refused by name, not ignored. */
const REMOVED: Readonly<Record<string, { env: string; instead: string }>> = {
  demoFleetTenant: {
    env: 'COUNTERMAND_DEMO_FLEET_TENANT',
    // Simulated agents report Succeeded for anything: they never join a real tenant unasked.
    instead: 'the demo fleet only joins the demo tenant; run simulated agents in another tenant with `countermand agent --executor simulated`',
  },
};

/** A setting that is off (null) by default but a number when set (metricsPort, executionDeadlineSeconds). */
function takesNumber(key: keyof ServerConfig): boolean {
  const schema = ServerConfigSchema.properties[key] as { anyOf?: { type?: string }[] };
  return schema.anyOf?.some((s) => s.type === 'integer' || s.type === 'number') ?? false;
}

/** Converts a string from the environment or a flag to the setting's type. */
function fromString(key: keyof ServerConfig, raw: string): unknown {
  const sample = DEFAULT_CONFIG[key];
  if (sample === null && raw === '') return null;
  if (typeof sample === 'number' || (sample === null && takesNumber(key))) return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  if (typeof sample === 'object' && sample !== null) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  if (typeof sample === 'boolean') return raw === 'true' || raw === '1' ? true : raw === 'false' || raw === '0' ? false : raw;
  return raw === '' ? null : raw;
}

export function loadConfig(
  flags: Partial<Record<keyof ServerConfig, string | number | boolean | null>> & { config?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): ServerConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG };
  const file = flags.config ?? env.COUNTERMAND_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(resolve(file), 'utf8'));
    } catch (error) {
      throw new ConfigError(`cannot read the configuration file ${file}: ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`the configuration file ${file} must hold a JSON object`);
    }
    for (const [key, value] of Object.entries(parsed)) {
      if (REMOVED[key]) throw new ConfigError(`setting '${key}' in ${file} no longer exists: ${REMOVED[key].instead}`);
      if (!(key in DEFAULT_CONFIG)) throw new ConfigError(`unknown setting '${key}' in ${file}`);
      merged[key] = value;
    }
  }
  for (const [key, removed] of Object.entries(REMOVED)) {
    if (env[removed.env] !== undefined) throw new ConfigError(`${removed.env} (setting ${key}) no longer exists: ${removed.instead}`);
  }
  for (const key of Object.keys(ENV) as (keyof ServerConfig)[]) {
    const raw = env[ENV[key]];
    if (raw !== undefined) merged[key] = fromString(key, raw);
  }
  for (const [key, value] of Object.entries(flags)) {
    if (key === 'config' || value === undefined) continue;
    merged[key] = typeof value === 'string' ? fromString(key as keyof ServerConfig, value) : value;
  }
  const invalid = firstError(ServerConfigSchema, merged);
  if (invalid) {
    const path = invalid.path.replace(/^\//, '');
    const key = path.split('/')[0] as keyof ServerConfig;
    throw new ConfigError(`invalid setting ${path}${ENV[key] ? ` (${ENV[key]})` : ''}: ${invalid.message}`);
  }
  if ((merged.headersTimeoutSeconds as number) > (merged.requestTimeoutSeconds as number)) {
    // The headers are part of the request: a longer headers timeout could never apply.
    throw new ConfigError(
      'headersTimeoutSeconds (COUNTERMAND_HEADERS_TIMEOUT_SECONDS) must not exceed requestTimeoutSeconds (COUNTERMAND_REQUEST_TIMEOUT_SECONDS)',
    );
  }
  if (merged.controlToken !== null && merged.controlTokenFile !== null) {
    throw new ConfigError('give the control API one admin token: controlToken (COUNTERMAND_CONTROL_TOKEN) or controlTokenFile (COUNTERMAND_CONTROL_TOKEN_FILE)');
  }
  if ((merged.tlsCertFile === null) !== (merged.tlsKeyFile === null)) {
    throw new ConfigError('TLS needs both tlsCertFile and tlsKeyFile (COUNTERMAND_TLS_CERT, COUNTERMAND_TLS_KEY)');
  }
  return merged as ServerConfig;
}
