import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT } from '../../src/agent/executor.js';
import { ACTION_DEFINITIONS } from '../../src/domain/catalog.js';
import { startAgent, enrollmentToken, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { ensureLibraryFile } from '../support/library.js';

/**
 * Agents end to end (issue: real delivery, execution, cancellation and timeouts): a started
 * server, agents speaking the protocol over HTTP, actions driven through the public API.
 */

const setup = makeFixtures(0);
let server: TestServer;
let api: Client;
let token: string;
const agents: RunningAgent[] = [];

const BODIES: Record<string, object> = {
  isolate: { Comment: 'e2e', IsolationType: 'Full' },
  unisolate: { Comment: 'e2e' },
  runAntiVirusScan: { Comment: 'e2e', ScanType: 'Quick' },
  collectInvestigationPackage: { Comment: 'e2e' },
  restrictCodeExecution: { Comment: 'e2e' },
  unrestrictCodeExecution: { Comment: 'e2e' },
  offboard: { Comment: 'e2e' },
  StopAndQuarantineFile: { Comment: 'e2e', Sha1: 'a'.repeat(40) },
  runliveresponse: {
    Comment: 'e2e',
    Commands: [
      { type: 'PutFile', params: [{ key: 'FileName', value: 'x.sh' }] },
      { type: 'RunScript', params: [{ key: 'ScriptName', value: 'x.sh' }] },
      { type: 'GetFile', params: [{ key: 'Path', value: '/tmp/out' }] },
    ],
  },
};

async function agent(name: string, simulation = {}) {
  const a = await startAgent(server.url, token, name, simulation);
  agents.push(a);
  return a;
}

const get = async (id: string) => (await api.get(`/api/machineactions/${id}`)).body;
const events = (id: string) => server.store.listEvents(setup.tenantId, id);
const statusIs = (id: string, ...statuses: string[]) => async () => {
  const a = await get(id);
  return statuses.includes(a.status) ? a : undefined;
};

beforeAll(async () => {
  server = await startTestServer({
    fixtures: setup.fixtures,
    config: { rateLimitScale: 1000, agentPollSeconds: 5, sweepIntervalSeconds: 0.2 },
  });
  api = await appClient(server, setup);
  token = await enrollmentToken(server.store, setup.tenantId);
  await ensureLibraryFile(api, 'x.sh');
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await server?.stop();
});

describe('enrollment and check-in', () => {
  it('an agent enrolls a machine that the API then lists as Active, with lastSeen', async () => {
    const a = await agent('enroll-1.test', {});
    const machine = (await api.get(`/api/machines/${a.machineId}`)).body;
    expect(machine.computerDnsName).toBe('enroll-1.test');
    expect(machine.healthStatus).toBe('Active');
    expect(machine.rbacGroupId).toBe(1);
    expect(machine.agentVersion).toBe('0.1.0');
    expect(Date.parse(machine.lastSeen)).toBeGreaterThan(Date.now() - 60_000);
  });

  it("the agent credential cannot call /api, and one agent cannot touch another machine's actions", async () => {
    const a = await agent('cred-a.test', { '*': { durationMs: 60_000 } });
    const b = await agent('cred-b.test', { '*': { durationMs: 60_000 } });
    const credentialA = (await a.state.loadCredentials())!.agentToken;
    const asAgent = new Client(server.url, { authorization: `Bearer ${credentialA}` });
    const denied = await asAgent.get('/api/machines');
    expect(denied.status).toBe(401);
    expect(denied.body.error.code).toBe('Unauthorized');
    const created = await api.post(`/api/machines/${b.machineId}/runAntiVirusScan`, { Comment: 'b', ScanType: 'Full' });
    for (const step of ['start', 'progress', 'report']) {
      const res = await asAgent.post(`/agent/v1/actions/${created.body.id}/${step}`, step === 'report'
        ? { reportId: 'x', status: 'Succeeded', errorHResult: 0, troubleshootInfo: null }
        : step === 'progress' ? { commands: [] } : {});
      expect(res.status, step).toBe(404);
    }
    // An API token is not an agent credential either.
    const apiToken = (await appClient(server, setup)) as Client;
    const res = await apiToken.post('/agent/v1/checkin', { running: [] });
    expect(res.status).toBe(401);
    // b still runs it: a's attempts changed nothing.
    await waitUntil(statusIs(created.body.id, 'InProgress'));
  });

  it('an unknown enrollment token is refused', async () => {
    const res = await new Client(server.url).post('/agent/v1/enroll', {
      enrollmentToken: `${'0'.repeat(16)}.nope`,
      machine: { computerDnsName: 'x' },
    });
    expect(res.status).toBe(401);
  });

  it('an address that keeps presenting bad enrollment tokens is refused for the rest of the minute', async () => {
    const fx = makeFixtures(0);
    const s = await startTestServer({ fixtures: fx.fixtures });
    try {
      const good = await enrollmentToken(s.store, fx.tenantId);
      const enroll = (token: string) => new Client(s.url).post('/agent/v1/enroll', { enrollmentToken: token, machine: { computerDnsName: 'guess.test' } });
      const [id] = good.split('.');
      for (let i = 0; i < 20; i++) expect((await enroll(`${id}.wrong-${i}`)).status).toBe(401);
      const refused = await enroll(good);
      expect(refused.status).toBe(429);
      expect(refused.body.error.code).toBe('TooManyRequests');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await s.stop();
    }
  });
});

describe('each action type through the simulated executor', () => {
  it.each(ACTION_DEFINITIONS.map((d) => [d.type, d.route]))('%s: Pending -> InProgress -> Succeeded', async (type, route) => {
    const a = await agent(`life-${type.toLowerCase()}.test`, { '*': { durationMs: 300 } });
    const created = await api.post(`/api/machines/${a.machineId}/${route}`, BODIES[route]);
    expect(created.status).toBe(201);
    expect(created.body.status).toBe('Pending');
    await waitUntil(statusIs(created.body.id, 'InProgress'), 5000, 'InProgress');
    const done = await waitUntil(statusIs(created.body.id, 'Succeeded', 'Failed'), 5000, 'a final status');
    expect(done.status).toBe('Succeeded');
    expect(done.errorHResult).toBe(0);
    const history = await events(created.body.id);
    expect(history.map((e) => [e.fromStatus, e.toStatus])).toEqual(
      type === 'LiveResponse'
        ? [[null, 'Pending'], ['Pending', 'InProgress'], ...Array(history.length - 3).fill(['InProgress', 'InProgress']), ['InProgress', 'Succeeded']]
        : [[null, 'Pending'], ['Pending', 'InProgress'], ['InProgress', 'Succeeded']],
    );
    expect(history[1]!.actor).toBe(`life-${type.toLowerCase()}.test`);
    if (type === 'LiveResponse') {
      expect(done.commands.map((c: { commandStatus: string }) => c.commandStatus)).toEqual(['Completed', 'Completed', 'Completed']);
      for (const c of done.commands) {
        expect(c.startTime).toMatch(/Z$/);
        expect(Date.parse(c.endTime)).toBeGreaterThanOrEqual(Date.parse(c.startTime));
      }
      expect(history.filter((e) => e.kind === 'progress').length).toBeGreaterThanOrEqual(3);
    }
    expect(a.executor.completed).toEqual([created.body.id]);
  });

  it('a configured failure is reported with its errorHResult and troubleshootInfo', async () => {
    const a = await agent('fail.test', { Isolate: { durationMs: 100, outcome: 'Failed', errorHResult: -2147024891, troubleshootInfo: 'simulated: access denied' } });
    const created = await api.post(`/api/machines/${a.machineId}/isolate`, { Comment: 'x' });
    const done = await waitUntil(statusIs(created.body.id, 'Failed'), 5000);
    expect(done.errorHResult).toBe(-2147024891);
    expect(done.troubleshootInfo).toBe('simulated: access denied');
  });

  it('a live-response command can fail, and the action then fails', async () => {
    const a = await agent('lr-fail.test', { LiveResponse: { durationMs: 200, outcome: 'Failed', troubleshootInfo: 'script exited 3' } });
    const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, BODIES.runliveresponse);
    const done = await waitUntil(statusIs(created.body.id, 'Failed'), 5000);
    expect(done.commands.map((c: { commandStatus: string }) => c.commandStatus)).toEqual(['Completed', 'Completed', 'Failed']);
    expect(done.commands[2].errors).toEqual(['script exited 3']);
  });

  it('offboarding succeeds, then the agent stops and its credential is revoked', async () => {
    const a = await agent('offboard.test', { '*': { durationMs: 50 } });
    const credential = (await a.state.loadCredentials())!.agentToken;
    const created = await api.post(`/api/machines/${a.machineId}/offboard`, { Comment: 'bye' });
    await waitUntil(statusIs(created.body.id, 'Succeeded'), 5000);
    await a.agent.finished;
    expect(a.agent.stoppedBecause).toBe('offboarded');
    const res = await new Client(server.url, { authorization: `Bearer ${credential}` }).post('/agent/v1/checkin', { running: [] });
    expect(res.status).toBe(401);
  });
});

