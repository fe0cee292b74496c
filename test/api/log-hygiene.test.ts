import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, startAgent, waitUntil } from '../support/agents.js';
import { Client, TEST_SECRET, appToken, makeFixtures, startTestServer, userToken, type TestServer } from '../support/harness.js';

/**
 * Logs never hold credentials: with logging at its most verbose, a run through every way a
 * secret travels (token requests by form, Basic and query string, bearer tokens good and bad,
 * passwords, enrollment tokens, agent credentials) leaves none of them in any log line.
 */
const PASSWORD = 'a-user-password-42';
const METRICS_TOKEN = 'the-metrics-token-0123456789';
const setup = makeFixtures(2);
setup.fixtures.tenants[0]!.users = [
  { upn: 'ana@test.local', password: PASSWORD, scopes: ['Machine.Read'], rolePermissions: ['View data'] },
];

/** A GET with the request target exactly as given (fetch would normalise it). */
function rawGet(base: string, target: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(base, { method: 'GET', path: target }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

// Both formats: pretty lines are made from the same (redacted) records as JSON lines.
describe.each(['json', 'pretty'] as const)('log hygiene (%s lines)', (logFormat) => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, config: { logLevel: 'trace', logFormat, agentPollSeconds: 0.2, metricsToken: METRICS_TOKEN } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('no secret, password, token or credential appears in the logs', async () => {
    const secrets: string[] = [TEST_SECRET, PASSWORD];
    const access = await appToken(server, setup.tenantId, setup.clientId);
    secrets.push(access, access.split('.')[2]!);
    const delegated = await userToken(server, setup.tenantId, 'ana@test.local', PASSWORD);
    secrets.push(delegated, delegated.split('.')[2]!);

    // Client credentials by HTTP Basic, and as a GET query string (some clients do).
    const basic = Buffer.from(`${setup.clientId}:${TEST_SECRET}`).toString('base64');
    secrets.push(basic);
    await fetch(`${server.url}/${setup.tenantId}/oauth2/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&resource=https://api.securitycenter.microsoft.com',
    });
    await fetch(`${server.url}/${setup.tenantId}/oauth2/token?grant_type=client_credentials&client_id=${setup.clientId}&client_secret=${TEST_SECRET}&resource=https://api.securitycenter.microsoft.com`);
    // Parameter names are secret by what they decode to: percent-encoded, in another case, with
    // '+' for a space, after a ';' or '#', or in a URL the server cannot even route.
    const disguised = ['client%5Fsecret', 'pass%77ord', 'CLIENT_SECRET', 'Client-Secret', '%70assword', 'access%5ftoken'];
    for (const [i, name] of disguised.entries()) {
      const value = `disguised-secret-${i}-value`;
      secrets.push(value);
      await fetch(`${server.url}/${setup.tenantId}/oauth2/token?grant_type=password&username=ana%40test.local&${name}=${value}&resource=x`);
    }
    secrets.push('after-a-semicolon-secret', 'after-a-hash-secret', 'unroutable-path-secret');
    await fetch(`${server.url}/${setup.tenantId}/oauth2/token?grant_type=x;client_secret=after-a-semicolon-secret`);
    await rawGet(server.url, `/${setup.tenantId}/oauth2/token?grant_type=x#password=after-a-hash-secret`);
    await rawGet(server.url, `/%zz%C0/oauth2/token?client%5Fsecret=unroutable-path-secret`);
    // Wrong secrets and passwords are secrets too.
    const wrong = 'wrong-secret-but-still-secret-99';
    secrets.push(wrong);
    await fetch(`${server.url}/${setup.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'password', username: 'ana@test.local', password: wrong, scope: 'https://api.securitycenter.microsoft.com/.default' }),
    });

    // Bearer tokens, valid and not.
    const api = new Client(server.url, { authorization: `Bearer ${access}` });
    const machine = setup.machines[0]!.id;
    await api.get('/api/machines');
    await api.post(`/api/machines/${machine}/isolate`, { Comment: 'logged?' });
    await api.get('/api/machineactions/not-a-guid');
    const forged = `${access.slice(0, -10)}AAAAAAAAAA`;
    secrets.push(forged);
    await new Client(server.url, { authorization: `Bearer ${forged}` }).get('/api/machines');
    await new Client(server.url, { authorization: 'Bearer not-a-jwt-but-a-secret-value' }).get('/api/machines');
    secrets.push('not-a-jwt-but-a-secret-value');

    // Enrollment and agent credentials.
    const enrollment = await enrollmentToken(server.store, setup.tenantId);
    secrets.push(enrollment, enrollment.split('.')[1]!);
    const agent = await startAgent(server.url, enrollment, 'hygiene.test', { '*': { durationMs: 10 } });
    const credential = (await agent.state.loadCredentials())!.agentToken;
    secrets.push(credential);
    const created = await api.post(`/api/machines/${agent.machineId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Quick' });
    await waitUntil(async () => (await api.get(`/api/machineactions/${created.body.id}`)).body.status === 'Succeeded');
    await new Client(server.url).post('/agent/v1/enroll', { enrollmentToken: `${enrollment.split('.')[0]}.wrong-enrollment-secret`, machine: { computerDnsName: 'x' } });
    secrets.push('wrong-enrollment-secret');
    await agent.stop();

    // The metrics token, right and wrong.
    secrets.push(METRICS_TOKEN, 'a-wrong-metrics-token-987654');
    expect((await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status).toBe(200);
    expect((await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer a-wrong-metrics-token-987654' } })).status).toBe(401);

    const logs = server.logs.join('\n');
    expect(server.logs.length).toBeGreaterThan(30); // verbose logging really ran
    for (const secret of secrets) expect(logs.includes(secret), `a log line holds ${secret.slice(0, 12)}...`).toBe(false);
    expect(logs).toContain('client_secret=[redacted]');
    expect(logs).toContain('client%5Fsecret=[redacted]');
    expect(logs).toContain('pass%77ord=[redacted]');
    if (logFormat === 'pretty') {
      // A time, a level and the message on the line; never a JSON object per line.
      expect(server.logs.some((line) => /^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|DEBUG|TRACE): /.test(line))).toBe(true);
      expect(server.logs.some((line) => line.startsWith('{'))).toBe(false);
    } else {
      for (const line of server.logs) expect(() => JSON.parse(line)).not.toThrow();
    }
  });
});
