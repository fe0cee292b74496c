import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH } from '../../src/api/input.js';
import { enrollmentToken } from '../support/agents.js';
import { appToken, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL } from '../support/postgres.js';
import { envelopeOf, rawExchange } from '../support/raw-http.js';

/**
 * Text no store can keep (a NUL, a lone UTF-16 surrogate, bytes that are not UTF-8) and bodies
 * nested without bound, wherever a client puts them: /api bodies at any depth and in keys,
 * path ids, query strings, and every agent route. Each is a 400 in the envelope, the same on
 * SQLite and PostgreSQL, and nothing is written. Requests go over a bare socket so the bytes
 * are exactly what the test wrote.
 */

const BACKENDS = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!PG_URL) console.warn(`[text input] PostgreSQL half skipped: ${PG_SKIP_REASON}`);

/** `depth` nested objects around a value: {"a":{"a":...1...}}. */
const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

interface Answer {
  status: number;
  code: string | null;
  message: string | null;
}

describe.each(BACKENDS)('client text on %s', (backend) => {
  const setup = makeFixtures(2);
  const machine = setup.machines[0]!;
  let server: TestServer;
  let port: number;
  let token: string;
  let agent: { machineId: string; agentToken: string };
  let liveActionId: string;

  async function send(method: string, path: string, body: string | Buffer | null, auth: string | null = token): Promise<Answer> {
    const bytes = body === null ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    const head =
      `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n` +
      (auth ? `Authorization: Bearer ${auth}\r\n` : '') +
      (body === null ? '' : `Content-Type: application/json\r\nContent-Length: ${bytes.length}\r\n`) +
      '\r\n';
    const { responses } = await rawExchange(port, Buffer.concat([Buffer.from(head, 'latin1'), bytes]), { limitMs: 10_000 });
    expect(responses, `${method} ${path}`).toHaveLength(1);
    const response = responses[0]!;
    if (response.status < 400) return { status: response.status, code: null, message: null };
    expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
    const error = envelopeOf(response);
    return { status: response.status, code: error.code, message: error.message };
  }

  const actionsOf = async (machineId: string) => {
    const page = await server.store.listActions(setup.tenantId, {
      filter: { kind: 'compare', op: 'eq', property: 'machineId', value: { kind: 'string', value: machineId } },
      orderBy: [],
      top: 100,
      skip: 0,
      count: false,
      deviceGroups: null,
    });
    return page.items;
  };

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { rateLimitsEnabled: false, agentPollSeconds: 0.05 } });
    port = Number(new URL(server.url).port);
    token = await appToken(server, setup.tenantId, setup.clientId);
    const enrolled = await fetch(`${server.url}/agent/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enrollmentToken: await enrollmentToken(server.store, setup.tenantId), machine: { computerDnsName: 'text.test' } }),
    });
    agent = (await enrolled.json()) as typeof agent;
    const live = await send('POST', `/api/machines/${agent.machineId}/runliveresponse`, '{"Comment":"x","Commands":[{"type":"GetFile","params":[{"key":"Path","value":"/etc/hostname"}]}]}');
    expect(live.status).toBe(201);
    liveActionId = (await actionsOf(agent.machineId))[0]!.id;
    expect((await send('POST', `/agent/v1/actions/${liveActionId}/start`, '{}', agent.agentToken)).status).toBe(200);
  });
  afterAll(async () => {
    await server?.stop();
  });

  const BAD_TEXT: [string, string, RegExp][] = [
    ['a NUL', '\\u0000', /NUL character/],
    ['a lone high surrogate', '\\ud800', /unpaired UTF-16 surrogate/],
    ['a lone low surrogate', 'x\\udfffy', /unpaired UTF-16 surrogate/],
  ];

  describe.each(BAD_TEXT)('%s', (_name, escaped, problem) => {
    it('in a Comment, a nested command value, a key or a cancel comment: 400 InvalidRequestBody naming the field, nothing written', async () => {
      const before = (await actionsOf(machine.id)).length;
      const cases: [string, string, string][] = [
        ['isolate', `{"Comment":"a${escaped}b"}`, "'Comment'"],
        ['runAntiVirusScan', `{"Comment":"${escaped}","ScanType":"Quick"}`, "'Comment'"],
        ['runliveresponse', `{"Comment":"x","Commands":[{"type":"GetFile","params":[{"key":"Path","value":"/tmp/${escaped}"}]}]}`, "'Commands[0].params[0].value'"],
        ['isolate', `{"Comment":"x","Extra${escaped}":1}`, 'property name'],
        ['isolate', `{"Comment":"x","deep":{"er":["${escaped}"]}}`, "'deep.er[0]'"],
      ];
      for (const [route, body, field] of cases) {
        const answer = await send('POST', `/api/machines/${machine.id}/${route}`, body);
        expect(answer, `${route} ${body}`).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
        expect(answer.message).toMatch(problem);
        expect(answer.message).toContain(field);
      }
      expect(await actionsOf(machine.id)).toHaveLength(before);
      const action = await send('POST', `/api/machines/${machine.id}/collectInvestigationPackage`, '{"Comment":"to cancel"}');
      expect(action.status).toBe(201);
      const [created] = (await actionsOf(machine.id)).filter((a) => a.status === 'Pending');
      const cancel = await send('POST', `/api/machineactions/${created!.id}/cancel`, `{"Comment":"${escaped}"}`);
      expect(cancel).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
      expect((await server.store.getAction(setup.tenantId, created!.id))!.status).toBe('Pending');
      expect((await send('POST', `/api/machineactions/${created!.id}/cancel`, '{"Comment":"clean"}')).status).toBe(200);
    });

    it('on every agent route: enrollment, check-in, progress and report are 400 and change nothing', async () => {
      const token = await enrollmentToken(server.store, setup.tenantId);
      const enroll = await send('POST', '/agent/v1/enroll', `{"enrollmentToken":"${token}","machine":{"computerDnsName":"a${escaped}.test"}}`, null);
      expect(enroll).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
      expect(enroll.message).toContain("'machine.computerDnsName'");
      const checkin = await send('POST', '/agent/v1/checkin', `{"running":[],"maxWaitSeconds":0,"agentVersion":"1${escaped}"}`, agent.agentToken);
      expect(checkin).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
      const progress = await send(
        'POST',
        `/agent/v1/actions/${liveActionId}/progress`,
        `{"commands":[{"index":0,"startTime":null,"endTime":null,"commandStatus":"Failed","errors":["${escaped}"],"command":{"type":"GetFile","params":[{"key":"Path","value":"/etc/hostname"}]}}]}`,
        agent.agentToken,
      );
      expect(progress).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
      const report = (fields: string) => send('POST', `/agent/v1/actions/${liveActionId}/report`, `{"reportId":"r1","status":"Failed","errorHResult":1,${fields}}`, agent.agentToken);
      for (const fields of [`"troubleshootInfo":"${escaped}"`, `"troubleshootInfo":null,"detail":{"k":"${escaped}"}`, `"troubleshootInfo":null,"detail":{"${escaped}":1}`]) {
        const answer = await report(fields);
        expect(answer, fields).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
        expect(answer.message).toMatch(problem);
      }
      const action = await server.store.getAction(setup.tenantId, liveActionId);
      expect(action!.status).toBe('InProgress');
      expect(action!.troubleshootInfo).toBeNull();
    });
  });

  it('a NUL in a path id or a query string is a 400 on /api and /agent alike', async () => {
    const cases: [string, string, string | null, string | null][] = [
      ['GET', '/api/machines/a%00b', null, token],
      ['POST', '/api/machines/a%00b/isolate', '{"Comment":"x"}', token],
      ['GET', `/api/machines/${machine.id}%00`, null, token],
      ['GET', '/api/machineactions/%00', null, token],
      ['POST', '/api/machineactions/%00/cancel', '{"Comment":"x"}', token],
      ['GET', "/api/machines?$filter=computerDnsName%20eq%20'a%00b'", null, token],
      ['GET', '/api/machineactions?$filter=%00', null, token],
      ['GET', '/api/machines?x%00=1', null, token],
      ['POST', `/agent/v1/actions/${liveActionId}%00/start`, '{}', agent.agentToken],
      ['POST', '/agent/v1/actions/%00/report', '{"reportId":"r","status":"Failed","errorHResult":1,"troubleshootInfo":null}', agent.agentToken],
    ];
    for (const [method, path, body, auth] of cases) {
      const answer = await send(method, path, body, auth);
      expect(answer.status, `${method} ${path}: ${answer.message}`).toBe(400);
      expect(['BadRequest', 'ODataError'], `${method} ${path}`).toContain(answer.code);
    }
  });

  it('a body that is not UTF-8 is a 400, not text with U+FFFD in it', async () => {
    const before = (await actionsOf(machine.id)).length;
    const body = Buffer.concat([Buffer.from('{"Comment":"a'), Buffer.from([0xed, 0xa0, 0x80, 0xff]), Buffer.from('"}')]);
    const answer = await send('POST', `/api/machines/${machine.id}/isolate`, body);
    expect(answer).toMatchObject({ status: 400, code: 'InvalidRequestBody', message: 'The request body is not valid UTF-8.' });
    expect(await actionsOf(machine.id)).toHaveLength(before);
  });

  it('a report whose detail nests 20,000 levels is a 400, and the action is untouched', async () => {
    const deep = await send(
      'POST',
      `/agent/v1/actions/${liveActionId}/report`,
      `{"reportId":"deep","status":"Succeeded","errorHResult":0,"troubleshootInfo":null,"detail":${nested(20_000)}}`,
      agent.agentToken,
    );
    expect(deep).toMatchObject({ status: 400, code: 'InvalidRequestBody', message: `The request body nests deeper than ${MAX_JSON_DEPTH} levels.` });
    expect((await server.store.getAction(setup.tenantId, liveActionId))!.status).toBe('InProgress');
    // Just past the bound is refused; at the bound (the body is one level, detail the rest) it is kept.
    const past = await send('POST', `/agent/v1/actions/${liveActionId}/report`, `{"reportId":"d","status":"Failed","errorHResult":1,"troubleshootInfo":null,"detail":${nested(MAX_JSON_DEPTH)}}`, agent.agentToken);
    expect(past).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
    const at = await send('POST', `/agent/v1/actions/${liveActionId}/report`, `{"reportId":"d","status":"Failed","errorHResult":1,"troubleshootInfo":null,"detail":${nested(MAX_JSON_DEPTH - 1)}}`, agent.agentToken);
    expect(at.status).toBe(200);
    expect((await server.store.getAction(setup.tenantId, liveActionId))!.status).toBe('Failed');
  });

  it('deep bodies on /api and unauthenticated enrollment are refused the same way', async () => {
    const api = await send('POST', `/api/machines/${machine.id}/isolate`, `{"Comment":"x","x":${'['.repeat(20_000)}${']'.repeat(20_000)}}`);
    expect(api).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
    const enroll = await send('POST', '/agent/v1/enroll', `{"enrollmentToken":"x.y","machine":{"computerDnsName":"d"},"x":${nested(20_000)}}`, null);
    expect(enroll).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
  });

  it('agent bodies are bounded in size: over the body limit is a 413', async () => {
    const big = `{"reportId":"big","status":"Failed","errorHResult":1,"troubleshootInfo":null,"detail":{"x":"${'a'.repeat(1024 * 1024)}"}}`;
    const answer = await send('POST', `/agent/v1/actions/${liveActionId}/report`, big, agent.agentToken);
    expect(answer).toMatchObject({ status: 413, code: 'RequestEntityTooLarge' });
  });

  it('prototype keys are still refused, and clean text at the edges of the rule is kept as sent', async () => {
    for (const body of ['{"Comment":"x","__proto__":{"a":1}}', '{"Comment":"x","constructor":{"prototype":{"a":1}}}']) {
      expect(await send('POST', `/api/machines/${setup.machines[1]!.id}/isolate`, body)).toMatchObject({ status: 400, code: 'InvalidRequestBody' });
    }
    const comment = 'paired \ud83d\ude00, \u00e9, \u2028 and \\ backslash';
    const created = await fetch(`${server.url}/api/machines/${setup.machines[1]!.id}/isolate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ Comment: comment }),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    expect((await server.store.getAction(setup.tenantId, id))!.requestorComment).toBe(comment);
  });
});
