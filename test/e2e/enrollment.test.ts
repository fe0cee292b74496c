import { createServer, request as httpRequest, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, AgentRefusal } from '../../src/agent/agent.js';
import { MemoryState } from '../../src/agent/state.js';
import { createEnrollmentToken } from '../../src/dispatch/enrollment.js';
import { WatchedExecutor, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL } from '../support/postgres.js';
import { runCli } from '../support/process.js';

/**
 * Who may attach an agent to a machine (docs/agent-protocol.md, Enroll), driven over HTTP and
 * through the CLI as an attacker and an administrator would: an enrollment token creates new
 * machines in its own device group and never takes one over; re-attaching needs the machine's
 * current credential or a one-time re-enroll grant; tokens can be revoked; an offboarded machine
 * reads as offboarded, takes no actions and is never silently revived; check-ins are limited per
 * credential, and the agent honours the limit's Retry-After.
 */

const BACKENDS: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite'];
if (!PG_URL) describe.skip(`enrollment on postgres (${PG_SKIP_REASON})`, () => undefined);

const machineBody = (name: string) => ({ computerDnsName: name, osPlatform: 'Linux' });

describe.each(BACKENDS)('enrollment and machine ownership (%s)', (backend) => {
  const setup = makeFixtures(0);
  let server: TestServer;
  let api: Client;
  let servers: string; // enrollment token of device group 1
  let laptops: string; // enrollment token of device group 2
  const agents: RunningAgent[] = [];
  const raw = () => new Client(server.url);

  /** The CLI against this server's store (the embedded file, or PostgreSQL). */
  const storeFlags = () => (backend === 'postgres' ? ['--database-url', server.config.databaseUrl!] : ['--data-dir', server.dataDir]);
  async function cli(...args: string[]) {
    const { code, output, stdout } = await runCli([...args, ...storeFlags(), '--json']);
    expect(code, output).toBe(0);
    return JSON.parse(stdout);
  }

  async function enroll(token: string, name: string) {
    const res = await raw().post('/agent/v1/enroll', { enrollmentToken: token, machine: machineBody(name) });
    expect(res.status, res.text).toBe(201);
    return res.body as { tenantId: string; machineId: string; agentToken: string };
  }
  const checkin = (credential: string, body: object = { running: [], maxWaitSeconds: 0 }) =>
    raw().post('/agent/v1/checkin', body, { authorization: `Bearer ${credential}` });
  const machine = async (id: string) => (await api.get(`/api/machines/${id}`)).body;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { agentPollSeconds: 2, rateLimitScale: 100 } });
    api = await appClient(server, setup);
    servers = await createEnrollmentToken(server.store, setup.tenantId, 'servers', { rbacGroupId: 1, rbacGroupName: 'Servers' });
    laptops = await createEnrollmentToken(server.store, setup.tenantId, 'laptops', { rbacGroupId: 2, rbacGroupName: 'Laptops' });
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await server?.stop();
  });

  it('an enrollment token never takes over an existing machine: 403, and the machine, its agent and its actions are untouched', async () => {
    const victim = await enroll(servers, 'victim.test');
    const pending = await api.post(`/api/machines/${victim.machineId}/isolate`, { Comment: 'for the real agent' });
    expect(pending.status).toBe(201);
    for (const token of [laptops, servers]) {
      const takeover = await raw().post('/agent/v1/enroll', { enrollmentToken: token, machineId: victim.machineId, machine: machineBody('attacker.test') });
      expect(takeover.status, takeover.text).toBe(403);
      expect(takeover.body.error.code).toBe('Forbidden');
      expect(takeover.body.error.message).toContain(`countermand enrollment reenroll --tenant ${setup.tenantId} --machine ${victim.machineId}`);
      expect(takeover.body.error.target).toBe(takeover.headers.get('request-id'));
      expect(takeover.body).not.toHaveProperty('agentToken');
    }
    // A made-up machine id gets the same answer: no oracle for which machines exist.
    const probe = await raw().post('/agent/v1/enroll', { enrollmentToken: laptops, machineId: 'ab'.repeat(20), machine: machineBody('x') });
    expect(probe.status).toBe(403);
    // The real agent still holds the machine and still gets its work; nothing was renamed or moved.
    const delivered = await checkin(victim.agentToken);
    expect(delivered.status).toBe(200);
    expect(delivered.body.actions.map((a: { id: string }) => a.id)).toEqual([pending.body.id]);
    expect(await machine(victim.machineId)).toMatchObject({ computerDnsName: 'victim.test', rbacGroupId: 1, rbacGroupName: 'Servers' });
    expect((await api.get(`/api/machineactions/${pending.body.id}`)).body.status).toBe('Pending');
    const { value } = (await api.get("/api/machines?$filter=startswith(computerDnsName,'attacker')")).body;
    expect(value).toEqual([]);
  });

  it("a new machine joins its enrollment token's device group", async () => {
    const laptop = await enroll(laptops, 'laptop-1.test');
    expect(await machine(laptop.machineId)).toMatchObject({ rbacGroupId: 2, rbacGroupName: 'Laptops', onboardingStatus: 'Onboarded', healthStatus: 'Active' });
    const server1 = await enroll(servers, 'server-1.test');
    expect(await machine(server1.machineId)).toMatchObject({ rbacGroupId: 1, rbacGroupName: 'Servers' });
  });

  it('re-attaching with the current credential replaces it; a credential proves its own machine only, and once', async () => {
    const a = await enroll(servers, 'rotate-a.test');
    const b = await enroll(laptops, 'rotate-b.test');
    const asB = await raw().post('/agent/v1/enroll', { machineId: a.machineId, machine: machineBody('rotate-a.test') }, { authorization: `Bearer ${b.agentToken}` });
    expect(asB.status).toBe(403);
    expect((await checkin(a.agentToken)).status).toBe(200);

    // A burst of re-attaches with one credential: exactly one wins.
    const burst = await Promise.all(
      Array.from({ length: 30 }, () =>
        raw().post('/agent/v1/enroll', { machineId: a.machineId, machine: machineBody('rotate-a.test') }, { authorization: `Bearer ${a.agentToken}` }),
      ),
    );
    // The others are refused (401; or 429 from the enrollment throttle, which counts refusals too).
    expect(burst.filter((r) => r.status === 201)).toHaveLength(1);
    expect(burst.every((r) => [201, 401, 429].includes(r.status))).toBe(true);
    const winner = burst.find((r) => r.status === 201)!.body;
    expect(winner.machineId).toBe(a.machineId);
    expect((await checkin(a.agentToken)).status).toBe(401); // revoked at once on this node
    expect((await checkin(winner.agentToken)).status).toBe(200);
    // Without machineId the credential names its machine.
    const again = await raw().post('/agent/v1/enroll', { machine: machineBody('rotate-a.test') }, { authorization: `Bearer ${winner.agentToken}` });
    expect(again.status).toBe(201);
    expect(again.body.machineId).toBe(a.machineId);
    expect(await machine(a.machineId)).toMatchObject({ rbacGroupId: 1 });
  });

  it("an administrator's re-enroll grant (CLI) re-attaches one agent, once; the agent it replaced stops with what to do, and does not loop", async () => {
    const running = await startAgent(server.url, servers, 'reinstalled.test', { '*': { durationMs: 50 } });
    agents.push(running);
    const issued = await cli('enrollment', 'reenroll', '--tenant', setup.tenantId, '--machine', running.machineId);
    expect(issued.reenrollGrant).toMatch(/^cmr_[A-Za-z0-9_-]{43}$/);
    expect(issued).toMatchObject({ machineId: running.machineId, offboarded: false });
    expect(Date.parse(issued.expiresAt)).toBeGreaterThan(Date.now() + 23 * 3600_000);

    // Many agents present the grant at once: one gets the machine.
    const burst = await Promise.all(
      Array.from({ length: 30 }, (_, i) => raw().post('/agent/v1/enroll', { reenrollGrant: issued.reenrollGrant, machine: machineBody(`reinstalled-${i}.test`) })),
    );
    expect(burst.filter((r) => r.status === 201)).toHaveLength(1);
    expect(burst.every((r) => [201, 401, 429].includes(r.status))).toBe(true);
    const winner = burst.find((r) => r.status === 201)!;
    expect(winner.body.machineId).toBe(running.machineId);
    const used = burst.find((r) => r.status === 401)!;
    expect(used.body.error.message).toMatch(/re-enroll grant is not valid/);
    expect((await machine(running.machineId)).rbacGroupId).toBe(1);

    // The agent that held the machine is refused at its next check-in and stops, once.
    await running.agent.finished;
    expect(running.agent.stoppedBecause).toContain(`countermand enrollment reenroll --tenant ${setup.tenantId} --machine ${running.machineId}`);
    // The new holder carries out the machine's actions.
    const created = await api.post(`/api/machines/${running.machineId}/runAntiVirusScan`, { Comment: 'after reinstall', ScanType: 'Quick' });
    expect((await checkin(winner.body.agentToken)).body.actions.map((a: { id: string }) => a.id)).toContain(created.body.id);
    await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'done' });

    // A grant for an unknown machine is refused by the CLI.
    const unknown = await runCli(['enrollment', 'reenroll', '--tenant', setup.tenantId, '--machine', 'cd'.repeat(20), ...storeFlags()]);
    expect(unknown.code).toBe(2);
    expect(unknown.output).toMatch(/no machine cdcd/);
  });

  it('a revoked enrollment token (countermand enrollment revoke) refuses enrollment at once', async () => {
    const temp = await createEnrollmentToken(server.store, setup.tenantId, 'temporary', { rbacGroupId: 1, rbacGroupName: 'Servers' });
    await enroll(temp, 'before-revoke.test');
    const listed = await cli('enrollment', 'list', '--tenant', setup.tenantId);
    const entry = listed.find((e: { label: string }) => e.label === 'temporary');
    expect(entry.id).toBe(temp.split('.')[0]);
    expect(JSON.stringify(listed)).not.toContain(temp.split('.')[1]);

    expect(await cli('enrollment', 'revoke', '--tenant', setup.tenantId, '--label', 'temporary')).toEqual({ revoked: entry.id, label: 'temporary' });
    const refused = await raw().post('/agent/v1/enroll', { enrollmentToken: temp, machine: machineBody('after-revoke.test') });
    expect(refused.status).toBe(401);
    expect((await cli('enrollment', 'list', '--tenant', setup.tenantId)).map((e: { label: string }) => e.label).sort()).toEqual(['laptops', 'servers']);
    const twice = await runCli(['enrollment', 'revoke', '--tenant', setup.tenantId, '--id', entry.id, ...storeFlags()]);
    expect(twice.code).toBe(2);
    expect(twice.output).toMatch(/no enrollment token/);
  });

  it('after a Succeeded Offboard the machine reads as offboarded, takes no actions (400), and only a new grant brings it back', async () => {
    const state = new MemoryState();
    const a = await startAgent(server.url, servers, 'leaving.test', { '*': { durationMs: 50 } }, state);
    const credential = (await state.loadCredentials())!.agentToken;
    const offboard = await api.post(`/api/machines/${a.machineId}/offboard`, { Comment: 'decommissioned' });
    await waitUntil(async () => (await api.get(`/api/machineactions/${offboard.body.id}`)).body.status === 'Succeeded', 10_000, 'Succeeded');
    await a.agent.finished;
    expect(a.agent.stoppedBecause).toBe('offboarded');

    const seen = await machine(a.machineId);
    expect(seen).toMatchObject({ healthStatus: 'Inactive', onboardingStatus: 'CanBeOnboarded' });
    const filtered = (await api.get("/api/machines?$filter=onboardingStatus eq 'CanBeOnboarded'")).body.value;
    expect(filtered.map((m: { id: string }) => m.id)).toContain(a.machineId);

    for (const [route, body] of [
      ['isolate', { Comment: 'too late', IsolationType: 'Full' }],
      ['offboard', { Comment: 'again' }],
      ['runAntiVirusScan', { Comment: 'too late', ScanType: 'Quick' }],
    ] as const) {
      const refused = await api.post(`/api/machines/${a.machineId}/${route}`, body);
      expect(refused.status, route).toBe(400);
      expect(refused.body.error.code).toBe('InvalidInput');
      expect(refused.body.error.message).toContain(`Machine ${a.machineId} is offboarded`);
    }
    const actions = (await api.get(`/api/machineactions?$filter=machineId eq '${a.machineId}'`)).body.value;
    expect(actions).toHaveLength(1);

    // Nothing revives it silently: not its old credential, not an enrollment token, not a restart.
    expect((await checkin(credential)).status).toBe(401);
    const reattach = await raw().post('/agent/v1/enroll', { machineId: a.machineId, machine: machineBody('leaving.test') }, { authorization: `Bearer ${credential}` });
    expect(reattach.status).toBe(401);
    expect((await raw().post('/agent/v1/enroll', { enrollmentToken: servers, machineId: a.machineId, machine: machineBody('leaving.test') })).status).toBe(403);
    const restart = new Agent({ serverUrl: server.url, enrollmentToken: servers, machine: machineBody('leaving.test'), state, executor: new WatchedExecutor({}) });
    const refusal = await restart.start().then(() => null, (error: unknown) => error);
    expect(refusal).toBeInstanceOf(AgentRefusal);
    expect((refusal as Error).message).toMatch(new RegExp(`machine ${a.machineId} was offboarded .*countermand enrollment reenroll --tenant ${setup.tenantId} --machine ${a.machineId}`));
    await restart.stop();
    expect(await machine(a.machineId)).toMatchObject({ healthStatus: 'Inactive', onboardingStatus: 'CanBeOnboarded' });
    const named = (await api.get("/api/machines?$filter=computerDnsName eq 'leaving.test'")).body.value;
    expect(named).toHaveLength(1);

    // An administrator's grant, issued after the offboard, onboards it again: an explicit act.
    const issued = await cli('enrollment', 'reenroll', '--tenant', setup.tenantId, '--machine', a.machineId);
    expect(issued.offboarded).toBe(true);
    const executor = new WatchedExecutor({ '*': { durationMs: 50 } });
    const back = new Agent({ serverUrl: server.url, reenrollGrant: issued.reenrollGrant, machine: machineBody('leaving.test'), state, executor, maxWaitSeconds: 30 });
    await back.start();
    agents.push({ agent: back, executor, state, machineId: back.machineId!, stop: () => back.stop() });
    expect(back.machineId).toBe(a.machineId);
    expect(await machine(a.machineId)).toMatchObject({ healthStatus: 'Active', onboardingStatus: 'Onboarded' });
    const isolate = await api.post(`/api/machines/${a.machineId}/isolate`, { Comment: 'back in service' });
    expect(isolate.status).toBe(201);
    await waitUntil(async () => (await api.get(`/api/machineactions/${isolate.body.id}`)).body.status === 'Succeeded', 10_000, 'Succeeded');
  });
});

