import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/testing/index.js';
import { TEST_SECRET } from '../support/harness.js';
import { BACKENDS, startEmulator, type Emulator } from '../support/emulator.js';

/** What a response is, as a client could compare it: status, headers (but the connection's own) and the body's bytes. */
interface Seen {
  request: string;
  status: number;
  headers: Record<string, string>;
  body: string;
}

const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding']);

/**
 * A SOAR playbook as it would run in CI against the emulator: get a token, isolate a machine,
 * poll the action until it is InProgress, cancel it, check it is Cancelled. The seed and a
 * lifecycle rule make it repeatable.
 */
async function playbook(url: string, tenantId: string, clientId: string, machineId: string): Promise<Seen[]> {
  const seen: Seen[] = [];
  const call = async (method: string, path: string, init: RequestInit = {}) => {
    const res = await fetch(`${url}${path}`, { method, ...init });
    const body = await res.text();
    const headers: Record<string, string> = {};
    res.headers.forEach((value, key) => {
      if (!CONNECTION_HEADERS.has(key)) headers[key] = value;
    });
    seen.push({ request: `${method} ${path}`, status: res.status, headers, body });
    return JSON.parse(body) as Record<string, any>;
  };
  const token = await call('POST', `/${tenantId}/oauth2/token`, {
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: TEST_SECRET, resource: 'https://api.securitycenter.microsoft.com' }),
  });
  const auth = { authorization: `Bearer ${token.access_token}`, 'content-type': 'application/json' };
  const action = await call('POST', `/api/machines/${machineId}/isolate`, { headers: auth, body: JSON.stringify({ Comment: 'playbook: beaconing', IsolationType: 'Full' }) });
  let status = action.status as string;
  for (let polls = 0; status !== 'InProgress' && polls < 20; polls++) {
    status = (await call('GET', `/api/machineactions/${action.id}`, { headers: auth })).status;
  }
  await call('POST', `/api/machineactions/${action.id}/cancel`, { headers: auth, body: JSON.stringify({ Comment: 'playbook: false positive' }) });
  await call('GET', `/api/machineactions/${action.id}`, { headers: auth });
  return seen;
}

describe.each(BACKENDS)('a playbook against the emulator, twice with one seed (%s)', (backend) => {
  const emulator = {
    seed: 'playbook-1',
    rules: [{ id: 'slow-isolate', match: { actionType: 'Isolate' as const }, start: { afterReads: 2 }, finish: 'never' as const }],
  };
  let a: Emulator;
  let b: Emulator;
  beforeAll(async () => {
    a = await startEmulator({ backend, machines: 2, emulator });
    b = await startEmulator({ backend, setup: a.setup });
  });
  afterAll(async () => {
    await a?.server.stop();
    await b?.server.stop();
  });

  it('gives the same responses byte for byte, and the journal shows what it called', async () => {
    const run = async (e: Emulator) => {
      await e.control.reset();
      return playbook(e.server.url, e.setup.tenantId, e.setup.clientId, e.setup.machines[0]!.id);
    };
    const first = await run(a);
    const second = await run(a);
    expect(second).toEqual(first);

    const statuses = first.slice(1).map((s) => `${s.request.split(' ')[0]} ${s.status} ${JSON.parse(s.body).status}`);
    expect(statuses).toEqual(['POST 201 Pending', 'GET 200 Pending', 'GET 200 Pending', 'GET 200 InProgress', 'POST 200 Cancelled', 'GET 200 Cancelled']);
    const cancelled = JSON.parse(first.at(-1)!.body);
    expect(cancelled.cancellationComment).toBe('playbook: false positive');
    expect(cancelled.creationDateTimeUtc).toBe('2025-01-01T00:00:00.0000000Z');

    const journal = await a.control.journal();
    expect(journal.map((j) => [j.method, j.path, j.status, j.operation])).toEqual([
      ['POST', `/${a.setup.tenantId}/oauth2/token`, 200, null],
      ['POST', `/api/machines/${a.setup.machines[0]!.id}/isolate`, 201, 'Isolate'],
      ['GET', `/api/machineactions/${cancelled.id}`, 200, 'GetMachineAction'],
      ['GET', `/api/machineactions/${cancelled.id}`, 200, 'GetMachineAction'],
      ['GET', `/api/machineactions/${cancelled.id}`, 200, 'GetMachineAction'],
      ['POST', `/api/machineactions/${cancelled.id}/cancel`, 200, 'CancelMachineAction'],
      ['GET', `/api/machineactions/${cancelled.id}`, 200, 'GetMachineAction'],
    ]);
    expect(journal.map((j) => j.requestId)).toEqual(first.map((s) => s.headers['request-id']));

    // Another server with the same fixtures and seed: the same, except the token's signature
    // (each data dir has its own signing key) and the server's own URL in @odata.context.
    const other = await run(b);
    const comparable = (seen: Seen[], url: string) =>
      seen.map((s, i) => ({
        ...s,
        body: (i === 0 ? s.body.replace(/"access_token":"[^"]+"/, '"access_token":"…"') : s.body).replaceAll(url, '<base>'),
        headers: { ...s.headers, 'content-length': i === 0 ? '' : s.headers['content-length']! },
      }));
    expect(comparable(other, b.server.url)).toEqual(comparable(first, a.server.url));
  });

  it('the ControlClient drives the same in one line each', async () => {
    const control = new ControlClient(a.server.url, 'test-admin-token-0123456789abcdef');
    await control.reset();
    await control.addRule({ match: { actionType: 'Isolate' }, start: 'step', finish: 'step' });
    const seen = await fetch(`${a.server.url}/${a.setup.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: a.setup.clientId, client_secret: TEST_SECRET, scope: 'https://api.securitycenter.microsoft.com/.default' }),
    });
    expect(seen.status).toBe(200);
    expect(await control.journal({ pathPrefix: `/${a.setup.tenantId}/oauth2` })).toHaveLength(1);
  });
});
