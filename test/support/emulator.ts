import { ControlClient } from '../../src/testing/index.js';
import type { ServerConfig } from '../../src/config.js';
import type { Fixtures } from '../../src/fixtures.js';
import { PG_SKIP_REASON, PG_URL } from './postgres.js';
import { appClient, makeFixtures, startTestServer, type Client, type TestServer } from './harness.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

/** Both backends, PostgreSQL only when a server is there (the reason printed otherwise). */
export const BACKENDS = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!PG_URL) console.warn(`[emulator tests on PostgreSQL skipped] ${PG_SKIP_REASON}`);

export interface Emulator {
  server: TestServer;
  control: ControlClient;
  api: Client;
  setup: ReturnType<typeof makeFixtures>;
}

/** A server with the control API on, the harness's fixtures plus `emulator`, and a client of each kind. */
export async function startEmulator(options: {
  backend: 'sqlite' | 'postgres';
  machines?: number;
  emulator?: Fixtures['emulator'];
  fixtures?: (f: Fixtures) => Fixtures;
  config?: Partial<ServerConfig>;
  /** Another emulator's tenant, machines and application (a second server with the same world). */
  setup?: Emulator['setup'];
}): Promise<Emulator> {
  const setup = options.setup ? { ...options.setup } : makeFixtures(options.machines ?? 3);
  let fixtures: Fixtures = options.setup ? setup.fixtures : { ...setup.fixtures, ...(options.emulator ? { emulator: options.emulator } : {}) };
  if (options.fixtures) fixtures = options.fixtures(fixtures);
  setup.fixtures = fixtures;
  const server = await startTestServer({
    fixtures,
    backend: options.backend,
    config: { controlEnabled: true, controlToken: ADMIN_TOKEN, ...options.config },
  });
  const control = new ControlClient(server.url, ADMIN_TOKEN);
  const api = await appClient(server, setup);
  return { server, control, api, setup };
}