/** Records every request through it: when it arrived, and how it was answered. */
class RecordingProxy {
  readonly seen: { path: string; at: number; status: number; retryAfter: number | null }[] = [];
  private readonly server: Server;
  url = '';

  constructor(target: string) {
    const upstream = new URL(target);
    this.server = createServer((req, res) => {
      const at = Date.now();
      const forward = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          const retryAfter = answer.headers['retry-after'];
          this.seen.push({ path: req.url ?? '', at, status: answer.statusCode ?? 0, retryAfter: retryAfter === undefined ? null : Number(retryAfter) });
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe.each(BACKENDS)('check-ins limited per agent credential (%s)', (backend) => {
  const setup = makeFixtures(0);
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { agentCheckinsPerMinute: 40 } });
    token = await createEnrollmentToken(server.store, setup.tenantId, 'limits', { rbacGroupId: 1, rbacGroupName: 'g' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a parallel burst of 200 check-ins from one credential gets exactly the allowance; the rest 429 with Retry-After', async () => {
    const client = new Client(server.url);
    const enroll = async (name: string) =>
      (await client.post('/agent/v1/enroll', { enrollmentToken: token, machine: { computerDnsName: name } })).body.agentToken as string;
    const [noisy, quiet] = [await enroll('noisy.test'), await enroll('quiet.test')];
    const burst = await Promise.all(
      Array.from({ length: 200 }, () => client.post('/agent/v1/checkin', { running: [], maxWaitSeconds: 0 }, { authorization: `Bearer ${noisy}` })),
    );
    expect(burst.filter((r) => r.status === 200)).toHaveLength(40);
    const limited = burst.filter((r) => r.status === 429);
    expect(limited).toHaveLength(160);
    for (const r of limited) {
      expect(r.body.error.code).toBe('TooManyRequests');
      expect(r.body.error.target).toBe(r.headers.get('request-id'));
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(r.body.error.message).toContain(`${retryAfter} seconds`);
    }
    // Another agent's allowance is its own.
    expect((await client.post('/agent/v1/checkin', { running: [], maxWaitSeconds: 0 }, { authorization: `Bearer ${quiet}` })).status).toBe(200);
  });

  it('the agent waits out the Retry-After before checking in again', async () => {
    const s = await startTestServer({
      fixtures: setup.fixtures,
      backend,
      // Three check-ins per 3-second window, and polls that answer at once: the agent meets the limit.
      config: { agentCheckinsPerMinute: 3, rateLimitWindowScale: 0.05, agentPollSeconds: 0.05 },
    });
    const proxy = new RecordingProxy(s.url);
    await proxy.listen();
    const limitedToken = await createEnrollmentToken(s.store, setup.tenantId, 'limits', { rbacGroupId: 1, rbacGroupName: 'g' });
    const a = await startAgent(proxy.url, limitedToken, 'patient.test');
    try {
      const checkins = () => proxy.seen.filter((r) => r.path.endsWith('/checkin'));
      await waitUntil(() => checkins().filter((r) => r.status === 429).length >= 2, 20_000, 'two 429s');
      await a.stop();
      const seen = checkins();
      for (let i = 0; i < seen.length - 1; i++) {
        const r = seen[i]!;
        if (r.status !== 429) continue;
        expect(r.retryAfter).toBeGreaterThan(0);
        // The next check-in starts no earlier than the server said (the clock's granularity aside).
        expect(seen[i + 1]!.at - r.at, `check-in ${i + 1} after a 429 with Retry-After ${r.retryAfter}`).toBeGreaterThanOrEqual(r.retryAfter! * 1000 - 20);
      }
    } finally {
      await a.stop();
      await proxy.close();
      await s.stop();
    }
  }, 40_000);
});
