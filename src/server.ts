import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import type { ApiContext } from './api/operation.js';
import type { ServerConfig } from './config.js';
import { demoFixtures } from './demo.js';
import type { Store } from './domain/store.js';
import { fixtureMachine, readFixtures, type Fixtures } from './fixtures.js';
import { DefaultCallerAuthenticator } from './identity/default-caller.js';
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
  close(): Promise<void>;
}

export async function openStore(config: ServerConfig): Promise<Store> {
  if (config.databaseUrl) return PostgresStore.connect(config.databaseUrl);
  mkdirSync(config.dataDir, { recursive: true });
  return SqliteStore.open(join(config.dataDir, 'countermand.db'));
}

async function loadFixtures(store: Store, fixtures: Fixtures): Promise<void> {
  const now = Date.now();
  for (const tenant of fixtures.tenants) {
    const tenantId = tenant.id.toLowerCase();
    await store.upsertTenant({ id: tenantId, name: tenant.name });
    for (const machine of tenant.machines ?? []) {
      const existing = await store.findMachine(tenantId, machine.id?.toLowerCase() ?? '', { aadDeviceId: false, computerDnsName: false });
      // A reload keeps what the server has learnt since (first/last seen), unless the file says otherwise.
      const fresh = fixtureMachine(tenantId, machine, now);
      await store.upsertMachine(
        existing
          ? { ...fresh, firstSeen: machine.firstSeen ? fresh.firstSeen : existing.firstSeen, lastSeen: machine.lastSeen ? fresh.lastSeen : existing.lastSeen }
          : fresh,
      );
    }
  }
}

/** Opens the store, loads fixtures, builds the app and listens. */
export async function startServer(config: ServerConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const fixtures = config.fixtures ? readFixtures(config.fixtures) : demoFixtures();
  const store = await openStore(config);
  try {
    await loadFixtures(store, fixtures);
    const authenticator = DefaultCallerAuthenticator.fromFixtures(fixtures);
    if (!authenticator) throw new Error('the fixtures hold no application to attribute requests to');

    const machines = new MachinesService(store);
    const actions = new ActionsService({ store, machines });
    let baseUrl = config.publicBaseUrl?.replace(/\/+$/, '') ?? '';
    const ctx: ApiContext = {
      actions,
      machines,
      baseUrl: () => baseUrl,
      pageSize: config.pageSize,
      cancelRequiresMatchingPermission: config.cancelRequiresMatchingPermission,
    };
    const app = buildApp({ ctx, authenticator, logger, bodyLimit: config.bodyLimitBytes });
    await app.listen({ host: config.host, port: config.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;
    if (!baseUrl) baseUrl = url;
    return {
      app,
      store,
      url,
      async close() {
        await app.close();
        await store.close();
      },
    };
  } catch (error) {
    await store.close();
    throw error;
  }
}
