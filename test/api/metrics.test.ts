import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';
import { parsePrometheus, value, type Samples } from '../support/prometheus.js';

/**
 * /metrics as Prometheus scrapes it: the values move as a client and an agent drive actions
 * (create, start, finish, cancel, a burst of 429s, a refused token, a bad bearer token), counts
 * stay exact under concurrent bursts, and the endpoint is served only as configured.
 */
const backends = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!PG_URL) console.warn('[metrics] PostgreSQL run skipped: COUNTERMAND_TEST_PG_URL is not set');

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

async function scrape(url: string, token: string | null = METRICS_TOKEN): Promise<Samples> {
  const res = await fetch(`${url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheus(await res.text());
}

const delta = (before: Samples, after: Samples, name: string, labels: Record<string, string> = {}) =>
  value(after, name, labels) - value(before, name, labels);

describe.each(backends)('metrics on %s', (backend) => {
  const setup = makeFixtures(3);
  let server: TestServer;
  let api: Client;
  let agent: RunningAgent;

  beforeAll(async () => {
    server = await startTestServer({
      fixtures: setup.fixtures,
      backend,
      // 50 calls per minute and endpoint: a burst of 200 meets the limit.
      // Undelivered actions time out after a second, but only when a test sweeps.
      config: {
        metricsToken: METRICS_TOKEN,
        metricsPort: 0,
        rateLimitScale: 0.5,
        agentPollSeconds: 5,
        deliveryWindowSeconds: 1,
        sweepIntervalSeconds: 3600,
      },
    });
    api = await appClient(server, setup);
    agent = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId), 'metrics.test', { '*': { durationMs: 50 } });
  });
  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
  });

  const statusOf = async (id: string) => (await server.store.getAction(setup.tenantId, id))?.status;

  it('counts actions created, started and finished, their times, check-ins, 401s, token failures and 429s as they happen', async () => {
    const before = await scrape(server.url);

    // Created and cancelled on a machine without an agent.
    const isolate = await api.post(`/api/machines/${setup.machines[0]!.id}/isolate`, { Comment: 'metrics', IsolationType: 'Full' });
    expect(isolate.status).toBe(201);
    expect((await api.post(`/api/machineactions/${isolate.body.id}/cancel`, { Comment: 'not needed' })).status).toBe(200);

    // Created, started and finished by the agent.
    const scan = await api.post(`/api/machines/${agent.machineId}/runAntiVirusScan`, { Comment: 'metrics', ScanType: 'Quick' });
    expect(scan.status).toBe(201);
    await waitUntil(async () => (await statusOf(scan.body.id)) === 'Succeeded', 15_000, 'the scan to succeed');

    // A refused token request and a bad bearer token.
    const refused = await fetch(`${server.url}/${setup.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: setup.clientId, client_secret: 'wrong', scope: 'https://api.securitycenter.microsoft.com/.default' }),
    });
    expect(refused.status).toBe(401);
    expect((await new Client(server.url, { authorization: 'Bearer not-a-token' }).get('/api/machines')).status).toBe(401);

    // 200 at once against a limit of 50 a minute: exactly 150 are 429.
    const burst = await Promise.all(Array.from({ length: 200 }, () => api.get('/api/alerts?$top=1')));
    expect(burst.filter((r) => r.status === 429)).toHaveLength(150);

    const after = await scrape(server.url);
    expect(delta(before, after, 'countermand_actions_created_total', { type: 'Isolate' })).toBe(1);
    expect(delta(before, after, 'countermand_actions_created_total', { type: 'RunAntiVirusScan' })).toBe(1);
    expect(delta(before, after, 'countermand_actions_started_total', { type: 'RunAntiVirusScan' })).toBe(1);
    expect(delta(before, after, 'countermand_actions_started_total', { type: 'Isolate' })).toBe(0);
    expect(delta(before, after, 'countermand_actions_finished_total', { type: 'Isolate', status: 'Cancelled' })).toBe(1);
    expect(delta(before, after, 'countermand_actions_finished_total', { type: 'RunAntiVirusScan', status: 'Succeeded' })).toBe(1);
    expect(delta(before, after, 'countermand_action_pickup_seconds_count', { type: 'RunAntiVirusScan' })).toBe(1);
    expect(delta(before, after, 'countermand_action_final_seconds_count', { type: 'RunAntiVirusScan', status: 'Succeeded' })).toBe(1);
    expect(delta(before, after, 'countermand_action_final_seconds_count', { type: 'Isolate', status: 'Cancelled' })).toBe(1);
    // The scan ran 50 ms after it was picked up: its time to the final status is at least that.
    expect(delta(before, after, 'countermand_action_final_seconds_sum', { type: 'RunAntiVirusScan', status: 'Succeeded' })).toBeGreaterThanOrEqual(0.05);
    expect(delta(before, after, 'countermand_action_final_seconds_bucket', { type: 'RunAntiVirusScan', status: 'Succeeded', le: '+Inf' })).toBe(1);
    expect(delta(before, after, 'countermand_token_failures_total', { error: 'invalid_client' })).toBe(1);
    expect(delta(before, after, 'countermand_unauthorized_total', { surface: 'api' })).toBe(1);
    expect(delta(before, after, 'countermand_rate_limited_total', { limit: 'api' })).toBe(150);
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'GET', route: '/api/alerts', status: '429' })).toBe(150);
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'GET', route: '/api/alerts', status: '200' })).toBe(50);
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'POST', route: '/api/machines/:id/isolate', status: '201' })).toBe(1);
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'POST', route: '/:tenant/oauth2/v2.0/token', status: '401' })).toBe(1);
    expect(delta(before, after, 'countermand_http_request_duration_seconds_count', { method: 'GET', route: '/api/alerts' })).toBe(200);
    // The agent's start and report went through the agent protocol's routes.
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'POST', route: '/agent/v1/actions/:id/start', status: '200' })).toBe(1);
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'POST', route: '/agent/v1/actions/:id/report', status: '200' })).toBe(1);
    // No route: counted apart, not by its raw URL.
    await api.get('/api/no-such-thing');
    const unmatched = await scrape(server.url);
    expect(delta(after, unmatched, 'countermand_http_requests_total', { method: 'GET', route: '(unmatched)', status: '404' })).toBe(1);
    expect([...unmatched.keys()].some((k) => k.includes('no-such-thing'))).toBe(false);
  });

  it('an agent waiting in its long poll is connected and waiting; every action type and final status is there from the start', async () => {
    const samples = await waitUntil(async () => {
      const s = await scrape(server.url);
      return value(s, 'countermand_agent_checkins_waiting') >= 1 ? s : null;
    });
    expect(value(samples, 'countermand_agents_connected')).toBe(1);
    for (const type of ['Isolate', 'Offboard', 'LiveResponse', 'StopAndQuarantineFile']) {
      expect(samples.has(`countermand_actions_created_total{type="${type}"}`), type).toBe(true);
      expect(samples.has(`countermand_actions_finished_total{status="TimeOut",type="${type}"}`), type).toBe(true);
    }
    // The process's own series too.
    expect(value(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
  });

  it('of 40 simultaneous cancels of one action, one finishes it: the count moves by one', async () => {
    const created = await api.post(`/api/machines/${setup.machines[1]!.id}/unisolate`, { Comment: 'to cancel' });
    expect(created.status).toBe(201);
    const before = await scrape(server.url);
    const results = await Promise.all(Array.from({ length: 40 }, () => api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'race' })));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    const after = await scrape(server.url);
    expect(delta(before, after, 'countermand_actions_finished_total', { type: 'Unisolate', status: 'Cancelled' })).toBe(1);
    const route = '/api/machineactions/:id/cancel';
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'POST', route, status: '200' })).toBe(1);
    expect(delta(before, after, 'countermand_http_requests_total', { method: 'POST', route, status: '400' })).toBe(39);
  });

  it('a timeout is counted as the final status TimeOut', async () => {
    // On a machine without an agent: the sweeper times it out once the delivery window is over.
    const created = await api.post(`/api/machines/${setup.machines[2]!.id}/collectInvestigationPackage`, { Comment: 'never picked up' });
    expect(created.status).toBe(201);
    const before = await scrape(server.url);
    await waitUntil(async () => (await server.sweeper.sweep()).timedOut === 1, 15_000, 'the sweeper to time the action out');
    expect(await statusOf(created.body.id)).toBe('TimeOut');
    const after = await scrape(server.url);
    expect(delta(before, after, 'countermand_actions_finished_total', { type: 'CollectInvestigationPackage', status: 'TimeOut' })).toBe(1);
  });

  it('/metrics needs the metrics token, on the API listener and on its own', async () => {
    for (const url of [server.url, server.metricsUrl!]) {
      const missing = await fetch(`${url}/metrics`);
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="countermand-metrics"');
      const body = (await missing.json()) as { error: { code: string; target: string } };
      expect(body.error.code).toBe('Unauthorized');
      expect(body.error.target).toBe(missing.headers.get('request-id'));
      expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
      // An MDE access token is not the metrics token.
      expect((await fetch(`${url}/metrics`, { headers: { authorization: (api as unknown as { headers: Record<string, string> }).headers.authorization! } })).status).toBe(401);
      await scrape(url);
    }
    // The metrics listener serves nothing else.
    const other = await fetch(`${server.metricsUrl}/api/machines`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('NotFound');
  });
});

describe('metrics without a metrics token', () => {
  const setup = makeFixtures(1);
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, config: { metricsPort: 0, maxConnectionsPerSource: 2 } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  // First: no client of this test holds a connection to the API listener yet (fetch keeps its own open).
  it("count the connection cap's refusals, which no route sees", async () => {
    const before = await scrape(server.metricsUrl!, null);
    const open = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(new URL(server.url).port), '127.0.0.1', () => resolve(socket));
        socket.once('error', reject);
      });
    const held = [await open(), await open()];
    const refused = await open();
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      refused.on('data', (chunk) => (text += String(chunk)));
      refused.once('close', () => resolve(text));
      refused.write('GET /api/machines HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    expect(answer).toMatch(/^HTTP\/1\.1 429 /);
    for (const socket of held) socket.destroy();
    const after = await scrape(server.metricsUrl!, null);
    expect(delta(before, after, 'countermand_rate_limited_total', { limit: 'connections' })).toBe(1);
  });

  it('are not served on the API listener (404 saying how), and openly on the loopback metrics listener', async () => {
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('NotFound');
    expect(body.error.message).toContain('COUNTERMAND_METRICS_TOKEN');
    expect(server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await scrape(server.metricsUrl!, null);
  });
});
