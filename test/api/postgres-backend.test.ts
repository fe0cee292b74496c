import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL } from '../support/postgres.js';

/** The API on the PostgreSQL backend: the paths where the database decides. */
describe.skipIf(!PG_URL)(`API on PostgreSQL${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, () => {
  let server: TestServer;
  let api: Client;
  const setup = makeFixtures(4);

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config: { pageSize: 2 } });
    api = new Client(server.url);
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
