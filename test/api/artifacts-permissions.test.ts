import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KNOWN_APP_ROLES, KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS, type RolePermission } from '../../src/domain/permissions.js';
import type { Fixtures } from '../../src/fixtures.js';
import { createEnrollmentToken } from '../../src/dispatch/enrollment.js';
import { startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, TEST_SECRET, appToken, startTestServer, userToken, type TestServer } from '../support/harness.js';
import { uploadLibraryFile } from '../support/library.js';

/**
 * Who may call the library and the download-link routes (contract §2 rows 8, 14, 17-19, §7):
 * every application role and delegated scope allowed or refused as the table says, users also
 * needing the role permission, and device groups hiding machines (404) from users outside them.
 */

const PASSWORD = 'user-password-123';
const tenant = randomUUID();
const admin = randomUUID();
const roleApp = Object.fromEntries(KNOWN_APP_ROLES.map((r) => [r, randomUUID()])) as Record<string, string>;
const scopeUser = (scope: string) => `scope-${scope.toLowerCase()}@p.test`;
const missingRoleUser = (role: string) => `no-${role.replace(/ /g, '-').toLowerCase()}@p.test`;

function fixtures(): Fixtures {
  return {
    tenants: [
      {
        id: tenant,
        name: 'Permissions',
        applications: [
          { clientId: admin, clientSecret: TEST_SECRET, displayName: 'Admin', roles: [...KNOWN_APP_ROLES] },
          ...KNOWN_APP_ROLES.map((role) => ({ clientId: roleApp[role]!, clientSecret: TEST_SECRET, displayName: `Only ${role}`, roles: [role] })),
        ],
        users: [
          ...KNOWN_DELEGATED_SCOPES.map((scope) => ({ upn: scopeUser(scope), password: PASSWORD, scopes: [scope], rolePermissions: [...ROLE_PERMISSIONS] })),
          ...ROLE_PERMISSIONS.map((role) => ({
            upn: missingRoleUser(role),
            password: PASSWORD,
            scopes: [...KNOWN_DELEGATED_SCOPES],
            rolePermissions: ROLE_PERMISSIONS.filter((r) => r !== role),
          })),
          { upn: 'group-1@p.test', password: PASSWORD, scopes: [...KNOWN_DELEGATED_SCOPES], rolePermissions: [...ROLE_PERMISSIONS], deviceGroups: [1] },
          { upn: 'group-2@p.test', password: PASSWORD, scopes: [...KNOWN_DELEGATED_SCOPES], rolePermissions: [...ROLE_PERMISSIONS], deviceGroups: [2] },
        ],
      },
    ],
  };
}

let server: TestServer;
let adminApi: Client;
let agent: RunningAgent;
let packageAction: string;
let resultAction: string;
const clients = new Map<string, Promise<Client>>();

const app = (clientId: string) => {
  let c = clients.get(clientId);
  if (!c) clients.set(clientId, (c = appToken(server, tenant, clientId).then((t) => new Client(server.url, { authorization: `Bearer ${t}` }))));
  return c;
};
const user = (upn: string) => {
  let c = clients.get(upn);
  if (!c) clients.set(upn, (c = userToken(server, tenant, upn, PASSWORD).then((t) => new Client(server.url, { authorization: `Bearer ${t}` }))));
  return c;
};

beforeAll(async () => {
  server = await startTestServer({ fixtures: fixtures(), config: { rateLimitScale: 100 } });
  adminApi = await app(admin);
  expect((await uploadLibraryFile(adminApi, 'perm.sh', 'echo')).status).toBe(200);
  // A machine in device group 1 whose agent really ran a collection and a live response.
  const token = await createEnrollmentToken(server.store, tenant, 'perm', { rbacGroupId: 1, rbacGroupName: 'g1' });
  agent = await startAgent(server.url, token, 'perm.test', { '*': { durationMs: 50 } });
  packageAction = (await adminApi.post(`/api/machines/${agent.machineId}/collectInvestigationPackage`, { Comment: 'p' })).body.id;
  await waitUntil(async () => (await adminApi.get(`/api/machineactions/${packageAction}`)).body.status === 'Succeeded');
  resultAction = (
    await adminApi.post(`/api/machines/${agent.machineId}/runliveresponse`, { Comment: 'p', Commands: [{ type: 'RunScript', params: [{ key: 'ScriptName', value: 'perm.sh' }] }] })
  ).body.id;
  await waitUntil(async () => (await adminApi.get(`/api/machineactions/${resultAction}`)).body.status === 'Succeeded');
});
afterAll(async () => {
  await agent?.stop();
  await server?.stop();
});

