import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, appClient, appToken, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';

/**
 * Two server nodes on one PostgreSQL database: an agent connected to node A gets work created
 * and cancelled through node B at once (LISTEN/NOTIFY), tokens of one node work on the other,
 * and both nodes' sweepers together time an action out exactly once.
 */
describe.skipIf(!PG_URL)(`several server nodes on PostgreSQL${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, () => {
  const setup = makeFixtures(2);
  let db: { url: string; drop(): Promise<void> };
  let nodeA: TestServer;
  let nodeB: TestServer;
  let viaA: Client;
  let viaB: Client;
  let agent: RunningAgent;

  beforeAll(async () => {
    db = await freshDatabase();
    const config = {
      databaseUrl: db.url,
      agentPollSeconds: 20,
      sweepIntervalSeconds: 0.2,
      deliveryWindowSeconds: 2,
      rateLimitScale: 100,
    };
    [nodeA, nodeB] = await Promise.all([
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config }),
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config }),
    ]);
    viaA = await appClient(nodeA, setup);
    viaB = await appClient(nodeB, setup);
    agent = await startAgent(nodeA.url, await enrollmentToken(nodeA.store, setup.tenantId), 'node-a-agent.test', { '*': { durationMs: 30_000 } });
  });
  afterAll(async () => {
    await agent?.stop();
    await nodeA?.stop();
    await nodeB?.stop();
    await db?.drop();
  });

  it("a token issued by one node is accepted by the other, which sees the first node's agents", async () => {
    const viaBWithAToken = new Client(nodeB.url, { authorization: `Bearer ${await appToken(nodeA, setup.tenantId, setup.clientId)}` });
    const res = await viaBWithAToken.get(`/api/machines/${agent.machineId}`);
    expect(res.status).toBe(200);
    expect(res.body.healthStatus).toBe('Active');
  });

  it('an action created on node B reaches the agent long-polling node A at once, and a cancel on B stops it', async () => {
    // The agent is in a long poll (20 s) on node A: only a cross-node wake-up delivers quickly.
    await waitUntil(() => nodeA.waiters.size > 0, 5000, 'the agent to wait on node A');
    const before = Date.now();
    const created = await viaB.post(`/api/machines/${agent.machineId}/runAntiVirusScan`, { Comment: 'via B', ScanType: 'Full' });
    await waitUntil(() => agent.executor.started.includes(created.body.id), 5000, 'delivery through node A');
    expect(Date.now() - before).toBeLessThan(1000);
    await waitUntil(async () => (await viaA.get(`/api/machineactions/${created.body.id}`)).body.status === 'InProgress');
    await waitUntil(() => nodeA.waiters.size > 0, 5000, 'the agent to wait again');
    const cancelAt = Date.now();
    const cancelled = await viaB.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'stop via B' });
    expect(cancelled.body.status).toBe('Cancelled');
    const stoppedAt = await waitUntil(() => agent.executor.stopped.get(created.body.id), 5000, 'the agent to stop');
    expect(stoppedAt - cancelAt).toBeLessThan(1000);
  });

  it('a listening connection that drops is re-established, and wake-ups flow again', async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    const killed = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    );
    await admin.end();
    expect(killed.rowCount).toBeGreaterThanOrEqual(2); // one per node
    await waitUntil(async () => {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'");
      await c.end();
      return r.rows[0].n >= 2;
    }, 10_000, 'the nodes to listen again');
    await waitUntil(() => nodeA.waiters.size > 0, 25_000, 'the agent to wait on node A');
    const before = Date.now();
    const created = await viaB.post(`/api/machines/${agent.machineId}/collectInvestigationPackage`, { Comment: 'after reconnect' });
    await waitUntil(() => agent.executor.started.includes(created.body.id), 5000, 'delivery after reconnect');
    expect(Date.now() - before).toBeLessThan(1000);
    await viaB.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'done' });
  });

  it("both nodes' sweepers time an undelivered action out exactly once", async () => {
    const quiet = setup.machines[0]!.id; // no agent
    const created = await viaA.post(`/api/machines/${quiet}/isolate`, { Comment: 'nobody' });
    await waitUntil(async () => (await viaB.get(`/api/machineactions/${created.body.id}`)).body.status === 'TimeOut', 10_000, 'TimeOut');
    await new Promise((r) => setTimeout(r, 600)); // several more sweeps on both nodes
    const history = await nodeB.store.listEvents(setup.tenantId, created.body.id);
    expect(history.map((e) => e.toStatus)).toEqual(['Pending', 'TimeOut']);
  });
});
