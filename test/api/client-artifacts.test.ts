import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Countermand, CountermandError } from '../../src/client/index.js';
import { enrollmentToken, startAgent, type RunningAgent } from '../support/agents.js';
import { Client, TEST_SECRET, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';

/**
 * The typed client's download links and live-response library (contract §2 rows 8, 14, 17-19)
 * against a started server with a simulated agent: uploads as multipart, links fetched without
 * a token, the package and the results as the machine produced them. Checked against plain
 * HTTP where the server answers with data.
 */

const BACKENDS = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

const rejection = (promise: Promise<unknown>) =>
  promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error as CountermandError,
  );

describe.each(BACKENDS)("the typed client's links and library (%s)", (backend) => {
  const setup = makeFixtures(4);
  let server: TestServer;
  let raw: Client;
  let cm: Countermand;
  let agent: RunningAgent;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { rateLimitScale: 1000, agentPollSeconds: 5 } });
    raw = await appClient(server, setup);
    cm = new Countermand({ url: server.url, tenantId: setup.tenantId, clientId: setup.clientId, clientSecret: TEST_SECRET });
    agent = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId), `links-${backend}.client.test`, {
      '*': { durationMs: 200 },
    });
  });
  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
  });

  it('uploads (multipart), lists, refuses a second upload of a name unless told to override, and deletes library files', async () => {
    const script = '#!/bin/sh\necho collected "$@"\n';
    const uploaded = await cm.uploadLibraryFile({
      fileName: `collect-${backend}.sh`,
      content: script,
      description: 'collects things',
      hasParameters: true,
      parametersDescription: '--since <duration>',
    });
    expect(uploaded).toMatchObject({
      '@odata.context': expect.stringMatching(/#LibraryFiles\/\$entity$/),
      fileName: `collect-${backend}.sh`,
      sha256: sha256(script),
      description: 'collects things',
      hasParameters: true,
      parametersDescription: '--since <duration>',
      createdBy: 'Test App',
    });
    const listed = await cm.listLibraryFiles();
    expect(listed).toEqual((await raw.get('/api/libraryfiles')).body);
    const { '@odata.context': _context, ...item } = uploaded;
    expect(listed.value).toContainEqual(item);
    const iterated: string[] = [];
    for await (const f of cm.iterateLibraryFiles()) iterated.push(f.fileName);
    expect(iterated).toEqual(listed.value.map((f) => f.fileName));

    const again = await rejection(cm.uploadLibraryFile({ fileName: `collect-${backend}.sh`, content: new Uint8Array([1, 2, 3]) }));
    expect(again).toBeInstanceOf(CountermandError);
    expect(again.status).toBe(400);
    const bytes = new Uint8Array([0, 1, 2, 255]);
    const replaced = await cm.uploadLibraryFile({ fileName: `collect-${backend}.sh`, content: new Blob([bytes]), overrideIfExists: true });
    expect(replaced.sha256).toBe(sha256(bytes));

    await expect(cm.deleteLibraryFile(`collect-${backend}.sh`)).resolves.toBeUndefined();
    expect((await raw.get('/api/libraryfiles')).body.value.map((f: any) => f.fileName)).not.toContain(`collect-${backend}.sh`);
    const gone = await rejection(cm.deleteLibraryFile(`collect-${backend}.sh`));
    expect(gone.status).toBe(404);
    expect(gone.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("live response: the library's script runs, and each result downloads through its link", async () => {
    const script = '#!/bin/sh\necho hello\n';
    await cm.uploadLibraryFile({ fileName: `hello-${backend}.sh`, content: script, overrideIfExists: true });
    const created = await cm.runLiveResponse(agent.machineId, {
      Comment: 'collect through the client',
      Commands: [
        { type: 'RunScript', params: [{ key: 'ScriptName', value: `hello-${backend}.sh` }, { key: 'Args', value: '--noargs' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/etc/hostname' }] },
      ],
    });
    const done = await cm.waitForAction(created.id, { intervalMs: 200, timeoutMs: 60_000 });
    expect(done.status, JSON.stringify(done.commands)).toBe('Succeeded');

    const link = await cm.getLiveResponseResultDownloadLink(created.id, 0);
    expect(new URL(link).protocol).toBe('http:');
    const served = await raw.get(`/api/machineactions/${created.id}/GetLiveResponseResultDownloadLink(index=0)`);
    expect(new URL(served.body.value).pathname).toBe(new URL(link).pathname);
    const result = JSON.parse(await (await cm.download(link)).text());
    expect(result).toMatchObject({ script_name: `hello-${backend}.sh`, exit_code: 0 });
    expect(result.script_output).toContain(sha256(script));
    const file = await (await cm.downloadLiveResponseResult(created.id, 1)).arrayBuffer();
    expect(file.byteLength).toBeGreaterThan(0);

    const outOfRange = await rejection(cm.getLiveResponseResultDownloadLink(created.id, 7));
    expect(outOfRange.status).toBeGreaterThanOrEqual(400);
    expect(outOfRange.status).toBeLessThan(500);
    await expect(cm.getLiveResponseResultDownloadLink(created.id, -1)).rejects.toThrow(TypeError);
  });

  it('the investigation package: getPackageUri once the collection Succeeded, and its download is the gzip the machine sent', async () => {
    const created = await cm.collectInvestigationPackage(agent.machineId, { Comment: 'package through the client' });
    expect((await cm.waitForAction(created.id, { intervalMs: 200, timeoutMs: 60_000 })).status).toBe('Succeeded');
    const bytes = new Uint8Array(await (await cm.downloadPackage(created.id)).arrayBuffer());
    expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]);
    expect(gunzipSync(bytes).length).toBeGreaterThan(0);

    // Another action type is not a package: the server's 400 as a CountermandError.
    const scan = await cm.runAntiVirusScan(agent.machineId, { Comment: 'not a package', ScanType: 'Quick' });
    const refused = await rejection(cm.getPackageUri(scan.id));
    expect([refused.status, refused.code]).toEqual([400, 'InvalidInput']);
    await cm.cancelMachineAction(scan.id, { Comment: 'done with it' }).catch(() => undefined);
  });
}, 120_000);

// The download itself needs no server routes: it runs whatever the server serves.
describe.each(BACKENDS)('the typed client downloads (%s)', (backend) => {
  const setup = makeFixtures(1);
  let server: TestServer;
  let cm: Countermand;
  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { rateLimitScale: 1000 } });
    cm = new Countermand({ url: server.url, tenantId: setup.tenantId, clientId: setup.clientId, clientSecret: TEST_SECRET });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a download sends no token, whatever host the link names, and a refused link is a CountermandError', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const elsewhere = createServer((req, res) => {
      seen.push(req.headers);
      if (req.url === '/expired') res.writeHead(403, { 'content-type': 'text/plain' }).end('link expired');
      else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('payload');
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;
      await cm.listMachines({ top: 1 }); // a token is cached: it must still not be sent
      expect(await (await cm.download(`${base}/file?sig=abc`)).text()).toBe('payload');
      const refused = await rejection(cm.download(`${base}/expired`));
      expect([refused.status, refused.code]).toEqual([403, 'HTTP403']);
      expect(refused.message).toContain('link expired');
      expect(seen).toHaveLength(2);
      for (const headers of seen) expect(headers.authorization).toBeUndefined();
      await expect(cm.download('file:///etc/passwd')).rejects.toThrow(TypeError);
    } finally {
      await new Promise((resolve) => elsewhere.close(resolve));
    }
  });
});
