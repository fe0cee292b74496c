import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL } from '../support/postgres.js';

/** The API on the PostgreSQL backend: the paths where the database decides. */
describe.skipIf(!PG_URL)(`API on PostgreSQL${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, () => {
  let server: TestServer;
  let api: Client;
  const setup = makeFixtures(4);

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config: { pageSize: 2, rateLimitScale: 1000 } });
    api = await appClient(server, setup);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('creates, conflicts, lists with OData and pages', async () => {
    const [m0, m1] = setup.machines;
    const a = await api.post(`/api/machines/${m0!.id}/isolate`, { Comment: 'x' });
    expect(a.status).toBe(201);
    const dup = await api.post(`/api/machines/${m0!.id}/unisolate`, { Comment: 'x' });
    expect(dup.body.error.code).toBe('ActiveRequestAlreadyExists');
    await api.post(`/api/machines/${m1!.id}/isolate`, { Comment: 'y' });
    await api.post(`/api/machines/${m1!.id}/StopAndQuarantineFile`, { Comment: 'y', Sha1: 'ab'.repeat(20) });
    const list = await api.get(`/api/machineactions?$filter=machineId in ('${m0!.id}','${m1!.id}') and status eq 'Pending'&$count=true`);
    expect(list.status, list.text).toBe(200);
    expect(list.body['@odata.count']).toBe(3);
    expect(list.body.value).toHaveLength(2);
    expect(list.body['@odata.nextLink']).toMatch(/\$skip=2$/);
    const tagged = await api.get("/api/machines?$filter=machineTags/any(t: t eq 'prod')");
    expect(tagged.body.value.map((m: { id: string }) => m.id)).toEqual([m0!.id]);
    const prefix = await api.get("/api/machines?$filter=startswith(computerDnsName,'HOST-')&$count=true&$top=0");
    expect(prefix.body['@odata.count']).toBe(4);
  });

  it('$orderby over any scalar property, nulls first ascending and last descending as on SQLite', async () => {
    const m = setup.machines[3]!;
    const a = await api.post(`/api/machines/${m.id}/restrictCodeExecution`, { Comment: 'x' });
    await api.post(`/api/machines/${m.id}/runAntiVirusScan`, { Comment: 'y', ScanType: 'Quick' });
    await api.post(`/api/machineactions/${a.body.id}/cancel`, { Comment: 'z' });
    const query = `$filter=machineId eq '${m.id}'&$top=10`;
    const asc = await api.get(`/api/machineactions?${query}&$orderby=cancellationDateTimeUtc asc`);
    expect(asc.status, asc.text).toBe(200);
    expect(asc.body.value.map((x: { cancellationDateTimeUtc: string | null }) => x.cancellationDateTimeUtc === null)).toEqual([true, false]);
    const desc = await api.get(`/api/machineactions?${query}&$orderby=cancellationDateTimeUtc desc`);
    expect(desc.body.value.map((x: { cancellationDateTimeUtc: string | null }) => x.cancellationDateTimeUtc === null)).toEqual([false, true]);
    const connector = await api.get(
      `/api/machineactions?$orderby=lastUpdateDateTimeUtc desc&$filter=status eq 'Succeeded' AND type in ('Isolate','Unisolate') AND machineId eq '${m.id}'`,
    );
    expect(connector.status, connector.text).toBe(200);
    const machines = await api.get('/api/machines?$orderby=isAadJoined desc,osBuild asc&$top=1');
    expect(machines.status, machines.text).toBe(200);
  });

  it('rate limits are counted in PostgreSQL (shared by every node)', async () => {
    const s = await startTestServer({ fixtures: setup.fixtures, backend: 'postgres' });
    try {
      const c = await appClient(s, setup);
      const statuses = await Promise.all(Array.from({ length: 101 }, () => c.get('/api/machines?$top=1')));
      expect(statuses.filter((r) => r.status === 200)).toHaveLength(100);
      const limited = statuses.find((r) => r.status === 429)!;
      expect(limited.body.error.code).toBe('TooManyRequests');
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
      const pool = new pg.Pool({ connectionString: s.config.databaseUrl! });
      const rows = await pool.query('SELECT key, points FROM rate_limits');
      await pool.end();
      expect(rows.rows.some((r) => r.key.includes(setup.clientId) && r.points >= 100)).toBe(true);
    } finally {
      await s.stop();
    }
  });

  it('200 simultaneous cancels: exactly one 200 and one history event', async () => {
    const m = setup.machines[2]!;
    const created = await api.post(`/api/machines/${m.id}/runAntiVirusScan`, { Comment: 'race', ScanType: 'Quick' });
    const results = await Promise.all(
      Array.from({ length: 200 }, () => api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'c' })),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 400)).toHaveLength(199);
    const events = await server.store.listEvents(setup.tenantId, created.body.id);
    expect(events.map((e) => e.toStatus)).toEqual(['Pending', 'Cancelled']);
  });
});
