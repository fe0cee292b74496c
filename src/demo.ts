import type { Directory } from './identity/directory.js';
import type { Store } from './domain/store.js';
import { KNOWN_APP_ROLES } from './domain/permissions.js';

/**
 * What a first start without fixtures creates: one tenant and an application; the demo fleet of
 * simulated agents then enrolls its machines.
 */
export const DEMO_TENANT_ID = '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0001';
export const DEMO_CLIENT_ID = '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0a01';

export interface DemoCredentials {
  tenantId: string;
  clientId: string;
  clientSecret: string;
}

/**
 * Creates the demo tenant on an empty store and returns its freshly generated credentials (shown
 * once; only a hash is kept). Returns null when the store already holds a tenant.
 */
export async function seedDemo(store: Store, directory: Directory): Promise<DemoCredentials | null> {
  if ((await store.listTenants()).length > 0) return null;
  await directory.createTenant('Countermand Demo', DEMO_TENANT_ID);
  const { secret } = await directory.addApplication(DEMO_TENANT_ID, {
    clientId: DEMO_CLIENT_ID,
    displayName: 'Countermand Demo App',
    roles: KNOWN_APP_ROLES,
  });
  return { tenantId: DEMO_TENANT_ID, clientId: DEMO_CLIENT_ID, clientSecret: secret };
}

/** The command a newcomer pastes to get a token from this server. */
export function tokenCurl(baseUrl: string, c: DemoCredentials): string {
  return [
    `curl -s -X POST ${baseUrl}/${c.tenantId}/oauth2/v2.0/token \\`,
    `  -d grant_type=client_credentials -d client_id=${c.clientId} \\`,
    `  -d client_secret=${c.clientSecret} -d scope=https://api.securitycenter.microsoft.com/.default`,
  ].join('\n');
}
