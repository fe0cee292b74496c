import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresNotifier, Waiters } from '../../src/dispatch/waiters.js';
import { KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS } from '../../src/domain/permissions.js';
import type { ActionChangeRef, ActionChanges } from '../../src/services/action-changes.js';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { changesOf, openEventStream, type EventStream } from '../support/events.js';
import { Client, appToken, makeFixtures, startTestServer, userToken, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';

/**
 * The event stream across two server nodes on one PostgreSQL database: a change made through
 * either node (by the API, by an agent connected to the other node, by a sweeper) reaches the
 * streams of both, each exactly once, also when a burst overflows one NOTIFY; device groups hold
 * on the node that did not make the change; a dropped listener tells its streams to re-read.
 */
describe.skipIf(!PG_URL)(`the event stream across server nodes on PostgreSQL${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, () => {
  const MACHINES = 120;
  const setup = makeFixtures(MACHINES);
  setup.fixtures.tenants[0]!.users = [
    // An objectId of its own: both nodes load the fixtures at once and must write the same user.
    { upn: 'g2@nodes.test', objectId: crypto.randomUUID(), password: 'nodes-password', scopes: [...KNOWN_DELEGATED_SCOPES], rolePermissions: [...ROLE_PERMISSIONS], deviceGroups: [2] },
  ];
  let db: { url: string; drop(): Promise<void> };
  let nodeA: TestServer;
  let nodeB: TestServer;
  let viaA: Client;
  let token: string;
  let agent: RunningAgent;
  const streams: EventStream[] = [];
  const open = async (node: TestServer, t = token) => {
    const s = await openEventStream(node.url, t);
    streams.push(s);
    await s.next((e) => e.event === 'ready');
    return s;
  };

  beforeAll(async () => {
    db = await freshDatabase();
    const config = { databaseUrl: db.url, agentPollSeconds: 20, sweepIntervalSeconds: 0.2, deliveryWindowSeconds: 600, rateLimitScale: 1000 };
    [nodeA, nodeB] = await Promise.all([
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config }),
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config }),
    ]);
    token = await appToken(nodeA, setup.tenantId, setup.clientId);
    viaA = new Client(nodeA.url, { authorization: `Bearer ${token}` });
    agent = await startAgent(nodeA.url, await enrollmentToken(nodeA.store, setup.tenantId), 'nodes-agent.test', { '*': { durationMs: 300 } });
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await agent?.stop();
    await nodeA?.stop();
    await nodeB?.stop();
    await db?.drop();
  });

  it("an agent's isolation through node A: both nodes' streams see created, started, ended once each", async () => {
    const [onA, onB] = await Promise.all([open(nodeA), open(nodeB)]);
    const id = (await viaA.post(`/api/machines/${agent.machineId}/isolate`, { Comment: 'nodes', IsolationType: 'Full' })).body.id as string;
    for (const stream of [onA, onB]) {
      await stream.next((e) => e.event === 'action' && e.data.action.id === id && e.data.change === 'ended', 15_000, 'ended');
    }
    // Nothing more may come for it: a later change on the same node is the marker.
    const marker = (await viaA.post(`/api/machines/${setup.machines[0]!.id}/runAntiVirusScan`, { Comment: 'marker', ScanType: 'Quick' })).body.id;
    for (const stream of [onA, onB]) {
      await stream.next((e) => e.event === 'action' && e.data.action.id === marker);
      expect(changesOf(stream, id)).toEqual([
        ['created', expect.any(String)],
        ['started', expect.any(String)],
        ['ended', 'Succeeded'],
      ]);
    }
  });

  it(`a burst of ${MACHINES} creations on node A reaches node B, each once`, async () => {
    const onB = await open(nodeB);
    const created = await Promise.all(
      setup.machines.map((m) => viaA.post(`/api/machines/${m.id}/collectInvestigationPackage`, { Comment: 'burst' })),
    );
    expect(created.every((r) => r.status === 201)).toBe(true);
    const ids = new Set(created.map((r) => r.body.id as string));
    await waitUntil(
      () => onB.events.filter((e) => e.event === 'action' && ids.has(e.data.action.id)).length >= MACHINES,
      20_000,
      'every creation on node B',
    );
    const seen = onB.events.filter((e) => e.event === 'action' && ids.has(e.data.action.id)).map((e) => e.data.action.id);
    expect(new Set(seen).size).toBe(MACHINES);
    expect(seen).toHaveLength(MACHINES);
  });

  it("a device-group user on node B sees only their groups' changes made through node A", async () => {
    const onB = await open(nodeB, await userToken(nodeB, setup.tenantId, 'g2@nodes.test', 'nodes-password'));
    const [g1, g2] = [setup.machines[0]!, setup.machines[1]!]; // device groups 1 and 2 (makeFixtures)
    expect([g1.rbacGroupId, g2.rbacGroupId]).toEqual([1, 2]);
    const hidden = (await viaA.post(`/api/machines/${g1.id}/restrictCodeExecution`, { Comment: 'g1' })).body.id as string;
    const shown = (await viaA.post(`/api/machines/${g2.id}/restrictCodeExecution`, { Comment: 'g2' })).body.id as string;
    await onB.next((e) => e.event === 'action' && e.data.action.id === shown);
    expect(changesOf(onB, hidden)).toEqual([]);
  });

  it('a dropped listening connection: its streams are told to re-read, and changes flow again', async () => {
    const [onA, onB] = await Promise.all([open(nodeA), open(nodeB)]);
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'");
    await admin.end();
    await onA.next((e) => e.event === 'resync', 15_000, 'resync on A');
    await onB.next((e) => e.event === 'resync', 15_000, 'resync on B');
    const id = (await viaA.post(`/api/machines/${setup.machines[2]!.id}/unrestrictCodeExecution`, { Comment: 'after' })).body.id as string;
    await onB.next((e) => e.event === 'action' && e.data.action.id === id, 10_000, 'a change after the reconnect');
  });

  it('changes published in one event-loop turn leave in as many NOTIFYs as they need, and arrive once each, in order', async () => {
    const received: ActionChangeRef[] = [];
    const sentHere: ActionChangeRef[] = [];
    const poolA = new pg.Pool({ connectionString: db.url, max: 2 });
    const poolB = new pg.Pool({ connectionString: db.url, max: 2 });
    // What each node's ActionChanges would be handed.
    const sender = await PostgresNotifier.start(new Waiters(), poolA, (e) => { throw e; }, { deliver: (r: ActionChangeRef) => sentHere.push(r), resync: () => undefined } as unknown as ActionChanges);
    const receiver = await PostgresNotifier.start(new Waiters(), poolB, (e) => { throw e; }, { deliver: (r: ActionChangeRef) => received.push(r), resync: () => undefined } as unknown as ActionChanges);
    try {
      const refs = Array.from({ length: 500 }, (_, i) => ({ tenantId: setup.tenantId, actionId: crypto.randomUUID(), change: i % 2 ? 'started' : 'created' }) as ActionChangeRef);
      const notifies: string[] = [];
      const query = poolA.query.bind(poolA);
      (poolA as unknown as { query: unknown }).query = (sql: string, params: unknown[]) => {
        if (String(params?.[0]) === 'countermand_changes') notifies.push(String(params[1]));
        return query(sql, params as never);
      };
      for (const ref of refs) sender.publish(ref);
      await waitUntil(() => received.length >= refs.length, 10_000, 'every change on the other node');
      expect(received).toEqual(refs);
      expect(sentHere).toEqual(refs); // the sender's own streams, at once and only once
      expect(notifies.length).toBeGreaterThan(1);
      expect(Math.max(...notifies.map((n) => Buffer.byteLength(n)))).toBeLessThan(8000);
    } finally {
      await sender.close();
      await receiver.close();
      await poolA.end();
      await poolB.end();
    }
  });
});
