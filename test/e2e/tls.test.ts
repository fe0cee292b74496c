import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { SimulatedExecutor } from '../../src/agent/executors/simulated.js';
import { MemoryState } from '../../src/agent/state.js';
import { DEMO_TENANT_ID } from '../../src/demo.js';
import { enrollmentToken, startAgent, waitUntil } from '../support/agents.js';
import { cleanup, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';

/** HTTPS: the server listens with a certificate and key; an agent pins the CA. */
const dir = mkdtempSync(join(tmpdir(), 'countermand-tls-'));
function selfSigned(name: string) {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`),
    '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

const setup = makeFixtures(0);
let server: TestServer;
let other: { cert: string };

beforeAll(async () => {
  const tls = selfSigned('server');
  other = selfSigned('other');
  server = await startTestServer({
    // The demo fleet joins only the demo tenant.
    fixtures: { tenants: [...setup.fixtures.tenants, { id: DEMO_TENANT_ID, name: 'Countermand Demo' }] },
    config: { tlsCertFile: tls.cert, tlsKeyFile: tls.key, agentPollSeconds: 2, demoFleetSize: 1 },
  });
});
afterAll(async () => {
  await server?.stop();
  cleanup(dir);
});

function httpsGet(url: string, ca: Buffer, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS', () => {
  it('serves the API and the agent protocol over HTTPS; an agent that pins the CA works', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = readFileSync(server.config.tlsCertFile!);
    // The token endpoint and the API over HTTPS (fetch cannot pin a CA, so node:https).
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: setup.clientId,
      client_secret: 'test-secret-0123456789',
      scope: 'https://api.securitycenter.microsoft.com/.default',
    }).toString();
    const token = await new Promise<string>((resolve, reject) => {
      const req = request(`${server.url}/${setup.tenantId}/oauth2/v2.0/token`, {
        method: 'POST',
        ca,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form) },
      }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(JSON.parse(text).access_token));
      });
      req.on('error', reject);
      req.end(form);
    });
    expect(await httpsGet(`${server.url}/api/machines`, ca, { authorization: `Bearer ${token}` })).toBe(200);

    const a = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId), 'tls-agent.test', {}, undefined, ca);
    const created = await new Promise<string>((resolve, reject) => {
      const body = JSON.stringify({ Comment: 'over https' });
      const req = request(`${server.url}/api/machines/${a.machineId}/isolate`, {
        method: 'POST',
        ca,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(JSON.parse(text).id));
      });
      req.on('error', reject);
      req.end(body);
    });
    await waitUntil(async () => (await server.store.getAction(setup.tenantId, created))?.status === 'Succeeded', 10_000, 'Succeeded');
    await a.stop();
  });

  it('the in-process demo fleet connects over HTTPS too', async () => {
    await waitUntil(() => server.fleet?.agents[0]?.machineId, 10_000, 'the fleet agent');
  });

  it('an agent that pins another CA, or none, refuses the server', async () => {
    const token = await enrollmentToken(server.store, setup.tenantId);
    for (const ca of [readFileSync(other.cert), undefined]) {
      const agent = new Agent({
        serverUrl: server.url,
        ...(ca ? { ca } : {}),
        enrollmentToken: token,
        machine: { computerDnsName: 'mitm.test' },
        state: new MemoryState(),
        executor: new SimulatedExecutor(),
      });
      await expect(agent.start()).rejects.toThrow(/certificate/i);
    }
  });

  it('the agent cannot pin a CA for a plain-HTTP server', () => {
    expect(
      () =>
        new Agent({
          serverUrl: 'http://127.0.0.1:1',
          ca: readFileSync(other.cert),
          machine: { computerDnsName: 'x' },
          state: new MemoryState(),
          executor: new SimulatedExecutor(),
        }),
    ).toThrow(/https/);
  });
});
