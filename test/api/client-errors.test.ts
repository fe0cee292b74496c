import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, waitUntil } from '../support/agents.js';
import { appToken, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { envelopeOf, rawExchange, type RawResponse } from '../support/raw-http.js';

/**
 * Answers given outside a route (Node's HTTP parser, Fastify's router, shutdown) still carry the
 * contract's envelope and a request id (contract §1); a client that hangs up mid-request is not
 * a server error. Everything is sent over bare sockets, byte for byte, as an attacker does.
 */

const setup = makeFixtures(2);
let server: TestServer;
let port: number;
let token: string;
let agentToken: string;
let actionId: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One request on a fresh connection; the single answer it gets. */
async function exchange(data: string | Buffer): Promise<{ response: RawResponse; closedByServer: boolean }> {
  const result = await rawExchange(port, data, { limitMs: 5000 });
  expect(result.responses, `no answer to ${JSON.stringify(String(data).slice(0, 120))}`).toHaveLength(1);
  return { response: result.responses[0]!, closedByServer: result.closedByServer };
}

/** The contract's error shape: status, envelope, content type, request-id = target. */
function expectError(response: RawResponse, status: number, code: string) {
  expect(response.status, response.body).toBe(status);
  expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(response.headers['request-id']).toMatch(/^[0-9a-f-]{36}$/);
  const error = envelopeOf(response);
  expect(error.code).toBe(code);
  return error;
}

const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n${extra}Connection: close\r\n\r\n`;

beforeAll(async () => {
  server = await startTestServer({ fixtures: setup.fixtures, config: { rateLimitsEnabled: false, logLevel: 'debug', agentPollSeconds: 30 } });
  port = Number(new URL(server.url).port);
  token = await appToken(server, setup.tenantId, setup.clientId);
  const enrolled = await fetch(`${server.url}/agent/v1/enroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ enrollmentToken: await enrollmentToken(server.store, setup.tenantId), machine: { computerDnsName: 'hangup.test' } }),
  });
  const agent = (await enrolled.json()) as { machineId: string; agentToken: string };
  agentToken = agent.agentToken;
  const created = await fetch(`${server.url}/api/machines/${agent.machineId}/collectInvestigationPackage`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: '{"Comment":"hang-up"}',
  });
  actionId = ((await created.json()) as { id: string }).id;
});
afterAll(async () => {
  await server?.stop();
});

