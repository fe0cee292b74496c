import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, appToken, cleanup, userToken } from '../support/harness.js';
import { runCli, spawnCli, type Spawned } from '../support/process.js';

/** Identity management through the `countermand` command, against a store a server also uses. */
describe('countermand tenants / apps / users / keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-admin-'));
  const store = ['--data-dir', dir];
  let server: Spawned | undefined;
  afterAll(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    cleanup(dir);
  });

  async function cli(...args: string[]) {
    const { code, output, stdout } = await runCli([...args, ...store, '--json']);
    expect(code, output).toBe(0);
    return JSON.parse(stdout);
  }

  // An empty store to set identities up in before the server's first start (no demo tenant).
  beforeAll(async () => {
    expect((await cli('init')).tenants).toBe(0);
  }, 60_000);

  it('creates a tenant, an application and a user that a server then accepts, and rotates keys under it', async () => {
    const tenant = await cli('tenants', 'add', '--name', 'Fabrikam');
    expect((await cli('tenants', 'list')).map((t: { id: string }) => t.id)).toEqual([tenant.id]);
    const app = await cli('apps', 'add', '--tenant', tenant.id, '--name', 'SOAR', '--roles', 'Machine.Read.All,Machine.Isolate');
    expect(app.clientSecret).toMatch(/^[A-Za-z0-9_-]{40}$/);
    const listed = await cli('apps', 'list', '--tenant', tenant.id);
    expect(listed).toHaveLength(1);
    expect(JSON.stringify(listed)).not.toContain(app.clientSecret);
    expect(listed[0]).not.toHaveProperty('secretHash');
    const user = await cli('users', 'add', '--tenant', tenant.id, '--upn', 'ana@fabrikam.test', '--scopes', 'Machine.Read', '--role-permissions', 'View data');
    expect(user.password).toEqual(expect.any(String));

    server = spawnCli(['serve', '--port', '0', ...store, '--log-level', 'warn']);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    expect(server.output()).not.toMatch(/client_secret=/); // the store had a tenant: no demo
    const token = await appToken({ url: url! }, tenant.id, app.clientId, app.clientSecret);
    const api = new Client(url!, { authorization: `Bearer ${token}` });
    expect((await api.get('/api/machines')).status).toBe(200);
    const delegated = await userToken({ url: url! }, tenant.id, 'ana@fabrikam.test', user.password);
    expect((await new Client(url!, { authorization: `Bearer ${delegated}` }).get('/api/machines')).status).toBe(200);

    // Rotation from the command line while the server runs: the old token keeps working.
    const rotated = await cli('keys', 'rotate');
    expect(rotated.kid).not.toBe(decodeProtectedHeader(token).kid);
    expect((await api.get('/api/machines')).status).toBe(200);
    const keys = await cli('keys', 'list');
    expect(keys).toHaveLength(2);
    // A token signed with the new key (as another server node would sign it) is accepted: the
    // server re-reads the store when it meets a kid it does not know.
    const { SqliteStore } = await import('../../src/store/sqlite/sqlite-store.js');
    const { KeyRing } = await import('../../src/identity/keys.js');
    const { TokenIssuer } = await import('../../src/identity/tokens.js');
    const side = SqliteStore.open(join(dir, 'countermand.db'));
    try {
      const ring = new KeyRing(side);
      await ring.init();
      const other = await new TokenIssuer(ring, 'https://sts.windows.net').forApplication(
        (await side.getApplication(tenant.id, app.clientId))!,
        'https://api.securitycenter.microsoft.com',
      );
      expect(decodeProtectedHeader(other).kid).toBe(rotated.kid);
      expect((await new Client(url!, { authorization: `Bearer ${other}` }).get('/api/machines')).status).toBe(200);
    } finally {
      await side.close();
    }
    const jwks = (await (await fetch(`${url}/common/discovery/keys`)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((k) => k.kid)).toContain(rotated.kid);

    // A new secret replaces the old one; removing the application stops new tokens.
    const reset = await cli('apps', 'reset-secret', '--tenant', tenant.id, '--client-id', app.clientId);
    await expect(appToken({ url: url! }, tenant.id, app.clientId, app.clientSecret)).rejects.toThrow(/invalid_client/);
    await appToken({ url: url! }, tenant.id, app.clientId, reset.clientSecret);
    await cli('apps', 'remove', '--tenant', tenant.id, '--client-id', app.clientId);
    await expect(appToken({ url: url! }, tenant.id, app.clientId, reset.clientSecret)).rejects.toThrow(/invalid_client/);
    await cli('users', 'remove', '--tenant', tenant.id, '--upn', 'ana@fabrikam.test');
    await expect(userToken({ url: url! }, tenant.id, 'ana@fabrikam.test', user.password)).rejects.toThrow(/invalid_grant/);
  }, 120_000);

  it('refuses unknown roles and tenants with a message and exit code 2', async () => {
    const bad = await runCli(['apps', 'add', '--tenant', '00000000-0000-4000-8000-000000000000', '--name', 'x', '--roles', 'Machine.Read.All', ...store]);
    expect(bad.code).toBe(2);
    expect(bad.output).toMatch(/no tenant/);
    const tenant = await cli('tenants', 'add', '--name', 'T2');
    const role = await runCli(['apps', 'add', '--tenant', tenant.id, '--name', 'x', '--roles', 'Machine.Everything', ...store]);
    expect(role.code).toBe(2);
    expect(role.output).toMatch(/unknown application roles: Machine.Everything/);
  }, 60_000);
});
