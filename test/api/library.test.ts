import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIBRARY_FILE_MAX_BYTES } from '../../src/domain/library.js';
import { waitUntil } from '../support/agents.js';
import { BACKENDS, hangUpMidUpload, multipartBody, stored, type RawPart } from '../support/artifacts.js';
import { ALL_ROLES, Client, TEST_SECRET, appToken, hexId, startTestServer, type TestServer } from '../support/harness.js';
import { uploadLibraryFile } from '../support/library.js';

/**
 * The live-response library over HTTP (contract §2 rows 17-19): upload (multipart, streamed,
 * 20 MB), list, override, delete, per tenant; and that a refused or interrupted upload leaves
 * nothing anywhere (rows, chunks, files, staging files).
 */

const ODATA_CT = 'application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8';
const ITEM_FIELDS = ['fileName', 'sha256', 'description', 'creationTime', 'lastUpdatedTime', 'createdBy', 'hasParameters', 'parametersDescription'];
const TIME_7 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/;
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

function expectEnvelope(res: { status: number; headers: Headers; body: any }, status: number, code: string, message?: RegExp) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(Object.keys(res.body.error)).toEqual(['code', 'message', 'target']);
  expect(res.body.error.code).toBe(code);
  expect(res.body.error.target).toBe(res.headers.get('request-id'));
  if (message) expect(res.body.error.message).toMatch(message);
}

const tenantA = randomUUID();
const tenantB = randomUUID();
const appA = randomUUID();
const appB = randomUUID();
const machineA = hexId();
const machineB = hexId();
const fixtures = {
  tenants: [
    {
      id: tenantA,
      name: 'A',
      machines: [{ id: machineA, computerDnsName: 'a.test', rbacGroupId: 1 }],
      applications: [{ clientId: appA, clientSecret: TEST_SECRET, displayName: 'Library App A', roles: ALL_ROLES }],
    },
    {
      id: tenantB,
      name: 'B',
      machines: [{ id: machineB, computerDnsName: 'b.test', rbacGroupId: 1 }],
      applications: [{ clientId: appB, clientSecret: TEST_SECRET, displayName: 'Library App B', roles: ALL_ROLES }],
    },
  ],
};

