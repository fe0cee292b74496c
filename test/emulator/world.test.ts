import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient, ControlError } from '../../src/testing/index.js';
import { appClient, appToken, Client, makeFixtures, startTestServer, TEST_SECRET } from '../support/harness.js';
import { ADMIN_TOKEN, BACKENDS, startEmulator, type Emulator } from '../support/emulator.js';

describe.each(BACKENDS)('the emulated world (%s)', (backend) => {
  let e: Emulator;
  beforeAll(async () => {
    e = await startEmulator({
      backend,
      machines: 3,
      emulator: { seed: 42, rules: [{ id: 'hold', match: { actionType: 'RunAntiVirusScan' }, start: 'never' }], faults: [] },
      fixtures: (f) => ({
        ...f,
        tenants: f.tenants.map((t) => ({
          ...t,
          users: [{ upn: 'analyst@test.local', password: 'analyst-pass-1', scopes: ['Machine.Read'], rolePermissions: ['View data'] }],
        })),
      }),
    });
  });
  afterAll(async () => {
    await e?.server.stop();
  });

  it('reset goes back to the fixtures: actions, machines, rules, journal, clock and seed', async () => {
    await e.control.reset();
    const m = e.setup.machines[0]!;
    const first = (await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'before reset' })).body;
    await e.control.removeMachine(e.setup.tenantId, e.setup.machines[2]!.id);
    await e.control.addRule({ id: 'extra', start: 'never' });
    await e.control.advance(3600);
    expect((await e.api.get('/api/machines')).body.value).toHaveLength(2);

    const reset = await e.control.reset();
    expect(reset.to).toBe('baseline');
    expect((await e.api.get('/api/machines')).body.value).toHaveLength(3);
    expect((await e.api.get('/api/machineactions')).body.value).toEqual([]);
    expect((await e.control.rules()).map((r) => r.id)).toEqual(['hold']);
    expect((await e.control.clock()).now).toBe('2025-01-01T00:00:00.0000000Z');
    expect((await e.control.journal()).map((j) => j.path)).toEqual(['/api/machines', '/api/machineactions']); // the GETs just made
    // The seed starts again: the same request gets the same id.
    const again = (await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'before reset' })).body;
    expect(again.id).toBe(first.id);
    // Tokens issued before a reset still work (same applications, same signing key).
    expect((await e.api.get('/api/machines')).status).toBe(200);
  });

  it('a reset needs no body (curl -X POST), and a bad one is refused', async () => {
    const post = (init: RequestInit) => fetch(`${e.server.url}/_countermand/reset`, { method: 'POST', ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers } });
    const bare = await post({});
    expect([bare.status, await bare.json()]).toEqual([200, { to: 'baseline', elapsedMs: expect.any(Number) }]);
    const bad = await post({ headers: { 'content-type': 'application/json' }, body: '{"to":"yesterday"}' });
    expect([bad.status, ((await bad.json()) as { error: { code: string } }).error.code]).toEqual([400, 'InvalidRequestBody']);
  });

  it('reset to empty leaves no tenant; the baseline comes back after', async () => {
    await e.control.reset('empty');
    expect((await e.control.machines())).toEqual([]);
    const token = await fetch(`${e.server.url}/${e.setup.tenantId}/oauth2/v2.0/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'client_credentials', client_id: e.setup.clientId, client_secret: TEST_SECRET, scope: 'https://api.securitycenter.microsoft.com/.default' }) });
    expect(token.status).toBe(400);
    await e.control.reset();
    expect(await e.control.machines()).toHaveLength(3);
  });

  it('export then load gives the same world: identities, machines, actions with their history', async () => {
    await e.control.reset();
    const [m0, m1] = e.setup.machines;
    const isolate = (await e.api.post(`/api/machines/${m0!.id}/isolate`, { Comment: 'keep me' })).body;
    await e.control.step(isolate.id);
    await e.control.step(isolate.id);
    const scan = (await e.api.post(`/api/machines/${m1!.id}/runAntiVirusScan`, { Comment: 'pending', ScanType: 'Full' })).body;
    await e.api.post(`/api/machineactions/${scan.id}/cancel`, { Comment: 'no' });
    await e.control.changeMachine(e.setup.tenantId, m1!.id, { healthStatus: 'Inactive', machineTags: ['quarantined'], riskScore: 'High' });

    const exported = await e.control.exportFixtures<{ tenants: { applications: { clientSecretHash?: string; clientSecret?: string }[] }[] }>();
    expect(JSON.stringify(exported)).not.toContain(TEST_SECRET);
    expect(exported.tenants[0]!.applications[0]!.clientSecretHash).toMatch(/^scrypt\$/);
    const actionsBefore = (await e.api.get('/api/machineactions')).body.value;
    const machinesBefore = (await e.api.get('/api/machines')).body.value;
    const eventsBefore = await e.server.store.listEvents(e.setup.tenantId, isolate.id);

    await e.control.reset('empty');
    await e.control.loadFixtures(exported);
    expect(await e.control.exportFixtures()).toEqual(exported);
    const api = new Client(e.server.url, { authorization: `Bearer ${await appToken(e.server, e.setup.tenantId, e.setup.clientId)}` });
    expect((await api.get('/api/machineactions')).body.value).toEqual(actionsBefore);
    expect((await api.get('/api/machines')).body.value).toEqual(machinesBefore);
    const eventsAfter = await e.server.store.listEvents(e.setup.tenantId, isolate.id);
    expect(eventsAfter.map(({ seq: _, ...ev }) => ev)).toEqual(eventsBefore.map(({ seq: _, ...ev }) => ev));
    // The user's password hash came along: the delegated token still works.
    const user = await fetch(`${e.server.url}/${e.setup.tenantId}/oauth2/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'password', username: 'analyst@test.local', password: 'analyst-pass-1', resource: 'https://api.securitycenter.microsoft.com' }),
    });
    expect(user.status).toBe(200);
    // The loaded world is now the baseline, and the original fixtures come back only by loading them.
    await e.control.reset();
    expect((await api.get('/api/machineactions')).body.value).toHaveLength(2);
    await e.control.loadFixtures(e.setup.fixtures);
  });

  it('duplicate policy: 400 ActiveRequestAlreadyExists by default, or the existing non-final action (201)', async () => {
    await e.control.reset();
    const m = e.setup.machines[0]!;
    await e.control.addRule({ start: 'never' });
    const first = await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'one' });
    const refused = await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'two' });
    expect([refused.status, refused.body.error.code]).toEqual([400, 'ActiveRequestAlreadyExists']);
    await e.control.settings({ duplicatePolicy: 'returnExisting' });
    const returned = await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'three' });
    expect(returned.status).toBe(201);
    expect(returned.body).toEqual(first.body);
    // Another type of the same group is still refused: only a true duplicate is answered with the existing one.
    const other = await e.api.post(`/api/machines/${m.id}/unisolate`, { Comment: 'four' });
    expect(other.body.error.code).toBe('ActiveRequestAlreadyExists');
    expect((await e.api.get('/api/machineactions')).body.value).toHaveLength(1);
  });

  it('the clock fires the delivery-window timeout without waiting', async () => {
    await e.control.reset();
    const m = e.setup.machines[1]!;
    await e.control.changeMachine(e.setup.tenantId, m.id, { agent: 'none' });
    const created = await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'nobody home' });
    expect(created.status, created.text).toBe(201);
    const a = created.body;
    await e.control.advance(3 * 24 * 3600 - 1);
    // Three days later the first token has expired too: a fresh one, as a client would get.
    expect((await e.api.get(`/api/machineactions/${a.id}`)).status).toBe(401);
    const api = await appClient(e.server, e.setup);
    expect((await api.get(`/api/machineactions/${a.id}`)).body.status).toBe('Pending');
    await e.control.advance(2);
    const got = (await api.get(`/api/machineactions/${a.id}`)).body;
    expect(got.status).toBe('TimeOut');
    expect(got.lastUpdateDateTimeUtc).toBe('2025-01-04T00:00:01.0000000Z');
  });

  it('the clock expires tokens: an hour later the same token is refused', async () => {
    await e.control.reset();
    const token = await appToken(e.server, e.setup.tenantId, e.setup.clientId);
    const api = new Client(e.server.url, { authorization: `Bearer ${token}` });
    expect((await api.get('/api/machines')).status).toBe(200);
    await e.control.advance(3599 + 61);
    await e.control.reset(); // a reset forgets cached callers, as the next test's would
    expect((await api.get('/api/machines')).status).toBe(200); // the reset put the clock back
    await e.control.advance(3599 + 61);
    const late = await new Client(e.server.url, { authorization: `Bearer ${token}` }).get('/api/machineactions/00000000-0000-0000-0000-000000000000');
    expect([late.status, late.body.error.code]).toEqual([401, 'Unauthorized']);
  });

  it('machines: create (simulated by default), change, remove', async () => {
    await e.control.reset();
    const created = await e.control.createMachine(e.setup.tenantId, { computerDnsName: 'new-01.test.local', machineTags: ['ci'], lastIpAddress: '10.9.0.1' });
    expect(created.agent).toBe('simulated');
    const listed = (await e.api.get(`/api/machines/${created.machine.id}`)).body;
    expect([listed.computerDnsName, listed.lastIpAddress, listed.machineTags]).toEqual(['new-01.test.local', '10.9.0.1', ['ci']]);
    const changed = await e.control.changeMachine(e.setup.tenantId, created.machine.id, {
      healthStatus: 'Inactive',
      lastSeen: '2024-12-01T00:00:00Z',
      ipAddresses: [{ ipAddress: '10.9.0.2', type: 'Ethernet' }],
      riskScore: 'High',
    });
    expect(changed.machine.healthStatus).toBe('Inactive');
    const now = (await e.api.get(`/api/machines/${created.machine.id}`)).body;
    expect([now.healthStatus, now.lastSeen, now.riskScore, now.ipAddresses[0].ipAddress]).toEqual(['Inactive', '2024-12-01T00:00:00.0000000Z', 'High', '10.9.0.2']);
    await e.control.removeMachine(e.setup.tenantId, created.machine.id);
    expect((await e.api.get(`/api/machines/${created.machine.id}`)).status).toBe(404);
    await expect(e.control.removeMachine(e.setup.tenantId, created.machine.id)).rejects.toMatchObject({ status: 404 });
  });

  it('bad control input is a 400 in the envelope and changes nothing', async () => {
    await e.control.reset();
    const bad = await e.control.addRule({ start: { afterSeconds: -1 } } as never).catch((error: ControlError) => error);
    expect(bad).toBeInstanceOf(ControlError);
    expect((bad as ControlError).status).toBe(400);
    expect((bad as ControlError).code).toMatch(/^(InvalidRequestBody|MissingRequiredParameter)$/);
    const badFixtures = await e.control.loadFixtures({ tenants: [{ id: 'nope', name: 'x' }] }).catch((error: ControlError) => error);
    expect((badFixtures as ControlError).status).toBe(400);
    expect(await e.control.machines()).toHaveLength(3);
    expect((await e.control.rules()).map((r) => r.id)).toEqual(['hold']);
  });
});

