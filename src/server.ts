import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import type { ApiContext } from './api/operation.js';
import type { ServerConfig } from './config.js';
import { seedDemo, type DemoCredentials } from './demo.js';
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
import { MachinesService } from './services/machines.js';
import { PostgresStore } from './store/postgres/postgres-store.js';
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
  close(): Promise<void>;
}

export async function openStore(config: ServerConfig): Promise<Store> {
  if (config.databaseUrl) return PostgresStore.connect(config.databaseUrl);
  mkdirSync(config.dataDir, { recursive: true });
  return SqliteStore.open(join(config.dataDir, 'countermand.db'));
}

/** Upserts the fixtures' tenants, machines, applications and users. */
export async function loadFixtures(store: Store, directory: Directory, fixtures: Fixtures): Promise<void> {
  const now = Date.now();
  for (const tenant of fixtures.tenants) {
    const { id: tenantId } = await directory.createTenant(tenant.name, tenant.id);
    for (const machine of tenant.machines ?? []) {
      const fresh = fixtureMachine(tenantId, machine, now);
      const existing = await store.findMachine(tenantId, fresh.id, { aadDeviceId: false, computerDnsName: false });
      // A reload keeps what the server has learnt since (first/last seen), unless the file says otherwise.
      await store.upsertMachine(
        existing
          ? {
              ...fresh,
              firstSeen: machine.firstSeen ? fresh.firstSeen : existing.firstSeen,
              lastSeen: machine.lastSeen ? fresh.lastSeen : existing.lastSeen,
            }
          : fresh,
      );
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

/** Opens the store, loads fixtures (or seeds the demo), builds the app and listens. */
export async function startServer(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const fixtures = config.fixtures ? readFixtures(config.fixtures) : null;
  const store = await openStore(config);
  let keyRefresh: NodeJS.Timeout | undefined;
  try {
    const keys = new KeyRing(store);
    await keys.init();
    keyRefresh = setInterval(() => {
      keys.reload().catch((error: unknown) => logger.warn({ err: error }, 'could not re-read the signing keys'));
    }, KEY_REFRESH_MS).unref();
    const directory = new Directory(store);
    const demo = fixtures ? (await loadFixtures(store, directory, fixtures), null) : await seedDemo(store, directory, Date.now());

    const machines = new MachinesService(store);
    const actions = new ActionsService({ store, machines });
    let baseUrl = config.publicBaseUrl?.replace(/\/+$/, '') ?? '';
    let audiences = acceptedAudiences(baseUrl);
    const ctx: ApiContext = {
      actions,
      machines,
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
      ...(store instanceof PostgresStore ? { pool: store.pool } : {}),
    });
    const issuer = new TokenIssuer(keys, config.issuerBase);
    const app = buildApp({
      ctx,
      authenticator,
      limiter,
      logger,
      bodyLimit: config.bodyLimitBytes,
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
      ],
    });
    await app.listen({ host: config.host, port: config.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;
    if (!baseUrl) {
      baseUrl = url;
      audiences = acceptedAudiences(baseUrl);
    }
    return {
      app,
      store,
      url,
      baseUrl,
      demo,
      keys,
      async close() {
        clearInterval(keyRefresh);
        await app.close();
        await store.close();
      },
    };
  } catch (error) {
    clearInterval(keyRefresh);
    await store.close();
    throw error;
  }
}