for (const { backend, skip } of BACKENDS) {
  describe.skipIf(skip !== null)(`the library on ${backend}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let server: TestServer;
    let token: string;
    let api: Client;
    let apiB: Client;

    /** A raw POST of exactly these bytes (for bodies a FormData cannot produce). */
    const postRaw = async (body: Buffer, contentType: string) => {
      const res = await fetch(`${server.url}/api/libraryfiles`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
        body,
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined, text };
    };
    const list = async (c = api) => (await c.get('/api/libraryfiles')).body.value as { fileName: string; sha256: string }[];

    beforeAll(async () => {
      server = await startTestServer({ fixtures, backend, config: { rateLimitScale: 100, blobGraceSeconds: 0, sweepIntervalSeconds: 3600 } });
      token = await appToken(server, tenantA, appA);
      api = new Client(server.url, { authorization: `Bearer ${token}` });
      apiB = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenantB, appB)}` });
    });
    afterAll(async () => {
      await server?.stop();
    });

    it('an upload answers 200 with the library item; the list shows it; DELETE answers 204', async () => {
      const content = '#!/bin/sh\necho collected\n';
      const res = await uploadLibraryFile(api, 'collect.sh', content, {
        Description: 'Collects things',
        ParametersDescription: '-v verbose',
        HasParameters: 'True',
      });
      expect(res.status, res.text).toBe(200);
      expect(res.headers.get('content-type')).toBe(ODATA_CT);
      expect(res.headers.get('odata-version')).toBe('4.0');
      expect(Object.keys(res.body)).toEqual(['@odata.context', ...ITEM_FIELDS]);
      expect(res.body['@odata.context']).toBe(`${server.baseUrl}/api/$metadata#LibraryFiles/$entity`);
      expect(res.body).toMatchObject({
        fileName: 'collect.sh',
        sha256: sha256(content),
        description: 'Collects things',
        createdBy: 'Library App A',
        hasParameters: true,
        parametersDescription: '-v verbose',
      });
      expect(res.body.creationTime).toMatch(TIME_7);
      expect(res.body.lastUpdatedTime).toBe(res.body.creationTime);

      const listed = await api.get('/api/libraryfiles');
      expect(listed.status).toBe(200);
      expect(listed.body['@odata.context']).toBe(`${server.baseUrl}/api/$metadata#LibraryFiles`);
      const item = listed.body.value.find((f: { fileName: string }) => f.fileName === 'collect.sh');
      expect(Object.keys(item)).toEqual(ITEM_FIELDS);
      expect(item).toEqual(Object.fromEntries(ITEM_FIELDS.map((k) => [k, res.body[k]])));

      const deleted = await api.request('DELETE', '/api/libraryfiles/collect.sh');
      expect(deleted.status).toBe(204);
      expect(deleted.text).toBe('');
      expect((await list()).map((f) => f.fileName)).not.toContain('collect.sh');
    });

    it('an existing name (in any case) needs OverrideIfExists; with it the content is replaced and the creation kept', async () => {
      const first = await uploadLibraryFile(api, 'Override.sh', 'one', { Description: 'first' });
      expect(first.status).toBe(200);
      const again = await uploadLibraryFile(api, 'override.SH', 'two');
      expectEnvelope(again, 400, 'BadRequest', /already exists.*OverrideIfExists/);
      const no = await uploadLibraryFile(api, 'Override.sh', 'two', { OverrideIfExists: 'false' });
      expectEnvelope(no, 400, 'BadRequest', /already exists/);
      expect((await list()).find((f) => f.fileName === 'Override.sh')!.sha256).toBe(sha256('one'));

      const replaced = await uploadLibraryFile(api, 'override.sh', 'two', { OverrideIfExists: 'true' });
      expect(replaced.status, replaced.text).toBe(200);
      expect(replaced.body).toMatchObject({ fileName: 'override.sh', sha256: sha256('two'), description: null, createdBy: 'Library App A' });
      expect(replaced.body.creationTime).toBe(first.body.creationTime);
      expect(Date.parse(replaced.body.lastUpdatedTime)).toBeGreaterThanOrEqual(Date.parse(first.body.creationTime));
      const names = (await list()).filter((f) => f.fileName.toLowerCase() === 'override.sh');
      expect(names).toEqual([expect.objectContaining({ fileName: 'override.sh', sha256: sha256('two') })]);
    });

    it('DELETE of an unknown name is 404 NotFound, twice as well; names match in any case', async () => {
      expectEnvelope(await api.request('DELETE', '/api/libraryfiles/nothing-here.sh'), 404, 'NotFound', /nothing-here\.sh/);
      expect((await uploadLibraryFile(api, 'Twice.ps1', 'x')).status).toBe(200);
      expect((await api.request('DELETE', '/api/libraryfiles/TWICE.PS1')).status).toBe(204);
      expectEnvelope(await api.request('DELETE', '/api/libraryfiles/Twice.ps1'), 404, 'NotFound');
      // Percent-encoded names work; a name no file could have is just unknown; a NUL is bad input.
      expect((await uploadLibraryFile(api, 'with space.sh', 'x')).status).toBe(200);
      expect((await api.request('DELETE', '/api/libraryfiles/with%20space.sh')).status).toBe(204);
      expectEnvelope(await api.request('DELETE', `/api/libraryfiles/${'n'.repeat(300)}`), 404, 'NotFound');
      expectEnvelope(await api.request('DELETE', '/api/libraryfiles/a%00b'), 400, 'BadRequest', /NUL/);
    });

    it('a file of exactly 20 MB is kept; 20 MB + 1 byte is refused with 400 InvalidInput and nothing is stored', async () => {
      const exact = Buffer.alloc(LIBRARY_FILE_MAX_BYTES, 0x61);
      const ok = await uploadLibraryFile(api, 'exact-20mb.bin', exact);
      expect(ok.status, ok.text).toBe(200);
      expect(ok.body.sha256).toBe(sha256(exact));
      const before = await stored(server);
      const over = Buffer.concat([exact, Buffer.from('b')]);
      const refused = await uploadLibraryFile(api, 'over-20mb.bin', over);
      expectEnvelope(refused, 400, 'InvalidInput', new RegExp(`'File' is larger than ${LIBRARY_FILE_MAX_BYTES} bytes`));
      expect(await stored(server)).toEqual(before);
      expect((await list()).map((f) => f.fileName)).not.toContain('over-20mb.bin');
      // The connection was kept usable: the form was read to its end before the answer.
      expect((await api.get('/api/libraryfiles')).status).toBe(200);
      // Far over (the body announced at once): refused before it is read.
      const huge = await postRaw(Buffer.alloc(LIBRARY_FILE_MAX_BYTES + 2 * 1024 * 1024), 'multipart/form-data; boundary=x');
      expectEnvelope(huge, 400, 'InvalidInput', /larger than/);
      expect(await stored(server)).toEqual(before);
      expect((await api.request('DELETE', '/api/libraryfiles/exact-20mb.bin')).status).toBe(204);
    });

    it("what an upload leaves under the data dir is its owner's only: files 0600, folders 0700", async () => {
      const res = await uploadLibraryFile(api, 'private.sh', `private ${randomUUID()}`);
      expect(res.status, res.text).toBe(200);
      const root = join(server.dataDir, 'blobs');
      const entries = readdirSync(root, { recursive: true, withFileTypes: true });
      const modes = entries.map((e) => [e.isDirectory() ? 'dir' : 'file', statSync(join(e.parentPath, e.name)).mode & 0o777]);
      expect(statSync(root).mode & 0o777).toBe(0o700);
      expect(modes.filter(([kind, mode]) => mode !== (kind === 'dir' ? 0o700 : 0o600))).toEqual([]);
      // The embedded store keeps the blob itself there; PostgreSQL keeps only its staging folder.
      const blobFile = join(root, 'sha256', res.body.sha256.slice(0, 2), res.body.sha256);
      expect(existsSync(blobFile)).toBe(backend === 'sqlite');
      expect((await api.request('DELETE', '/api/libraryfiles/private.sh')).status).toBe(204);
    });

    it('a client that hangs up mid-upload leaves nothing: no staging file, no row, no chunk', async () => {
      const before = await stored(server);
      const { body, contentType } = multipartBody([
        { name: 'Description', content: 'half of it' },
        { name: 'File', filename: 'interrupted.bin', content: Buffer.alloc(4 * 1024 * 1024, 0x62) },
      ]);
      await hangUpMidUpload(server.url, '/api/libraryfiles', { authorization: `Bearer ${token}`, 'content-type': contentType }, body, 2 * 1024 * 1024, async () => {
        // Hang up only once the server is really storing the file.
        await waitUntil(async () => (await stored(server)).stagingFiles > 0, 10_000, 'a staging file');
      });
      await waitUntil(async () => (await stored(server)).stagingFiles === 0, 10_000, 'the staging file to go');
      expect(await stored(server)).toEqual(before);
      expect((await list()).map((f) => f.fileName)).not.toContain('interrupted.bin');
      // The server is fine afterwards.
      expect((await uploadLibraryFile(api, 'after-interruption.sh', 'x')).status).toBe(200);
    });

    it.each([
      ['a relative path', '../escape.sh'],
      ['a folder', 'dir/x.sh'],
      ['a Windows path', 'C:\\temp\\x.ps1'],
      ['dot-dot', '..'],
      ['a control character', 'a\tb.sh'],
      ['leading spaces', '  x.sh'],
      ['256 characters', `${'n'.repeat(253)}.sh`],
    ])('a file name with %s is refused (400 InvalidInput) and nothing is stored', async (_what, name) => {
      const before = await stored(server);
      const { body, contentType } = multipartBody([{ name: 'File', filename: name, content: 'x' }]);
      expectEnvelope(await postRaw(body, contentType), 400, 'InvalidInput', /file name of 'File'/);
      expect(await stored(server)).toEqual(before);
    });

    it('a NUL in the file name is refused; names beyond ASCII are kept as sent', async () => {
      const withNul = multipartBody([{ name: 'File', filename: 'x', content: 'x' }]);
      const nul = Buffer.from(withNul.body.toString('latin1').replace('filename="x"', "filename*=UTF-8''a%00b.sh"), 'latin1');
      expectEnvelope(await postRaw(nul, withNul.contentType), 400, 'InvalidInput', /NUL/);
      const res = await uploadLibraryFile(api, 'отчёт-συλλογή.sh', 'x');
      expect(res.status, res.text).toBe(200);
      expect(res.body.fileName).toBe('отчёт-συλλογή.sh');
      expect((await api.request('DELETE', `/api/libraryfiles/${encodeURIComponent('ОТЧЁТ-ΣΥΛΛΟΓΉ.sh')}`)).status).toBe(204);
    });

    it.each<[string, RawPart[], string, RegExp]>([
      ['no File', [{ name: 'Description', content: 'd' }], 'MissingRequiredParameter', /'File'/],
      ['File as a text field', [{ name: 'File', content: 'not a file' }], 'InvalidInput', /file part/],
      ['HasParameters not a boolean', [{ name: 'File', filename: 'f.sh', content: 'x' }, { name: 'HasParameters', content: 'yes' }], 'InvalidInput', /HasParameters/],
      ['OverrideIfExists not a boolean', [{ name: 'OverrideIfExists', content: '1' }, { name: 'File', filename: 'f.sh', content: 'x' }], 'InvalidInput', /OverrideIfExists/],
      ['a Description over 4096 characters', [{ name: 'File', filename: 'f.sh', content: 'x' }, { name: 'Description', content: 'd'.repeat(4097) }], 'InvalidInput', /Description.*4096/],
      ['a Description given twice', [{ name: 'Description', content: 'a' }, { name: 'description', content: 'b' }, { name: 'File', filename: 'f.sh', content: 'x' }], 'InvalidInput', /more than once/],
      ['two files', [{ name: 'File', filename: 'f.sh', content: 'x' }, { name: 'Other', filename: 'g.sh', content: 'y' }], 'InvalidRequestBody', /one file/],
    ])('a form with %s is refused and nothing is stored', async (_what, parts, code, message) => {
      const before = await stored(server);
      const { body, contentType } = multipartBody(parts);
      expectEnvelope(await postRaw(body, contentType), 400, code, message);
      expect(await stored(server)).toEqual(before);
    });

    it('field names match in any case; unknown fields are ignored', async () => {
      const { body, contentType } = multipartBody([
        { name: 'description', content: 'lower-case field' },
        { name: 'Unknown', content: 'ignored' },
        { name: 'file', filename: 'cased.sh', content: 'x' },
        { name: 'overrideifexists', content: 'TRUE' },
      ]);
      const res = await postRaw(body, contentType);
      expect(res.status, res.text).toBe(200);
      expect(res.body).toMatchObject({ fileName: 'cased.sh', description: 'lower-case field' });
    });

    it('a malformed or truncated multipart body is 400 InvalidRequestBody, never a 500', async () => {
      const { body, contentType } = multipartBody([{ name: 'File', filename: 'cut.sh', content: 'x'.repeat(1000) }]);
      expectEnvelope(await postRaw(body.subarray(0, 300), contentType), 400, 'InvalidRequestBody', /malformed or incomplete/);
      expectEnvelope(await postRaw(Buffer.from('not multipart at all'), contentType), 400, 'InvalidRequestBody');
      expectEnvelope(await postRaw(body, 'multipart/form-data'), 415, 'UnsupportedMediaType');
    });

    it('only the library takes multipart: JSON there is 415, and multipart elsewhere is 415', async () => {
      expectEnvelope(await api.post('/api/libraryfiles', { File: 'x' }), 415, 'UnsupportedMediaType', /multipart\/form-data/);
      const { body, contentType } = multipartBody([{ name: 'Comment', content: 'x' }]);
      const res = await fetch(`${server.url}/api/machines/${machineA}/isolate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
        body,
      });
      expect(res.status).toBe(415);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UnsupportedMediaType');
    });

    it("tenants have their own library: another tenant's file does not exist for it", async () => {
      expect((await uploadLibraryFile(api, 'tenant-a-only.sh', 'a')).status).toBe(200);
      expect((await list(apiB)).map((f) => f.fileName)).not.toContain('tenant-a-only.sh');
      expectEnvelope(await apiB.request('DELETE', '/api/libraryfiles/tenant-a-only.sh'), 404, 'NotFound');
      const lr = await apiB.post(`/api/machines/${machineB}/runliveresponse`, {
        Comment: 'x',
        Commands: [{ type: 'RunScript', params: [{ key: 'ScriptName', value: 'tenant-a-only.sh' }] }],
      });
      expectEnvelope(lr, 400, 'InvalidInput', /library has no file 'tenant-a-only\.sh'/);
      // The same name in tenant B is a file of its own.
      expect((await uploadLibraryFile(apiB, 'tenant-a-only.sh', 'b')).status).toBe(200);
      expect((await list()).find((f) => f.fileName === 'tenant-a-only.sh')!.sha256).toBe(sha256('a'));
      expect((await list(apiB)).find((f) => f.fileName === 'tenant-a-only.sh')!.sha256).toBe(sha256('b'));
    });

    it('the list takes OData options like the other collections', async () => {
      for (const name of ['odata-1.sh', 'odata-2.sh', 'odata-3.sh']) expect((await uploadLibraryFile(api, name, name)).status).toBe(200);
      const page = await api.get("/api/libraryfiles?$filter=startswith(fileName,'odata-')&$count=true&$top=2&$orderby=fileName desc");
      expect(page.status, page.text).toBe(200);
      expect(page.body['@odata.count']).toBe(3);
      expect(page.body.value.map((f: { fileName: string }) => f.fileName)).toEqual(['odata-3.sh', 'odata-2.sh']);
      const one = await api.get("/api/libraryfiles?$filter=fileName eq 'odata-2.sh'");
      expect(one.body.value).toHaveLength(1);
      expectEnvelope(await api.get('/api/libraryfiles?$filter=size gt 1'), 400, 'ODataError', /size/);
      // $orderby takes every scalar property; $filter only the listed ones.
      expect((await api.get('/api/libraryfiles?$orderby=description desc,hasParameters')).status).toBe(200);
      expectEnvelope(await api.get("/api/libraryfiles?$filter=description eq 'x'"), 400, 'ODataError');
    });

    it('20 simultaneous uploads of one new name: exactly one creates it, the others are told it exists', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => uploadLibraryFile(api, 'race.sh', `content ${i}`)));
      expect(results.filter((r) => r.status === 200)).toHaveLength(1);
      for (const r of results.filter((x) => x.status !== 200)) expectEnvelope(r, 400, 'BadRequest', /already exists/);
      const winner = results.find((r) => r.status === 200)!;
      expect((await list()).filter((f) => f.fileName === 'race.sh')).toEqual([expect.objectContaining({ sha256: winner.body.sha256 })]);
    });

    it('identical content is stored once, and a blob goes only when nothing refers to it any more', async () => {
      const content = `shared ${randomUUID()}`;
      await server.sweeper.sweep(); // what earlier tests left unreferenced goes first
      const before = await stored(server);
      expect((await uploadLibraryFile(api, 'shared-1.sh', content)).status).toBe(200);
      expect((await uploadLibraryFile(api, 'shared-2.sh', content)).status).toBe(200);
      const both = await stored(server);
      expect(both.blobs).toBe(before.blobs + 1);
      expect(both.libraryFiles).toBe(before.libraryFiles + 2);
      expect((await api.request('DELETE', '/api/libraryfiles/shared-1.sh')).status).toBe(204);
      await server.sweeper.sweep();
      expect((await stored(server)).blobs).toBe(before.blobs + 1);
      expect((await api.request('DELETE', '/api/libraryfiles/shared-2.sh')).status).toBe(204);
      await server.sweeper.sweep();
      const after = await stored(server);
      expect(after.blobs).toBe(before.blobs);
      expect(after.blobFiles).toBe(before.blobFiles);
      expect(after.chunks).toBe(before.chunks);
    });
  });
}
