import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, loadConfig, ConfigError } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer } from '../../src/server.js';
import { enrollmentToken, waitUntil } from '../support/agents.js';
import { appToken, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { envelopeOf, parseResponses, rawExchange, type RawExchange } from '../support/raw-http.js';

/**
 * Slow clients and connection floods (docs/architecture.md, "Connections"): headers, whole
 * requests and idle keep-alive connections have deadlines, one address holds a bounded number
 * of connections, and the agent's long poll, which sends nothing while it waits, is cut by none
 * of it. Timeouts are configured short so the test's own time stays bounded; each assertion is
 * the configured bound, with room for a loaded machine, against the minutes it took before.
 */

const setup = makeFixtures(1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Writes `bytes` one at a time, `everyMs` apart, until the server closes. */
const trickle = (bytes: string, everyMs: number) => async (socket: net.Socket) => {
  for (const byte of bytes) {
    await sleep(everyMs);
    if (socket.destroyed || !socket.writable) return;
    socket.write(byte);
  }
};

/** Closed by the server within `boundMs`; if it answered, a 408 in the envelope. */
function expectTimedOut(result: RawExchange, boundMs: number) {
  expect(result.closedByServer, `still open after ${result.elapsedMs} ms`).toBe(true);
  expect(result.elapsedMs).toBeLessThan(boundMs);
  for (const response of result.responses) {
    expect(response.status).toBe(408);
    expect(envelopeOf(response).code).toBe('RequestTimeout');
    expect(response.headers.connection).toBe('close');
  }
}

describe('timeouts', () => {
  let server: TestServer;
  let port: number;
  // Headers 1 s, whole request 2 s, idle 3 s; the poll (4 s) outlasts every one of them.
  const timeouts = { headersTimeoutSeconds: 1, requestTimeoutSeconds: 2, keepAliveTimeoutSeconds: 3 };
  /** Each bound: the timeout, Node's check interval (a quarter of the shortest), and slack for load. */
  const HEADERS_BOUND_MS = 4000;
  const REQUEST_BOUND_MS = 5000;
  const LIMIT_MS = 15_000;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, config: { ...timeouts, agentPollSeconds: 4, rateLimitsEnabled: false } });
    port = Number(new URL(server.url).port);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('slow headers on the unauthenticated enroll route: a 408 and closed within the headers timeout', async () => {
    const result = await rawExchange(port, 'POST /agent/v1/enroll HTTP/1.1\r\nHost: x\r\n', {
      limitMs: LIMIT_MS,
      then: trickle(`X-Slow: ${'a'.repeat(100)}`, 250),
    });
    expectTimedOut(result, HEADERS_BOUND_MS);
  });

  it('a slow body on the enroll route (1 byte at a time): a 408 and closed within the request timeout', async () => {
    const head = 'POST /agent/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n';
    const result = await rawExchange(port, head, { limitMs: LIMIT_MS, then: trickle(' '.repeat(200), 250) });
    expectTimedOut(result, REQUEST_BOUND_MS);
  });

  it('a connection that never sends anything is closed within the headers timeout', async () => {
    expectTimedOut(await rawExchange(port, '', { limitMs: LIMIT_MS }), HEADERS_BOUND_MS);
  });

  it('an idle keep-alive connection is closed after the idle timeout, not the shorter request timeouts', async () => {
    const result = await rawExchange(port, 'GET /api/machines HTTP/1.1\r\nHost: x\r\n\r\n', { limitMs: LIMIT_MS });
    expect(result.responses.map((r) => r.status)).toEqual([401]);
    expect(result.closedByServer).toBe(true);
    // Kept past the headers and request timeouts (a pooled connection may wait for its next request)...
    expect(result.elapsedMs).toBeGreaterThan(2500);
    // ...and closed once idle for 3 s (Node adds a second of grace).
    expect(result.elapsedMs).toBeLessThan(8000);
  });

  it('timeouts are not an error: no 500 and nothing above info in the log', async () => {
    const lines = server.logs.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([]);
  });

  it('a long poll longer than every timeout still completes', async () => {
    const enrolled = await fetch(`${server.url}/agent/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enrollmentToken: await enrollmentToken(server.store, setup.tenantId), machine: { computerDnsName: 'poll.test' } }),
    });
    const { agentToken } = (await enrolled.json()) as { agentToken: string };
    const body = JSON.stringify({ running: [], maxWaitSeconds: 4 });
    const started = Date.now();
    const result = await rawExchange(
      port,
      `POST /agent/v1/checkin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${agentToken}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      { limitMs: LIMIT_MS, responses: 1 },
    );
    expect(result.responses.map((r) => [r.status, r.json])).toEqual([[200, { actions: [], stop: [] }]]);
    // It waited its poll time (4 s, jittered by 10%), past the request and idle timeouts.
    expect(Date.now() - started).toBeGreaterThan(3500);
  });
});

