import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { appToken, Client, TEST_SECRET } from '../support/harness.js';
import { BACKENDS, startEmulator, type Emulator } from '../support/emulator.js';

describe.each(BACKENDS)('faults, the journal and quotas (%s)', (backend) => {
  let e: Emulator;
  beforeAll(async () => {
    e = await startEmulator({ backend, machines: 2, emulator: { seed: 'faults' } });
  });
  afterAll(async () => {
    await e?.server.stop();
  });
  beforeEach(async () => {
    await e.control.reset();
  });

  /** Statuses of 40 GETs in a row, and the error codes among them. */
  const sample = async (path: string) => {
    const out: string[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await e.api.get(path);
      out.push(res.status === 200 ? '200' : `${res.status}:${res.body?.error?.code}`);
    }
    return out;
  };

  it('an error rate with a chosen status and code; the same seed gives the same sequence twice', async () => {
    await e.control.addFault({ kind: 'error', match: { method: 'GET', path: '/api/machines' }, rate: 0.3, status: 503, code: 'ServiceUnavailable' });
    const first = await sample('/api/machines');
    await e.control.reset();
    await e.control.addFault({ kind: 'error', match: { method: 'GET', path: '/api/machines' }, rate: 0.3, status: 503, code: 'ServiceUnavailable' });
    const second = await sample('/api/machines');
    expect(second).toEqual(first);
    const failures = first.filter((s) => s !== '200');
    expect(failures.length).toBeGreaterThan(3);
    expect(failures.length).toBeLessThan(30);
    expect(new Set(failures)).toEqual(new Set(['503:ServiceUnavailable']));
    // Another path is not affected.
    expect((await e.api.get('/api/machineactions')).status).toBe(200);
    // Another seed, another sequence.
    await e.control.reset();
    await e.control.settings({ seed: 'another' });
    await e.control.addFault({ kind: 'error', match: { method: 'GET', path: '/api/machines' }, rate: 0.3, status: 503, code: 'ServiceUnavailable' });
    expect(await sample('/api/machines')).not.toEqual(first);
  });

  it('every kind of fault draws from the seed: the same sequence twice', async () => {
    const faults = [
      { id: 'slow', kind: 'latency' as const, match: { path: '/api/machines' }, rate: 0.5, minMs: 1, maxMs: 3 },
      { id: 'throttled', kind: 'throttle' as const, match: { path: '/api/machines' }, rate: 0.3, retryAfterSeconds: 3 },
      { id: 'broken', kind: 'error' as const, match: { path: '/api/machines' }, rate: 0.3, status: 502 },
      { id: 'down', kind: 'outage' as const, rate: 0.5 },
    ];
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: e.setup.clientId, client_secret: TEST_SECRET, scope: 'https://api.securitycenter.microsoft.com/.default' });
    const once = async () => {
      await e.control.reset();
      await e.control.setFaults(faults);
      const seen: string[] = [];
      for (let i = 0; i < 30; i++) {
        seen.push(String((await e.api.get('/api/machines')).status));
        seen.push(`token:${(await fetch(`${e.server.url}/${e.setup.tenantId}/oauth2/v2.0/token`, { method: 'POST', body: form })).status}`);
      }
      // What each request met, from the journal: the faults in order, a latency with the delay it drew.
      const met = (await e.control.journal()).map((j) => `${j.status} ${j.faults.map((f) => f.id + (f.delayMs === undefined ? '' : `:${f.delayMs}ms`)).join(',')}`);
      return { seen, met, injected: (await e.control.faults()).map((f) => [f.id, f.injected]) };
    };
    const first = await once();
    const second = await once();
    expect(second).toEqual(first);
    expect(new Set(first.seen)).toEqual(new Set(['200', '429', '502', 'token:200', 'token:503']));
    for (const [, injected] of first.injected) expect(injected).toBeGreaterThan(0);
    // The delays themselves repeat, and cover the range rather than one value.
    const delays = first.met.flatMap((m) => [...m.matchAll(/slow:(\d+)ms/g)].map((d) => Number(d[1])));
    expect(delays.length).toBeGreaterThan(5);
    expect(new Set(delays)).toEqual(new Set([1, 2, 3]));
    expect(first.met).toContain('503 down');
  });

  it('a forced 429 with Retry-After, for the next N requests', async () => {
    await e.control.addFault({ kind: 'throttle', match: { path: '/api/machines/*' }, retryAfterSeconds: 7, times: 2 });
    const id = e.setup.machines[0]!.id;
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await e.api.get(`/api/machines/${id}`);
      statuses.push(res.status);
      if (res.status === 429) {
        expect(res.headers.get('retry-after')).toBe('7');
        expect(res.body.error.code).toBe('TooManyRequests');
        expect(res.body.error.target).toBe(res.headers.get('request-id'));
      }
    }
    expect(statuses).toEqual([429, 429, 200]);
    expect((await e.control.faults())[0]).toMatchObject({ remaining: 0, injected: 2 });
  });

  it('a fault removed by id stops at once; DELETE /faults removes them all', async () => {
    await e.control.setFaults([
      { id: 'down', kind: 'error', match: { path: '/api/machines' }, status: 500 },
      { id: 'slow', kind: 'latency', match: { path: '/api/alerts' }, minMs: 0, maxMs: 1 },
    ]);
    expect((await e.api.get('/api/machines')).status).toBe(500);
    await e.control.removeFault('down');
    await expect(e.control.removeFault('down')).rejects.toMatchObject({ status: 404 });
    expect((await e.api.get('/api/machines')).status).toBe(200);
    await e.control.call('DELETE', '/faults');
    expect(await e.control.faults()).toEqual([]);
  });

  it("a fault's count and a rule's count hold under a burst of 200 concurrent requests", async () => {
    await e.control.addFault({ kind: 'error', match: { path: '/api/machines' }, status: 500, times: 5 });
    const statuses = await Promise.all(Array.from({ length: 200 }, async () => (await e.api.get('/api/machines')).status));
    expect(statuses.filter((s) => s === 500)).toHaveLength(5);
    expect((await e.control.faults())[0]).toMatchObject({ remaining: 0, injected: 5 });
  });

  it('a latency range: the delay drawn from the seeded stream, then the route answers', async () => {
    await e.control.addFault({ id: 'slow', kind: 'latency', match: { path: '/api/machineactions' }, minMs: 150, maxMs: 200 });
    expect((await e.api.get('/api/machineactions')).status).toBe(200);
    expect((await e.api.get('/api/machines')).status).toBe(200);
    const [delayed, other] = await e.control.journal();
    expect(delayed!.faults).toHaveLength(1);
    const { delayMs } = delayed!.faults[0]!;
    expect(delayMs).toBeGreaterThanOrEqual(150);
    expect(delayMs).toBeLessThanOrEqual(200);
    // The request really waited: its latency includes the delay (a lower bound, never a timing goal).
    expect(delayed!.latencyMs).toBeGreaterThanOrEqual(delayMs! - 1);
    expect(other!.faults).toEqual([]);
  });

  it('a token endpoint outage answers as OAuth does, then ends', async () => {
    await e.control.addFault({ kind: 'outage', times: 1 });
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: e.setup.clientId, client_secret: TEST_SECRET, scope: 'https://api.securitycenter.microsoft.com/.default' });
    const down = await fetch(`${e.server.url}/${e.setup.tenantId}/oauth2/v2.0/token`, { method: 'POST', body: form });
    expect(down.status).toBe(503);
    expect(((await down.json()) as { error: string }).error).toBe('temporarily_unavailable');
    const up = await fetch(`${e.server.url}/${e.setup.tenantId}/oauth2/v2.0/token`, { method: 'POST', body: form });
    expect(up.status).toBe(200);
    // The API is not part of the outage.
    expect((await e.api.get('/api/machines')).status).toBe(200);
  });

  it('the journal records what clients called, filterable and clearable, with no secret in it', async () => {
    const secretQuery = `client_secret=${TEST_SECRET}&grant_type=client_credentials&client_id=${e.setup.clientId}&resource=https://api.securitycenter.microsoft.com`;
    await fetch(`${e.server.url}/${e.setup.tenantId}/oauth2/token?${secretQuery}`);
    const token = await appToken(e.server, e.setup.tenantId, e.setup.clientId);
    const api = new Client(e.server.url, { authorization: `Bearer ${token}`, cookie: 'session=cookie-secret-value' });
    const m = e.setup.machines[0]!;
    const created = await api.post(`/api/machines/${m.id}/isolate`, { Comment: 'journal' });
    await api.get(`/api/machineactions?$filter=status eq 'Pending'`);
    await api.get('/api/machineactions/not-a-guid');

    const all = await e.control.journal();
    expect(all.map((j) => `${j.method} ${j.path} ${j.status}`)).toEqual([
      `GET /${e.setup.tenantId}/oauth2/token 200`,
      `POST /${e.setup.tenantId}/oauth2/v2.0/token 200`,
      `POST /api/machines/${m.id}/isolate 201`,
      'GET /api/machineactions 200',
      'GET /api/machineactions/not-a-guid 400',
    ]);
    const isolate = all[2]!;
    expect(isolate.operation).toBe('Isolate');
    expect(isolate.caller).toEqual({ tenantId: e.setup.tenantId, kind: 'application', id: e.setup.clientId, name: 'Test App' });
    expect(isolate.requestId).toBe(created.headers.get('request-id'));
    expect(all[3]!.query).toBe("$filter=status eq 'Pending'".replace(/ /g, '%20').replace(/'/g, '%27'));
    expect(all[0]!.query).toContain('client_secret=[redacted]');

    const text = JSON.stringify(all);
    for (const secret of [TEST_SECRET, token, 'cookie-secret-value', 'Bearer']) expect(text).not.toContain(secret);

    expect((await e.control.journal({ method: 'POST', pathPrefix: '/api/' })).map((j) => j.operation)).toEqual(['Isolate']);
    expect((await e.control.journal({ status: 400 })).map((j) => j.path)).toEqual(['/api/machineactions/not-a-guid']);
    expect(await e.control.journal({ caller: 'Test App' })).toHaveLength(3);
    expect(await e.control.journal({ afterSeq: all[3]!.seq })).toHaveLength(1);
    expect(await e.control.journal({ since: '2999-01-01T00:00:00Z' })).toEqual([]);
    await e.control.clearJournal();
    expect(await e.control.journal()).toEqual([]);
  });

  it('the journal is a ring of the configured size', async () => {
    await e.control.settings({ journalSize: 3 });
    for (let i = 0; i < 5; i++) await e.api.get('/api/machines');
    const kept = await e.control.journal();
    expect(kept).toHaveLength(3);
    expect(kept[0]!.seq).toBe(3);
    await e.control.settings({ journalSize: 1000 });
  });

  it('quota usage per caller, from the rate limiter; 200 concurrent calls are all counted', async () => {
    await Promise.all(Array.from({ length: 200 }, () => e.api.get('/api/machines')));
    const quota = await e.control.quota('Test App');
    const machines = quota.find((q) => q.operation === 'ListMachines')!;
    expect(machines.callerId).toBe(e.setup.clientId);
    expect(machines.windows.map((w) => [w.limit, w.windowSeconds, w.used])).toEqual([
      [100, 60, 100],
      [1500, 3600, 100],
    ]);
    await e.control.reset();
    expect(await e.control.quota()).toEqual([]);
    expect((await e.api.get('/api/machines')).status).toBe(200); // the reset forgot the counts
  });
});

describe.each(BACKENDS)('no secret reaches the log through the control API (%s)', (backend) => {
  it('the admin token and the fixtures secrets are never logged', async () => {
    const lines: string[] = [];
    const e = await startEmulator({ backend, machines: 1, config: { logLevel: 'trace' } });
    try {
      await e.control.loadFixtures(e.setup.fixtures);
      await e.control.journal();
      await fetch(`${e.server.url}/_countermand/journal?token=x`, { headers: { authorization: 'Bearer wrong-token-value-123' } });
      lines.push(...e.server.logs);
      const text = lines.join('\n');
      expect(text).not.toContain('test-admin-token-0123456789abcdef');
      expect(text).not.toContain('wrong-token-value-123');
      expect(text).not.toContain(TEST_SECRET);
    } finally {
      await e.server.stop();
    }
  });
});
