import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { SimulatedFleet } from './agent/fleet.js';
import { isLoopbackHost } from './agent/server-url.js';
import { parseSimulation } from './agent/executors/simulated.js';
import { AGENT_MAX_SOCKETS } from './agent/client.js';
import { BUNDLED_ACTION_CENTER_DIR, registerActionCenter } from './api/action-center.js';
import { buildApp } from './api/app.js';
import { registerMetricsRoute, startMetricsListener, type MetricsListener } from './api/metrics-endpoint.js';
import { registerHealthRoutes, type ReadinessCheck } from './api/health.js';
import type { ConnectionLimits } from './api/connections.js';
import { ArtifactsService, type ArtifactSettings } from './artifacts/artifacts.js';
import type { BlobStore } from './artifacts/blob-store.js';
import { FilesystemBlobStore } from './artifacts/fs-blob-store.js';
import { LibraryService } from './artifacts/library.js';
import { LinkSigner } from './artifacts/links.js';
import { registerDownloadRoutes } from './api/routes/downloads/download-artifact.js';
import type { ApiContext } from './api/operation.js';
import { ConfigError, type ServerConfig } from './config.js';
import { DATABASE_FILE, DataDirError, lockDataDir, prepareDataDir } from './data-dir.js';
import { DEMO_TENANT_ID, seedDemo, type DemoCredentials } from './demo.js';
import { createEnrollmentToken } from './dispatch/enrollment.js';
import { AgentGateway } from './dispatch/gateway.js';
import { registerAgentRoutes } from './dispatch/routes.js';
import { registerTransferRoutes } from './dispatch/transfer-routes.js';
import { Sweeper } from './dispatch/sweeper.js';
import { LocalNotifier, PostgresNotifier, Waiters, type Notifier } from './dispatch/waiters.js';
import { ACTION_CATALOG } from './domain/catalog.js';
import type { Machine } from './domain/model.js';
import type { Store } from './domain/store.js';
import { ControlPlane } from './control/control-plane.js';
import { registerControlRoutes } from './control/routes.js';
import { fixtureMachine, FixturesError, readFixtures, type Fixtures } from './fixtures.js';
import { TokenAuthenticator } from './identity/authenticator.js';
import { Directory } from './identity/directory.js';
import { KeyEncryption } from './identity/key-encryption.js';
import { KEY_REFRESH_MS, KeyRing } from './identity/keys.js';
import { ApiRateLimiter } from './identity/rate-limiter.js';
import { registerTokenService } from './identity/token-service.js';
import { TokenIssuer, acceptedAudiences } from './identity/tokens.js';
import { createLogger } from './logger.js';
import { Metrics } from './metrics.js';
import { OperatorError } from './operator-error.js';
import { ActionChanges } from './services/action-changes.js';
import { ActionsService } from './services/actions.js';
import { AlertsService } from './services/alerts.js';
import { MachinesService } from './services/machines.js';
import type { PostgresStore } from './store/postgres/postgres-store.js';
import { SqliteStore } from './store/sqlite/sqlite-store.js';

export interface RunningServer {
  app: FastifyInstance;
  store: Store;
  /** Which store it opened (the database file, or PostgreSQL's URL without a password). */
  location: string;
  /** The data dir as an absolute path (locked by this server while it runs). */
  dataDir: string;
  /** Where it listens, e.g. http://127.0.0.1:8080 */
  url: string;
  /** The metrics listener's URL (metricsPort), e.g. http://127.0.0.1:9464; null without one. */
  metricsUrl: string | null;
  metrics: Metrics;
  /** The public base URL (for links and the accepted audience). */
  baseUrl: string;
  /** Set on the first start of an empty store without fixtures: shown once. */
  demo: DemoCredentials | null;
  keys: KeyRing;
  gateway: AgentGateway;
  waiters: Waiters;
  sweeper: Sweeper;
  fleet: SimulatedFleet | null;
  /** This node's event streams. */
  changes: ActionChanges;
  blobs: BlobStore;
  artifacts: ArtifactsService;
  /** The emulator's control plane, when the control API is on. */
  control: ControlPlane | null;
  close(): Promise<void>;
}

