import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { cleanup, makeFixtures } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';
import { ROOT, runCli, spawnCli, type SpawnOptions, type SpawnedCli } from '../support/process.js';
import { asNobody, NOBODY_UID, runAs, setprivReason, unprivileged } from '../support/unprivileged.js';

/**
 * What an operator meets on the command line: the data dir's permissions (checked as another
 * local user), the data-dir lock, the start-up order, one-line errors, which store a command
 * opened, and --version. Every case runs the real `countermand` as a process.
 */

const dirs: string[] = [];
const procs: SpawnedCli[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
  }
});
afterAll(() => {
  for (const d of dirs.splice(0)) cleanup(d);
});

/** A fresh directory; `open` makes it 0755, as a home or /srv directory usually is. */
function tempDir(open = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-ops-'));
  dirs.push(dir);
  if (open) chmodSync(dir, 0o755);
  return dir;
}

function serve(args: string[], env: NodeJS.ProcessEnv = {}, options: SpawnOptions = {}): SpawnedCli {
  const p = spawnCli(['serve', '--port', '0', '--log-level', 'warn', ...args], env, options);
  procs.push(p);
  return p;
}

const mode = (path: string) => statSync(path).mode & 0o777;
/** One line, no stack trace: what an expected error looks like. */
function oneLine(output: string): string {
  expect(output, output).not.toMatch(/^\s+at /m);
  const lines = output.trim().split('\n');
  expect(lines, output).toHaveLength(1);
  return lines[0]!;
}

/** Every file and directory under `dir` with its mode. */
function walk(dir: string): { path: string; dir: boolean; mode: number }[] {
  const out: { path: string; dir: boolean; mode: number }[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    out.push({ path, dir: st.isDirectory(), mode: st.mode & 0o777 });
    if (st.isDirectory()) out.push(...walk(path));
  }
  return out;
}

const setpriv = setprivReason();
if (setpriv) console.warn(`[cli-operations] skipping the checks as another OS user: ${setpriv}`);

