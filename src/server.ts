import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { SimulatedFleet } from './agent/fleet.js';
import { isLoopbackHost } from './agent/server-url.js';
import { parseSimulation } from './agent/executors/simulated.js';
import { AGENT_MAX_SOCKETS } from './agent/client.js';
import { buildApp } from './api/app.js';
import type { ConnectionLimits } from './api/connections.js';
import type { ApiContext } from './api/operation.js';
import { ConfigError, type ServerConfig } from './config.js';
import { DEMO_TENANT_ID, seedDemo, type DemoCredentials } from './demo.js';
import { createEnrollmentToken } from './dispatch/enrollment.js';
import { AgentGateway } from './dispatch/gateway.js';
import { registerAgentRoutes } from './dispatch/routes.js';
import { Sweeper } from './dispatch/sweeper.js';
import { LocalNotifier, PostgresNotifier, Waiters, type Notifier } from './dispatch/waiters.js';
import { ACTION_CATALOG } from './domain/catalog.js';
import type { Machine } from './domain/model.js';
import type { Store } from './domain/store.js';
import { fixtureMachine, readFixtures, type Fixtures } from './fixtures.js';
import { TokenAuthenticator } from './identity/authenticator.js';
import { Directory } from './identity/directory.js';
import { KEY_REFRESH_MS, KeyRing } from './identity/keys.js';
import { ApiRateLimiter } from './identity/rate-limiter.js';
import { registerTokenService } from './identity/token-service.js';
import { TokenIssuer, acceptedAudiences } from './identity/tokens.js';
import { createLogger } from './logger.js';
import { ActionsService } from './services/actions.js';
import { AlertsService } from './services/alerts.js';
import { MachinesService } from './services/machines.js';
import type { PostgresStore } from './store/postgres/postgres-store.js';
import { SqliteStore } from './store/sqlite/sqlite-store.js';

export interface RunningServer {
  app: FastifyInstance;
  store: Store;
  /** Where it listens, e.g. http://127.0.0.1:8080 */
  url: string;
  /** The public base URL (for links and the accepted audience). */
  baseUrl: string;
  /** Set on the first start of an empty store without fixtures: shown once. */
  demo: DemoCredentials | null;
  keys: KeyRing;
  gateway: AgentGateway;
  waiters: Waiters;
  sweeper: Sweeper;
  fleet: SimulatedFleet | null;
  close(): Promise<void>;
}

