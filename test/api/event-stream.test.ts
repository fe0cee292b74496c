import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnrollmentToken } from '../../src/dispatch/enrollment.js';
import { KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS } from '../../src/domain/permissions.js';
import { TOKEN_LIFETIME_SECONDS } from '../../src/identity/keys.js';
import { TokenIssuer } from '../../src/identity/tokens.js';
import { startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { STREAM_PATH, changesOf, openEventStream, type EventStream } from '../support/events.js';
import { Client, TEST_SECRET, appToken, makeFixtures, startTestServer, userToken, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL } from '../support/postgres.js';

/**
 * The event stream and the history read (docs/action-center.md), over HTTP as a script uses
 * them, with agents carrying actions out: every change kind, visibility by tenant and device
 * group exactly as GET /api/machineactions, heartbeats, the per-caller bound under a burst, the
 * end at token expiry and at shutdown. On both backends.
 */

const PASSWORD = 'stream-user-password';
const ISOLATE = { Comment: 'stream test', IsolationType: 'Full' };

const backends = [
  { backend: 'sqlite' as const, skip: false, title: 'SQLite' },
  { backend: 'postgres' as const, skip: !PG_URL, title: `PostgreSQL${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}` },
];

describe.each(backends)('event stream and history on $title', ({ backend, skip }) => {
  const setup = makeFixtures(2);
  const [group1Machine, group2Machine] = setup.machines as [(typeof setup.machines)[0], (typeof setup.machines)[0]];
  const readlessClient = randomUUID();
  const otherTenant = makeFixtures(1);
  const tenant = setup.fixtures.tenants[0]!;
  tenant.applications!.push({ clientId: readlessClient, clientSecret: TEST_SECRET, displayName: 'Isolate only', roles: ['Machine.Isolate'] });
  tenant.users = [
    {
      upn: 'group2@stream.test',
      password: PASSWORD,
      scopes: [...KNOWN_DELEGATED_SCOPES],
      rolePermissions: [...ROLE_PERMISSIONS],
      deviceGroups: [2],
    },
  ];

  let server: TestServer;
  let api: Client;
  let token: string;
  const agents: RunningAgent[] = [];
  const streams: EventStream[] = [];
  const open = async (t: string | null, path?: string) => {
    const s = await openEventStream(server.url, t, path);
    streams.push(s);
    return s;
  };

  beforeAll(async () => {
    if (skip) return;
    server = await startTestServer({
      fixtures: { tenants: [...setup.fixtures.tenants, ...otherTenant.fixtures.tenants] },
      backend,
      config: { rateLimitScale: 1000, agentPollSeconds: 5, eventHeartbeatSeconds: 0.2, eventStreamsPerCaller: 5 },
    });
    token = await appToken(server, setup.tenantId, setup.clientId);
    api = new Client(server.url, { authorization: `Bearer ${token}` });
    const group1 = await createEnrollmentToken(server.store, setup.tenantId, 'stream-g1', { rbacGroupId: 1, rbacGroupName: 'group-1' });
    agents.push(await startAgent(server.url, group1, 'fast.stream.test', { '*': { durationMs: 200 } }));
    agents.push(await startAgent(server.url, group1, 'slow.stream.test', { '*': { durationMs: 60_000 } }));
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await Promise.all(agents.map((a) => a.stop()));
    await server?.stop();
  });

  it.skipIf(skip)('refuses callers as GET /api/machineactions does: 401 without a token, 403 without a read permission', async () => {
    const anonymous = await open(null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe('Unauthorized');
    expect(anonymous.body.error.target).toBe(anonymous.headers.get('request-id'));
    const readless = await open(await appToken(server, setup.tenantId, readlessClient));
    expect(readless.status).toBe(403);
    expect(readless.body.error.code).toBe('Forbidden');
    expect(readless.body.error.message).toContain('Machine.Read.All');
  });

  it.skipIf(skip)('opens with a ready event and sends heartbeats while idle', async () => {
    const stream = await open(token);
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(stream.headers.get('cache-control')).toBe('no-store');
    expect(stream.headers.get('request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const ready = await stream.next((e) => e.event === 'ready');
    expect(ready.data.heartbeatSeconds).toBe(0.2);
    expect(Date.parse(ready.data.tokenExpiresDateTimeUtc)).toBeGreaterThan(Date.now());
    await stream.heartbeats(2);
  });

  it.skipIf(skip)('an isolation carried out by an agent: created, started, ended, each with the action as it is', async () => {
    const stream = await open(token);
    await stream.next((e) => e.event === 'ready');
    const fast = agents[0]!;
    const created = await api.post(`/api/machines/${fast.machineId}/isolate`, ISOLATE);
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const ended = await stream.next((e) => e.event === 'action' && e.data.action.id === id && e.data.change === 'ended', 15_000, 'ended');
    expect(ended.data.action.status).toBe('Succeeded');
    // On the node that made them, each change carries the action exactly as it left it.
    expect(changesOf(stream, id)).toEqual([
      ['created', 'Pending'],
      ['started', 'InProgress'],
      ['ended', 'Succeeded'],
    ]);
    // The action is the MDE entity, field for field, as GET /api/machineactions/{id} answers it.
    const { '@odata.context': _context, ...entity } = (await api.get(`/api/machineactions/${id}`)).body;
    expect(ended.data.action).toEqual(entity);
    expect(Object.keys(ended.data.action)).toEqual(Object.keys(entity));
  });

  it.skipIf(skip)('live-response command progress arrives as progress changes', async () => {
    const stream = await open(token);
    await stream.next((e) => e.event === 'ready');
    const created = await api.post(`/api/machines/${agents[0]!.machineId}/runliveresponse`, {
      Comment: 'progress',
      Commands: [
        { type: 'GetFile', params: [{ key: 'Path', value: '/var/log/one.log' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/var/log/two.log' }] },
      ],
    });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
    await stream.next((e) => e.event === 'action' && e.data.action.id === id && e.data.change === 'ended', 15_000, 'ended');
    const changes = changesOf(stream, id).map(([change]) => change);
    expect(changes[0]).toBe('created');
    expect(changes.filter((c) => c === 'progress').length).toBeGreaterThanOrEqual(1);
    expect(changes.at(-1)).toBe('ended');
  });

  it.skipIf(skip)('cancel of a running action: cancelled, then the late report of the stopped machine; the history shows both', async () => {
    const stream = await open(token);
    await stream.next((e) => e.event === 'ready');
    const slow = agents[1]!;
    const id = (await api.post(`/api/machines/${slow.machineId}/isolate`, ISOLATE)).body.id as string;
    await stream.next((e) => e.event === 'action' && e.data.action.id === id && e.data.change === 'started', 15_000, 'started');
    const cancel = await api.post(`/api/machineactions/${id}/cancel`, { Comment: 'false positive' });
    expect(cancel.status, cancel.text).toBe(200);
    const cancelled = await stream.next((e) => e.event === 'action' && e.data.action.id === id && e.data.change === 'cancelled');
    expect(cancelled.data.action.cancellationComment).toBe('false positive');
    const late = await stream.next((e) => e.event === 'action' && e.data.action.id === id && e.data.change === 'late-report', 15_000, 'late-report');
    expect(late.data.action.status).toBe('Cancelled');

    const history = await api.get(`/countermand/v1/machineactions/${id}/events`);
    expect(history.status, history.text).toBe(200);
    expect(history.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(history.body.actionId).toBe(id);
    const entries = history.body.value as any[];
    expect(entries.map((e) => [e.kind, e.fromStatus, e.toStatus])).toEqual([
      ['created', null, 'Pending'],
      ['transition', 'Pending', 'InProgress'],
      ['transition', 'InProgress', 'Cancelled'],
      ['late-report', 'Cancelled', 'Cancelled'],
    ]);
    expect(Object.keys(entries[0])).toEqual(['sequence', 'kind', 'dateTimeUtc', 'actor', 'fromStatus', 'toStatus', 'comment', 'detail']);
    expect(entries[0]).toMatchObject({ actor: 'Test App', comment: 'stream test' });
    expect(entries[1].actor).toBe('slow.stream.test');
    expect(entries[2]).toMatchObject({ actor: 'Test App', comment: 'false positive' });
    expect(entries[3].actor).toBe('slow.stream.test');
    expect(entries[3].comment).toMatch(/after the action was Cancelled/);
    expect(entries[3].detail.status).toBe('Failed');
    expect(entries[0].dateTimeUtc).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/);
    const sequences = entries.map((e) => e.sequence as number);
    expect([...sequences].sort((a, b) => a - b)).toEqual(sequences);
  });

  it.skipIf(skip)('a pending action cancelled before any machine took it: created, cancelled', async () => {
    const stream = await open(token);
    await stream.next((e) => e.event === 'ready');
    const id = (await api.post(`/api/machines/${group1Machine.id}/runAntiVirusScan`, { Comment: 'scan', ScanType: 'Quick' })).body.id as string;
    await stream.next((e) => e.event === 'action' && e.data.action.id === id);
    await api.post(`/api/machineactions/${id}/cancel`, { Comment: 'not needed' });
    await stream.next((e) => e.event === 'action' && e.data.action.id === id && e.data.change === 'cancelled');
    expect(changesOf(stream, id)).toEqual([
      ['created', 'Pending'],
      ['cancelled', 'Cancelled'],
    ]);
  });

  it.skipIf(skip)("a device-group user's stream carries only their groups' actions; another tenant's stream nothing of this one", async () => {
    const user = await userToken(server, setup.tenantId, 'group2@stream.test', PASSWORD);
    const userStream = await open(user);
    const otherStream = await open(await appToken(server, otherTenant.tenantId, otherTenant.clientId));
    await userStream.next((e) => e.event === 'ready');
    await otherStream.next((e) => e.event === 'ready');
    // Group 1 first, then group 2: a stream delivers in order, so once the group-2 change is
    // there, a group-1 change would have arrived before it.
    const hidden = (await api.post(`/api/machines/${group1Machine.id}/collectInvestigationPackage`, { Comment: 'g1' })).body.id as string;
    const shown = (await api.post(`/api/machines/${group2Machine.id}/collectInvestigationPackage`, { Comment: 'g2' })).body.id as string;
    await userStream.next((e) => e.event === 'action' && e.data.action.id === shown);
    expect(changesOf(userStream, hidden)).toEqual([]);
    const other = new Client(server.url, { authorization: `Bearer ${await appToken(server, otherTenant.tenantId, otherTenant.clientId)}` });
    const sentinel = (await other.post(`/api/machines/${otherTenant.machines[0]!.id}/isolate`, ISOLATE)).body.id as string;
    await otherStream.next((e) => e.event === 'action' && e.data.action.id === sentinel);
    expect(otherStream.events.filter((e) => e.event === 'action').map((e) => e.data.action.id)).toEqual([sentinel]);

    // The history read follows the same visibility: the user's own group, not the other.
    const asUser = new Client(server.url, { authorization: `Bearer ${user}` });
    expect((await asUser.get(`/countermand/v1/machineactions/${shown}/events`)).status).toBe(200);
    const invisible = await asUser.get(`/countermand/v1/machineactions/${hidden}/events`);
    expect(invisible.status).toBe(404);
    expect(invisible.body.error.code).toBe('NotFound');
    expect((await other.get(`/countermand/v1/machineactions/${shown}/events`)).status).toBe(404);
  });

  it.skipIf(skip)('the history read: 401, 403, a non-GUID key 400, an unknown action 404, in the envelope', async () => {
    const some = (await api.get('/api/machineactions?$top=1')).body.value[0].id as string;
    const anonymous = await new Client(server.url).get(`/countermand/v1/machineactions/${some}/events`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.target).toBe(anonymous.headers.get('request-id'));
    const readless = new Client(server.url, { authorization: `Bearer ${await appToken(server, setup.tenantId, readlessClient)}` });
    expect((await readless.get(`/countermand/v1/machineactions/${some}/events`)).status).toBe(403);
    const notGuid = await api.get('/countermand/v1/machineactions/not-a-guid/events');
    expect(notGuid.status).toBe(400);
    expect(notGuid.body.error.code).toBe('BadRequest');
    const unknown = await api.get(`/countermand/v1/machineactions/${randomUUID()}/events`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('NotFound');
    // Paths match case-insensitively, as on /api.
    expect((await api.get(`/COUNTERMAND/v1/MachineActions/${some.toUpperCase()}/Events`)).status).toBe(200);
    const post = await api.post(`/countermand/v1/machineactions/${some}/events`, {});
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toContain('GET');
  });

  it.skipIf(skip)('200 simultaneous opens by one caller: exactly the bound gets a stream, the rest 429; closing one frees a slot', async () => {
    const bound = 5;
    for (const s of streams) s.close();
    await waitUntil(() => server.changes.size === 0, 10_000, 'earlier streams to close');
    const burst = await Promise.all(Array.from({ length: 200 }, () => openEventStream(server.url, token)));
    streams.push(...burst);
    const refused = burst.filter((s) => s.status !== 200);
    expect(burst.filter((s) => s.status === 200)).toHaveLength(bound);
    expect(refused).toHaveLength(200 - bound);
    expect(refused.every((s) => s.status === 429 && s.body.error.code === 'TooManyRequests')).toBe(true);
    expect(refused[0]!.headers.get('retry-after')).toBe('10');
    expect(refused[0]!.body.error.message).toContain('at most 5');
    expect(server.changes.size).toBe(bound);
    // Another caller is not affected by this one's streams.
    const other = await openEventStream(server.url, await appToken(server, otherTenant.tenantId, otherTenant.clientId));
    expect(other.status).toBe(200);
    for (const s of burst) s.close();
    await waitUntil(() => server.changes.size === 1, 10_000, 'the burst to close');
    const again = await Promise.all(Array.from({ length: 200 }, () => openEventStream(server.url, token)));
    streams.push(...again, other);
    expect(again.filter((s) => s.status === 200)).toHaveLength(bound);
    for (const s of again) s.close();
  });

  it.skipIf(skip)('a stream ends when its token expires', async () => {
    const app = (await server.store.getApplication(setup.tenantId, setup.clientId))!;
    // A token of the server's own issuer that expires two seconds from now.
    const issuer = new TokenIssuer(server.keys, server.config.issuerBase, () => Date.now() - (TOKEN_LIFETIME_SECONDS - 2) * 1000);
    const shortLived = await issuer.forApplication(app, 'https://api.securitycenter.microsoft.com');
    const stream = await open(shortLived);
    expect(stream.status).toBe(200);
    const end = await stream.next((e) => e.event === 'end', 15_000, 'end');
    expect(end.data.reason).toBe('token-expired');
    await stream.closed;
  });

  it.skipIf(skip)('HEAD answers the headers and opens no stream', async () => {
    for (const s of streams) s.close();
    await waitUntil(() => server.changes.size === 0, 10_000, 'earlier streams to close');
    const response = await openEventStream(server.url, token, STREAM_PATH, 'HEAD');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    await response.closed;
    expect(response.text).toBe('');
    expect(server.changes.size).toBe(0);
  });
});

describe('connections', () => {
  it('a stream outlives the request and keep-alive timeouts: its request has arrived, and heartbeats flow', async () => {
    const setup = makeFixtures(1);
    const server = await startTestServer({
      fixtures: setup.fixtures,
      config: { headersTimeoutSeconds: 1, requestTimeoutSeconds: 1, keepAliveTimeoutSeconds: 1, eventHeartbeatSeconds: 0.25 },
    });
    try {
      const stream = await openEventStream(server.url, await appToken(server, setup.tenantId, setup.clientId));
      // Twelve heartbeats, 0.25 s apart: the stream is open well past every 1 s timeout.
      await stream.heartbeats(12, 20_000);
      stream.close();
    } finally {
      await server.stop();
    }
  });
});

describe('shutdown', () => {
  it('open streams get an end event and do not hold the server up', async () => {
    const setup = makeFixtures(1);
    const server = await startTestServer({ fixtures: setup.fixtures });
    let stopped = false;
    try {
      const token = await appToken(server, setup.tenantId, setup.clientId);
      const streams = await Promise.all([openEventStream(server.url, token), openEventStream(server.url, token)]);
      await Promise.all(streams.map((s) => s.next((e) => e.event === 'ready')));
      await server.stop();
      stopped = true;
      for (const s of streams) {
        await s.closed;
        expect(s.events.at(-1)).toEqual({ event: 'end', data: { reason: 'shutdown' } });
      }
    } finally {
      if (!stopped) await server.stop();
    }
  });
});
