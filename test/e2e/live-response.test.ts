import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT } from '../../src/agent/executor.js';
import type { Simulation } from '../../src/agent/executors/simulated.js';
import { SCRIPT_TIMEOUT_GRACE_SECONDS } from '../../src/dispatch/sweeper.js';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { BACKENDS, rawAgent, sql, stored, tamperBlob } from '../support/artifacts.js';
import { ALL_ROLES, Client, TEST_SECRET, appToken, hexId, startTestServer, type TestServer } from '../support/harness.js';
import { ensureLibraryFile, uploadLibraryFile } from '../support/library.js';

/**
 * Live response end to end (contract §2 rows 13-14, §3 `commands`): a server, real agents with
 * the simulated executor speaking the protocol over HTTP, the library, result links downloaded
 * without an Authorization header, the limits, cancel reaching the machine, the RunScript
 * timeout on the machine and its backstop on the server. Every test runs on both backends.
 */

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const tenantA = randomUUID();
const tenantB = randomUUID();
const tenantC = randomUUID();
const appA = randomUUID();
const appA2 = randomUUID();
const appA3 = randomUUID();
const appB = randomUUID();
const appC = randomUUID();
const spare = Array.from({ length: 4 }, () => hexId());
const crowd = Array.from({ length: 200 }, () => hexId());

const fixtures = {
  tenants: [
    {
      id: tenantA,
      name: 'A',
      machines: spare.map((id, i) => ({ id, computerDnsName: `spare-${i}.a.test`, rbacGroupId: 1 })),
      applications: [
        { clientId: appA, clientSecret: TEST_SECRET, displayName: 'LR App A', roles: ALL_ROLES },
        { clientId: appA2, clientSecret: TEST_SECRET, displayName: 'LR App A2', roles: ALL_ROLES },
        { clientId: appA3, clientSecret: TEST_SECRET, displayName: 'LR App A3', roles: ALL_ROLES },
      ],
    },
    { id: tenantB, name: 'B', applications: [{ clientId: appB, clientSecret: TEST_SECRET, displayName: 'LR App B', roles: ALL_ROLES }] },
    {
      id: tenantC,
      name: 'C',
      machines: crowd.map((id, i) => ({ id, computerDnsName: `crowd-${i}.c.test`, rbacGroupId: 1 })),
      applications: [{ clientId: appC, clientSecret: TEST_SECRET, displayName: 'LR App C', roles: ALL_ROLES }],
    },
  ],
};

function expectEnvelope(res: { status: number; headers: Headers; body: any }, status: number, code: string, message?: RegExp) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(Object.keys(res.body.error)).toEqual(['code', 'message', 'target']);
  expect(res.body.error.code).toBe(code);
  expect(res.body.error.target).toBe(res.headers.get('request-id'));
  if (message) expect(res.body.error.message).toMatch(message);
}

/** A download as a client does it: the URL alone, no Authorization header. */
async function download(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: any;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, bytes, body: json };
}

const command = (type: string, params: Record<string, string>) => ({ type, params: Object.entries(params).map(([key, value]) => ({ key, value })) });

