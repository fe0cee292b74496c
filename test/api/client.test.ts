import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Countermand, CountermandError, WaitTimeoutError, odataString, type ActionStatus, type MachineAction } from '../../src/client/index.js';
import { enrollmentToken, startAgent, type RunningAgent } from '../support/agents.js';
import { Client, TEST_SECRET, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';

/**
 * The typed client (`import { Countermand } from 'countermand'`) against a started server: every
 * operation the server serves, OData passthrough and paging, the error envelope as a typed
 * error, tokens cached and renewed and shared, 429s waited out, waitForAction (docs/client.md).
 * Results are checked against plain HTTP (the harness's Client), so the client cannot vouch for
 * itself.
 */

const BACKENDS = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);

/** What `promise` was rejected with (and a failure if it was not). */
const rejection = <E = CountermandError>(promise: Promise<unknown>) =>
  promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error as E,
  );

/** A token endpoint in front of the real one that counts requests and may shorten `expires_in`. */
async function tokenProxy(target: string, expiresIn?: number) {
  const seen: string[] = [];
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    seen.push(req.url ?? '');
    const upstream = await fetch(`${target}${req.url}`, {
      method: req.method ?? 'POST',
      headers: { 'content-type': req.headers['content-type'] ?? '' },
      body: Buffer.concat(chunks),
    });
    const body = (await upstream.json()) as Record<string, unknown>;
    if (expiresIn !== undefined && upstream.ok) body.expires_in = expiresIn;
    res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

describe.each(BACKENDS)('the typed client (%s)', (backend) => {
  const setup = makeFixtures(30);
  const readerId = '7d4f6a92-3a51-4f7e-9d1b-3c0a2f6e8b01';
  setup.fixtures.tenants[0]!.applications!.push({ clientId: readerId, clientSecret: TEST_SECRET, displayName: 'Reader', roles: ['Machine.Read.All'] });
  let server: TestServer;
  let raw: Client;
  let cm: Countermand;
  let agent: RunningAgent;
  let spare = 0;
  const machine = () => setup.machines[spare++]!;
  const credentials = { tenantId: setup.tenantId, clientId: setup.clientId, clientSecret: TEST_SECRET };

  beforeAll(async () => {
    server = await startTestServer({
      fixtures: setup.fixtures,
      backend,
      // The public URL names a host nobody can reach: nextLinks must still be followed.
      config: { pageSize: 4, rateLimitScale: 1000, agentPollSeconds: 5, publicBaseUrl: 'http://countermand.invalid:9' },
    });
    raw = await appClient(server, setup);
    cm = new Countermand({ url: server.url, ...credentials });
    agent = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId), 'agent.client.test', {
      '*': { durationMs: 1500 },
    });
  });
  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
  });

  it('creates every action type, each with its body, and returns the entity as served', async () => {
    const created = [
      await cm.isolateMachine(machine().id, { Comment: 'c', IsolationType: 'Selective' }),
      await cm.unisolateMachine(machine().id, { Comment: 'c' }),
      await cm.runAntiVirusScan(machine().id, { Comment: 'c', ScanType: 'Full' }),
      await cm.collectInvestigationPackage(machine().id, { Comment: 'c' }),
      await cm.restrictCodeExecution(machine().id, { Comment: 'c' }),
      await cm.unrestrictCodeExecution(machine().id, { Comment: 'c' }),
      await cm.offboardMachine(machine().id, { Comment: 'c' }),
      await cm.stopAndQuarantineFile(machine().id, { Comment: 'c', Sha1: 'cd'.repeat(20) }),
      await cm.runLiveResponse(machine().id, { Comment: 'c', Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] }] }),
      // By aadDeviceId, as the action routes allow.
      await cm.createMachineAction(machine().aadDeviceId, 'Isolate', { Comment: 'by aad id' }),
    ];
    expect(created.map((a) => a.type)).toEqual([
      'Isolate',
      'Unisolate',
      'RunAntiVirusScan',
      'CollectInvestigationPackage',
      'RestrictCodeExecution',
      'UnrestrictCodeExecution',
      'Offboard',
      'StopAndQuarantineFile',
      'LiveResponse',
      'Isolate',
    ]);
    expect(created[0]!.scope).toBe('Selective');
    expect(created[2]!.scope).toBe('Full');
    expect(created[7]!.relatedFileInfo).toEqual({ fileIdentifier: 'cd'.repeat(20), fileIdentifierType: 'Sha1' });
    expect(created[8]!.commands[0]!.command).toEqual({ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] });
    for (const action of created) {
      const served = (await raw.get(`/api/machineactions/${action.id}`)).body;
      expect(action).toEqual(served);
      // The wire's field order, context first.
      expect(Object.keys(action)).toEqual(Object.keys(served));
      expect(await cm.getMachineAction(action.id)).toEqual(served);
    }
    const cancelled = await cm.cancelMachineAction(created[1]!.id, { Comment: 'not needed' });
    expect(cancelled).toMatchObject({ status: 'Cancelled', cancellationComment: 'not needed', cancellationRequestor: 'Test App' });
  });

  it('reads machines by id, aadDeviceId and computer name', async () => {
    const m = setup.machines[5]!;
    const served = (await raw.get(`/api/machines/${m.id}`)).body;
    expect(await cm.getMachine(m.id)).toEqual(served);
    expect(await cm.getMachine(m.aadDeviceId)).toEqual(served);
    expect(await cm.getMachine(m.computerDnsName)).toEqual(served);
  });

  it('findbyip, alerts from what an agent found, and an investigation from start to end', async () => {
    // Two sightings as check-ins record them; an IPv6 address needs its colons carried through.
    const [seen, elsewhere] = [machine(), machine()];
    const now = Date.now();
    await server.store.recordCheckin(setup.tenantId, seen.id, now - 60_000, {
      lastIpAddress: '10.9.0.7',
      ipAddresses: [{ ipAddress: '10.9.0.7', macAddress: null, type: 'eth0', operationalStatus: 'Up' }, { ipAddress: 'fd00::7', macAddress: null, type: 'eth0', operationalStatus: 'Up' }],
    });
    await server.store.recordCheckin(setup.tenantId, elsewhere.id, now - 60_000, { lastIpAddress: '10.9.0.8' });
    const byIp = await cm.findMachinesByIp('10.9.0.7', new Date(now));
    expect(byIp).toEqual((await raw.get(`/api/machines/findbyip(ip='10.9.0.7',timestamp=${new Date(now).toISOString()})`)).body);
    expect(byIp.value.map((m) => m.id)).toEqual([seen.id]);
    expect((await cm.findMachinesByIp('fd00::7', new Date(now).toISOString())).value.map((m) => m.id)).toEqual([seen.id]);
    await expect(cm.findMachinesByIp('10.9.0.7', new Date(now - 40 * 86_400_000))).rejects.toMatchObject({ status: 400, code: 'InvalidInput' });

    const finder = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId), 'finder.client.test', {
      RunAntiVirusScan: { durationMs: 100, detail: { findings: [{ path: '/tmp/eicar.com', signature: 'Win.Test.EICAR_HDB-1' }] } },
      CollectInvestigationPackage: { durationMs: 300 },
    });
    try {
      const scan = await cm.runAntiVirusScan(finder.machineId, { Comment: 'sweep', ScanType: 'Quick' });
      expect((await cm.waitForAction(scan.id, { intervalMs: 100 })).status).toBe('Succeeded');
      const alerts = await cm.listAlerts({ filter: "status eq 'New'", expand: 'evidence', count: true });
      expect(alerts).toEqual((await raw.get("/api/alerts?$filter=status eq 'New'&$expand=evidence&$count=true")).body);
      const found = alerts.value.find((a) => a.machineId === finder.machineId)!;
      expect(found.evidence[0]).toMatchObject({ entityType: 'File', fileName: 'eicar.com' });
      expect(await cm.getAlert(found.id)).toEqual((await raw.get(`/api/alerts/${found.id}`)).body);
      const iterated: string[] = [];
      for await (const a of cm.iterateAlerts()) iterated.push(a.id);
      expect(iterated).toContain(found.id);

      const investigation = await cm.startInvestigation(finder.machineId, { Comment: 'look closer' });
      expect(investigation).toMatchObject({ machineId: finder.machineId, endTime: null, '@odata.context': expect.stringMatching(/#Investigations\/\$entity$/) });
      let ended = await cm.getInvestigation(investigation.id);
      for (const deadline = Date.now() + 15_000; !ended.endTime && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100));
        ended = await cm.getInvestigation(investigation.id);
      }
      expect(ended.endTime).not.toBeNull();
      expect(ended).toEqual((await raw.get(`/api/investigations/${investigation.id}`)).body);
      const listed = await cm.listInvestigations({ filter: `machineId eq ${odataString(finder.machineId)}` });
      expect(listed.value.map((i) => i.id)).toEqual([investigation.id]);
      const all: string[] = [];
      for await (const i of cm.iterateInvestigations()) all.push(i.id);
      expect(all).toContain(investigation.id);
    } finally {
      await finder.stop();
    }
  });

  it('passes $filter, $orderby, $top, $skip and $count through as given', async () => {
    const cases = [
      { filter: "startswith(computerDnsName,'host-1')", orderby: 'computerDnsName asc', top: 3, skip: 2, count: true },
      { filter: `computerDnsName eq ${odataString('host-7.test.local')} or machineTags/any(t: t eq 'prod')` },
      { orderby: 'computerDnsName desc', top: 5 },
    ];
    for (const query of cases) {
      const qs = Object.entries(query)
        .map(([k, v]) => `$${k}=${encodeURIComponent(String(v))}`)
        .join('&');
      expect(await cm.listMachines(query)).toEqual((await raw.get(`/api/machines?${qs}`)).body);
    }
    const page = await cm.listMachines(cases[0]);
    expect(page['@odata.count']).toBe(11);
    expect(page.value.map((m) => m.computerDnsName)).toEqual(['host-11.test.local', 'host-12.test.local', 'host-13.test.local']);
    // A quote inside a string literal is doubled, and a `+` stays a plus.
    await expect(cm.listMachines({ filter: `computerDnsName eq ${odataString("o'brien+1")}` })).resolves.toMatchObject({ value: [] });
    const bad = await rejection(cm.listMachines({ filter: 'colour eq 1' }));
    expect(bad).toBeInstanceOf(CountermandError);
    expect(bad).toMatchObject({ status: 400, code: 'ODataError' });
  });

  it('pages through @odata.nextLink on its own URL, whatever host the link names', async () => {
    const served = (await raw.get('/api/machines')).body;
    expect(served['@odata.nextLink']).toMatch(/^http:\/\/countermand\.invalid:9\/api\/machines\?\$skip=4$/);
    const pages = [];
    for await (const page of cm.pages('/machines', { filter: "startswith(computerDnsName,'host-')" })) pages.push(page);
    expect(pages.map((p) => p.value.length)).toEqual([4, 4, 4, 4, 4, 4, 4, 2]);
    const ids: string[] = [];
    for await (const m of cm.iterateMachines({ orderby: 'computerDnsName asc' })) ids.push(m.id);
    const all = (await raw.get('/api/machines?$orderby=computerDnsName asc&$top=100')).body.value.map((m: { id: string }) => m.id);
    expect(ids).toEqual(all);
    const actions: MachineAction[] = [];
    for await (const a of cm.iterateMachineActions({ filter: "status eq 'Pending'" })) actions.push(a);
    expect(actions.map((a) => a.id)).toEqual(
      (await raw.get("/api/machineactions?$filter=status eq 'Pending'&$top=1000")).body.value.map((a: { id: string }) => a.id),
    );
  });

  it('turns the error envelope into a CountermandError with status, code, message and request id', async () => {
    const missing = await rejection(cm.getMachineAction('00000000-0000-4000-8000-000000000000'));
    expect(missing).toBeInstanceOf(CountermandError);
    expect(missing).toMatchObject({
      status: 404,
      code: 'NotFound',
      message: 'Machine action 00000000-0000-4000-8000-000000000000 was not found',
      retryAfterSeconds: null,
    });
    expect(missing.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(server.logs.some((l) => l.includes(missing.requestId!))).toBe(true);
    expect(missing.describe()).toBe(
      `NotFound: Machine action 00000000-0000-4000-8000-000000000000 was not found (HTTP 404, request id ${missing.requestId})`,
    );

    await expect(cm.getMachineAction('not-a-guid')).rejects.toMatchObject({ status: 400, code: 'BadRequest' });
    await expect(cm.isolateMachine(machine().id, {} as never)).rejects.toMatchObject({ status: 400, code: 'MissingRequiredParameter' });
    const reader = new Countermand({ url: server.url, tenantId: setup.tenantId, clientId: readerId, clientSecret: TEST_SECRET });
    await expect(reader.isolateMachine(machine().id, { Comment: 'x' })).rejects.toMatchObject({
      status: 403,
      code: 'Forbidden',
      message: expect.stringContaining('Machine.Isolate'),
    });
    // A token refused at the token endpoint: the OAuth error is the code.
    const wrong = new Countermand({ url: server.url, ...credentials, clientSecret: 'not-the-secret' });
    await expect(wrong.listMachines()).rejects.toMatchObject({ status: 401, code: 'invalid_client' });
    // No answer at all.
    const nowhere = new Countermand({ url: 'http://127.0.0.1:9', accessToken: 'x' });
    await expect(nowhere.listMachines()).rejects.toMatchObject({ status: 0, code: 'ConnectionFailed' });
    // Something that is not Countermand answers.
    const page = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>sign in</html>'));
    await new Promise<void>((resolve) => page.listen(0, '127.0.0.1', resolve));
    try {
      const other = new Countermand({ url: `http://127.0.0.1:${(page.address() as AddressInfo).port}`, accessToken: 'x' });
      await expect(other.listMachines()).rejects.toMatchObject({ status: 200, code: 'InvalidResponse', message: expect.stringContaining('text/html') });
    } finally {
      await new Promise((resolve) => page.close(resolve));
    }
  });

  it('shares one token request among concurrent callers, caches it and renews it before expires_in runs out', async () => {
    const proxy = await tokenProxy(server.url, 3);
    try {
      const client = new Countermand({ url: server.url, ...credentials, tokenUrl: `${proxy.url}/${setup.tenantId}/oauth2/v2.0/token` });
      const results = await Promise.all(Array.from({ length: 20 }, () => client.listMachines({ top: 1 })));
      expect(results.every((r) => r.value.length === 1)).toBe(true);
      expect(proxy.seen).toHaveLength(1);
      await client.listMachines({ top: 1 });
      expect(proxy.seen).toHaveLength(1);
      // expires_in 3: renewed once 90% of it has gone, before the server would refuse it.
      await new Promise((r) => setTimeout(r, 2800));
      await Promise.all(Array.from({ length: 5 }, () => client.listMachines({ top: 1 })));
      expect(proxy.seen).toHaveLength(2);
    } finally {
      await proxy.close();
    }
    // The password grant (a user) goes to the v1 endpoint with the resource.
    const userProxy = await tokenProxy(server.url);
    try {
      const user = new Countermand({ url: server.url, tenantId: setup.tenantId, username: 'nobody@x.test', password: 'wrong-password', tokenUrl: `${userProxy.url}/${setup.tenantId}/oauth2/token` });
      await expect(user.listMachines()).rejects.toMatchObject({ status: 400, code: 'invalid_grant' });
      expect(userProxy.seen).toEqual([`/${setup.tenantId}/oauth2/token`]);
    } finally {
      await userProxy.close();
    }
  });

  it('a token the server no longer takes (a reset server) is replaced once, and the call goes through', async () => {
    const first = await startTestServer({ fixtures: setup.fixtures, backend });
    const port = new URL(first.url).port;
    const client = new Countermand({ url: first.url, ...credentials });
    await client.listMachines({ top: 1 });
    const before = await client.accessToken();
    await first.stop();
    // Same tenant and application, new data dir: new signing keys, so the cached token is refused.
    const second = await startTestServer({ fixtures: setup.fixtures, backend, config: { port: Number(port) } });
    try {
      expect((await fetch(`${second.url}/api/machines`, { headers: { authorization: `Bearer ${before}` } })).status).toBe(401);
      await expect(client.listMachines({ top: 1 })).resolves.toMatchObject({ value: [expect.anything()] });
      expect(await client.accessToken()).not.toBe(before);
    } finally {
      await second.stop();
    }
  });

  it('a token given by the caller is used as it is; request() reaches any path', async () => {
    const token = await cm.accessToken();
    const byToken = new Countermand({ url: `${server.url}/api/`, accessToken: () => token });
    expect((await byToken.request<{ value: unknown[] }>('GET', '/machines', { query: '$top=2' })).value).toHaveLength(2);
    await expect(new Countermand({ url: server.url, accessToken: 'garbage' }).listMachines()).rejects.toMatchObject({ status: 401, code: 'Unauthorized' });
  });

  it('waitForAction reports each change, stops at `until`, gives up after timeoutMs and on abort', async () => {
    const isolate = await cm.isolateMachine(agent.machineId, { Comment: 'watch it' });
    const seen: ActionStatus[] = [];
    const inProgress = await cm.waitForAction(isolate.id, { until: ['InProgress'], intervalMs: 50, onProgress: (a) => seen.push(a.status) });
    expect(inProgress.status).toBe('InProgress');
    const done = await cm.waitForAction(isolate.id, { intervalMs: 50, onProgress: (a, previous) => previous && seen.push(a.status) });
    expect(done).toEqual((await raw.get(`/api/machineactions/${isolate.id}`)).body);
    expect(done.status).toBe('Succeeded');
    expect(seen.at(-1)).toBe('Succeeded');
    expect(seen.filter((s) => s === 'Succeeded')).toHaveLength(1);
    expect(seen.slice(seen.indexOf('InProgress'))).toEqual(['InProgress', 'Succeeded']);

    const stuck = await cm.isolateMachine(machine().id, { Comment: 'nobody is there' });
    const timedOut = await rejection<WaitTimeoutError>(cm.waitForAction(stuck.id, { timeoutMs: 300, intervalMs: 50 }));
    expect(timedOut).toBeInstanceOf(WaitTimeoutError);
    expect(timedOut.action).toMatchObject({ id: stuck.id, status: 'Pending' });
    const controller = new AbortController();
    const waiting = cm.waitForAction(stuck.id, { intervalMs: 50, signal: controller.signal });
    controller.abort(new Error('no longer interested'));
    await expect(waiting).rejects.toThrow('no longer interested');
    // A final action returns at once; a predicate works as well as a list.
    await cm.cancelMachineAction(stuck.id, { Comment: 'done waiting' });
    await expect(cm.waitForAction(stuck.id, { until: (a) => a.cancellationComment === 'done waiting' })).resolves.toMatchObject({ status: 'Cancelled' });
  });
});

