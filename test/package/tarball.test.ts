import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanup } from '../support/harness.js';
import { freshDatabase, PG_URL } from '../support/postgres.js';
import { ROOT } from '../support/process.js';

/**
 * The package installs like one (docs/cli.md, "Installing"): `npm pack` makes a tarball that
 * installs in an empty folder, whose `countermand` prints its version, serves, answers a token
 * request, and whose `import { Countermand } from 'countermand'` works, types included. It needs
 * the npm registry (the dependencies come from there); without it the test is skipped, saying so.
 */

const run = promisify(execFile);
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const NPM = 'npm';
/** Each step's bound: the install compiles better-sqlite3 (no prebuilt binary can be fetched here). */
const PACK_MS = 5 * 60_000;
const INSTALL_MS = 15 * 60_000;

async function registryProblem(): Promise<string | null> {
  try {
    await run(NPM, ['ping'], { timeout: 30_000 });
    return null;
  } catch (error) {
    return `the npm registry cannot be reached (npm ping: ${String((error as { stderr?: string }).stderr ?? error).trim().split('\n').at(-1)})`;
  }
}

const skipReason = await registryProblem();
if (skipReason) console.warn(`[package test skipped] ${skipReason}`);

/** A process in its own group, so stopping it stops what it started too (npx runs the bin as a child). */
function start(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, file = NPM) {
  const child: ChildProcess = spawn(file, args, { cwd, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (text += c.toString()));
  return {
    child,
    output: () => text,
    async waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = text.match(pattern);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`exited before ${pattern}:\n${text}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${text}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    /** Signals the whole group and resolves once every process in it has gone. */
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      try {
        process.kill(-child.pid!, signal);
        for (;;) {
          process.kill(-child.pid!, 0);
          if (Date.now() > deadline) throw new Error(`the process group ${child.pid} outlived ${signal}:\n${text}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
    },
  };
}