describe('data dir permissions (issue 8 item 2), checked as another local user', () => {
  it.skipIf(setpriv !== null)(
    'under umask 022 the data dir is 0700 and the database, WAL, SHM, lock and demo-fleet state are private; nobody can read any of them',
    async () => {
      const parent = tempDir(true);
      const dataDir = join(parent, 'data');
      // A control: nobody can read a 0644 file in the same parent, so a refusal below is the modes' doing.
      writeFileSync(join(parent, 'control.txt'), 'readable', { mode: 0o644 });
      expect(asNobody('cat', [join(parent, 'control.txt')]).stdout).toBe('readable');

      const server = serve(['--data-dir', dataDir, '--demo-fleet', '1'], {}, { umask: 0o022 });
      await server.waitFor(/listening on/);
      await server.waitFor(/Created the demo tenant/);
      const db = join(dataDir, 'countermand.db');
      for (const file of [db, `${db}-wal`, `${db}-shm`, join(dataDir, 'countermand.lock')]) {
        expect(existsSync(file), file).toBe(true);
        expect(mode(file).toString(8), file).toBe('600');
        const read = asNobody('cat', [file]);
        expect(read.code, file).not.toBe(0);
        expect(read.stderr).toMatch(/Permission denied/);
      }
      expect(mode(dataDir).toString(8)).toBe('700');
      expect(asNobody('ls', [dataDir]).stderr).toMatch(/Permission denied/);
      // The demo fleet's agent credentials live under the data dir: private too.
      const fleet = walk(join(dataDir, 'fleet'));
      expect(fleet.some((e) => !e.dir)).toBe(true);
      for (const e of fleet) expect(e.mode.toString(8), e.path).toBe(e.dir ? '700' : '600');
    },
    60_000,
  );

  it.skipIf(setpriv !== null)('a data dir an earlier version left open (0755, files 0644) is tightened at start, saying what changed', async () => {
    const parent = tempDir(true);
    const dataDir = join(parent, 'data');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    const fixtures = join(parent, 'fixtures.json');
    writeFileSync(fixtures, JSON.stringify(makeFixtures(1).fixtures));
    const old = SqliteStore.open(join(dataDir, 'countermand.db'));
    await old.upsertTenant({ id: '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0099', name: 'old' });
    await old.close();
    for (const name of readdirSync(dataDir)) chmodSync(join(dataDir, name), 0o644);
    expect(asNobody('cat', [join(dataDir, 'countermand.db')]).code).toBe(0); // what the attacker did

    const server = serve(['--data-dir', dataDir, '--fixtures', fixtures], {}, { umask: 0o022 });
    await server.waitFor(/listening on/);
    expect(server.output()).toContain(`made private what other users could read in ${dataDir}: the data dir 0755 -> 0700, countermand.db 0644 -> 0600`);
    expect(mode(dataDir).toString(8)).toBe('700');
    for (const e of walk(dataDir)) expect(e.mode.toString(8), e.path).toBe(e.dir ? '700' : '600');
    expect(asNobody('cat', [join(dataDir, 'countermand.db')]).stderr).toMatch(/Permission denied/);
  }, 60_000);

  const nobody = unprivileged();
  afterAll(() => nobody.runner?.dispose());
  it.skipIf(nobody.runner === null)(
    `a data dir that cannot be made private is refused in one line; --allow-open-data-dir starts with a warning${nobody.reason ? ` (skipped: ${nobody.reason})` : ''}`,
    async () => {
      const runner = nobody.runner!;
      // A shared, world-writable directory owned by root: the server (run as nobody) can write
      // in it but cannot chmod it.
      const shared = join(tempDir(true), 'shared');
      mkdirSync(shared);
      chmodSync(shared, 0o777);
      const cli = (...args: string[]) => runner.nodeScript('src/cli/main.ts', args);
      const refused = await runAs(runner, cli('serve', '--port', '0', '--data-dir', shared, '--demo-fleet', '0'));
      expect(refused.code, refused.stderr).toBe(2);
      expect(oneLine(refused.stdout + refused.stderr)).toBe(
        `countermand: the data dir ${shared} is open to other users (mode 0777) and could not be made private; chmod 700 it as its owner, or give another one with --data-dir (COUNTERMAND_DATA_DIR) (--allow-open-data-dir starts anyway)`,
      );
      expect(existsSync(join(shared, 'countermand.db'))).toBe(false);

      // With the override it starts, says so, and still keeps its files 0600.
      const [file, args] = runner.wrap(cli('serve', '--port', '0', '--data-dir', shared, '--demo-fleet', '0', '--allow-open-data-dir'));
      const { spawn } = await import('node:child_process');
      const child = spawn(file, args, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (c: Buffer) => (text += c));
      child.stderr.on('data', (c: Buffer) => (text += c));
      const exited = new Promise((r) => child.on('close', r));
      try {
        const deadline = Date.now() + 30_000;
        while (!/listening on/.test(text) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(text).toMatch(/listening on/);
        expect(text).toMatch(/is open to other users \(mode 0777\) and could not be made private; starting anyway \(allowOpenDataDir\)/);
        expect(statSync(join(shared, 'countermand.db')).uid).toBe(NOBODY_UID);
        expect(mode(join(shared, 'countermand.db')).toString(8)).toBe('600');
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
    },
    90_000,
  );

  it.skipIf(nobody.runner === null)(
    `a data dir the user cannot write is one line with the path, its owner and a hint (item 17)${nobody.reason ? ` (skipped: ${nobody.reason})` : ''}`,
    async () => {
      const runner = nobody.runner!;
      const rootOwned = join(tempDir(true), 'data');
      mkdirSync(rootOwned, { mode: 0o755 });
      chmodSync(rootOwned, 0o755);
      const r = await runAs(runner, runner.nodeScript('src/cli/main.ts', ['serve', '--port', '0', '--data-dir', rootOwned]));
      expect(r.code, r.stderr).toBe(2);
      expect(oneLine(r.stdout + r.stderr)).toBe(
        `countermand: cannot write in the data dir ${rootOwned}: permission denied (owner uid 0, mode 0755); run Countermand as its owner, or give another one with --data-dir (COUNTERMAND_DATA_DIR)`,
      );
      const below = join(rootOwned, 'sub');
      const create = await runAs(runner, runner.nodeScript('src/cli/main.ts', ['serve', '--port', '0', '--data-dir', below]));
      expect(create.code).toBe(2);
      expect(oneLine(create.stdout + create.stderr)).toBe(
        `countermand: cannot create the data dir ${below}: permission denied; give another one with --data-dir (COUNTERMAND_DATA_DIR)`,
      );
    },
    60_000,
  );
});

describe('one-line errors (item 17)', () => {
  it('a data dir below a file, and a database that cannot be opened: one line with the path, exit 2', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a-file'), '');
    const below = await runCli(['serve', '--port', '0', '--data-dir', join(dir, 'a-file', 'data')]);
    expect(below.code).toBe(2);
    expect(oneLine(below.output)).toBe(
      `countermand: cannot create the data dir ${join(dir, 'a-file', 'data')}: a part of the path is a file, not a directory; give another one with --data-dir (COUNTERMAND_DATA_DIR)`,
    );
    const broken = join(dir, 'broken');
    mkdirSync(broken, { mode: 0o700 });
    writeFileSync(join(broken, 'countermand.db'), 'this is not a database, but a note someone left here '.repeat(100), { mode: 0o600 });
    const notDb = await runCli(['serve', '--port', '0', '--data-dir', broken]);
    expect(notDb.code).toBe(2);
    expect(oneLine(notDb.output)).toMatch(new RegExp(`^countermand: ${join(broken, 'countermand.db')} is not a Countermand database \\(.+\\); give the right --data-dir`));
  }, 60_000);

  it('a bad configuration file, and a PostgreSQL that cannot be reached: one line, exit 2', async () => {
    const missing = await runCli(['serve', '--config', '/nonexistent/countermand.json']);
    expect(missing.code).toBe(2);
    expect(oneLine(missing.output)).toMatch(/^countermand: cannot read the configuration file \/nonexistent\/countermand.json: ENOENT/);
    const pg = await runCli(['tenants', 'list', '--database-url', 'postgres://countermand:hunter2@127.0.0.1:1/none']);
    expect(pg.code).toBe(2);
    const line = oneLine(pg.output);
    expect(line).toMatch(/^countermand: cannot use PostgreSQL postgres:\/\/countermand@127\.0\.0\.1:1\/none: .*ECONNREFUSED.*; check --database-url/);
    expect(line).not.toContain('hunter2');
  }, 60_000);

  it('`countermand agent` with a bad enrollment token, without one, or with no server: one line naming the server and what to do', async () => {
    const dir = tempDir();
    const server = serve(['--data-dir', join(dir, 'data'), '--demo-fleet', '0']);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    const agent = (...args: string[]) => runCli(['agent', '--server', url!, '--executor', 'simulated', '--state-dir', join(dir, 'agent'), ...args]);
    // The agent's refusals exit 1, each one line.
    const bad = await agent('--enrollment-token', 'cme_not-a-real-token');
    expect(bad.code).toBe(1);
    expect(oneLine(bad.output)).toBe(
      `countermand agent: ${url} refused the enrollment (401 Unauthorized: The enrollment token is not valid.); check --enrollment-token (COUNTERMAND_ENROLLMENT_TOKEN); \`countermand enrollment create\` makes a new one`,
    );
    const none = await agent();
    expect(none.code).toBe(1);
    expect(oneLine(none.output)).toMatch(/^countermand agent: not enrolled: an enrollment token is needed \(--enrollment-token\)/);
    const away = await runCli(['agent', '--server', 'http://127.0.0.1:1', '--enrollment-token', 'cme_x', '--executor', 'simulated', '--state-dir', join(dir, 'agent')]);
    expect(away.code).toBe(1);
    expect(oneLine(away.output)).toBe('countermand agent: cannot reach http://127.0.0.1:1 (ECONNREFUSED); check --server (COUNTERMAND_SERVER) and that the server is running');
  }, 60_000);

  it('--version prints the package version, from the source and from a built package', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const fromSource = await runCli(['--version']);
    expect(fromSource.code).toBe(0);
    expect(fromSource.stdout).toBe(`${version}\n`);
    // The layout npm installs: <package>/package.json beside <package>/dist.
    const pkg = join(tempDir(), 'countermand');
    mkdirSync(pkg);
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], { cwd: ROOT });
    cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    expect(execFileSync(process.execPath, [join(pkg, 'dist/cli/main.js'), '--version'], { cwd: tmpdir(), encoding: 'utf8' })).toBe(`${version}\n`);
  }, 180_000);
});