describe('open connections per source', () => {
  let server: TestServer;
  let port: number;
  const CAP = 20;
  const HELD_MS = 3000;
  const partial = 'GET /api/machines HTTP/1.1\r\nHost: x\r\n';

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, config: { maxConnectionsPerSource: CAP, headersTimeoutSeconds: 30, rateLimitsEnabled: false } });
    port = Number(new URL(server.url).port);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a burst of 200 connections from one address: exactly the cap is admitted, the rest get a 429 envelope', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, () => rawExchange(port, partial, { limitMs: HELD_MS, responses: 1 })));
    const refused = results.filter((r) => r.responses.length > 0);
    const held = results.filter((r) => r.responses.length === 0);
    expect(held).toHaveLength(CAP);
    expect(refused).toHaveLength(200 - CAP);
    for (const { responses } of refused) {
      const [response] = responses;
      expect(response!.status).toBe(429);
      expect(envelopeOf(response!).code).toBe('TooManyRequests');
      expect(envelopeOf(response!).message).toMatch(/at most 20/);
      expect(Number(response!.headers['retry-after'])).toBeGreaterThan(0);
      expect(response!.headers.connection).toBe('close');
    }
    // One warning for the address, not one per refused connection.
    const warnings = server.logs.filter((l) => JSON.parse(l).level === 40);
    expect(warnings).toHaveLength(1);
  });

  it('a refused client that already sent its whole request still reads the 429', async () => {
    // More than the cap, so that it is reached whatever order the probes and holders arrive in.
    const holders = Array.from({ length: CAP + 5 }, () => rawExchange(port, partial, { limitMs: HELD_MS }));
    await waitUntil(async () => {
      const probe = await rawExchange(port, 'GET /api/machines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { limitMs: 2000 });
      return probe.responses[0]?.status === 429 ? probe : null;
    }, 5000, 'the cap to be reached');
    const full = await rawExchange(port, `POST /agent/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n${' '.repeat(2000)}`, { limitMs: 2000 });
    expect(full.responses.map((r) => r.status)).toEqual([429]);
    await Promise.all(holders);
  });

  it('the cap is per address: another source is served while one is at the cap, and a closed slot is reused', async () => {
    const holders = Array.from({ length: CAP + 5 }, () => rawExchange(port, partial, { limitMs: HELD_MS }));
    await waitUntil(async () => {
      const probe = await rawExchange(port, 'GET /api/machines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { limitMs: 2000 });
      return probe.responses[0]?.status === 429;
    }, 5000, 'the cap to be reached');
    const other = await rawExchange(port, 'GET /api/machines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { localAddress: '127.0.0.2', limitMs: 2000 });
    expect(other.responses.map((r) => r.status)).toEqual([401]);
    await Promise.all(holders);
    // The held connections are gone: 127.0.0.1 is served again.
    await waitUntil(async () => {
      const again = await rawExchange(port, 'GET /api/machines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { limitMs: 2000 });
      return again.responses[0]?.status === 401;
    }, 5000, 'a slot to free');
  });

  it('a client with a keep-alive pool under the cap is not affected: 200 concurrent requests', async () => {
    const token = await appToken(server, setup.tenantId, setup.clientId);
    const { Agent, request } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: CAP / 2 });
    try {
      const statuses = await Promise.all(
        Array.from(
          { length: 200 },
          () =>
            new Promise<number>((resolve, reject) => {
              const req = request(`${server.url}/api/machines?$top=1`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode ?? 0));
              });
              req.on('error', reject);
              req.end();
            }),
        ),
      );
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
    } finally {
      agent.destroy();
    }
  });
});