describe.skipIf(skipReason !== null)(`the packed tarball${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-package-'));
  const app = join(dir, 'app');
  const started: ReturnType<typeof start>[] = [];
  let tarball: string;
  afterAll(async () => {
    for (const p of started) await p.stop('SIGKILL');
    cleanup(dir);
  });

  it('npm pack holds the build, the declarations, the docs and the pinned dependency tree, and no sources or tests', async () => {
    const { stdout } = await run(NPM, ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, timeout: PACK_MS, maxBuffer: 64 * 1024 * 1024 });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    tarball = join(dir, packed!.filename);
    const files = packed!.files.map((f) => f.path);
    for (const f of ['package.json', 'README.md', 'LICENSE', 'npm-shrinkwrap.json', 'dist/cli/main.js', 'dist/client/index.js', 'dist/client/index.d.ts', 'dist/server.js', 'docs/client.md', 'docs/cli.md']) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => /^(src|test|bench|scripts|data)\/|\.map$|^package-lock\.json$|\.db$/.test(f))).toEqual([]);
  }, PACK_MS);

  it('installs in an empty folder with its pinned dependencies only', async () => {
    mkdirSync(app);
    await run(NPM, ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, timeout: INSTALL_MS, maxBuffer: 64 * 1024 * 1024 });
    const installed = JSON.parse(readFileSync(join(app, 'node_modules', 'countermand', 'package.json'), 'utf8'));
    expect(installed.version).toBe(VERSION);
    // The shrinkwrap pins what the project's lockfile pins; development tools stay out.
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')).packages as Record<string, { version: string; dev?: boolean }>;
    for (const name of ['fastify', 'better-sqlite3', 'pg', 'cookie']) {
      const got = JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8')).version;
      expect(got, name).toBe(lock[`node_modules/${name}`]!.version);
    }
    for (const dev of ['typescript', 'vitest', 'tsx']) expect(() => readFileSync(join(app, 'node_modules', dev, 'package.json')), dev).toThrow();
  }, INSTALL_MS);

  it('`npx countermand --version` prints the version', async () => {
    const { stdout } = await run(NPM, ['exec', '--no', '--', 'countermand', '--version'], { cwd: app, timeout: 60_000 });
    expect(stdout.trim()).toBe(VERSION);
    const npx = await run('npx', ['countermand', '--version'], { cwd: app, timeout: 60_000 });
    expect(npx.stdout.trim()).toBe(VERSION);
  }, 120_000);

  it('`npx countermand serve` starts, answers a token request, serves the API to the packaged client and CLI, and stops on SIGTERM', async () => {
    const data = join(dir, 'data');
    const server = start(['exec', '--no', '--', 'countermand', 'serve', '--port', '0', '--data-dir', data, '--log-level', 'warn'], app);
    started.push(server);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    const [, tenant, clientId, secret] = await server.waitFor(/\/([0-9a-f-]{36})\/oauth2\/v2\.0\/token[\s\S]*?client_id=([0-9a-f-]{36})[\s\\]*-d client_secret=(\S+)/);

    const token = await fetch(`${url}/${tenant}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId!, client_secret: secret!, scope: 'https://api.securitycenter.microsoft.com/.default' }),
    });
    expect(token.status).toBe(200);
    expect(Object.keys((await token.json()) as object)).toEqual(['token_type', 'expires_in', 'ext_expires_in', 'access_token']);

    // A consumer of the package, `import { Countermand } from 'countermand'`: compiled against its declarations, then run.
    writeFileSync(
      join(app, 'consumer.ts'),
      [
        "import { Countermand, CountermandError, type Machine } from 'countermand';",
        'const cm = new Countermand({ url: process.env.URL!, tenantId: process.env.TENANT!, clientId: process.env.CLIENT_ID!, clientSecret: process.env.SECRET! });',
        'const machines: Machine[] = (await cm.listMachines()).value;',
        'const missing = await cm.getMachineAction(crypto.randomUUID()).catch((e: unknown) => e);',
        "console.log(JSON.stringify({ names: machines.map((m) => m.computerDnsName).sort(), missing: missing instanceof CountermandError ? missing.code : 'none' }));",
        'declare const process: { env: Record<string, string | undefined> };',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2023', 'dom'], strict: true, skipLibCheck: false, types: [], outDir: 'out' },
        files: ['consumer.ts'],
      }),
    );
    writeFileSync(join(app, 'package.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')), type: 'module' }));
    await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(app, 'tsconfig.json')], { cwd: app, timeout: 120_000 });
    const env = { URL: url!, TENANT: tenant!, CLIENT_ID: clientId!, SECRET: secret! };
    const consumer = await run(process.execPath, [join('out', 'consumer.js')], { cwd: app, env: { ...process.env, ...env }, timeout: 60_000 });
    expect(JSON.parse(consumer.stdout)).toEqual({
      names: ['sim-01.demo.countermand.local', 'sim-02.demo.countermand.local', 'sim-03.demo.countermand.local'],
      missing: 'NotFound',
    });

    // The installed CLI talks to it too.
    const listed = await run(NPM, ['exec', '--no', '--', 'countermand', 'machines', 'list', '--json'], {
      cwd: app,
      timeout: 60_000,
      env: { ...process.env, COUNTERMAND_URL: url, COUNTERMAND_TENANT: tenant, COUNTERMAND_CLIENT_ID: clientId, COUNTERMAND_CLIENT_SECRET: secret, COUNTERMAND_PROFILE_FILE: join(dir, 'none.json') },
    });
    expect(JSON.parse(listed.stdout).value).toHaveLength(3);

    // npx does not pass signals on: the group gets SIGTERM, and the server shuts down in order.
    await server.stop('SIGTERM');
    expect(server.output()).toContain('SIGTERM: shutting down');
    expect(server.output()).not.toMatch(/Error|at .*\(.*:\d+:\d+\)/);
  }, 240_000);

  it.skipIf(!PG_URL)('serves on PostgreSQL from the tarball too (the pg driver is in it)', async () => {
    const database = await freshDatabase();
    try {
      const server = start(['exec', '--no', '--', 'countermand', 'serve', '--port', '0', '--data-dir', join(dir, 'pg-data'), '--database-url', database.url, '--log-level', 'warn'], app);
      started.push(server);
      const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
      const [, tenant, clientId, secret] = await server.waitFor(/\/([0-9a-f-]{36})\/oauth2\/v2\.0\/token[\s\S]*?client_id=([0-9a-f-]{36})[\s\\]*-d client_secret=(\S+)/);
      const token = await fetch(`${url}/${tenant}/oauth2/v2.0/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId!, client_secret: secret!, scope: 'https://api.securitycenter.microsoft.com/.default' }),
      });
      expect(token.status).toBe(200);
      await server.stop('SIGTERM');
      expect(server.output()).toContain('SIGTERM: shutting down');
    } finally {
      await database.drop();
    }
  }, 120_000);
});

/**
 * After the README's install (`npm ci`, which builds, then `npm link`), `countermand` is on the
 * PATH and runs from the checkout. The link goes under a prefix of the test's own (npm's global
 * prefix through npm_config_prefix), never the machine's; it needs no registry.
 */
describe('`npm link` from the checkout', () => {
  const prefix = mkdtempSync(join(tmpdir(), 'countermand-link-'));
  const elsewhere = mkdtempSync(join(tmpdir(), 'countermand-linked-cwd-'));
  const started: ReturnType<typeof start>[] = [];
  const env = { ...process.env, npm_config_prefix: prefix, PATH: `${join(prefix, 'bin')}:${process.env.PATH}` };
  afterAll(async () => {
    for (const p of started) await p.stop('SIGKILL');
    cleanup(prefix);
    cleanup(elsewhere);
  });

  it('puts `countermand` on the PATH: --version, and serve from any folder', async () => {
    // What `npm ci` ran (the prepare script); here, so the link runs this checkout's code.
    await run(NPM, ['run', 'build'], { cwd: ROOT, timeout: PACK_MS });
    await run(NPM, ['link', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], { cwd: ROOT, env, timeout: 120_000 });
    const { stdout } = await run('countermand', ['--version'], { cwd: elsewhere, env, timeout: 60_000 });
    expect(stdout.trim()).toBe(VERSION);

    const server = start(['serve', '--port', '0', '--data-dir', join(elsewhere, 'data'), '--log-level', 'warn'], elsewhere, env, 'countermand');
    started.push(server);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    expect((await fetch(`${url}/api/machines`)).status).toBe(401);
    await server.stop('SIGTERM');
    expect(server.output()).toContain('SIGTERM: shutting down');
  }, PACK_MS + 180_000);
});