/** How long the link an agent gets to fetch a library file works. */
const LIBRARY_LINK_SECONDS = 300;

/** The blob store that goes with the store: files under the data dir, or PostgreSQL itself. */
async function openBlobStore(dataDir: string, store: Store, now?: () => number): Promise<BlobStore> {
  const pool = postgresPool(store);
  if (pool) {
    const { PostgresBlobStore } = await import('./artifacts/pg-blob-store.js');
    return PostgresBlobStore.open(pool, join(dataDir, 'blobs', 'staging'), now);
  }
  return FilesystemBlobStore.open(join(dataDir, 'blobs'), store, now);
}

function artifactSettings(config: ServerConfig): ArtifactSettings {
  return {
    resultLinkSeconds: config.liveResponseLinkSeconds,
    packageLinkSeconds: config.packageLinkSeconds,
    libraryLinkSeconds: LIBRARY_LINK_SECONDS,
    agentUploadMaxBytes: config.agentUploadMaxBytes,
    retentionSeconds: config.artifactRetentionSeconds,
    blobGraceSeconds: config.blobGraceSeconds,
  };
}

/** Which store a configuration names, for the operator (never a password). */
export function storeLocation(config: ServerConfig, dataDir: string): string {
  if (!config.databaseUrl) return `the SQLite database ${join(dataDir, DATABASE_FILE)}`;
  const url = new URL(config.databaseUrl);
  url.password = '';
  return `PostgreSQL ${url.toString()}`;
}

/**
 * The configured store, in `dataDir` (absolute, made ready by prepareDataDir) unless a database
 * URL is set. PostgreSQL's driver is only loaded when it is used. A store that cannot be opened
 * or reached is an OperatorError naming it.
 */
export async function openStore(config: ServerConfig, dataDir: string, logger?: Logger): Promise<Store> {
  const location = storeLocation(config, dataDir);
  if (config.databaseUrl) {
    const { PostgresStore } = await import('./store/postgres/postgres-store.js');
    try {
      return await PostgresStore.connect(config.databaseUrl);
    } catch (error) {
      // Network errors (ECONNREFUSED, ENOTFOUND, ...), and PostgreSQL's connection (08), login
      // (28), unknown database (3D000) and not-accepting-connections (57P0x) errors; others are bugs.
      if (!/^(E[A-Z]+|08...|28...|3D000|57P0[1-4])$/.test(String((error as { code?: unknown }).code ?? ''))) throw error;
      throw new OperatorError(`cannot use ${location}: ${(error as Error).message}; check --database-url (COUNTERMAND_DATABASE_URL)`);
    }
  }
  const file = join(dataDir, DATABASE_FILE);
  try {
    return SqliteStore.open(file, {
      onWarning: (message) => logger?.warn({ reason: message }, 'background WAL checkpoint failed'),
    });
  } catch (error) {
    const code = String((error as { code?: unknown }).code ?? '');
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      throw new DataDirError(`${file} is not a Countermand database (${(error as Error).message}); give the right --data-dir (COUNTERMAND_DATA_DIR)`);
    }
    if (/^SQLITE_(CANTOPEN|READONLY|PERM|AUTH|IOERR)/.test(code)) {
      throw new DataDirError(`cannot open ${file}: ${(error as Error).message}; check that the user running Countermand owns it and ${dataDir}`);
    }
    throw error;
  }
}

const postgresPool = (store: Store) => (store.backend === 'postgres' ? (store as PostgresStore).pool : null);