describe('start-up (items 15, 16)', () => {
  it('a port in use is one line naming it and the flag; the retry on a free port still prints a working demo secret', async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    const dataDir = join(tempDir(), 'data');
    try {
      const first = await runCli(['serve', '--port', String(port), '--data-dir', dataDir, '--log-level', 'warn']);
      expect(first.code).toBe(2);
      expect(oneLine(first.output)).toBe(`countermand: port ${port} is in use on 127.0.0.1; choose another with --port (COUNTERMAND_PORT)`);
    } finally {
      busy.close();
    }
    const retry = serve(['--data-dir', dataDir]);
    await retry.waitFor(/listening on/);
    const [curl] = await retry.waitFor(/curl -s -X POST [^\n]+\\\n[^\n]+\\\n[^\n]+/);
    const reply = JSON.parse(execFileSync('sh', ['-c', curl], { encoding: 'utf8' })) as { access_token?: string };
    expect(reply.access_token).toEqual(expect.any(String));
  }, 60_000);

  it('a second server on the same data dir refuses in one line naming the first; the first keeps serving; a SIGKILLed server leaves no lock behind', async () => {
    const dataDir = join(tempDir(), 'data');
    const first = serve(['--data-dir', dataDir]);
    const [, url] = await first.waitFor(/listening on (http:\/\/[^\s]+)/);
    const second = serve(['--data-dir', dataDir]); // tracked: stopped by afterEach should it not exit
    expect((await second.exited).code).toBe(2);
    expect(oneLine(second.output())).toBe(
      `countermand: another Countermand server (pid ${first.child.pid}) is using the data dir ${dataDir}; stop it, or give this one its own --data-dir (COUNTERMAND_DATA_DIR)`,
    );
    expect((await fetch(`${url}/api/machines`)).status).toBe(401); // still serving
    // The admin commands keep working beside the running server.
    const listed = await runCli(['tenants', 'list', '--data-dir', dataDir, '--json']);
    expect(listed.code, listed.output).toBe(0);
    expect(JSON.parse(listed.stdout)).toHaveLength(1);

    first.child.kill('SIGKILL');
    await first.exited;
    const again = serve(['--data-dir', dataDir]);
    await again.waitFor(/listening on/);
  }, 60_000);

  it.skipIf(!PG_URL)(`on PostgreSQL too, two nodes cannot share a data dir (the demo fleet's state is there)${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, async () => {
    const db = await freshDatabase();
    try {
      const dataDir = join(tempDir(), 'node-a');
      const store = ['--database-url', db.url, '--data-dir', dataDir];
      const first = serve(store);
      await first.waitFor(/listening on/);
      const second = serve(store);
      expect((await second.exited).code).toBe(2);
      expect(oneLine(second.output())).toMatch(/^countermand: another Countermand server \(pid \d+\) is using the data dir /);
      // Another data dir on the same database is another node, as intended.
      const other = serve(['--database-url', db.url, '--data-dir', join(tempDir(), 'node-b')]);
      await other.waitFor(/listening on/);
      expect(existsSync(join(dataDir, 'countermand.db'))).toBe(false);
    } finally {
      for (const p of procs.splice(0)) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
      await db.drop();
    }
  }, 60_000);
});

describe('which store a command opened (item 18)', () => {
  it('an admin command from a directory without ./data refuses, names the absolute path and --data-dir, and creates nothing', async () => {
    const cwd = tempDir();
    const r = await runCli(
      ['apps', 'reset-secret', '--tenant', '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0001', '--client-id', '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0a01'],
      {},
      { cwd },
    );
    expect(r.code).toBe(2);
    expect(oneLine(r.output)).toBe(
      `countermand: no database in ${join(cwd, 'data')} (countermand.db not found); give the server's data dir with --data-dir (COUNTERMAND_DATA_DIR), or create one with \`countermand init\``,
    );
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  }, 60_000);

  it('serve and the admin commands say which database and data dir they use, as absolute paths', async () => {
    const cwd = tempDir();
    const server = serve(['--data-dir', 'data'], {}, { cwd });
    await server.waitFor(/listening on/);
    expect(server.stderr()).toContain(`countermand: using the SQLite database ${join(cwd, 'data', 'countermand.db')} (data dir ${join(cwd, 'data')})\n`);
    const listed = await runCli(['tenants', 'list', '--data-dir', 'data', '--json'], {}, { cwd });
    expect(listed.code, listed.output).toBe(0);
    expect(listed.stderr).toBe(`countermand: using the SQLite database ${join(cwd, 'data', 'countermand.db')}\n`);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ id: '6c0f4b1e-0d5a-4c3e-9a59-5d1f2a7c0001' })]);
  }, 60_000);

  it.skipIf(!PG_URL)(`on PostgreSQL they name the database without its password${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, async () => {
    const db = await freshDatabase();
    try {
      const url = new URL(db.url);
      url.password = 'hunter2';
      const r = await runCli(['tenants', 'list', '--database-url', url.toString()]);
      expect(r.code, r.output).toBe(0);
      url.password = '';
      expect(r.stderr).toBe(`countermand: using PostgreSQL ${url.toString()}\n`);
      expect(r.output).not.toContain('hunter2');
    } finally {
      await db.drop();
    }
  }, 60_000);
});
