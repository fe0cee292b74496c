import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedFleet } from '../../src/agent/fleet.js';
import { DEMO_TENANT_ID } from '../../src/demo.js';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';

/**
 * findbyip (contract §2 row 20) over HTTP: the machines seen with an internal IP within 15
 * minutes before or after a timestamp, from the IP history that check-ins record.
 */
const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
const names = (res: { body: { value: { computerDnsName: string }[] } }) => res.body.value.map((m) => m.computerDnsName).sort();

const backends = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!PG_URL) console.warn('[findbyip] PostgreSQL run skipped: COUNTERMAND_TEST_PG_URL is not set');

describe.each(backends)('findbyip on %s', (backend) => {
  const setup = makeFixtures(3);
  let server: TestServer;
  let api: Client;
  const agents: RunningAgent[] = [];
  const [m0, m1, m2] = setup.machines;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { rateLimitScale: 1000 } });
    api = await appClient(server, setup);
    const now = Date.now();
    // History as check-ins left it: m0 had 10.5.0.1 from 60 to 40 minutes ago, then 10.5.0.2
    // until now; m1 had 10.5.0.1 20 minutes ago; m2 (another device group) has 10.5.0.1 now.
    const checkin = (id: string, at: number, ...ips: string[]) =>
      server.store.recordCheckin(setup.tenantId, id, at, {
        lastIpAddress: ips[0],
        ipAddresses: ips.map((ipAddress) => ({ ipAddress, macAddress: null, type: 'eth0', operationalStatus: 'Up' })),
      });
    for (let t = now - 60 * MIN; t <= now - 40 * MIN; t += 5 * MIN) await checkin(m0!.id, t, '10.5.0.1', 'fe80::1%eth0');
    for (let t = now - 39 * MIN; t <= now; t += 5 * MIN) await checkin(m0!.id, t, '10.5.0.2');
    await checkin(m1!.id, now - 20 * MIN, '10.5.0.1');
    await checkin(m2!.id, now, '10.5.0.1');
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await server?.stop();
  });

  const find = (ip: string, timestamp: string, client = api) => client.get(`/api/machines/findbyip(ip='${ip}',timestamp=${timestamp})`);

  it('answers a Machines collection of the machines seen with the address inside the window', async () => {
    const now = Date.now();
    const res = await find('10.5.0.1', iso(now - 50 * MIN));
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8');
    expect(res.body['@odata.context']).toBe(`${server.baseUrl}/api/$metadata#Machines`);
    expect(names(res)).toEqual([m0!.computerDnsName]);
    expect(Object.keys(res.body.value[0])).toContain('lastIpAddress');
    // 30 minutes ago: m0's last sighting with it (40 min) and m1's (20 min) are both within 15 minutes.
    expect(names(await find('10.5.0.1', iso(now - 30 * MIN)))).toEqual([m0!.computerDnsName, m1!.computerDnsName].sort());
    // Now: m1's sighting was 20 minutes ago, outside the window; m2 is seen now.
    expect(names(await find('10.5.0.1', iso(now)))).toEqual([m2!.computerDnsName]);
    expect(names(await find('10.5.0.2', iso(now - 10 * MIN)))).toEqual([m0!.computerDnsName]);
    // IPv6 in any spelling, the zone id dropped.
    expect(names(await find('FE80:0:0::1', iso(now - 45 * MIN)))).toEqual([m0!.computerDnsName]);
  });

  it('finds nothing outside the window', async () => {
    const now = Date.now();
    // 16 minutes before m0 was first seen with 10.5.0.1, and 16 minutes after it last was (then only m1, 20 min ago).
    expect((await find('10.5.0.1', iso(now - 76 * MIN - 1000))).body.value).toEqual([]);
    expect(names(await find('10.5.0.1', iso(now - 24 * MIN + 1000)))).toEqual([m1!.computerDnsName]);
    expect((await find('10.5.0.2', iso(now - 56 * MIN))).body.value).toEqual([]);
    // An address nobody had.
    expect((await find('10.5.0.99', iso(now))).body.value).toEqual([]);
  });

  it('reads the call as clients send it: any case, percent-encoded, quoted timestamps, offsets', async () => {
    const now = Date.now();
    const t = iso(now - 50 * MIN);
    const variants = [
      `/api/machines/FindByIp(ip='10.5.0.1',timestamp=${t})`,
      `/api/v1.0/machines/findbyip(IP='10.5.0.1',TimeStamp=${t})`,
      `/api/machines/findbyip(ip=%2710.5.0.1%27,timestamp=${encodeURIComponent(t)})`,
      `/api/machines/findbyip${encodeURIComponent(`(ip='10.5.0.1',timestamp=${t})`)}`,
      `/api/machines/findbyip(timestamp='${t}',ip='10.5.0.1')`,
      `/api/machines/findbyip(ip='10.5.0.1',timestamp=${new Date(now - 50 * MIN).toISOString()})`,
      `/api/machines/findbyip(ip='10.5.0.1',timestamp=${encodeURIComponent(iso(now - 50 * MIN + 2 * 3_600_000).replace('Z', '+02:00'))})`,
    ];
    for (const path of variants) {
      const res = await api.get(path);
      expect(res.status, `${path}: ${res.text}`).toBe(200);
      expect(names(res), path).toEqual([m0!.computerDnsName]);
    }
  });

  it('a bad address, a bad timestamp, or one outside the last 30 days is 400 in the envelope', async () => {
    const now = Date.now();
    const cases: [string, RegExp][] = [
      [`/api/machines/findbyip(ip='10.5.0.300',timestamp=${iso(now)})`, /'ip'/],
      [`/api/machines/findbyip(ip='host.local',timestamp=${iso(now)})`, /'ip'/],
      [`/api/machines/findbyip(ip='10.5.0.1',timestamp=yesterday)`, /'timestamp'/],
      [`/api/machines/findbyip(ip='10.5.0.1',timestamp=2024-02-30T00:00:00Z)`, /'timestamp'/],
      [`/api/machines/findbyip(ip='10.5.0.1',timestamp=${iso(now - 31 * 24 * 60 * MIN)})`, /last 30 days/],
      [`/api/machines/findbyip(ip='10.5.0.1',timestamp=${iso(now + 15 * 60 * MIN)})`, /last 30 days/],
      [`/api/machines/findbyip(ip='10.5.0.1')`, /'timestamp' is missing/],
      [`/api/machines/findbyip(ip='10.5.0.1',timestamp=${iso(now)},x=1)`, /unknown parameter/],
      [`/api/machines/findbyip(ip='10.5.0.1,timestamp=${iso(now)})`, /not closed/],
      [`/api/machines/findbyip(ip='10.5.0.1',ip='10.5.0.2',timestamp=${iso(now)})`, /twice/],
      ['/api/machines/findbyip()', /'ip' is missing/],
    ];
    for (const [path, message] of cases) {
      const res = await api.get(path);
      expect(res.status, path).toBe(400);
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(res.body.error.code, path).toBe('InvalidInput');
      expect(res.body.error.message, path).toMatch(message);
      expect(res.body.error.target).toBe(res.headers.get('request-id'));
    }
    // A timestamp a few hours ahead (a client's local time labelled Z) is accepted, and finds nobody yet.
    const ahead = await find('10.5.0.1', iso(now + 2 * 60 * MIN));
    expect(ahead.status).toBe(200);
    expect(ahead.body.value).toEqual([]);
  });

  it('is a GET with the machine read permissions; other methods are 405', async () => {
    const res = await api.post(`/api/machines/findbyip(ip='10.5.0.1',timestamp=${iso(Date.now())})`, {});
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect((await new Client(server.url).get(`/api/machines/findbyip(ip='10.5.0.1',timestamp=${iso(Date.now())})`)).status).toBe(401);
  });

  it('a machine whose name starts with findbyip is still found by name', async () => {
    const s = makeFixtures(0);
    s.fixtures.tenants[0]!.machines = [{ computerDnsName: 'findbyip-01.test.local' }];
    const other = await startTestServer({ fixtures: s.fixtures, backend });
    try {
      const c = await appClient(other, s);
      const res = await c.get('/api/machines/FINDBYIP-01.test.local');
      expect(res.status, res.text).toBe(200);
      expect(res.body.computerDnsName).toBe('findbyip-01.test.local');
      expect((await c.get('/api/machines/findbyip-02.test.local')).body.error.code).toBe('ResourceNotFound');
    } finally {
      await other.stop();
    }
  });

  it("an agent's check-ins record its own addresses, which findbyip then finds", async () => {
    const token = await enrollmentToken(server.store, setup.tenantId);
    const a = await startAgent(server.url, token, 'walker.test', { '*': { durationMs: 50 } }, undefined, undefined, {
      lastIpAddress: '10.6.0.7',
      ipAddresses: [{ ipAddress: '10.6.0.7', macAddress: '02-00-0A-06-00-07', type: 'eth0', operationalStatus: 'Up' }],
    });
    agents.push(a);
    const found = await waitUntil(async () => {
      const res = await find('10.6.0.7', iso(Date.now()));
      return res.body.value.length > 0 ? res : undefined;
    }, 10_000, 'the agent to be found by its address');
    expect(found.body.value.map((m: { id: string; lastIpAddress: string }) => [m.id, m.lastIpAddress])).toEqual([[a.machineId, '10.6.0.7']]);
  });
});