/** Upserts the fixtures' tenants, machines, applications and users. */
export async function loadFixtures(store: Store, directory: Directory, fixtures: Fixtures): Promise<void> {
  const now = Date.now();
  for (const tenant of fixtures.tenants) {
    const { id: tenantId } = await directory.createTenant(tenant.name, tenant.id);
    for (const machine of tenant.machines ?? []) {
      const fresh = fixtureMachine(tenantId, machine, now);
      const existing = await store.findMachine(tenantId, fresh.id, { aadDeviceId: false, computerDnsName: false });
      // On a reload the file only says what it says: fields it gives win, the others keep what
      // the server has learnt since (from check-ins, enrollment, first/last seen).
      const merged: Machine = existing ? { ...existing } : fresh;
      if (existing) {
        for (const key of Object.keys(machine) as (keyof typeof machine)[]) {
          (merged as unknown as Record<string, unknown>)[key] = fresh[key as keyof Machine];
        }
      }
      await store.upsertMachine(merged);
    }
    for (const app of tenant.applications ?? []) {
      const { application } = await directory.addApplication(tenantId, {
        clientId: app.clientId,
        // An exported application carries its hash instead: kept as it is, below.
        secret: app.clientSecret ?? 'replaced-by-the-hash-below',
        displayName: app.displayName,
        roles: app.roles,
      });
      if (app.clientSecretHash || app.objectId) {
        await store.upsertApplication({
          ...application,
          ...(app.clientSecretHash ? { secretHash: app.clientSecretHash } : {}),
          ...(app.objectId ? { objectId: app.objectId.toLowerCase() } : {}),
        });
      }
    }
    for (const user of tenant.users ?? []) {
      const { user: added } = await directory.addUser(tenantId, {
        upn: user.upn,
        password: user.password ?? 'replaced-by-the-hash-below',
        ...(user.objectId ? { objectId: user.objectId } : {}),
        scopes: user.scopes,
        rolePermissions: user.rolePermissions,
        deviceGroups: user.deviceGroups ?? null,
      });
      if (user.passwordHash) await store.upsertUser({ ...added, passwordHash: user.passwordHash });
    }
  }
}

/**
 * The tenant the demo fleet joins: only ever the demo tenant seeded on a first start without
 * fixtures. Simulated agents report Succeeded for anything; in a real tenant they would lie.
 */
async function fleetTenant(store: Store): Promise<string | null> {
  return (await store.getTenant(DEMO_TENANT_ID))?.id ?? null;
}

/**
 * Makes the data dir ready and locks it, opens the store, loads fixtures, builds the app,
 * listens, then seeds the demo (only once listening, so a start that cannot listen leaves the
 * store empty and the next start still prints the demo secret), and starts the sweeper and the
 * demo fleet.
 */