for (const { backend, skip } of BACKENDS) {
  describe.skipIf(skip !== null)(`live response on ${backend}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let server: TestServer;
    let api: Client;
    let apiB: Client;
    const agents: RunningAgent[] = [];

    const agent = async (name: string, simulation: Simulation = { LiveResponse: { durationMs: 150 } }) => {
      const a = await startAgent(server.url, await enrollmentToken(server.store, tenantA), `${name}.${backend}.test`, simulation);
      agents.push(a);
      return a;
    };
    const action = async (id: string) => (await api.get(`/api/machineactions/${id}`)).body;
    const final = (id: string, timeoutMs = 15_000) =>
      waitUntil(async () => {
        const a = await action(id);
        return ['Succeeded', 'Failed', 'Cancelled', 'TimeOut'].includes(a.status) && a;
      }, timeoutMs, `action ${id} to end`);
    const resultLink = (id: string, index: number | string, c = api) => c.get(`/api/machineactions/${id}/GetLiveResponseResultDownloadLink(index=${index})`);

    beforeAll(async () => {
      server = await startTestServer({
        fixtures,
        backend,
        config: { rateLimitScale: 100, blobGraceSeconds: 0, sweepIntervalSeconds: 3600, agentUploadMaxBytes: 64 * 1024 },
      });
      api = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantA, appA)}` });
      apiB = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantB, appB)}` });
      await ensureLibraryFile(api, 'collect.sh', '#!/bin/sh\n# collect\nuname -a\n');
      await ensureLibraryFile(api, 'tool.bin', Buffer.from([0, 1, 2, 3, 254, 255]));
    });
    afterAll(async () => {
      for (const a of agents) await a.stop();
      await server?.stop();
    });

    it('every command type end to end: PutFile fetches, RunScript runs with its Args, GetFile uploads; results download with no Authorization header', async () => {
      const a = await agent('all-commands');
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, {
        Comment: 'collect',
        Commands: [
          command('PutFile', { FileName: 'tool.bin' }),
          command('RunScript', { ScriptName: 'collect.sh', Args: '-v --all' }),
          command('GetFile', { Path: '/var/log/syslog' }),
        ],
      });
      expect(created.status, created.text).toBe(201);
      expect(created.body.commands.map((c: any) => [c.index, c.commandStatus, c.startTime, c.endTime, c.errors])).toEqual([
        [0, 'Created', null, null, []],
        [1, 'Created', null, null, []],
        [2, 'Created', null, null, []],
      ]);
      // commands[] is kept current while the machine works: a command is seen started before the action ends.
      const midway = await waitUntil(async () => {
        const now = await action(created.body.id);
        return now.status === 'InProgress' && now.commands[0].startTime !== null && now;
      });
      expect(midway.commands[2].commandStatus).toBe('Created');
      const done = await final(created.body.id);
      expect(done.status).toBe('Succeeded');
      for (const c of done.commands) {
        expect(c.commandStatus).toBe('Completed');
        expect(c.errors).toEqual([]);
        expect(Date.parse(c.endTime)).toBeGreaterThanOrEqual(Date.parse(c.startTime));
      }
      expect(Date.parse(done.commands[1].startTime)).toBeGreaterThanOrEqual(Date.parse(done.commands[0].endTime));
      // PutFile and RunScript really fetched their library files.
      const fetched = a.state.lines.filter((l) => l.actionId === created.body.id && l.event === 'library file fetched').map((l) => l.fileName);
      expect(fetched).toEqual(['tool.bin', 'collect.sh']);

      const link = await resultLink(created.body.id, 1);
      expect(link.status, link.text).toBe(200);
      expect(Object.keys(link.body)).toEqual(['@odata.context', 'value']);
      expect(link.body['@odata.context']).toBe(`${server.baseUrl}/api/$metadata#Edm.String`);
      expect(link.body.value).toMatch(new RegExp(`^${server.baseUrl}/artifacts/v1/${tenantA}/${created.body.id}/commands/1\\?expires=\\d+&sig=[A-Za-z0-9_-]{43}$`));
      const result = await download(link.body.value);
      expect(result.status).toBe(200);
      expect(result.headers.get('content-type')).toBe('application/json');
      expect(result.headers.get('content-disposition')).toContain('filename="collect.sh.result.json"');
      expect(result.headers.get('x-content-sha256')).toBe(sha256(result.bytes));
      expect(Object.keys(result.body)).toEqual(['script_name', 'exit_code', 'script_output', 'script_errors']);
      expect(result.body).toMatchObject({ script_name: 'collect.sh', exit_code: 0, script_errors: '' });
      expect(result.body.script_output).toContain('collect.sh -v --all');
      expect(result.body.script_output).toContain(sha256('#!/bin/sh\n# collect\nuname -a\n'));

      const file = await download((await resultLink(created.body.id, 2)).body.value);
      expect(file.status).toBe(200);
      expect(file.headers.get('content-type')).toBe('application/octet-stream');
      expect(file.headers.get('content-disposition')).toMatch(/^attachment; filename="syslog"/);
      expect(Number(file.headers.get('content-length'))).toBe(file.bytes.length);
      expect(file.bytes.toString('utf8')).toContain('/var/log/syslog');

      // The function call in any case, percent-encoded, and what has no result.
      expect((await api.get(`/api/machineactions/${created.body.id}/getliveresponseresultdownloadlink(index=2)`)).status).toBe(200);
      expect((await api.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink%28index%3D2%29`)).status).toBe(200);
      expectEnvelope(await resultLink(created.body.id, 0), 400, 'InvalidInput', /PutFile, which has no result/);
      expectEnvelope(await resultLink(created.body.id, 3), 400, 'InvalidInput', /no command with index 3/);
      expectEnvelope(await resultLink(created.body.id, 'x'), 404, 'NotFound');
      expectEnvelope(await api.get(`/api/machineactions/${created.body.id}/somethingElse`), 404, 'NotFound');
      expectEnvelope(await resultLink('not-a-guid', 0), 400, 'BadRequest', /Edm\.Guid/);
      expectEnvelope(await resultLink(randomUUID(), 0), 404, 'NotFound');
    });

    it('by default result links live 30 minutes and package links 10', async () => {
      const a = await agent('lifetimes', { LiveResponse: { durationMs: 50 }, CollectInvestigationPackage: { durationMs: 50 } });
      const lr = await api.post(`/api/machines/${a.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('GetFile', { Path: '/etc/hosts' })] });
      const pkg = await api.post(`/api/machines/${a.machineId}/collectInvestigationPackage`, { Comment: 'x' });
      expect((await final(lr.body.id)).status).toBe('Succeeded');
      expect((await final(pkg.body.id)).status).toBe('Succeeded');
      const lifetime = async (path: string) => {
        const asked = Date.now() / 1000;
        const res = await api.get(path);
        expect(res.status, res.text).toBe(200);
        return Number(new URL(res.body.value).searchParams.get('expires')) - asked;
      };
      const result = await lifetime(`/api/machineactions/${lr.body.id}/GetLiveResponseResultDownloadLink(index=0)`);
      expect(result).toBeGreaterThanOrEqual(1800 - 5);
      expect(result).toBeLessThanOrEqual(1800 + 5);
      const pack = await lifetime(`/api/machineactions/${pkg.body.id}/getPackageUri`);
      expect(pack).toBeGreaterThanOrEqual(600 - 5);
      expect(pack).toBeLessThanOrEqual(600 + 5);
    });

    it('a link asked again gets a fresh one; an altered link is refused in the envelope; no header is needed, none is checked', async () => {
      const a = await agent('links');
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('GetFile', { Path: '/etc/hosts' })] });
      await final(created.body.id);
      const url = new URL((await resultLink(created.body.id, 0)).body.value);
      const whole = await download(url.toString(), { authorization: 'Bearer not-a-token' });
      expect(whole.status).toBe(200);
      const head = await fetch(url, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(Number(head.headers.get('content-length'))).toBe(whole.bytes.length);
      const alter = (change: (u: URL) => void) => {
        const copy = new URL(url);
        change(copy);
        return copy.toString();
      };
      const sig = url.searchParams.get('sig')!;
      const forged = [
        alter((u) => u.searchParams.set('sig', `${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}`)),
        alter((u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 3600))),
        alter((u) => u.searchParams.delete('sig')),
        alter((u) => (u.pathname = u.pathname.replace('/commands/0', '/commands/1'))),
        alter((u) => (u.pathname = u.pathname.replace(created.body.id, randomUUID()))),
        alter((u) => (u.pathname = u.pathname.replace(tenantA, tenantB))),
        alter((u) => (u.pathname = u.pathname.replace('/commands/0', '/package'))),
      ];
      for (const forgery of forged) {
        const res = await download(forgery);
        expect(res.status, forgery).toBe(403);
        expect(res.body.error.code).toBe('Forbidden');
        expect(res.body.error.message).toBe('The download link is not valid.');
        expect(res.body.error.target).toBe(res.headers.get('request-id'));
      }
      // A link is a credential: its signature never reaches the server's log.
      expect(server.logs.some((l) => l.includes(sig))).toBe(false);
      expect(server.logs.some((l) => l.includes('sig=[redacted]'))).toBe(true);
      // Asking again gives a link of its own that works too.
      await new Promise((r) => setTimeout(r, 1100)); // a later second: a different expiry
      const again = (await resultLink(created.body.id, 0)).body.value;
      expect(again).not.toBe(url.toString());
      expect((await download(again)).status).toBe(200);
    });

    it("another tenant's action does not exist for its links", async () => {
      const a = await agent('other-tenant');
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('GetFile', { Path: '/etc/hosts' })] });
      await final(created.body.id);
      expectEnvelope(await resultLink(created.body.id, 0, apiB), 404, 'NotFound');
      expectEnvelope(await apiB.get(`/api/machineactions/${created.body.id}/getPackageUri`), 404, 'NotFound');
    });

    it('a library file altered behind the server fails its PutFile, and the commands after it do not run', async () => {
      const content = `payload ${randomUUID()}`;
      const uploaded = await uploadLibraryFile(api, 'tampered.bin', content);
      await tamperBlob(server, uploaded.body.sha256);
      const a = await agent('tampered');
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, {
        Comment: 'x',
        Commands: [command('PutFile', { FileName: 'tampered.bin' }), command('RunScript', { ScriptName: 'collect.sh' }), command('GetFile', { Path: '/etc/hosts' })],
      });
      const done = await final(created.body.id);
      expect(done.status).toBe('Failed');
      expect(done.errorHResult).toBe(HRESULT.fileNotFound);
      expect(done.commands.map((c: any) => c.commandStatus)).toEqual(['Failed', 'Created', 'Created']);
      expect(done.commands[0].errors[0]).toMatch(/could not fetch 'tampered\.bin'/);
      expect(done.commands[1].startTime).toBeNull();
      expect(done.troubleshootInfo).toMatch(/Command 0 \(PutFile\) failed/);
      expectEnvelope(await resultLink(created.body.id, 1), 404, 'NotFound', /status is Created/);
    });

    it('a library file deleted after the action was created fails the command that needs it', async () => {
      await ensureLibraryFile(api, 'short-lived.sh');
      const a = await agent('deleted', { LiveResponse: { commands: { PutFile: { durationMs: 1500 }, RunScript: { durationMs: 50 } } } });
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, {
        Comment: 'x',
        Commands: [command('PutFile', { FileName: 'tool.bin' }), command('RunScript', { ScriptName: 'short-lived.sh' })],
      });
      expect(created.status).toBe(201);
      await waitUntil(async () => (await action(created.body.id)).commands[0].startTime !== null);
      expect((await api.request('DELETE', '/api/libraryfiles/short-lived.sh')).status).toBe(204);
      const done = await final(created.body.id);
      expect(done.commands.map((c: any) => c.commandStatus)).toEqual(['Completed', 'Failed']);
      expect(done.commands[1].errors[0]).toMatch(/short-lived\.sh.*not found/);
    });

    it('a failed command stops the ones after it; a script with a non-zero exit code still completes', async () => {
      const failing = await agent('failing', { LiveResponse: { commands: { RunScript: { durationMs: 50, outcome: 'Failed', error: 'the script could not start' } } } });
      const created = await api.post(`/api/machines/${failing.machineId}/runliveresponse`, {
        Comment: 'x',
        Commands: [command('PutFile', { FileName: 'tool.bin' }), command('RunScript', { ScriptName: 'collect.sh' }), command('GetFile', { Path: '/etc/hosts' })],
      });
      const done = await final(created.body.id);
      expect(done.status).toBe('Failed');
      expect(done.commands.map((c: any) => c.commandStatus)).toEqual(['Completed', 'Failed', 'Created']);
      expect(done.commands[1].errors).toEqual(['the script could not start']);
      expectEnvelope(await resultLink(created.body.id, 1), 404, 'NotFound', /status is Failed/);

      const exiting = await agent('exit-code', { LiveResponse: { commands: { RunScript: { durationMs: 50, exitCode: 3 } } } });
      const second = await api.post(`/api/machines/${exiting.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('RunScript', { ScriptName: 'collect.sh', Args: '--noargs' })] });
      expect((await final(second.body.id)).status).toBe('Succeeded');
      const result = await download((await resultLink(second.body.id, 0)).body.value);
      expect(result.body).toMatchObject({ script_name: 'collect.sh', exit_code: 3 });
      expect(result.body.script_errors).toContain('exited with code 3');
    });

    it('cancel of a running RunScript reaches the machine: it stops, and no result appears', async () => {
      const a = await agent('cancel', { LiveResponse: { commands: { RunScript: { durationMs: 60_000 } } } });
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, {
        Comment: 'x',
        Commands: [command('RunScript', { ScriptName: 'collect.sh' }), command('GetFile', { Path: '/etc/hosts' })],
      });
      await waitUntil(async () => {
        const now = await action(created.body.id);
        return now.status === 'InProgress' && now.commands[0].startTime !== null;
      }, 15_000, 'the script to start');
      const cancelled = await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'stop it' });
      expect(cancelled.status).toBe(200);
      expect(cancelled.body.status).toBe('Cancelled');
      const at = Date.now();
      await waitUntil(() => a.executor.stopped.has(created.body.id), 5_000, 'the machine to stop the script');
      console.log(`cancel reached the running script in ${a.executor.stopped.get(created.body.id)! - at} ms`);
      // The agent's word after the cancel is history, not state.
      await waitUntil(async () => (await server.store.listEvents(tenantA, created.body.id)).some((e) => e.kind === 'late-report'));
      const after = await action(created.body.id);
      expect(after.status).toBe('Cancelled');
      expect(after.commands[0].commandStatus).toBe('Created');
      expect(after.commands[1].startTime).toBeNull();
      expectEnvelope(await resultLink(created.body.id, 0), 404, 'NotFound');
      expect(a.executor.completed).not.toContain(created.body.id);
    });

    it('one live-response action per machine: of 200 simultaneous requests exactly one is accepted', async () => {
      const machine = spare[0]!;
      const body = { Comment: 'burst', Commands: [command('GetFile', { Path: '/etc/hosts' })] };
      const results = await Promise.all(Array.from({ length: 200 }, () => api.post(`/api/machines/${machine}/runliveresponse`, body)));
      expect(results.filter((r) => r.status === 201)).toHaveLength(1);
      for (const r of results.filter((x) => x.status !== 201)) expectEnvelope(r, 400, 'ActiveRequestAlreadyExists');
      const id = results.find((r) => r.status === 201)!.body.id;
      expect((await api.post(`/api/machineactions/${id}/cancel`, { Comment: 'x' })).status).toBe(200);
      expect((await api.post(`/api/machines/${machine}/runliveresponse`, body)).status).toBe(201);
    });

    it('at most 25 unfinished live-response actions per tenant: of 200 simultaneous requests on 200 machines, 25 are accepted and 175 get 429', async () => {
      const c = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantC, appC)}` });
      const body = { Comment: 'crowd', Commands: [command('GetFile', { Path: '/etc/hosts' })] };
      const results = await Promise.all(crowd.map((m) => c.post(`/api/machines/${m}/runliveresponse`, body)));
      expect(results.filter((r) => r.status === 201)).toHaveLength(25);
      const refused = results.filter((r) => r.status !== 201);
      expect(refused).toHaveLength(175);
      for (const r of refused) {
        expectEnvelope(r, 429, 'TooManyRequests', /25 LiveResponse/);
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      }
      const active = await c.get("/api/machineactions?$filter=type eq 'LiveResponse' and status eq 'Pending'&$count=true&$top=0");
      expect(active.body['@odata.count']).toBe(25);
    });

    it.each([
      ['RunScript before PutFile', [command('RunScript', { ScriptName: 'collect.sh' }), command('PutFile', { FileName: 'tool.bin' })], 'InvalidRequestBody', /Commands\[1\].*order PutFile, RunScript, GetFile/],
      ['GetFile before RunScript', [command('GetFile', { Path: '/a' }), command('RunScript', { ScriptName: 'collect.sh' })], 'InvalidRequestBody', /Commands\[1\].*order/],
      ['a PutFile of a file the library lacks', [command('PutFile', { FileName: 'missing.bin' })], 'InvalidInput', /Commands\[0\].*no file 'missing\.bin'/],
      ['a RunScript of a script the library lacks', [command('PutFile', { FileName: 'tool.bin' }), command('RunScript', { ScriptName: 'nope.sh' })], 'InvalidInput', /Commands\[1\].*no file 'nope\.sh'/],
      ['a RunScript without ScriptName', [command('RunScript', { Args: 'x' })], 'MissingRequiredParameter', /Commands\[0\]\.params\.ScriptName/],
      ['a GetFile without Path', [command('GetFile', {})], 'MissingRequiredParameter', /Commands\[0\]\.params\.Path/],
      ['a ScriptName that is a path', [command('RunScript', { ScriptName: '/bin/sh' })], 'InvalidInput', /ScriptName/],
      ['a parameter of another command', [command('GetFile', { Path: '/a', Args: 'x' })], 'InvalidRequestBody', /GetFile does not take the parameter 'Args'/],
    ])('%s is refused with a 400 naming the problem, and nothing is created', async (_what, commands, code, message) => {
      const machine = spare[1]!;
      const before = (await api.get(`/api/machineactions?$filter=machineId eq '${machine}'&$count=true&$top=0`)).body['@odata.count'];
      expectEnvelope(await api.post(`/api/machines/${machine}/runliveresponse`, { Comment: 'x', Commands: commands }), 400, code, message);
      expect((await api.get(`/api/machineactions?$filter=machineId eq '${machine}'&$count=true&$top=0`)).body['@odata.count']).toBe(before);
    });

    it('a library file name matches in any case', async () => {
      const created = await api.post(`/api/machines/${spare[2]!}/runliveresponse`, { Comment: 'x', Commands: [command('RunScript', { ScriptName: 'COLLECT.SH' })] });
      expect(created.status, created.text).toBe(201);
      await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'x' });
    });

    it('the server ends a script its machine does not stop: TimeOut after the timeout and its grace, the machine told to stop', async () => {
      const raw = await rawAgent(server, tenantA, `stuck.${backend}.test`);
      const created = await api.post(`/api/machines/${raw.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('RunScript', { ScriptName: 'collect.sh' }), command('GetFile', { Path: '/a' })] });
      const delivered = await raw.client.post('/agent/v1/checkin', { running: [], maxWaitSeconds: 1 });
      const wire = delivered.body.actions.find((x: { id: string }) => x.id === created.body.id);
      // The timeout reaches the machine with the action.
      expect(wire.scriptTimeoutSeconds).toBe(600);
      expect((await raw.client.post(`/agent/v1/actions/${created.body.id}/start`, {})).body.run).toBe(true);
      const commands = wire.commands.map((c: any, i: number) => (i === 0 ? { ...c, startTime: Date.now() } : c));
      expect((await raw.client.post(`/agent/v1/actions/${created.body.id}/progress`, { commands })).status).toBe(200);
      // Not yet: within the timeout plus grace nothing happens.
      await server.sweeper.sweep(Date.now() + 600_000);
      expect((await action(created.body.id)).status).toBe('InProgress');
      await server.sweeper.sweep(Date.now() + (600 + SCRIPT_TIMEOUT_GRACE_SECONDS + 5) * 1000);
      const ended = await action(created.body.id);
      expect(ended.status).toBe('TimeOut');
      expect(ended.commands[0].commandStatus).toBe('Failed');
      expect(ended.commands[0].errors[0]).toMatch(/longer than 600 seconds/);
      expect(ended.commands[1].commandStatus).toBe('Created');
      const told = await raw.client.post('/agent/v1/checkin', { running: [created.body.id], maxWaitSeconds: 1 });
      expect(told.body.stop).toEqual([{ id: created.body.id, status: 'TimeOut' }]);
    });

    it('retention: results and packages of old actions go, with their blobs; library files stay', async () => {
      const a = await agent('retention');
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('RunScript', { ScriptName: 'collect.sh' })] });
      expect((await final(created.body.id)).status).toBe('Succeeded');
      const url = (await api.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink(index=0)`)).body.value;
      await server.sweeper.sweep(Date.now() + 29 * 24 * 3600 * 1000);
      expect((await download(url)).status).toBe(200);
      await server.sweeper.sweep(Date.now() + 31 * 24 * 3600 * 1000);
      const gone = await stored(server);
      expect(gone.artifacts).toBe(0);
      const kept = await sql<{ n: number }>(server, 'SELECT COUNT(DISTINCT sha256) AS n FROM library_files');
      expect(gone.blobs).toBe(Number(kept[0]!.n));
      if (backend === 'sqlite') expect(gone.blobFiles).toBe(gone.blobs);
      else expect(gone.chunks).toBeGreaterThan(0);
      expectEnvelope(await api.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink(index=0)`), 404, 'NotFound', /no longer kept/);
      const res = await download(url);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('NotFound');
      expect((await api.get('/api/libraryfiles')).body.value.map((f: { fileName: string }) => f.fileName)).toContain('collect.sh');
    });
  });

  describe.skipIf(skip !== null)(`RunScript timeout on the machine (${backend})${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let server: TestServer;
    let api: Client;
    let a: RunningAgent;

    beforeAll(async () => {
      server = await startTestServer({ fixtures, backend, config: { rateLimitScale: 100, liveResponseScriptTimeoutSeconds: 0.5 } });
      api = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantA, appA)}` });
      await ensureLibraryFile(api, 'slow.sh');
      a = await startAgent(server.url, await enrollmentToken(server.store, tenantA), `slow.${backend}.test`, { LiveResponse: { commands: { RunScript: { durationMs: 60_000 } } } });
    });
    afterAll(async () => {
      await a?.stop();
      await server?.stop();
    });

    it('a RunScript past the configured timeout is killed: the command fails, the ones after it do not run', async () => {
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, {
        Comment: 'x',
        Commands: [command('RunScript', { ScriptName: 'slow.sh' }), command('GetFile', { Path: '/etc/hosts' })],
      });
      const done = await waitUntil(async () => {
        const now = (await api.get(`/api/machineactions/${created.body.id}`)).body;
        return now.status !== 'Pending' && now.status !== 'InProgress' && now;
      }, 15_000);
      expect(done.status).toBe('Failed');
      expect(done.errorHResult).toBe(HRESULT.timeout);
      expect(done.commands[0].commandStatus).toBe('Failed');
      expect(done.commands[0].errors[0]).toMatch(/longer than 0\.5 seconds and was stopped/);
      expect(done.commands[1].commandStatus).toBe('Created');
    });
  });

  describe.skipIf(skip !== null)(`getPackageUri's hour window (${backend})${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let server: TestServer;
    let a: RunningAgent;

    beforeAll(async () => {
      // Limits and windows scaled to 1/60: 2 per minute becomes 1 per second and 120 per hour 2
      // per minute, so the hour window binds within seconds.
      server = await startTestServer({ fixtures, backend, config: { rateLimitScale: 1 / 60, rateLimitWindowScale: 1 / 60 } });
      a = await startAgent(server.url, await enrollmentToken(server.store, tenantA), `hour.${backend}.test`, { CollectInvestigationPackage: { durationMs: 50 } });
    });
    afterAll(async () => {
      await a?.stop();
      await server?.stop();
    });

    it('binds on its own: once the minute window has room again, the hour window refuses, with its own Retry-After', async () => {
      const api = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantA, appA)}` });
      const created = await api.post(`/api/machines/${a.machineId}/collectInvestigationPackage`, { Comment: 'hour' });
      expect(created.status, created.text).toBe(201);
      // Watched in the store, so the wait spends none of the API's (scaled down) budget.
      await waitUntil(async () => (await server.store.getAction(tenantA, created.body.id))?.status === 'Succeeded', 15_000);
      const ask = () => api.get(`/api/machineactions/${created.body.id}/getPackageUri`);
      // Each call in a (scaled) minute window of its own: the minute limit never refuses here.
      expect((await ask()).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1100));
      expect((await ask()).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1100));
      const refused = await ask();
      expectEnvelope(refused, 429, 'TooManyRequests');
      // The hour window's wait, not the minute's second.
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(30);
    });
  });

  describe.skipIf(skip !== null)(`packages, link lifetimes and the agent's uploads (${backend})${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let server: TestServer;
    let api: Client;
    let a: RunningAgent;

    beforeAll(async () => {
      // Default rate limits here (getPackageUri: 2 per minute); links that live one second.
      server = await startTestServer({
        fixtures,
        backend,
        config: { liveResponseLinkSeconds: 1, packageLinkSeconds: 1, blobGraceSeconds: 0, sweepIntervalSeconds: 3600, agentUploadMaxBytes: 4096 },
      });
      api = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantA, appA)}` });
      await ensureLibraryFile(api, 'kept.sh');
      a = await startAgent(server.url, await enrollmentToken(server.store, tenantA), `pkg.${backend}.test`, {
        CollectInvestigationPackage: { durationMs: 300 },
        LiveResponse: { durationMs: 50 },
      });
    });
    afterAll(async () => {
      await a?.stop();
      await server?.stop();
    });

    const status = async (id: string) => (await api.get(`/api/machineactions/${id}`)).body.status;

    it('getPackageUri: 404 before the action Succeeded, then a link to a real tar.gz; 400 for other action types; 2 per minute', async () => {
      const created = await api.post(`/api/machines/${a.machineId}/collectInvestigationPackage`, { Comment: 'collect' });
      expectEnvelope(await api.get(`/api/machineactions/${created.body.id}/getPackageUri`), 404, 'NotFound', /not available: the action is (Pending|InProgress)/);
      await waitUntil(async () => (await status(created.body.id)) === 'Succeeded', 15_000);
      const link = await api.get(`/api/machineactions/${created.body.id}/GetPackageUri`);
      expect(link.status, link.text).toBe(200);
      expect(Object.keys(link.body)).toEqual(['@odata.context', 'value']);
      const pkg = await download(link.body.value);
      expect(pkg.status).toBe(200);
      expect(pkg.headers.get('content-type')).toBe('application/gzip');
      expect(pkg.headers.get('content-disposition')).toContain(`.tar.gz"`);
      const { list } = await import('tar');
      const { Readable } = await import('node:stream');
      const entries: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const parser = list({ onReadEntry: (e) => entries.push(e.path) });
        parser.on('end', resolve).on('error', reject);
        Readable.from(pkg.bytes).pipe(parser as unknown as NodeJS.WritableStream);
      });
      for (const section of ['processes.txt', 'network-connections.txt', 'listening-sockets.txt', 'logged-on-users.txt', 'services.txt', 'scheduled-jobs.txt', 'installed-packages.txt', 'system-logs.txt', 'autoruns.txt', 'manifest.json']) {
        expect(entries).toContain(`investigation-package/${section}`);
      }
      // The third call in the minute is refused with an honest Retry-After.
      const third = await api.get(`/api/machineactions/${created.body.id}/getPackageUri`);
      expectEnvelope(third, 429, 'TooManyRequests');
      expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);

      // Another caller has a budget of its own (rate limits are per caller).
      const other = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantA, appA2)}` });
      const lr = await api.post(`/api/machines/${a.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('GetFile', { Path: '/a' })] });
      expectEnvelope(await other.get(`/api/machineactions/${lr.body.id}/getPackageUri`), 400, 'InvalidInput', /LiveResponse action, not a CollectInvestigationPackage/);
      await waitUntil(async () => (await status(lr.body.id)) === 'Succeeded');
    });

    it("getPackageUri's own limit holds under a burst: of 200 simultaneous calls by one caller, 2 are answered and 198 get 429", async () => {
      const created = await api.post(`/api/machines/${a.machineId}/collectInvestigationPackage`, { Comment: 'burst' });
      await waitUntil(async () => (await status(created.body.id)) === 'Succeeded', 15_000);
      const caller = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantA, appA3)}` });
      const results = await Promise.all(Array.from({ length: 200 }, () => caller.get(`/api/machineactions/${created.body.id}/getPackageUri`)));
      const answered = results.filter((r) => r.status === 200);
      expect(answered).toHaveLength(2);
      // (Links here live one second, long gone after the burst: what was answered is a package link.)
      for (const r of answered) expect(r.body.value).toMatch(new RegExp(`/artifacts/v1/${tenantA}/${created.body.id}/package\\?expires=\\d+&sig=`));
      const refused = results.filter((r) => r.status !== 200);
      expect(refused).toHaveLength(198);
      for (const r of refused) {
        expectEnvelope(r, 429, 'TooManyRequests');
        const retryAfter = Number(r.headers.get('retry-after'));
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(60);
      }
      // The other endpoints keep their own budget for that caller.
      expect((await caller.get(`/api/machineactions/${created.body.id}`)).status).toBe(200);
    });

    it('links expire (package links after packageLinkSeconds, result links after liveResponseLinkSeconds) and are refused in the envelope', async () => {
      const created = await api.post(`/api/machines/${a.machineId}/runliveresponse`, { Comment: 'x', Commands: [command('GetFile', { Path: '/etc/hosts' })] });
      await waitUntil(async () => (await status(created.body.id)) === 'Succeeded');
      const url = (await api.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink(index=0)`)).body.value;
      const expires = Number(new URL(url).searchParams.get('expires'));
      expect(expires * 1000 - Date.now()).toBeLessThanOrEqual(2000);
      const expired = await waitUntil(async () => {
        const res = await download(url);
        return res.status !== 200 && res;
      }, 10_000, 'the link to expire');
      expect(expired.status).toBe(403);
      expect(expired.body.error.code).toBe('Forbidden');
      expect(expired.body.error.message).toMatch(/expired at \d{4}-\d\d-\d\dT.*Z; request a new one/);
      const fresh = (await api.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink(index=0)`)).body.value;
      expect((await download(fresh)).status).toBe(200);
    });

    it("the agent's uploads: only its own InProgress action, the right slot and type, within the cap, the announced digest; retrying is harmless", async () => {
      const raw = await rawAgent(server, tenantA, `uploader.${backend}.test`);
      const other = await rawAgent(server, tenantA, `intruder.${backend}.test`);
      const created = await api.post(`/api/machines/${raw.machineId}/runliveresponse`, {
        Comment: 'x',
        Commands: [command('PutFile', { FileName: 'kept.sh' }), command('GetFile', { Path: '/etc/hosts' })],
      });
      const id = created.body.id;
      const result = Buffer.from('hosts file bytes');
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/commands/1/result`, result), 409, 'Conflict', /Pending/);
      expectEnvelope(await raw.client.post(`/agent/v1/actions/${id}/library-link`, { fileName: 'kept.sh' }), 409, 'Conflict');
      await raw.client.post('/agent/v1/checkin', { running: [], maxWaitSeconds: 0.2 });
      await raw.client.post(`/agent/v1/actions/${id}/start`, {});

      // Library links: for the files its commands name, for its credential, tamper-proof.
      const link = await raw.client.post(`/agent/v1/actions/${id}/library-link`, { fileName: 'KEPT.sh' });
      expect(link.status, link.text).toBe(200);
      expect(link.body).toMatchObject({ fileName: 'kept.sh', size: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
      // Short-lived: five minutes, signed into the link itself.
      expect(link.body.expiresAt - Date.now()).toBeGreaterThan(290_000);
      expect(link.body.expiresAt - Date.now()).toBeLessThanOrEqual(301_000);
      expect(Number(new URL(link.body.link, server.url).searchParams.get('expires')) * 1000).toBe(link.body.expiresAt);
      const bytes = await raw.get(link.body.link);
      expect(bytes.status).toBe(200);
      expect(sha256(Buffer.from(await bytes.arrayBuffer()))).toBe(link.body.sha256);
      expect((await fetch(`${server.url}${link.body.link}`)).status).toBe(401);
      expect((await other.get(link.body.link)).status).toBe(404);
      expect((await raw.get(link.body.link.replace(/sig=[^&]+/, 'sig=' + 'A'.repeat(43)))).status).toBe(403);
      expectEnvelope(await raw.client.post(`/agent/v1/actions/${id}/library-link`, { fileName: 'collect.sh' }), 404, 'NotFound', /names no library file/);

      // Uploads: the right slot and content type, the cap, the digest.
      expectEnvelope(await other.put(`/agent/v1/actions/${id}/commands/1/result`, result), 404, 'NotFound');
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/commands/0/result`, result), 400, 'InvalidInput', /PutFile/);
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/commands/5/result`, result), 400, 'InvalidInput', /no command with index 5/);
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/package`, result, { 'content-type': 'application/gzip' }), 400, 'InvalidInput', /does not collect/);
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/commands/1/result`, result, { 'content-type': 'text/plain' }), 415, 'UnsupportedMediaType');
      const before = await stored(server);
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/commands/1/result`, Buffer.alloc(4097)), 413, 'RequestEntityTooLarge');
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/commands/1/result`, result, { 'x-content-sha256': sha256('something else') }), 400, 'InvalidInput', /does not match/);
      expect(await stored(server)).toEqual(before);
      const first = await raw.put(`/agent/v1/actions/${id}/commands/1/result`, result, { 'x-content-sha256': sha256(result) });
      expect(first.status, first.text).toBe(200);
      expect(first.body).toEqual({ sha256: sha256(result), size: result.length });
      const retried = await raw.put(`/agent/v1/actions/${id}/commands/1/result`, result, { 'x-content-sha256': sha256(result) });
      expect(retried.body).toEqual(first.body);
      const after = await stored(server);
      expect(after.artifacts).toBe(before.artifacts + 1);
      expect(after.blobs).toBe(before.blobs + 1);

      // After the action ends, nothing more is taken.
      await api.post(`/api/machineactions/${id}/cancel`, { Comment: 'x' });
      expectEnvelope(await raw.put(`/agent/v1/actions/${id}/commands/1/result`, result), 409, 'Conflict', /Cancelled/);
    });

    it('a collection reported successful without a package ends Failed, saying so', async () => {
      const raw = await rawAgent(server, tenantA, `nopkg.${backend}.test`);
      const created = await api.post(`/api/machines/${raw.machineId}/collectInvestigationPackage`, { Comment: 'x' });
      await raw.client.post(`/agent/v1/actions/${created.body.id}/start`, {});
      const report = await raw.client.post(`/agent/v1/actions/${created.body.id}/report`, { reportId: 'r1', status: 'Succeeded', errorHResult: 0, troubleshootInfo: null });
      expect(report.body).toEqual({ status: 'Failed', applied: true });
      const ended = (await api.get(`/api/machineactions/${created.body.id}`)).body;
      expect(ended.troubleshootInfo).toBe('The machine reported success but uploaded no investigation package.');
    });

  });
}