describe('the demo fleet', () => {
  it('has distinct, plausible addresses that findbyip tells apart', async () => {
    // The fleet joins the demo tenant only.
    const setup = makeFixtures(0);
    setup.fixtures.tenants[0]!.id = DEMO_TENANT_ID;
    setup.tenantId = DEMO_TENANT_ID;
    const server = await startTestServer({ fixtures: setup.fixtures, config: { demoFleetSize: 3, rateLimitScale: 1000 } });
    try {
      const api = await appClient(server, setup);
      const fleet = await waitUntil(async () => {
        const res = await api.get('/api/machines');
        const all = res.body.value as { computerDnsName: string; lastIpAddress: string; ipAddresses: { ipAddress: string }[] }[];
        return all.length === 3 && all.every((m) => m.lastIpAddress?.startsWith('10.200.')) ? all : undefined;
      }, 10_000, 'the fleet to check in');
      expect(fleet.map((m) => [m.computerDnsName, m.lastIpAddress, m.ipAddresses.map((a) => a.ipAddress)])).toEqual(
        [0, 1, 2].map((i) => [SimulatedFleet.machineName(i, 'demo.countermand.local'), `10.200.0.${i + 2}`, [`10.200.0.${i + 2}`]]),
      );
      const res = await api.get(`/api/machines/findbyip(ip='10.200.0.3',timestamp=${iso(Date.now())})`);
      expect(names(res)).toEqual([SimulatedFleet.machineName(1, 'demo.countermand.local')]);
    } finally {
      await server.stop();
    }
  });
});