describe.each(BACKENDS)('the control API is guarded (%s)', (backend) => {
  it('is absent when not enabled: /_countermand/ is a 404 like any unknown route', async () => {
    const setup = makeFixtures(1);
    const server = await startTestServer({ fixtures: setup.fixtures, backend });
    try {
      for (const path of ['/_countermand/reset', '/_countermand/journal', '/_countermand/openapi.json']) {
        const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
        expect(res.status).toBe(404);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NotFound');
      }
      expect(server.app.hasRoute({ method: 'POST', url: '/_countermand/reset' })).toBe(false);
    } finally {
      await server.stop();
    }
  });

  it('refuses no token, a wrong token and MDE access tokens, in the envelope', async () => {
    const e = await startEmulator({ backend, machines: 1 });
    try {
      const mdeToken = await appToken(e.server, e.setup.tenantId, e.setup.clientId);
      for (const authorization of [undefined, `Bearer ${mdeToken}`, 'Bearer not-the-admin-token-at-all', `Basic ${Buffer.from('a:b').toString('base64')}`]) {
        const res = await fetch(`${e.server.url}/_countermand/journal`, { headers: authorization ? { authorization } : {} });
        const body = (await res.json()) as { error: { code: string; target: string } };
        expect(res.status).toBe(401);
        expect(body.error.code).toBe('Unauthorized');
        expect(body.error.target).toBe(res.headers.get('request-id'));
      }
      await expect(new ControlClient(e.server.url, mdeToken).reset()).rejects.toMatchObject({ status: 401 });
      expect((await e.control.journal()).length).toBeGreaterThan(0);
    } finally {
      await e.server.stop();
    }
  });
});
