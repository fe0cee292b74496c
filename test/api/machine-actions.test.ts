import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, appClient, makeFixtures, startTestServer, type TestMachine, type TestServer } from '../support/harness.js';
import { ensureLibraryFile } from '../support/library.js';

/**
 * The machine-actions API over real HTTP against a started server (contract §1-§4, §6). Every
 * test takes machines nobody else uses, so tests do not depend on each other.
 */

const ENTITY_FIELDS = [
  '@odata.context',
  'id',
  'type',
  'title',
  'requestor',
  'requestorComment',
  'status',
  'machineId',
  'computerDnsName',
  'creationDateTimeUtc',
  'lastUpdateDateTimeUtc',
  'cancellationRequestor',
  'cancellationComment',
  'cancellationDateTimeUtc',
  'errorHResult',
  'scope',
  'externalId',
  'requestSource',
  'relatedFileInfo',
  'commands',
  'troubleshootInfo',
];
const ODATA_CT = 'application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8';
const SHA1 = 'a'.repeat(40);
const TIME_7 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let server: TestServer;
let api: Client;
let pool: TestMachine[];
const setup = makeFixtures(60);

/** A machine no other test has touched. */
function freshMachine(): TestMachine {
  const machine = pool.shift();
  if (!machine) throw new Error('machine pool exhausted: raise makeFixtures(n)');
  return machine;
}

function expectEnvelope(res: { status: number; headers: Headers; body: any }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(Object.keys(res.body)).toEqual(['error']);
  expect(Object.keys(res.body.error)).toEqual(['code', 'message', 'target']);
  expect(res.body.error.code).toBe(code);
  expect(typeof res.body.error.message).toBe('string');
  expect(res.body.error.target).toBe(res.headers.get('request-id'));
}

beforeAll(async () => {
  // Limits are raised: these tests send hundreds of calls to one endpoint within a minute.
  server = await startTestServer({ fixtures: setup.fixtures, config: { rateLimitScale: 1000 } });
  api = await appClient(server, setup);
  pool = [...setup.machines];
  // Live response runs only what the library holds.
  await ensureLibraryFile(api, 'script.sh');
});
afterAll(async () => {
  await server?.stop();
});