describe('answers outside a route carry the envelope and a request id', () => {
  const parserCases: [string, string, number, string, RegExp][] = [
    ['a header line without a colon', 'GET /api/machines HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400, 'BadRequest', /not valid HTTP/],
    ['a control character in a header value', 'GET /api/machines HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n', 400, 'BadRequest', /not valid HTTP/],
    ['a space before the colon', 'GET /api/machines HTTP/1.1\r\nHost : x\r\n\r\n', 400, 'BadRequest', /not valid HTTP/],
    ['Content-Length with Transfer-Encoding', 'POST /agent/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'BadRequest', /Content-Length/],
    ['two different Content-Lengths', 'POST /agent/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', 400, 'BadRequest', /not valid HTTP/],
    ['a chunk size that is not hexadecimal', 'POST /agent/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n', 400, 'BadRequest', /chunk/],
    ['a chunk longer than its size', 'POST /agent/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}}\r\n0\r\n\r\n', 400, 'BadRequest', /not valid HTTP/],
    ['headers over 16 KiB', `GET /api/machines HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'RequestHeaderFieldsTooLarge', /16384 bytes/],
    ['not HTTP at all', 'HELLO\r\n\r\n', 400, 'BadRequest', /not valid HTTP/],
  ];
  it.each(parserCases)('%s: the parser refusal is in the envelope, and the connection closes', async (_name, data, status, code, message) => {
    const { response, closedByServer } = await exchange(data);
    const error = expectError(response, status, code);
    expect(error.message).toMatch(message);
    expect(response.headers.connection).toBe('close');
    expect(closedByServer).toBe(true);
  });

  it('every parser refusal gets its own request id, and it is in the server log', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add((await exchange('GET / HTTP/1.1\r\nBad Header\r\n\r\n')).response.headers['request-id']!);
    expect(ids.size).toBe(5);
    for (const id of ids) expect(server.logs.some((l) => l.includes(id))).toBe(true);
  });

  it.each([
    ['/api/machines/%C0%AE', 'an overlong UTF-8 dot'],
    ['/api/machines/%C0%AE%C0%AE/isolate', 'overlong dots before an action'],
    ['/api/%FF', 'a byte that is not UTF-8'],
    ['/api/machineactions/%FF', 'a bad byte as an action id'],
    ['/agent/v1/actions/%E0%80/start', 'a truncated sequence on an agent route'],
  ])('%s (%s): a malformed URL is a 400 envelope with its request id', async (path) => {
    const { response } = await exchange(get(path));
    expectError(response, 400, 'BadRequest');
  });

  it.each([101, 150, 200, 256])('a machine key of %i characters is an unknown machine: 404 ResourceNotFound', async (length) => {
    const key = 'k'.repeat(length);
    for (const path of [`/api/machines/${key}`]) {
      const { response } = await exchange(get(path));
      const error = expectError(response, 404, 'ResourceNotFound');
      expect(error.message).toBe(`Machine ${key} was not found`);
    }
    const isolate = `POST /api/machines/${key}/isolate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{"Comment":"x"}`;
    const { response } = await exchange(isolate);
    expect(expectError(response, 404, 'ResourceNotFound').message).toBe(`Machine ${key} was not found`);
  });

  it('a key longer than any machine key is also an unknown machine, and a long action id is not a GUID', async () => {
    const { response } = await exchange(get(`/api/machines/${'k'.repeat(5000)}`));
    expect(expectError(response, 404, 'ResourceNotFound').message).toBe(`Machine ${'k'.repeat(256)} was not found`);
    const action = await exchange(get(`/api/machineactions/${'a'.repeat(300)}`));
    expect(expectError(action.response, 400, 'BadRequest').message).toMatch(/Edm\.Guid/);
  });

  it('an Expect header other than 100-continue is a 417 envelope', async () => {
    const { response } = await exchange(get('/api/machines', 'Expect: teapot\r\n'));
    expect(expectError(response, 417, 'ExpectationFailed').message).toMatch(/teapot/);
  });

  it('a request that arrives while the server shuts down is a 503 envelope', async () => {
    const s = await startTestServer({ fixtures: setup.fixtures, config: { rateLimitsEnabled: false } });
    const sPort = Number(new URL(s.url).port);
    let stopped: Promise<void> | null = null;
    const result = await rawExchange(sPort, 'GET /api/machines HTTP/1.1\r\nHost: x\r\n', {
      limitMs: 10_000,
      then: async (socket) => {
        // The request is under way (headers half sent) when the shutdown begins.
        await sleep(100);
        stopped = s.stop();
        await sleep(200);
        socket.write('\r\n');
      },
    });
    await stopped;
    expect(result.responses).toHaveLength(1);
    expectError(result.responses[0]!, 503, 'ServiceUnavailable');
    expect(result.responses[0]!.headers.connection).toBe('close');
  });
});

describe('a client that hangs up mid-request', () => {
  /** Connects, sends `head` and part of a body, and hangs up. */
  async function hangUp(head: string) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write(head);
    await sleep(50);
    socket.destroy();
  }
  const body = (path: string, auth: string | null) =>
    `POST ${path} HTTP/1.1\r\nHost: x\r\n${auth ? `Authorization: Bearer ${auth}\r\n` : ''}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"Comm`;

  it('is not a 500 and not an error: one debug line each, and the server keeps serving', async () => {
    const before = server.logs.length;
    const heads = [
      body('/agent/v1/enroll', null),
      body(`/api/machines/${setup.machines[0]!.id}/isolate`, token),
      body(`/agent/v1/actions/${actionId}/report`, agentToken),
      body('/agent/v1/checkin', agentToken),
      'GET /api/machines HTTP/1.1\r\nHost: x\r\nAuthorization: Bear',
    ];
    // The same burst a slow-connection test produced, many times over.
    await Promise.all(Array.from({ length: 20 }, (_, i) => hangUp(heads[i % heads.length]!)));
    const bodies = 16; // the four heads with a partial body, four times each
    await waitUntil(() => server.logs.slice(before).filter((l) => JSON.parse(l).msg === 'client hung up before the request was complete').length >= bodies, 10_000, 'the debug lines');
    const lines = server.logs.slice(before).map((l) => JSON.parse(l) as { level: number; msg: string; res?: { statusCode?: number } });
    expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([]);
    expect(lines.filter((l) => l.msg === 'request failed')).toEqual([]);
    expect(lines.filter((l) => l.res?.statusCode === 500)).toEqual([]);
    const hungUp = lines.filter((l) => l.msg === 'client hung up before the request was complete');
    expect(hungUp.every((l) => l.level === 20)).toBe(true);
    expect(hungUp).toHaveLength(bodies);
    const after = await fetch(`${server.url}/api/machines`, { headers: { authorization: `Bearer ${token}` } });
    expect(after.status).toBe(200);
  });

  it('during a long poll, is not an error either', async () => {
    const before = server.logs.length;
    // An action would be delivered at once: it is started and listed as running, so the poll waits.
    await fetch(`${server.url}/agent/v1/actions/${actionId}/start`, { method: 'POST', headers: { authorization: `Bearer ${agentToken}` } });
    const payload = JSON.stringify({ running: [actionId], maxWaitSeconds: 30 });
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write(`POST /agent/v1/checkin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${agentToken}\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\n\r\n${payload}`);
    await sleep(300);
    socket.destroy();
    await waitUntil(() => server.logs.slice(before).some((l) => /request completed/.test(l)), 10_000, 'the poll to end');
    const lines = server.logs.slice(before).map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([]);
  });
});