describe('reports are idempotent', () => {
  it('the same report twice is recorded once; a different one after the end is kept as a late report', async () => {
    const a = await agent('idem.test', { '*': { durationMs: 60_000 } });
    await a.stop(); // speak the protocol by hand with its credential
    const credential = (await a.state.loadCredentials())!.agentToken;
    const raw = new Client(server.url, { authorization: `Bearer ${credential}` });
    const created = await api.post(`/api/machines/${a.machineId}/isolate`, { Comment: 'x' });
    const delivered = await raw.post('/agent/v1/checkin', { running: [], maxWaitSeconds: 1 });
    expect(delivered.body.actions.map((x: { id: string }) => x.id)).toContain(created.body.id);
    // Delivered again while not started (at-least-once)...
    const again = await raw.post('/agent/v1/checkin', { running: [], maxWaitSeconds: 1 });
    expect(again.body.actions.map((x: { id: string }) => x.id)).toContain(created.body.id);
    // ...but not while the agent says it is handling it.
    const handling = await raw.post('/agent/v1/checkin', { running: [created.body.id], maxWaitSeconds: 0.2 });
    expect(handling.body.actions).toEqual([]);
    expect((await raw.post(`/agent/v1/actions/${created.body.id}/start`, {})).body).toEqual({ status: 'InProgress', run: true });
    expect((await raw.post(`/agent/v1/actions/${created.body.id}/start`, {})).body).toEqual({ status: 'InProgress', run: true });
    const report = { reportId: 'r-1', status: 'Succeeded', errorHResult: 0, troubleshootInfo: null };
    expect((await raw.post(`/agent/v1/actions/${created.body.id}/report`, report)).body).toEqual({ status: 'Succeeded', applied: true });
    expect((await raw.post(`/agent/v1/actions/${created.body.id}/report`, report)).body).toEqual({ status: 'Succeeded', applied: false });
    expect((await events(created.body.id)).map((e) => e.kind)).toEqual(['created', 'transition', 'transition']);
    const other = { ...report, reportId: 'r-2', status: 'Failed', errorHResult: 5 };
    expect((await raw.post(`/agent/v1/actions/${created.body.id}/report`, other)).body).toEqual({ status: 'Succeeded', applied: false });
    expect((await events(created.body.id)).map((e) => e.kind)).toEqual(['created', 'transition', 'transition', 'late-report']);
    expect((await get(created.body.id)).errorHResult).toBe(0);
    // A malformed report is refused, not stored.
    const bad = await raw.post(`/agent/v1/actions/${created.body.id}/report`, { reportId: 'r-3', status: 'Cancelled', errorHResult: 0, troubleshootInfo: null });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('InvalidRequestBody');
  });
});

