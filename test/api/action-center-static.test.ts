import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACTION_CENTER_HEADERS, BUNDLED_ACTION_CENTER_DIR } from '../../src/api/action-center.js';
import { Client, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { ROOT } from '../support/process.js';
import { rawExchange } from '../support/raw-http.js';

/**
 * How the server serves the Action Center's files (docs/action-center.md): only the files of the
 * bundle, with the UI's security headers and caching; every other path keeps the contract's 404
 * envelope. (A bundle of a few files stands in for the built one; the browser tests use the
 * real build.)
 */
describe('the Action Center files at /', () => {
  const setup = makeFixtures(1);
  let dir: string;
  let server: TestServer;
  let http: Client;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'countermand-bundle-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>x</title><script type="module" src="/assets/app-1234.js"></script>');
    writeFileSync(join(dir, 'assets', 'app-1234.js'), 'console.log(1)');
    writeFileSync(join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    writeFileSync(join(dir, '.env'), 'SECRET=1');
    server = await startTestServer({ fixtures: setup.fixtures, config: { actionCenterDir: dir } });
    http = new Client(server.url);
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves index.html at / with the security headers and no caching', async () => {
    for (const path of ['/', '/index.html']) {
      const res = await http.get(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(res.text).toContain('/assets/app-1234.js');
      for (const [name, value] of Object.entries(ACTION_CENTER_HEADERS)) expect(res.headers.get(name), name).toBe(value);
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
      expect(res.headers.get('content-security-policy')).not.toContain('unsafe-inline');
      expect(res.headers.get('cache-control')).toBe('no-cache');
      expect(res.headers.get('request-id')).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('serves hashed assets to be cached for good, and HEAD', async () => {
    const res = await http.get('/assets/app-1234.js');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/javascript|^application\/javascript/);
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await http.request('HEAD', '/')).status).toBe(200);
    expect((await http.get('/favicon.svg')).headers.get('content-type')).toBe('image/svg+xml');
  });

  it("every other path answers the contract's 404 envelope: no catch-all, no dotfiles, no way out of the folder", async () => {
    const paths = [
      '/nope',
      '/actions',
      '/assets/missing.js',
      '/.env',
      '/api/nope',
      '/..%2fpackage.json',
      '/assets/..%2f..%2fpackage.json',
      '/%2e%2e/%2e%2e/package.json',
    ];
    for (const path of paths) {
      const res = await http.get(path);
      expect(res.status, path).toBe(404);
      expect(res.headers.get('content-type'), path).toBe('application/json; charset=utf-8');
      expect(res.body.error.code, path).toBe('NotFound');
      expect(res.body.error.target, path).toBe(res.headers.get('request-id'));
    }
    // Byte for byte, without a client that normalises the dots away.
    for (const target of ['/../../package.json', '/assets/../../package.json', '/%2e%2e/package.json']) {
      const { responses } = await rawExchange(Number(new URL(server.url).port), `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect([400, 404], target).toContain(responses[0]!.status);
      expect(responses[0]!.json.error.code, target).toMatch(/^(NotFound|BadRequest)$/);
    }
    // A file that appears after the start is not served: the routes are the bundle's files.
    writeFileSync(join(dir, 'later.html'), 'later');
    expect((await http.get('/later.html')).status).toBe(404);
    // Other methods on a file are the contract's 404 too (the UI is not an API resource).
    const post = await http.post('/', {});
    expect(post.status).toBe(404);
    expect(post.body.error.code).toBe('NotFound');
  });

  it('without a bundle, or with the Action Center off, / is 404 and the log says why', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'countermand-nobundle-'));
    const missing = await startTestServer({ fixtures: setup.fixtures, config: { actionCenterDir: empty } });
    const off = await startTestServer({ fixtures: setup.fixtures, config: { actionCenterDir: dir, actionCenter: false } });
    try {
      expect((await new Client(missing.url).get('/')).status).toBe(404);
      expect(missing.logs.some((l) => l.includes('the Action Center is not built'))).toBe(true);
      expect((await new Client(off.url).get('/')).status).toBe(404);
    } finally {
      await missing.stop();
      await off.stop();
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('by default serves the bundle `npm run build` writes: dist/web at the package root', () => {
    expect(BUNDLED_ACTION_CENTER_DIR).toBe(join(ROOT, 'dist', 'web') + '/');
  });
});