export async function startServer(config: ServerConfig, logger: Logger = createLogger(config.logLevel, undefined, config.logFormat)): Promise<RunningServer> {
  const fixtures = config.fixtures ? readFixtures(config.fixtures) : null;
  const simulation = parseFleetSimulation(config);
  const emulated = config.controlEnabled || fixtures?.emulator?.control?.enabled === true;
  if (!emulated && fixtures) refuseEmulatorFixtures(fixtures, config.fixtures!);
  const tls = config.tlsCertFile && config.tlsKeyFile ? { cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) } : null;
  const encryption = KeyEncryption.fromConfig(config);
  // The data dir is this node's own, whatever the database: with PostgreSQL it still holds the
  // demo fleet's agent state, which two nodes must not share.
  const dataDir = prepareDataDir(config.dataDir, {
    create: true,
    database: !config.databaseUrl,
    allowOpen: config.allowOpenDataDir,
    warn: (message) => logger.warn(message),
  });
  const lock = lockDataDir(dataDir);
  const stops: (() => Promise<void> | void)[] = [() => lock.release()];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop();
  };
  try {
    const store = await openStore(config, dataDir, logger);
    stops.push(() => store.close());
    const keys = new KeyRing(store, { encryption, onWarning: (message) => logger.warn(message) });
    const directory = new Directory(store);
    // The emulator's world (fixtures, rules, clock, seed) is the control plane's to load.
    const control = emulated ? new ControlPlane({ config, store, directory, logger, fixtures, demoSimulation: simulation }) : null;
    const now = control?.clock.now;
    await Promise.all([keys.init(), fixtures && !control ? loadFixtures(store, directory, fixtures) : null]);
    if (!control && fixtures) warnAgentless(fixtures, config, logger);
    const keyRefresh = setInterval(() => {
      keys.reload().catch((error: unknown) => logger.warn({ err: error }, 'could not re-read the signing keys'));
    }, KEY_REFRESH_MS).unref();
    stops.push(() => clearInterval(keyRefresh));

    const metrics = new Metrics();
    const machines = new MachinesService(store);
    const actions = new ActionsService({
      store,
      machines,
      metrics,
      ...(control
        ? { now: control.clock.now, newId: () => control.random.uuid('actionIds'), randomInt: (below: number) => control.random.int('alertIds', below) }
        : {}),
    });
    const waiters = new Waiters();
    const changes = new ActionChanges(store, (error) => logger.warn({ err: error }, 'event stream delivery failed'));
    const pool = postgresPool(store);
    const notifier: Notifier = pool
      ? await PostgresNotifier.start(waiters, pool, (error) => logger.warn({ err: error }, 'dispatch notification failed'), changes)
      : new LocalNotifier(waiters, changes);
    stops.push(() => notifier.close());
    actions.observeChanges((change) => notifier.publish(change));
    const gateway = new AgentGateway({
      store,
      actions,
      waiters,
      notifier,
      pollSeconds: config.agentPollSeconds,
      checkinLimit: config.rateLimitsEnabled
        ? { points: config.agentCheckinsPerMinute, seconds: Math.max(1, Math.round(60 * config.rateLimitWindowScale)) }
        : null,
      ...(pool ? { pool } : {}),
      scriptTimeoutSeconds: config.liveResponseScriptTimeoutSeconds,
      ...(now ? { now } : {}),
    });
    actions.setListener(gateway);
    // With the emulator on, its clock dates library files, signs links and ages artifacts.
    const blobs = await openBlobStore(dataDir, store, now);
    const library = new LibraryService(store, blobs, now);
    const artifacts = new ArtifactsService({
      store,
      blobs,
      links: await LinkSigner.load(store, { encryption, ...(now ? { now } : {}) }),
      actions,
      library,
      settings: artifactSettings(config),
      ...(now ? { now } : {}),
    });

    let baseUrl = config.publicBaseUrl?.replace(/\/+$/, '') ?? '';
    let audiences = acceptedAudiences(baseUrl);
    const ctx: ApiContext = {
      actions,
      machines,
      alerts: new AlertsService(store, machines),
      library,
      artifacts,
      baseUrl: () => baseUrl,
      pageSize: config.pageSize,
      cancelRequiresMatchingPermission: config.cancelRequiresMatchingPermission,
      events: {
        changes,
        heartbeatMs: config.eventHeartbeatSeconds * 1000,
        streamsPerCaller: config.eventStreamsPerCaller,
        ...(control ? { clock: control.clock } : {}),
      },
    };
    const authenticator = new TokenAuthenticator({
      store,
      keys,
      issuerBase: config.issuerBase,
      trustedIssuers: config.trustedIssuers,
      audiences: () => audiences,
      ...(now ? { now } : {}),
    });
    const limiter = new ApiRateLimiter({
      enabled: config.rateLimitsEnabled,
      pointsScale: config.rateLimitScale,
      windowScale: config.rateLimitWindowScale,
      ...(pool ? { pool } : {}),
    });
    const issuer = control
      ? new TokenIssuer(keys, config.issuerBase, control.clock.now, () => control.random.uuid('tokenIds'))
      : new TokenIssuer(keys, config.issuerBase);
    let fleet: SimulatedFleet | null = null;
    let fleetStarted = false;
    let demoSeeded = false;
    let closed = false;
    const readiness: ReadinessCheck[] = [
      { name: 'store', waiting: () => (closed ? 'the store (the server is closing)' : null) },
      {
        name: 'fixtures',
        waiting: () => (control ? (control.readiness.worldLoaded ? null : "the emulator's world to load") : demoSeeded ? null : 'the demo tenant to be seeded'),
      },
      { name: 'agents', waiting: () => (fleet && !fleetStarted ? `the demo fleet's ${config.demoFleetSize} simulated agents to connect` : null) },
    ];
    stops.push(() => void (closed = true));
    const app = buildApp({
      ctx,
      authenticator,
      limiter,
      logger,
      metrics,
      bodyLimit: config.bodyLimitBytes,
      connections: connectionLimits(config),
      ...(tls ? { https: tls } : {}),
      ...(control ? { requestId: control.requestId } : {}),
      extensions: [
        (instance) => registerHealthRoutes(instance, readiness),
        (instance) =>
          registerTokenService(instance, {
            store,
            directory,
            issuer,
            keys,
            issuerBase: config.issuerBase,
            baseUrl: () => baseUrl,
            audiences: () => audiences,
            ...(pool ? { pool } : {}),
            onRefused: (error) => metrics.tokenRefused(error),
          }),
        (instance) => registerAgentRoutes(instance, gateway, metrics),
        (instance) => registerMetricsRoute(instance, metrics, config.metricsToken),
        (instance) => {
          if (config.actionCenter) registerActionCenter(instance, config.actionCenterDir ?? BUNDLED_ACTION_CENTER_DIR, logger);
        },
        (instance) => registerTransferRoutes(instance, gateway, artifacts),
        (instance) => registerDownloadRoutes(instance, artifacts),
        ...(control ? [(instance: FastifyInstance) => control.register(instance, registerControlRoutes)] : []),
      ],
    });
    stops.push(() => app.close());
    // Open streams would hold the close up: they end first, with an `end` event.
    stops.push(() => changes.closeAll('shutdown'));
    await listen(app, config);
    if (!tls && !isLoopbackHost(config.host)) {
      logger.warn(
        { host: config.host },
        'listening on a non-loopback address without TLS: tokens, client secrets, enrollment tokens and agent credentials ' +
          'travel in clear; serve with --tls-cert and --tls-key, or only behind a TLS proxy',
      );
    }
    stops.push(() => gateway.shutdown());
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `${tls ? 'https' : 'http'}://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;
    if (!baseUrl) {
      baseUrl = url;
      audiences = acceptedAudiences(baseUrl);
    }
    const demo = fixtures || control ? null : await seedDemo(store, directory);
    demoSeeded = true;
    let metricsListener: MetricsListener | null = null;
    if (config.metricsPort !== null) {
      const { metricsHost: host, metricsPort: port } = config;
      metricsListener = await startMetricsListener(metrics, { host, port, token: config.metricsToken }).catch((error: unknown) => {
        throw listenProblem(error, host, port, { host: '--metrics-host (COUNTERMAND_METRICS_HOST)', port: '--metrics-port (COUNTERMAND_METRICS_PORT)' });
      });
      stops.push(() => metricsListener?.close());
      if (!isLoopbackHost(config.metricsHost) && !config.metricsToken) {
        logger.warn({ host: config.metricsHost }, 'the metrics listener is open to the network without a metrics token: anyone who reaches it reads them');
      }
    }

    const sweeper = new Sweeper({
      store,
      actions,
      deliveryWindowSeconds: config.deliveryWindowSeconds,
      executionDeadline: (type) => config.executionDeadlineSeconds ?? ACTION_CATALOG[type].executionDeadlineSeconds,
      inactiveAfterSeconds: config.inactiveAfterSeconds,
      intervalSeconds: config.sweepIntervalSeconds,
      scriptTimeoutSeconds: config.liveResponseScriptTimeoutSeconds,
      artifacts,
      logger,
      ...(now ? { now } : {}),
    });
    if (control) {
      stops.push(() => control.steering.clear());
      // Loaded after listening, as the demo is seeded: /ready says when the world is there.
      await control.attach({ actions, gateway, limiter, authenticator, sweeper, changes, artifacts });
    }
    sweeper.start();
    stops.push(() => sweeper.stop());

    // With the emulator on, the demo machines are the control plane's (served in process, steerable).
    const tenantId = config.demoFleetSize > 0 && !control ? await fleetTenant(store) : null;
    if (config.demoFleetSize > 0 && !control && !tenantId) logger.info('no demo tenant in this store: the demo fleet does not start');
    if (tenantId) {
      fleet = new SimulatedFleet({
        serverUrl: url,
        // The certificate file (self-signed, or with its chain) is what the fleet trusts.
        ...(tls ? { ca: tls.cert } : {}),
        // It talks to this very process: its plain HTTP never leaves the machine.
        insecureHttp: true,
        enrollmentToken: await createEnrollmentToken(store, tenantId, 'demo-fleet', { rbacGroupId: 1, rbacGroupName: 'Demo fleet' }),
        size: config.demoFleetSize,
        stateDir: join(dataDir, 'fleet'),
        simulation,
        log: (message, detail) => logger.debug({ ...detail }, `fleet: ${message}`),
      });
      stops.push(() => fleet?.stop());
      // The demo fleet is a convenience: if it cannot connect (e.g. a TLS certificate it cannot
      // verify), the server still serves, and says why the fleet is missing.
      await fleet.start().catch((error: unknown) => logger.error({ err: error }, 'the demo fleet could not start'));
      fleetStarted = true;
    }
    return {
      app,
      store,
      location: storeLocation(config, dataDir),
      dataDir,
      url,
      metricsUrl: metricsListener?.url ?? null,
      metrics,
      baseUrl,
      demo: control ? control.demo : demo,
      keys,
      gateway,
      waiters,
      sweeper,
      fleet,
      changes,
      blobs,
      artifacts,
      control,
      close: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** Without the emulator, what only the emulator can do is refused by name rather than ignored. */
function refuseEmulatorFixtures(fixtures: Fixtures, path: string): void {
  const needs = (what: string) =>
    new FixturesError(`${path}: ${what} needs the control API: start with --control (COUNTERMAND_CONTROL=1) or set emulator.control.enabled`);
  const other = Object.keys(fixtures.emulator ?? {}).filter((key) => key !== 'control');
  if (other.length > 0) throw needs(`emulator.${other[0]}`);
  for (const tenant of fixtures.tenants) {
    if (tenant.actions?.length) throw needs(`tenant ${tenant.id}'s actions`);
    if (tenant.machines?.some((m) => m.agent === 'simulated')) throw needs(`a simulated machine in tenant ${tenant.id}`);
  }
}

