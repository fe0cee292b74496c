import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from './process.js';

/**
 * Browser tests drive Debian's chromium through playwright-core; nothing is downloaded. CI
 * (`.ci/run`) installs the `chromium` package when it is missing; elsewhere the tests are skipped
 * with this reason printed.
 */
export const CHROMIUM = process.env.COUNTERMAND_CHROMIUM ?? '/usr/bin/chromium';
export const BROWSER_SKIP_REASON = `no chromium at ${CHROMIUM}: install Debian's chromium package (.ci/run does) or set COUNTERMAND_CHROMIUM`;
export const HAS_CHROMIUM = existsSync(CHROMIUM);
if (!HAS_CHROMIUM) console.warn(`[browser tests skipped] ${BROWSER_SKIP_REASON}`);

/** Screenshots are kept as test artifacts here (gitignored), one file per test and step. */
export const SCREENSHOTS = join(ROOT, 'test-results', 'screenshots');

/** Builds the Action Center from the current source into a temporary folder (so a stale dist/ is never tested). */
export async function buildActionCenter(): Promise<string> {
  const outDir = mkdtempSync(join(tmpdir(), 'countermand-web-'));
  const vite = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
  const child = spawn(process.execPath, [vite, 'build', '--config', 'web/vite.config.ts', '--outDir', outDir, '--emptyOutDir'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0 || !existsSync(join(outDir, 'index.html'))) throw new Error(`vite build failed (${code}):\n${output}`);
  return outDir;
}

export interface Browser {
  context: BrowserContext;
  /** A new tab that records console errors, page errors and CSP violations. */
  page(): Promise<TrackedPage>;
  close(): Promise<void>;
}

export interface TrackedPage {
  page: Page;
  /** Uncaught exceptions and Content-Security-Policy violations seen so far. */
  problems: string[];
}

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Chromium with a fresh profile of its own, removed on close; a laptop-sized window. */
export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'countermand-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1366, height: 768 },
    locale: 'en-GB',
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  return {
    context,
    async page() {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
      });
      return { page, problems };
    },
    async close() {
      const closing = context.close().then(() => 'closed' as const);
      const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 10_000));
      // A browser that does not close in time is killed: each of its processes, found by this
      // run's own profile folder on its command line.
      if ((await Promise.race([closing, timer])) === 'timeout') for (const pid of processesUsing(profile)) process.kill(pid, 'SIGKILL');
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

function processesUsing(profile: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(profile)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}.png`), fullPage: true });
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; failureSummary?: string }[];
}

/**
 * axe-core (offline, injected through the DevTools protocol, which the page's CSP does not
 * restrict) over the page as it is now: the serious and critical WCAG 2.1 A/AA violations.
 */
export async function accessibilityViolations(page: Page): Promise<AxeViolation[]> {
  if (!(await inPage<boolean>(page, "typeof window.axe !== 'undefined'"))) await page.evaluate(AXE_SOURCE);
  const violations = await inPage<AxeViolation[]>(
    page,
    "axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }, resultTypes: ['violations'] }).then((r) => r.violations)",
  );
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** For a readable failure: each violation with where it is. */
export const describeViolations = (violations: readonly AxeViolation[]) =>
  violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`).join('\n');

/**
 * Evaluates an expression in the page. Written as text: the test program is typed for Node,
 * without the DOM's globals.
 */
export function inPage<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}