describe('over HTTPS', () => {
  let server: TestServer;
  let port: number;
  let ca: Buffer;
  const dir = mkdtempSync(join(tmpdir(), 'countermand-tls-'));
  const CAP = 3;

  beforeAll(async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    ca = readFileSync(join(dir, 'cert.pem'));
    server = await startTestServer({
      fixtures: setup.fixtures,
      config: { tlsCertFile: join(dir, 'cert.pem'), tlsKeyFile: join(dir, 'key.pem'), headersTimeoutSeconds: 2, requestTimeoutSeconds: 4, maxConnectionsPerSource: CAP },
    });
    port = Number(new URL(server.url).port);
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A TLS connection that writes `data` and collects the answer until the server closes (or `limitMs`). */
  function tlsExchange(data: string, limitMs: number): Promise<{ text: string; closedByServer: boolean; socket: tls.TLSSocket }> {
    return new Promise((resolve) => {
      const socket = tls.connect({ port, host: '127.0.0.1', ca }, () => socket.write(data));
      let text = '';
      const timer = setTimeout(() => {
        socket.destroy();
        resolve({ text, closedByServer: false, socket });
      }, limitMs);
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearTimeout(timer);
        resolve({ text, closedByServer: true, socket });
      });
    });
  }

  it('a TCP connection that never starts its TLS handshake is closed within the headers timeout', async () => {
    const result = await rawExchange(port, '', { limitMs: 15_000 });
    expect(result.closedByServer).toBe(true);
    expect(result.elapsedMs).toBeLessThan(6000);
  });

  it('the per-source cap answers 429 in the envelope over TLS', async () => {
    // Six connections at once, each with its request half sent: three are held, three refused.
    const results = await Promise.all(Array.from({ length: CAP + 3 }, () => tlsExchange('GET /api/machines HTTP/1.1\r\nHost: x\r\n', 1500)));
    const answers = results.filter((r) => r.text !== '');
    expect(answers).toHaveLength(3);
    for (const { text, closedByServer } of answers) {
      expect(closedByServer).toBe(true);
      const response = parseResponses(Buffer.from(text))[0]!;
      expect(response.status).toBe(429);
      expect(envelopeOf(response).code).toBe('TooManyRequests');
    }
  });
});

describe('configuration', () => {
  it('each limit has a setting and an environment variable, and bad values are refused', () => {
    const config = loadConfig(
      {},
      {
        COUNTERMAND_HEADERS_TIMEOUT_SECONDS: '5',
        COUNTERMAND_REQUEST_TIMEOUT_SECONDS: '30',
        COUNTERMAND_KEEP_ALIVE_TIMEOUT_SECONDS: '10',
        COUNTERMAND_MAX_CONNECTIONS_PER_SOURCE: '0',
      },
    );
    expect([config.headersTimeoutSeconds, config.requestTimeoutSeconds, config.keepAliveTimeoutSeconds, config.maxConnectionsPerSource]).toEqual([5, 30, 10, 0]);
    expect(DEFAULT_CONFIG.maxConnectionsPerSource).toBeGreaterThan(0);
    expect(() => loadConfig({}, { COUNTERMAND_REQUEST_TIMEOUT_SECONDS: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({}, { COUNTERMAND_MAX_CONNECTIONS_PER_SOURCE: '-1' })).toThrow(/COUNTERMAND_MAX_CONNECTIONS_PER_SOURCE/);
    expect(() => loadConfig({}, { COUNTERMAND_HEADERS_TIMEOUT_SECONDS: '90', COUNTERMAND_REQUEST_TIMEOUT_SECONDS: '60' })).toThrow(/must not exceed/);
  });

  it('the demo fleet works under a cap smaller than what its agents need', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'countermand-test-'));
    const logs: string[] = [];
    const { Writable } = await import('node:stream');
    const sink = new Writable({
      write(chunk, _enc, done) {
        logs.push(...String(chunk).split('\n').filter(Boolean));
        done();
      },
    });
    const running = await startServer(
      { ...DEFAULT_CONFIG, port: 0, dataDir, demoFleetSize: 3, demoFleetSimulation: { '*': { durationMs: 0 } }, maxConnectionsPerSource: 1, agentPollSeconds: 1, logLevel: 'info' },
      createLogger('info', sink),
    );
    try {
      expect(running.fleet?.agents.map((a) => a.machineId !== null)).toEqual([true, true, true]);
      const demo = running.demo!;
      const token = await appToken(running, demo.tenantId, demo.clientId, demo.clientSecret);
      const machineId = running.fleet!.agents[2]!.machineId!;
      const created = await fetch(`${running.url}/api/machines/${machineId}/runAntiVirusScan`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{"Comment":"demo","ScanType":"Quick"}',
      });
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: string };
      await waitUntil(async () => {
        const res = await fetch(`${running.url}/api/machineactions/${id}`, { headers: { authorization: `Bearer ${token}` } });
        return ((await res.json()) as { status: string }).status === 'Succeeded';
      }, 20_000, 'the demo fleet to run the action');
      expect(logs.filter((l) => /per-source|cap on open connections/.test(l))).toEqual([]);
    } finally {
      await running.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