interface Row {
  name: string;
  app: string[];
  delegated: string[];
  role: RolePermission;
  call(c: Client): Promise<{ status: number; body: any }>;
}

const LIBRARY = { app: ['Library.Manage'], delegated: ['Library.Manage'], role: 'Live response advanced' as RolePermission };
const ROWS: Row[] = [
  { name: 'GET /api/libraryfiles', ...LIBRARY, call: (c) => c.get('/api/libraryfiles') },
  { name: 'POST /api/libraryfiles', ...LIBRARY, call: (c) => uploadLibraryFile(c, `up-${randomUUID()}.sh`, 'x') },
  {
    name: 'DELETE /api/libraryfiles/{fileName}',
    ...LIBRARY,
    call: async (c) => {
      const name = `del-${randomUUID()}.sh`;
      expect((await uploadLibraryFile(adminApi, name, 'x')).status).toBe(200);
      return c.request('DELETE', `/api/libraryfiles/${name}`);
    },
  },
  {
    name: 'GET /api/machineactions/{id}/getPackageUri',
    app: ['Machine.Read.All', 'Machine.ReadWrite.All'],
    delegated: ['Machine.CollectForensics'],
    role: 'Alerts investigation',
    call: (c) => c.get(`/api/machineactions/${packageAction}/getPackageUri`),
  },
  {
    name: 'GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})',
    app: ['Machine.Read.All', 'Machine.ReadWrite.All'],
    delegated: ['Machine.LiveResponse'],
    role: 'Live response advanced',
    call: (c) => c.get(`/api/machineactions/${resultAction}/GetLiveResponseResultDownloadLink(index=0)`),
  },
];

describe('permissions of the library and the download links (contract §2)', () => {
  it.each(ROWS)('applications: $name', async (row) => {
    for (const role of KNOWN_APP_ROLES) {
      const res = await row.call(await app(roleApp[role]!));
      if (row.app.includes(role)) {
        expect(res.status, `${role} should be allowed: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      } else {
        expect(res.status, `${role} should be refused`).toBe(403);
        expect(res.body.error.code).toBe('Forbidden');
        for (const accepted of row.app) expect(res.body.error.message).toContain(accepted);
      }
    }
  });

  it.each(ROWS)('delegated users need the scope and the role permission: $name', async (row) => {
    for (const scope of KNOWN_DELEGATED_SCOPES) {
      const res = await row.call(await user(scopeUser(scope)));
      if (row.delegated.includes(scope)) expect(res.status, `${scope} should be allowed: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      else expect(res.status, `${scope} should be refused`).toBe(403);
    }
    for (const role of ROLE_PERMISSIONS) {
      const res = await row.call(await user(missingRoleUser(role)));
      if (role === row.role) {
        expect(res.status, `without '${role}' should be refused`).toBe(403);
        expect(res.body.error.message).toContain(role);
      } else {
        expect(res.status, `without '${role}' should still be allowed: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      }
    }
  });

  it("a user outside the machine's device group does not see its actions' links (404); inside, does", async () => {
    const outside = await user('group-2@p.test');
    expect((await outside.get(`/api/machineactions/${packageAction}/getPackageUri`)).status).toBe(404);
    expect((await outside.get(`/api/machineactions/${resultAction}/GetLiveResponseResultDownloadLink(index=0)`)).status).toBe(404);
    const inside = await user('group-1@p.test');
    expect((await inside.get(`/api/machineactions/${packageAction}/getPackageUri`)).status).toBe(200);
    expect((await inside.get(`/api/machineactions/${resultAction}/GetLiveResponseResultDownloadLink(index=0)`)).status).toBe(200);
  });

  it('every route needs a token: 401 in the envelope without one', async () => {
    const anonymous = new Client(server.url);
    for (const res of [
      await anonymous.get('/api/libraryfiles'),
      await uploadLibraryFile(anonymous, 'anon.sh', 'x'),
      await anonymous.request('DELETE', '/api/libraryfiles/perm.sh'),
      await anonymous.get(`/api/machineactions/${packageAction}/getPackageUri`),
      await anonymous.get(`/api/machineactions/${resultAction}/GetLiveResponseResultDownloadLink(index=0)`),
    ]) {
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('Unauthorized');
    }
    expect((await adminApi.get('/api/libraryfiles')).body.value.map((f: { fileName: string }) => f.fileName)).toContain('perm.sh');
  });
});