describe('cancellation reaches the machine', () => {
  it('a Pending action cancelled before any agent checks in is never delivered', async () => {
    const a = await agent('cancel-pending.test', { '*': { durationMs: 100 } });
    await a.stop();
    const created = await api.post(`/api/machines/${a.machineId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Full' });
    const cancelled = await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'never mind' });
    expect(cancelled.body.status).toBe('Cancelled');
    // The same machine's agent comes back (same state, so same machine) and polls.
    const back = await startAgent(server.url, token, 'cancel-pending.test', { '*': { durationMs: 100 } }, a.state);
    agents.push(back);
    expect(back.machineId).toBe(a.machineId);
    const followUp = await api.post(`/api/machines/${a.machineId}/isolate`, { Comment: 'after' });
    await waitUntil(statusIs(followUp.body.id, 'Succeeded'), 5000);
    expect(back.executor.started).toEqual([followUp.body.id]);
    expect((await events(created.body.id)).map((e) => e.toStatus)).toEqual(['Pending', 'Cancelled']);
  });

  it('an InProgress action: Cancelled at once, the agent stops within a second, its late report changes nothing', async () => {
    const a = await agent('cancel-running.test', { '*': { durationMs: 30_000 } });
    const created = await api.post(`/api/machines/${a.machineId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Full' });
    await waitUntil(statusIs(created.body.id, 'InProgress'), 5000);
    await waitUntil(() => a.executor.started.includes(created.body.id));
    const before = Date.now();
    const cancelled = await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'stop it' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe('Cancelled');
    const stoppedAt = await waitUntil(() => a.executor.stopped.get(created.body.id), 5000, 'the agent to stop');
    expect(stoppedAt - before).toBeLessThan(1000);
    const late = await waitUntil(async () => (await events(created.body.id)).find((e) => e.kind === 'late-report'), 5000);
    expect(late.detail).toMatchObject({ status: 'Failed', errorHResult: HRESULT.aborted });
    const final = await get(created.body.id);
    expect(final.status).toBe('Cancelled');
    expect(final.errorHResult).toBe(0);
    expect(final.lastUpdateDateTimeUtc).toBe(cancelled.body.lastUpdateDateTimeUtc);
    expect(a.executor.completed).not.toContain(created.body.id);
  });
});

describe('timeouts', () => {
  it('not picked up within the delivery window -> TimeOut, with a history event', async () => {
    const fx = makeFixtures(1);
    const s = await startTestServer({ fixtures: fx.fixtures, config: { deliveryWindowSeconds: 1, sweepIntervalSeconds: 0.2 } });
    try {
      const c = await appClient(s, fx);
      const created = await c.post(`/api/machines/${fx.machines[0]!.id}/isolate`, { Comment: 'nobody home' });
      const done = await waitUntil(async () => {
        const x = (await c.get(`/api/machineactions/${created.body.id}`)).body;
        return x.status === 'TimeOut' ? x : undefined;
      }, 10_000, 'TimeOut');
      expect(Date.parse(done.lastUpdateDateTimeUtc) - Date.parse(done.creationDateTimeUtc)).toBeGreaterThanOrEqual(1000);
      const history = await s.store.listEvents(fx.tenantId, created.body.id);
      expect(history.map((e) => [e.fromStatus, e.toStatus, e.actor])).toEqual([
        [null, 'Pending', 'Test App'],
        ['Pending', 'TimeOut', 'Countermand'],
      ]);
    } finally {
      await s.stop();
    }
  });

  it('InProgress past the execution deadline -> TimeOut, and the agent is told to stop', async () => {
    const fx = makeFixtures(0);
    const s = await startTestServer({ fixtures: fx.fixtures, config: { executionDeadlineSeconds: 1, sweepIntervalSeconds: 0.2, agentPollSeconds: 5 } });
    const a = await startAgent(s.url, await enrollmentToken(s.store, fx.tenantId), 'slow.test', { '*': { durationMs: 60_000 } });
    try {
      const c = await appClient(s, fx);
      const created = await c.post(`/api/machines/${a.machineId}/collectInvestigationPackage`, { Comment: 'slow' });
      const done = await waitUntil(async () => {
        const x = (await c.get(`/api/machineactions/${created.body.id}`)).body;
        return x.status === 'TimeOut' ? x : undefined;
      }, 10_000, 'TimeOut');
      expect(done.status).toBe('TimeOut');
      await waitUntil(() => a.executor.stopped.get(created.body.id), 5000, 'the agent to stop');
      const history = await s.store.listEvents(fx.tenantId, created.body.id);
      expect(history.filter((e) => e.kind === 'transition' && e.toStatus === 'TimeOut')).toHaveLength(1);
      expect((await c.get(`/api/machineactions/${created.body.id}`)).body.status).toBe('TimeOut');
    } finally {
      await a.stop();
      await s.stop();
    }
  });
});

describe('machine health', () => {
  it('a machine whose agent goes silent becomes Inactive, and Active again when it checks in', async () => {
    const fx = makeFixtures(0);
    const s = await startTestServer({ fixtures: fx.fixtures, config: { inactiveAfterSeconds: 1, sweepIntervalSeconds: 0.2, agentPollSeconds: 0.3 } });
    try {
      const c = await appClient(s, fx);
      const token = await enrollmentToken(s.store, fx.tenantId);
      const a = await startAgent(s.url, token, 'quiet.test');
      const health = async () => (await c.get(`/api/machines/${a.machineId}`)).body.healthStatus;
      expect(await health()).toBe('Active');
      await a.stop();
      await waitUntil(async () => (await health()) === 'Inactive', 10_000, 'Inactive');
      const back = await startAgent(s.url, token, 'quiet.test', {}, a.state);
      await waitUntil(async () => (await health()) === 'Active', 10_000, 'Active again');
      await back.stop();
    } finally {
      await s.stop();
    }
  });
});