describe.each(BACKENDS)('the typed client and rate limits (%s)', (backend) => {
  const setup = makeFixtures(1);
  let server: TestServer;

  beforeAll(async () => {
    // The minute window shortened to 3 s: 100 calls per 3 s per caller and endpoint.
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { rateLimitWindowScale: 0.05 } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('without retries a 429 is thrown with Retry-After; with them (the default) a burst of 200 all get through', async () => {
    const credentials = { url: server.url, tenantId: setup.tenantId, clientId: setup.clientId, clientSecret: TEST_SECRET };
    const eager = new Countermand({ ...credentials, retry: false });
    const burst = await Promise.allSettled(Array.from({ length: 150 }, () => eager.listMachineActions({ top: 1 })));
    const refused = burst.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as CountermandError);
    expect(burst.filter((r) => r.status === 'fulfilled')).toHaveLength(100);
    expect(refused).toHaveLength(50);
    for (const e of refused) {
      expect(e).toBeInstanceOf(CountermandError);
      expect(e).toMatchObject({ status: 429, code: 'TooManyRequests' });
      expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(e.retryAfterSeconds).toBeLessThanOrEqual(3);
    }
    // A Retry-After longer than the caller will wait: thrown at once.
    await expect(new Countermand({ ...credentials, retry: { maxDelayMs: 10 } }).listMachineActions({ top: 1 })).rejects.toMatchObject({ status: 429 });

    const patient = new Countermand(credentials);
    const results = await Promise.all(Array.from({ length: 200 }, () => patient.listMachineActions({ top: 1 })));
    expect(results).toHaveLength(200);
    expect(results.every((r) => Array.isArray(r.value))).toBe(true);
  }, 60_000);
});