const ACTIONS: { route: string; type: string; body: Record<string, unknown>; scope: string | null }[] = [
  { route: 'isolate', type: 'Isolate', body: { Comment: 'c', IsolationType: 'Selective' }, scope: 'Selective' },
  { route: 'unisolate', type: 'Unisolate', body: { Comment: 'c' }, scope: null },
  { route: 'runAntiVirusScan', type: 'RunAntiVirusScan', body: { Comment: 'c', ScanType: 'Quick' }, scope: 'Quick' },
  { route: 'collectInvestigationPackage', type: 'CollectInvestigationPackage', body: { Comment: 'c' }, scope: null },
  { route: 'restrictCodeExecution', type: 'RestrictCodeExecution', body: { Comment: 'c' }, scope: null },
  { route: 'unrestrictCodeExecution', type: 'UnrestrictCodeExecution', body: { Comment: 'c' }, scope: null },
  { route: 'offboard', type: 'Offboard', body: { Comment: 'c' }, scope: null },
  { route: 'StopAndQuarantineFile', type: 'StopAndQuarantineFile', body: { Comment: 'c', Sha1: SHA1 }, scope: null },
  {
    route: 'runliveresponse',
    type: 'LiveResponse',
    body: {
      Comment: 'c',
      Commands: [
        { type: 'PutFile', params: [{ key: 'FileName', value: 'script.sh' }] },
        { type: 'RunScript', params: [{ key: 'ScriptName', value: 'script.sh' }, { key: 'Args', value: '--noargs' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/var/log/syslog' }] },
      ],
    },
    scope: null,
  },
];

describe('creating actions', () => {
  it.each(ACTIONS)('POST /api/machines/{id}/$route answers 201 with the MachineAction', async (a) => {
    const machine = freshMachine();
    const res = await api.post(`/api/machines/${machine.id}/${a.route}`, a.body);
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe(ODATA_CT);
    expect(res.headers.get('odata-version')).toBe('4.0');
    expect(res.headers.get('request-id')).toMatch(GUID);
    const body = res.body;
    expect(Object.keys(body)).toEqual(ENTITY_FIELDS);
    expect(body['@odata.context']).toBe(`${server.url}/api/$metadata#MachineActions/$entity`);
    expect(body.id).toMatch(GUID);
    expect(body.type).toBe(a.type);
    expect(body.title).toBeNull();
    expect(body.requestor).toBe('Test App');
    expect(body.requestorComment).toBe('c');
    expect(body.status).toBe('Pending');
    expect(body.machineId).toBe(machine.id);
    expect(body.computerDnsName).toBe(machine.computerDnsName);
    expect(body.creationDateTimeUtc).toMatch(TIME_7);
    expect(body.lastUpdateDateTimeUtc).toBe(body.creationDateTimeUtc);
    expect(body.cancellationRequestor).toBeNull();
    expect(body.cancellationComment).toBeNull();
    expect(body.cancellationDateTimeUtc).toBeNull();
    expect(body.errorHResult).toBe(0);
    expect(body.scope).toBe(a.scope);
    expect(body.externalId).toBeNull();
    expect(body.requestSource).toBe('PublicApi');
    expect(body.troubleshootInfo).toBeNull();
    if (a.type === 'StopAndQuarantineFile') {
      expect(body.relatedFileInfo).toEqual({ fileIdentifier: SHA1, fileIdentifierType: 'Sha1' });
    } else {
      expect(body.relatedFileInfo).toBeNull();
    }
    if (a.type === 'LiveResponse') {
      expect(body.commands).toHaveLength(3);
      expect(Object.keys(body.commands[0])).toEqual(['index', 'startTime', 'endTime', 'commandStatus', 'errors', 'command']);
      expect(body.commands[1]).toEqual({
        index: 1,
        startTime: null,
        endTime: null,
        commandStatus: 'Created',
        errors: [],
        command: { type: 'RunScript', params: [{ key: 'ScriptName', value: 'script.sh' }, { key: 'Args', value: '--noargs' }] },
      });
    } else {
      expect(body.commands).toEqual([]);
    }

    // The stored action reads back identically.
    const read = await api.get(`/api/machineactions/${body.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(body);
  });

  it('defaults IsolationType to Full and ignores unknown extra fields', async () => {
    const machine = freshMachine();
    const res = await api.post(`/api/machines/${machine.id}/isolate`, { Comment: 'x', Isolationtype: 'Selective', Extra: 1 });
    expect(res.status).toBe(201);
    expect(res.body.scope).toBe('Full');
  });

  it('accepts the machine aadDeviceId in action routes', async () => {
    const machine = freshMachine();
    const res = await api.post(`/api/machines/${machine.aadDeviceId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Full' });
    expect(res.status).toBe(201);
    expect(res.body.machineId).toBe(machine.id);
  });

  it('matches paths case-insensitively, under /api/v1.0, with doubled slashes, and with a charset', async () => {
    const machine = freshMachine();
    const a = await api.post(`/API/Machines/${machine.id}/stopandquarantinefile`, { Comment: 'x', Sha1: 'b'.repeat(40) });
    expect(a.status).toBe(201);
    const b = await api.post(`/api/v1.0/machines/${machine.id}/StopAndQuarantineFile`, { Comment: 'x', Sha1: 'c'.repeat(40) }, {
      'content-type': 'application/json; charset=utf-8',
    });
    expect(b.status).toBe(201);
    const c = await api.get(`/api//machineactions/${a.body.id}`);
    expect(c.status).toBe(200);
    const d = await api.get(`/api/V1.0/MachineActions/${b.body.id.toUpperCase()}`);
    expect(d.status).toBe(200);
    expect(d.body.id).toBe(b.body.id);
  });

  it('accepts and ignores a JSON body on GET', async () => {
    const res = await api.request('GET', '/api/machines', {}, { 'content-type': 'application/json' });
    expect(res.status).toBe(200);
  });
});

describe('body validation', () => {
  const cases: [string, string, unknown, number, string, RegExp?][] = [
    ['missing Comment', 'isolate', { IsolationType: 'Full' }, 400, 'MissingRequiredParameter', /Comment/],
    ['Comment in the wrong case', 'unisolate', { comment: 'x' }, 400, 'MissingRequiredParameter', /Comment/],
    ['missing ScanType', 'runAntiVirusScan', { Comment: 'x' }, 400, 'MissingRequiredParameter', /ScanType/],
    ['missing Sha1', 'StopAndQuarantineFile', { Comment: 'x' }, 400, 'MissingRequiredParameter', /Sha1/],
    ['missing Commands', 'runliveresponse', { Comment: 'x' }, 400, 'MissingRequiredParameter', /Commands/],
    ['Comment not a string', 'isolate', { Comment: 5 }, 400, 'InvalidRequestBody', /Comment/],
    ['unknown IsolationType', 'isolate', { Comment: 'x', IsolationType: 'Partial' }, 400, 'InvalidRequestBody', /IsolationType/],
    ['enum in the wrong case', 'runAntiVirusScan', { Comment: 'x', ScanType: 'quick' }, 400, 'InvalidRequestBody', /ScanType/],
    ['Sha1 not 40 hex', 'StopAndQuarantineFile', { Comment: 'x', Sha1: 'xyz' }, 400, 'InvalidRequestBody', /Sha1/],
    ['body an array', 'isolate', [], 400, 'InvalidRequestBody'],
    ['body a string', 'isolate', '"text"', 400, 'InvalidRequestBody'],
    ['unparseable JSON', 'isolate', '{"Comment": ', 400, 'InvalidRequestBody'],
    ['prototype pollution', 'isolate', '{"Comment":"x","__proto__":{"a":1}}', 400, 'InvalidRequestBody'],
    [
      'live-response command out of order',
      'runliveresponse',
      {
        Comment: 'x',
        Commands: [
          { type: 'GetFile', params: [{ key: 'Path', value: '/a' }] },
          { type: 'PutFile', params: [{ key: 'FileName', value: 'a' }] },
        ],
      },
      400,
      'InvalidRequestBody',
      /order/,
    ],
    [
      'live-response command without its parameter',
      'runliveresponse',
      { Comment: 'x', Commands: [{ type: 'RunScript', params: [{ key: 'Args', value: '1' }] }] },
      400,
      'MissingRequiredParameter',
      /ScriptName/,
    ],
    [
      'unknown live-response command type',
      'runliveresponse',
      { Comment: 'x', Commands: [{ type: 'RunCommand', params: [] }] },
      400,
      'InvalidRequestBody',
      /type/,
    ],
    [
      'a script the library does not hold',
      'runliveresponse',
      { Comment: 'x', Commands: [{ type: 'RunScript', params: [{ key: 'ScriptName', value: 'never-uploaded.sh' }] }] },
      400,
      'InvalidInput',
      /Commands\[0\].*never-uploaded\.sh/,
    ],
    [
      'library file name with a path',
      'runliveresponse',
      { Comment: 'x', Commands: [{ type: 'PutFile', params: [{ key: 'FileName', value: '../etc/passwd' }] }] },
      400,
      'InvalidInput',
      /FileName/,
    ],
  ];
  it.each(cases)('%s -> %i %s', async (_name, route, body, status, code, message) => {
    const machine = freshMachine();
    const res = await api.post(`/api/machines/${machine.id}/${route}`, body);
    expectEnvelope(res, status, code);
    if (message) expect(res.body.error.message).toMatch(message);
    // Nothing was written.
    const list = await api.get(`/api/machineactions?$filter=machineId eq '${machine.id}'&$count=true`);
    expect(list.body['@odata.count']).toBe(0);
  });

  it('a body over 1 MiB -> 413', async () => {
    const machine = freshMachine();
    const res = await api.post(`/api/machines/${machine.id}/isolate`, { Comment: 'x'.repeat(1024 * 1024 + 10) });
    expectEnvelope(res, 413, 'RequestEntityTooLarge');
  });

  it('a POST without a JSON content type -> 415', async () => {
    const machine = freshMachine();
    const text = await api.post(`/api/machines/${machine.id}/isolate`, 'Comment=x', { 'content-type': 'text/plain' });
    expectEnvelope(text, 415, 'UnsupportedMediaType');
    const form = await api.post(`/api/machines/${machine.id}/isolate`, 'Comment=x', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expectEnvelope(form, 415, 'UnsupportedMediaType');
    const none = await api.request('POST', `/api/machines/${machine.id}/isolate`);
    expectEnvelope(none, 415, 'UnsupportedMediaType');
  });

  it('an empty body with a JSON content type -> 400 InvalidRequestBody', async () => {
    const machine = freshMachine();
    const res = await api.request('POST', `/api/machines/${machine.id}/isolate`, undefined, { 'content-type': 'application/json' });
    expectEnvelope(res, 400, 'InvalidRequestBody');
  });
});

describe('lookups and routes', () => {
  it('unknown machine -> 404 ResourceNotFound naming it', async () => {
    const id = 'f'.repeat(40);
    const res = await api.post(`/api/machines/${id}/isolate`, { Comment: 'x' });
    expectEnvelope(res, 404, 'ResourceNotFound');
    expect(res.body.error.message).toBe(`Machine ${id} was not found`);
    const get = await api.get(`/api/machines/${id}`);
    expectEnvelope(get, 404, 'ResourceNotFound');
  });

  it('GET /api/machines/{id} accepts the id, the aadDeviceId and the computer DNS name', async () => {
    const machine = freshMachine();
    for (const key of [machine.id, machine.aadDeviceId, machine.computerDnsName, machine.computerDnsName.toUpperCase()]) {
      const res = await api.get(`/api/machines/${encodeURIComponent(key)}`);
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(machine.id);
      expect(res.body['@odata.context']).toBe(`${server.url}/api/$metadata#Machines/$entity`);
    }
  });

  it('the Machine entity carries every field of contract §9 in order', async () => {
    const machine = freshMachine();
    const res = await api.get(`/api/machines/${machine.id}`);
    expect(Object.keys(res.body)).toEqual([
      '@odata.context',
      'id',
      'computerDnsName',
      'firstSeen',
      'lastSeen',
      'osPlatform',
      'osVersion',
      'osProcessor',
      'version',
      'osBuild',
      'lastIpAddress',
      'lastExternalIpAddress',
      'agentVersion',
      'osArchitecture',
      'healthStatus',
      'defenderAvStatus',
      'onboardingStatus',
      'deviceValue',
      'rbacGroupId',
      'rbacGroupName',
      'riskScore',
      'exposureLevel',
      'isAadJoined',
      'aadDeviceId',
      'machineTags',
      'ipAddresses',
    ]);
    expect(res.body.firstSeen).toMatch(TIME_7);
    expect(res.body.rbacGroupId).toBe(machine.rbacGroupId);
  });

  it('a non-GUID action id -> 400 BadRequest with the Edm.Guid message', async () => {
    const res = await api.get('/api/machineactions/not-a-guid');
    expectEnvelope(res, 400, 'BadRequest');
    expect(res.body.error.message).toBe(
      "The key value (not-a-guid) from request is not valid. The key value should be format of type 'Edm.Guid'.",
    );
    const cancel = await api.post('/api/machineactions/123/cancel', { Comment: 'x' });
    expectEnvelope(cancel, 400, 'BadRequest');
  });

  it('an unknown action -> 404 NotFound', async () => {
    const res = await api.get('/api/machineactions/00000000-0000-4000-8000-000000000000');
    expectEnvelope(res, 404, 'NotFound');
    const cancel = await api.post('/api/machineactions/00000000-0000-4000-8000-000000000000/cancel', { Comment: 'x' });
    expectEnvelope(cancel, 404, 'NotFound');
  });

  it('an unknown route -> 404 NotFound in the envelope', async () => {
    expectEnvelope(await api.get('/api/nothing-here'), 404, 'NotFound');
    expectEnvelope(await api.post('/api/machines/x/reboot', { Comment: 'x' }), 404, 'NotFound');
    // `/` is the Action Center (test/api/action-center-static.test.ts); other paths stay 404.
    expectEnvelope(await api.get('/nothing-here'), 404, 'NotFound');
  });

  it('a known route with the wrong method -> 405 with Allow', async () => {
    const machine = freshMachine();
    const del = await api.request('DELETE', `/api/machines/${machine.id}`);
    expectEnvelope(del, 405, 'MethodNotAllowed');
    expect(del.headers.get('allow')).toBe('GET, HEAD');
    const get = await api.get(`/api/machines/${machine.id}/isolate`);
    expectEnvelope(get, 405, 'MethodNotAllowed');
    expect(get.headers.get('allow')).toBe('POST');
    const put = await api.request('PUT', '/api/v1.0/machineactions', {});
    expectEnvelope(put, 405, 'MethodNotAllowed');
  });

  it('logs each request with its request id', async () => {
    const res = await api.get('/api/machineactions/00000000-0000-4000-8000-00000000abcd');
    const id = res.headers.get('request-id');
    const lines = server.logs.filter((line) => line.includes(id!));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.some((line) => JSON.parse(line).reqId === id)).toBe(true);
  });
});

describe('conflict groups', () => {
  const groups: [string, unknown, string, unknown][] = [
    ['isolate', { Comment: 'x' }, 'unisolate', { Comment: 'y' }],
    ['restrictCodeExecution', { Comment: 'x' }, 'unrestrictCodeExecution', { Comment: 'y' }],
    ['runAntiVirusScan', { Comment: 'x', ScanType: 'Quick' }, 'runAntiVirusScan', { Comment: 'y', ScanType: 'Full' }],
    ['collectInvestigationPackage', { Comment: 'x' }, 'collectInvestigationPackage', { Comment: 'y' }],
    ['offboard', { Comment: 'x' }, 'offboard', { Comment: 'y' }],
    ['StopAndQuarantineFile', { Comment: 'x', Sha1: SHA1 }, 'StopAndQuarantineFile', { Comment: 'y', Sha1: SHA1.toUpperCase() }],
    [
      'runliveresponse',
      { Comment: 'x', Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/a' }] }] },
      'runliveresponse',
      { Comment: 'y', Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/b' }] }] },
    ],
  ];
  it.each(groups)('%s then %s on one machine -> 400 ActiveRequestAlreadyExists; after cancel it is allowed', async (r1, b1, r2, b2) => {
    const machine = freshMachine();
    const first = await api.post(`/api/machines/${machine.id}/${r1}`, b1);
    expect(first.status).toBe(201);
    const second = await api.post(`/api/machines/${machine.id}/${r2}`, b2);
    expectEnvelope(second, 400, 'ActiveRequestAlreadyExists');
    expect(second.body.error.message).toBe('Action is already in progress');
    const cancel = await api.post(`/api/machineactions/${first.body.id}/cancel`, { Comment: 'clear it' });
    expect(cancel.status).toBe(200);
    const third = await api.post(`/api/machines/${machine.id}/${r2}`, b2);
    expect(third.status).toBe(201);
  });

  it('different groups, other machines and other files do not conflict', async () => {
    const [m1, m2] = [freshMachine(), freshMachine()];
    expect((await api.post(`/api/machines/${m1.id}/isolate`, { Comment: 'x' })).status).toBe(201);
    expect((await api.post(`/api/machines/${m1.id}/restrictCodeExecution`, { Comment: 'x' })).status).toBe(201);
    expect((await api.post(`/api/machines/${m2.id}/isolate`, { Comment: 'x' })).status).toBe(201);
    expect((await api.post(`/api/machines/${m1.id}/StopAndQuarantineFile`, { Comment: 'x', Sha1: '1'.repeat(40) })).status).toBe(201);
    expect((await api.post(`/api/machines/${m1.id}/StopAndQuarantineFile`, { Comment: 'x', Sha1: '2'.repeat(40) })).status).toBe(201);
  });
});

describe('cancel', () => {
  it('cancels a Pending action: 200, status Cancelled, the three cancellation fields, same id', async () => {
    const machine = freshMachine();
    const created = await api.post(`/api/machines/${machine.id}/runAntiVirusScan`, { Comment: 'scan', ScanType: 'Full' });
    const res = await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'not needed' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(ODATA_CT);
    expect(Object.keys(res.body)).toEqual(ENTITY_FIELDS);
    expect(res.body.id).toBe(created.body.id);
    expect(res.body.status).toBe('Cancelled');
    expect(res.body.cancellationRequestor).toBe('Test App');
    expect(res.body.cancellationComment).toBe('not needed');
    expect(res.body.cancellationDateTimeUtc).toMatch(TIME_7);
    expect(res.body.lastUpdateDateTimeUtc).toBe(res.body.cancellationDateTimeUtc);
    expect(res.body.requestorComment).toBe('scan');
    const read = await api.get(`/api/machineactions/${created.body.id}`);
    expect(read.body).toEqual(res.body);
  });

  it('cancelling a final action -> 400 BadRequest naming the status, and nothing changes', async () => {
    const machine = freshMachine();
    const created = await api.post(`/api/machines/${machine.id}/offboard`, { Comment: 'x' });
    const first = await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'first' });
    expect(first.status).toBe(200);
    const second = await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'second' });
    expectEnvelope(second, 400, 'BadRequest');
    expect(second.body.error.message).toMatch(/Cancelled/);
    const read = await api.get(`/api/machineactions/${created.body.id}`);
    expect(read.body).toEqual(first.body);
    const events = await server.store.listEvents(setup.tenantId, created.body.id);
    expect(events.map((e) => [e.fromStatus, e.toStatus])).toEqual([
      [null, 'Pending'],
      ['Pending', 'Cancelled'],
    ]);
  });

  it('cancel requires a Comment', async () => {
    const machine = freshMachine();
    const created = await api.post(`/api/machines/${machine.id}/isolate`, { Comment: 'x' });
    const res = await api.post(`/api/machineactions/${created.body.id}/cancel`, {});
    expectEnvelope(res, 400, 'MissingRequiredParameter');
    expect((await api.get(`/api/machineactions/${created.body.id}`)).body.status).toBe('Pending');
  });

  it('200 simultaneous cancels of one Pending action: exactly one 200 and one history event', async () => {
    const machine = freshMachine();
    const created = await api.post(`/api/machines/${machine.id}/isolate`, { Comment: 'race' });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: `cancel ${i}` })),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 400)).toHaveLength(199);
    for (const r of results.filter((x) => x.status === 400)) expect(r.body.error.code).toBe('BadRequest');
    const events = await server.store.listEvents(setup.tenantId, created.body.id);
    expect(events.filter((e) => e.toStatus === 'Cancelled')).toHaveLength(1);
    expect(events).toHaveLength(2);
    const winner = results.find((r) => r.status === 200)!;
    expect((await api.get(`/api/machineactions/${created.body.id}`)).body.cancellationComment).toBe(
      winner.body.cancellationComment,
    );
  });
});
