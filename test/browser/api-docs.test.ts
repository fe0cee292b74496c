import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeFixtures, startTestServer, type TestServer } from '../support/harness.js';

/**
 * /docs in Debian's chromium (nothing downloaded): the interactive documentation renders the
 * server's own document, with every file it needs served by the server itself (no request
 * leaves it), under a strict Content-Security-Policy that the page does not violate.
 */
const CHROMIUM = process.env.COUNTERMAND_CHROMIUM ?? '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
if (!HAS_CHROMIUM) console.warn(`[browser tests skipped] no chromium at ${CHROMIUM}: install Debian's chromium package (.ci/run does) or set COUNTERMAND_CHROMIUM`);

describe.skipIf(!HAS_CHROMIUM)('the interactive API documentation', () => {
  let server: TestServer;
  let context: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: makeFixtures(1).fixtures });
    profile = mkdtempSync(join(tmpdir(), 'countermand-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    });
    context.setDefaultTimeout(20_000);
  });
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await server?.stop();
  });

  it('renders every tag and operation from files the server serves, with no CSP violation', async () => {
    const page = await context.newPage();
    const requests: string[] = [];
    const problems: string[] = [];
    page.on('request', (request) => requests.push(request.url()));
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    const response = await page.goto(`${server.url}/docs`, { waitUntil: 'load' });
    expect(response?.status()).toBe(200);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe');

    // swagger-ui draws the tags from /docs/json, then their operations.
    for (const tag of ['Machine actions', 'Machines', 'Alerts', 'Investigations', 'OData metadata', 'Tokens', 'Agent protocol', 'Service', 'Documentation']) {
      await page.locator(`.opblock-tag[data-tag="${tag}"]`).waitFor();
    }
    await page.getByText('Isolate a machine from the network').first().waitFor();
    await page.getByText("/api/machines/findbyip(ip='{ip}',timestamp={timestamp})").first().waitFor();
    const operations = await page.locator('.opblock').count();
    const document = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.values(document.paths).reduce((n, item) => n + Object.keys(item).filter((k) => k !== 'parameters').length, 0);
    expect(operations).toBe(documented);

    const own = new URL(server.url).origin;
    expect(requests.filter((url) => !url.startsWith(`${own}/`) && !url.startsWith('data:'))).toEqual([]);
    expect(requests.some((url) => url.endsWith('/docs/json'))).toBe(true);
    expect(problems).toEqual([]);
    await page.screenshot({ path: join('test-results', 'screenshots', 'api-docs.png'), fullPage: false });
    await page.close();
  });
});