/** The configured store. PostgreSQL's driver is only loaded when it is used. */
export async function openStore(config: ServerConfig, logger?: Logger): Promise<Store> {
  if (config.databaseUrl) {
    const { PostgresStore } = await import('./store/postgres/postgres-store.js');
    return PostgresStore.connect(config.databaseUrl);
  }
  mkdirSync(config.dataDir, { recursive: true });
  return SqliteStore.open(join(config.dataDir, 'countermand.db'), {
    onWarning: (message) => logger?.warn({ reason: message }, 'background WAL checkpoint failed'),
  });
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
      await directory.addApplication(tenantId, {
        clientId: app.clientId,
        secret: app.clientSecret,
        displayName: app.displayName,
        roles: app.roles,
      });
    }
    for (const user of tenant.users ?? []) {
      await directory.addUser(tenantId, {
        upn: user.upn,
        password: user.password,
        ...(user.objectId ? { objectId: user.objectId } : {}),
        scopes: user.scopes,
        rolePermissions: user.rolePermissions,
        deviceGroups: user.deviceGroups ?? null,
      });
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
 * Opens the store, loads fixtures (or seeds the demo), builds the app, listens, and starts the
 * sweeper and the demo fleet.
 */
export async function startServer(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const fixtures = config.fixtures ? readFixtures(config.fixtures) : null;
  const simulation = parseFleetSimulation(config);
  const tls = config.tlsCertFile && config.tlsKeyFile ? { cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) } : null;
  const store = await openStore(config, logger);
  const stops: (() => Promise<void> | void)[] = [() => store.close()];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop();
  };
  try {
    const keys = new KeyRing(store);
    const directory = new Directory(store);
    // Key generation and secret hashing both run in the thread pool: side by side.
    const [, demo] = await Promise.all([
      keys.init(),
      fixtures ? loadFixtures(store, directory, fixtures).then(() => null) : seedDemo(store, directory),
    ]);
    const keyRefresh = setInterval(() => {
      keys.reload().catch((error: unknown) => logger.warn({ err: error }, 'could not re-read the signing keys'));
    }, KEY_REFRESH_MS).unref();
    stops.push(() => clearInterval(keyRefresh));

    const machines = new MachinesService(store);
    const actions = new ActionsService({ store, machines });
    const waiters = new Waiters();
    const pool = postgresPool(store);
    const notifier: Notifier = pool
      ? await PostgresNotifier.start(waiters, pool, (error) => logger.warn({ err: error }, 'dispatch notification failed'))
      : new LocalNotifier(waiters);
    stops.push(() => notifier.close());
    const gateway = new AgentGateway({
      store,
      actions,
      waiters,
      notifier,
      pollSeconds: config.agentPollSeconds,
      checkinLimit: config.rateLimitsEnabled
        ? { points: config.agentCheckinsPerMinute, seconds: Math.max(1, Math.round(60 * config.rateLimitWindowScale)) }
        : null,
    });
    actions.setListener(gateway);

    let baseUrl = config.publicBaseUrl?.replace(/\/+$/, '') ?? '';
    let audiences = acceptedAudiences(baseUrl);
    const ctx: ApiContext = {
      actions,
      machines,
      alerts: new AlertsService(store, machines),
      baseUrl: () => baseUrl,
      pageSize: config.pageSize,
      cancelRequiresMatchingPermission: config.cancelRequiresMatchingPermission,
    };
    const authenticator = new TokenAuthenticator({
      store,
      keys,
      issuerBase: config.issuerBase,
      trustedIssuers: config.trustedIssuers,
      audiences: () => audiences,
    });
    const limiter = new ApiRateLimiter({
      enabled: config.rateLimitsEnabled,
      pointsScale: config.rateLimitScale,
      windowScale: config.rateLimitWindowScale,
      ...(pool ? { pool } : {}),
    });
    const issuer = new TokenIssuer(keys, config.issuerBase);
    const app = buildApp({
      ctx,
      authenticator,
      limiter,
      logger,
      bodyLimit: config.bodyLimitBytes,
      connections: connectionLimits(config),
      ...(tls ? { https: tls } : {}),
      extensions: [
        (instance) =>
          registerTokenService(instance, {
            store,
            directory,
            issuer,
            keys,
            issuerBase: config.issuerBase,
            baseUrl: () => baseUrl,
            audiences: () => audiences,
          }),
        (instance) => registerAgentRoutes(instance, gateway),
      ],
    });
    await app.listen({ host: config.host, port: config.port });
    stops.push(() => app.close());
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

    const sweeper = new Sweeper({
      store,
      actions,
      deliveryWindowSeconds: config.deliveryWindowSeconds,
      executionDeadline: (type) => config.executionDeadlineSeconds ?? ACTION_CATALOG[type].executionDeadlineSeconds,
      inactiveAfterSeconds: config.inactiveAfterSeconds,
      intervalSeconds: config.sweepIntervalSeconds,
      logger,
    });
    sweeper.start();
    stops.push(() => sweeper.stop());

    let fleet: SimulatedFleet | null = null;
    const tenantId = config.demoFleetSize > 0 ? await fleetTenant(store) : null;
    if (config.demoFleetSize > 0 && !tenantId) logger.info('no demo tenant in this store: the demo fleet does not start');
    if (tenantId) {
      fleet = new SimulatedFleet({
        serverUrl: url,
        // The certificate file (self-signed, or with its chain) is what the fleet trusts.
        ...(tls ? { ca: tls.cert } : {}),
        // It talks to this very process: its plain HTTP never leaves the machine.
        insecureHttp: true,
        enrollmentToken: await createEnrollmentToken(store, tenantId, 'demo-fleet', { rbacGroupId: 1, rbacGroupName: 'Demo fleet' }),
        size: config.demoFleetSize,
        stateDir: join(config.dataDir, 'fleet'),
        simulation,
        log: (message, detail) => logger.debug({ ...detail }, `fleet: ${message}`),
      });
      stops.push(() => fleet?.stop());
      // The demo fleet is a convenience: if it cannot connect (e.g. a TLS certificate it cannot
      // verify), the server still serves, and says why the fleet is missing.
      await fleet.start().catch((error: unknown) => logger.error({ err: error }, 'the demo fleet could not start'));
    }
    return {
      app,
      store,
      url,
      baseUrl,
      demo,
      keys,
      gateway,
      waiters,
      sweeper,
      fleet,
      close: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
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

function parseFleetSimulation(config: ServerConfig) {
  try {
    return parseSimulation(config.demoFleetSimulation);
  } catch (error) {
    throw new ConfigError(`invalid setting demoFleetSimulation: ${(error as Error).message}`);
  }
}
