import { request } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, startAgent, type RunningAgent } from '../support/agents.js';
import { appToken, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';

/**
 * Hostile input over HTTP: random OData, bodies, headers, ids, paths and multipart uploads.
 * Whatever arrives, the answer is never a 500, every error is in its envelope, and a refused
 * request writes nothing.
 */

const RUNS = 300;
const setup = makeFixtures(8);
let server: TestServer;
let token: string;
let agent: RunningAgent;
let agentToken: string;

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

function send(method: string, path: string, options: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const body = options.body;
    const req = request(
      `${server.url}${path}`,
      {
        method,
        headers: { ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const auth = () => ({ authorization: `Bearer ${token}` });

/** The contract's envelope: {"error": {"code", "message", "target": <request-id>}}. */
function expectEnvelope(res: Raw, context: string) {
  expect(res.status, `${context}: ${res.text.slice(0, 300)}`).toBeLessThan(500);
  if (res.status >= 400) {
    expect(res.headers['content-type'], context).toBe('application/json; charset=utf-8');
    expect(Object.keys(res.json ?? {}), context).toEqual(['error']);
    expect(typeof res.json.error.code, context).toBe('string');
    expect(typeof res.json.error.message, context).toBe('string');
    expect(res.json.error.target, context).toBe(res.headers['request-id']);
  }
}

async function actionCount(machineId: string): Promise<number> {
  const page = await server.store.listActions(setup.tenantId, {
    filter: { kind: 'compare', op: 'eq', property: 'machineId', value: { kind: 'string', value: machineId } },
    orderBy: [],
    top: 0,
    skip: 0,
    count: true,
    deviceGroups: null,
  });
  return page.count!;
}

beforeAll(async () => {
  server = await startTestServer({ fixtures: setup.fixtures, config: { rateLimitsEnabled: false, logLevel: 'warn', agentPollSeconds: 0.05 } });
  token = await appToken(server, setup.tenantId, setup.clientId);
  agent = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId), 'fuzz-agent.test', { '*': { durationMs: 60_000 } });
  agentToken = (await agent.state.loadCredentials())!.agentToken;
});
afterAll(async () => {
  await agent?.stop();
  // No request anywhere in this file ended in a 500 (the server logs each at error level).
  const failures = server?.logs.filter((l) => JSON.parse(l).msg === 'request failed') ?? [];
  await server?.stop();
  expect(failures).toEqual([]);
});

const FILTER_WORDS = ['status', 'machineId', 'type', 'id', 'requestor', 'creationDateTimeUtc', 'eq', 'ne', 'gt', 'in', 'and', 'or', 'not', 'startswith', '(', ')', ',', "'", "''", '2019-11-22T00:00:00Z', "'Pending'", '-1', '1e309', 'null', '/', '$', '%', '\\', '\u0000'];
const filterText = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.array(fc.constantFrom(...FILTER_WORDS), { maxLength: 30 }).map((words) => words.join(' ')),
);

describe('hostile input', () => {
  it('OData: any $filter, $top, $skip, $orderby or unknown option is a 200 or a 400 ODataError', async () => {
    await fc.assert(
      fc.asyncProperty(
        filterText,
        fc.constantFrom('/api/machineactions', '/api/machines'),
        fc.dictionary(fc.constantFrom('$top', '$skip', '$orderby', '$count', '$select', '$Filter', 'x', '$'), fc.string({ maxLength: 30 }), { maxKeys: 3 }),
        async (filter, path, extra) => {
          const query = [`$filter=${encodeURIComponent(filter)}`, ...Object.entries(extra).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)].join('&');
          const res = await send('GET', `${path}?${query}`, { headers: auth() });
          expectEnvelope(res, `${path}?${query}`);
          expect([200, 400]).toContain(res.status);
          if (res.status === 400) expect(['ODataError', 'BadRequest']).toContain(res.json.error.code);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('bodies: any JSON to any action route is 201 or a 4xx envelope, and a refusal writes nothing', async () => {
    const routes = ['isolate', 'unisolate', 'runAntiVirusScan', 'collectInvestigationPackage', 'restrictCodeExecution', 'unrestrictCodeExecution', 'offboard', 'StopAndQuarantineFile', 'runliveresponse'];
    const keys = ['Comment', 'comment', 'IsolationType', 'ScanType', 'Sha1', 'Commands', '__proto__', 'constructor', 'x'];
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom('Full', 'Quick', 'Selective', 'a'.repeat(40), 'A'.repeat(41)));
    const body = fc.oneof(
      fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 5 }).map((o) => JSON.stringify(o)),
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 100 }),
      fc.constant('{"Comment":"x","Commands":[{"type":"RunScript","params":[{"key":"ScriptName","value":"a/../b"}]}]}'),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), fc.integer({ min: 0, max: setup.machines.length - 1 }), body, async (route, m, text) => {
        const machine = setup.machines[m]!;
        const before = await actionCount(machine.id);
        const res = await send('POST', `/api/machines/${machine.id}/${route}`, {
          headers: { ...auth(), 'content-type': 'application/json' },
          body: text,
        });
        expectEnvelope(res, `${route} ${text}`);
        const after = await actionCount(machine.id);
        expect(after, `${route} ${text} -> ${res.status}`).toBe(before + (res.status === 201 ? 1 : 0));
        if (res.status === 201) {
          // Keep conflict groups free for the next runs.
          await send('POST', `/api/machineactions/${res.json.id}/cancel`, { headers: { ...auth(), 'content-type': 'application/json' }, body: '{"Comment":"fuzz"}' });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('headers: any Content-Type, Authorization or extra header gets a proper answer', async () => {
    const headerValue = fc.string({ maxLength: 80 }).map((s) => s.replace(/[^\t\x20-\x7e]/g, ''));
    await fc.assert(
      fc.asyncProperty(
        fc.option(headerValue),
        fc.option(fc.oneof(headerValue, headerValue.map((v) => `Bearer ${v}`), fc.constant(`Bearer ${token.slice(0, -3)}abc`))),
        fc.dictionary(fc.stringMatching(/^x-[a-z0-9-]{1,20}$/), headerValue, { maxKeys: 3 }),
        async (contentType, authorization, extra) => {
          const headers: Record<string, string> = { ...extra };
          if (contentType !== null) headers['content-type'] = contentType;
          if (authorization !== null) headers.authorization = authorization;
          const machine = setup.machines[0]!;
          const before = await actionCount(machine.id);
          const res = await send('POST', `/api/machines/${machine.id}/runAntiVirusScan`, { headers, body: '{"Comment":"h","ScanType":"Quick"}' });
          expectEnvelope(res, JSON.stringify(headers));
          expect([201, 400, 401, 403, 415]).toContain(res.status);
          expect(await actionCount(machine.id)).toBe(before + (res.status === 201 ? 1 : 0));
          if (res.status === 201) await send('POST', `/api/machineactions/${res.json.id}/cancel`, { headers: { ...auth(), 'content-type': 'application/json' }, body: '{"Comment":"fuzz"}' });
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('ids: any action or machine id in a path is a 400 or a 404 envelope', async () => {
    const id = fc.oneof(fc.string({ minLength: 1, maxLength: 300 }), fc.uuid(), fc.stringMatching(/^[0-9a-f]{40}$/), fc.string({ unit: 'binary', minLength: 1, maxLength: 50 }));
    await fc.assert(
      fc.asyncProperty(id, fc.constantFrom('action', 'cancel', 'machine', 'isolate'), async (raw, where) => {
        const key = encodeURIComponent(raw);
        const res =
          where === 'action'
            ? await send('GET', `/api/machineactions/${key}`, { headers: auth() })
            : where === 'cancel'
              ? await send('POST', `/api/machineactions/${key}/cancel`, { headers: { ...auth(), 'content-type': 'application/json' }, body: '{"Comment":"x"}' })
              : where === 'machine'
                ? await send('GET', `/api/machines/${key}`, { headers: auth() })
                : await send('POST', `/api/machines/${key}/isolate`, { headers: { ...auth(), 'content-type': 'application/json' }, body: '{"Comment":"x"}' });
        expectEnvelope(res, `${where} ${JSON.stringify(raw)}`);
        expect([400, 404]).toContain(res.status);
      }),
      { numRuns: RUNS },
    );
  });

  it('paths and methods: anything is a JSON answer, never a 500', async () => {
    const segment = fc.oneof(
      fc.constantFrom('api', 'API', 'v1.0', 'machines', 'machineactions', 'cancel', 'isolate', 'agent', 'v1', 'checkin', 'oauth2', 'token', 'v2.0', 'discovery', 'keys', '.well-known', '..', '.', '', setup.tenantId, setup.machines[0]!.id),
      fc.string({ maxLength: 20 }).map(encodeURIComponent),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 6 }), fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'), async (segments, method) => {
        const path = `/${segments.join('/')}`;
        const res = await send(method, path, { headers: { ...auth(), 'content-type': 'application/json' }, body: method === 'GET' ? undefined : '{}' });
        expect(res.status, `${method} ${path}: ${res.text.slice(0, 200)}`).toBeLessThan(500);
        if (res.status >= 400) {
          expect(res.json, `${method} ${path}`).toBeTypeOf('object');
          // /api and /agent answer with the envelope; the token service with OAuth's shape.
          expect(typeof res.json.error === 'string' || typeof res.json.error?.code === 'string', `${method} ${path}: ${res.text}`).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('multipart uploads: refused cleanly wherever they are sent, and nothing is written', async () => {
    const part = fc.record({
      name: fc.constantFrom('File', 'Description', 'Comment', 'OverrideIfExists', 'x'),
      filename: fc.option(fc.string({ maxLength: 30 }).map((s) => s.replace(/["\r\n]/g, ''))),
      content: fc.uint8Array({ maxLength: 2000 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(part, { maxLength: 4 }), fc.constantFrom('/api/libraryfiles', `/api/machines/${setup.machines[1]!.id}/runliveresponse`, `/api/machines/${setup.machines[1]!.id}/isolate`), fc.boolean(), async (parts, path, truncate) => {
        const boundary = '----countermandfuzz';
        const chunks: Buffer[] = [];
        for (const p of parts) {
          chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename !== null ? `; filename="${p.filename}"` : ''}\r\n\r\n`));
          chunks.push(Buffer.from(p.content));
          chunks.push(Buffer.from('\r\n'));
        }
        if (!truncate) chunks.push(Buffer.from(`--${boundary}--\r\n`));
        const before = await actionCount(setup.machines[1]!.id);
        const res = await send('POST', path, { headers: { ...auth(), 'content-type': `multipart/form-data; boundary=${boundary}` }, body: Buffer.concat(chunks) });
        expectEnvelope(res, path);
        expect([404, 415]).toContain(res.status);
        expect(await actionCount(setup.machines[1]!.id)).toBe(before);
      }),
      { numRuns: RUNS },
    );
  });

  it('the agent protocol: any body from an enrolled agent is answered, never a 500', async () => {
    const created = await send('POST', `/api/machines/${agent.machineId}/collectInvestigationPackage`, { headers: { ...auth(), 'content-type': 'application/json' }, body: '{"Comment":"fuzz"}' });
    expect(created.status).toBe(201);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/agent/v1/checkin', '/agent/v1/enroll', `/agent/v1/actions/${created.json.id}/report`, `/agent/v1/actions/${created.json.id}/progress`, `/agent/v1/actions/${created.json.id}/start`, '/agent/v1/actions/x/report'),
        fc.oneof(fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)), fc.string({ maxLength: 100 }), fc.dictionary(fc.constantFrom('running', 'reportId', 'status', 'errorHResult', 'troubleshootInfo', 'commands', 'enrollmentToken', 'machine', 'maxWaitSeconds'), fc.jsonValue({ maxDepth: 2 })).map((o) => JSON.stringify(o))),
        async (path, body) => {
          const res = await send('POST', path, { headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' }, body });
          expectEnvelope(res, `${path} ${body}`);
        },
      ),
      { numRuns: RUNS },
    );
    // Whatever was sent, the action is still a coherent one.
    const final = await send('GET', `/api/machineactions/${created.json.id}`, { headers: auth() });
    expect(['Pending', 'InProgress', 'Succeeded', 'Failed']).toContain(final.json.status);
  });

  it('the token service: any form is an OAuth answer, never a 500', async () => {
    const field = fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('client_credentials', 'password', setup.clientId, 'https://api.securitycenter.microsoft.com/.default', 'https://api.securitycenter.microsoft.com'));
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom('grant_type', 'client_id', 'client_secret', 'scope', 'resource', 'username', 'password', 'x'), field, { maxKeys: 6 }),
        fc.constantFrom(`/${setup.tenantId}/oauth2/v2.0/token`, `/${setup.tenantId}/oauth2/token`, '/not-a-tenant/oauth2/token'),
        fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain'),
        async (form, path, contentType) => {
          const res = await send('POST', path, { headers: { 'content-type': contentType }, body: new URLSearchParams(form).toString() });
          expect(res.status, res.text).toBeLessThan(500);
          if (res.status !== 200) {
            expect(typeof res.json.error).toBe('string');
            expect(typeof res.json.error_description).toBe('string');
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});