/** Fixture machines without the emulator have no agent: their actions wait for one until the delivery window. */
function warnAgentless(fixtures: Fixtures, config: ServerConfig, logger: Logger): void {
  const count = fixtures.tenants.reduce((n, t) => n + (t.machines?.length ?? 0), 0);
  if (count === 0) return;
  logger.info(
    { machines: count, deliveryWindowSeconds: config.deliveryWindowSeconds },
    'fixture machines have no agent: their actions stay Pending until an agent attaches or the delivery window ends (TimeOut); ' +
      'start with --control to have simulated agents serve them (docs/emulator.md)',
  );
}

/**
 * The configured timeouts and cap. The demo fleet's agents all connect from this host, each with
 * up to AGENT_MAX_SOCKETS connections: the cap makes room for them.
 */
function connectionLimits(config: ServerConfig): ConnectionLimits {
  const cap = config.maxConnectionsPerSource;
  return {
    headersTimeoutMs: config.headersTimeoutSeconds * 1000,
    requestTimeoutMs: config.requestTimeoutSeconds * 1000,
    keepAliveTimeoutMs: config.keepAliveTimeoutSeconds * 1000,
    maxPerSource: cap === 0 ? 0 : Math.max(cap, config.demoFleetSize * AGENT_MAX_SOCKETS),
  };
}

export class ListenError extends OperatorError {
  override name = 'ListenError';
}

/** Listens; the failures an operator can fix are one line naming the port or address. */
async function listen(app: FastifyInstance, config: ServerConfig): Promise<void> {
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    throw listenProblem(error, config.host, config.port, { host: '--host (COUNTERMAND_HOST)', port: '--port (COUNTERMAND_PORT)' });
  }
}

/** Why a listener could not start, as one line naming the setting to change; other errors stay as they are. */
function listenProblem(error: unknown, host: string, port: number, settings: { host: string; port: string }): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new ListenError(`port ${port} is in use on ${host}; choose another with ${settings.port}`);
  if (code === 'EACCES') {
    return new ListenError(`not allowed to listen on port ${port} (ports below 1024 need privileges); choose another with ${settings.port}`);
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new ListenError(`cannot listen on ${host}: not an address of this machine; choose another with ${settings.host}`);
  }
  return error;
}

function parseFleetSimulation(config: ServerConfig) {
  try {
    return parseSimulation(config.demoFleetSimulation);
  } catch (error) {
    throw new ConfigError(`invalid setting demoFleetSimulation: ${(error as Error).message}`);
  }
}
