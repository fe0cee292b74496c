import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnrollmentToken } from '../../src/dispatch/enrollment.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { enrollmentToken } from '../support/agents.js';
import { cleanup, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { ROOT, runCli, spawnCli, type Spawned } from '../support/process.js';
import { announce, must, sh, skipReason } from './linux/support.js';

/**
 * Plain HTTP beyond loopback, as an operator meets it: `countermand agent --server http://<not
 * loopback>` refuses (one line, non-zero exit) unless given --insecure-http, and then warns; a
 * server listening on a non-loopback address without TLS says so at start. The non-loopback
 * address is on a veth pair inside a network namespace of the test's own: nothing leaves it.
 */

const reason = skipReason(['ip'], ['--net']);
const NS = `cm-http-${process.pid}`;
const ADDRESS = '10.213.7.1';
const PORT = 18_080;
const dir = mkdtempSync(join(tmpdir(), 'countermand-plain-http-'));
const procs: Spawned[] = [];

/** `countermand ...` run inside the namespace (ip netns exec replaces itself with node). */
function inNamespace(args: string[]): Spawned {
  const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, COUNTERMAND_DEMO_FLEET: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const listeners = new Set<() => void>();
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      for (const l of listeners) l();
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      for (const l of listeners) l();
      resolve({ code, signal });
    }),
  );
  const spawned: Spawned = {
    child,
    output: () => text,
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}:\n${text}`)), timeoutMs);
        const check = () => {
          const m = text.match(pattern);
          if (m || child.exitCode !== null || child.signalCode !== null) {
            listeners.delete(check);
            clearTimeout(timer);
            if (m) resolve(m);
            else reject(new Error(`exited before ${pattern}:\n${text}`));
          }
        };
        listeners.add(check);
        check();
      });
    },
  };
  procs.push(spawned);
  return spawned;
}

describe.skipIf(reason !== null)(announce('plain HTTP beyond loopback', reason), () => {
  const setup = makeFixtures(0);
  const dataDir = join(dir, 'data');
  let token: string;

  beforeAll(async () => {
    await must('ip', ['netns', 'add', NS]);
    await must('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    // Both ends of a veth pair inside the namespace: an interface with a non-loopback address.
    await must('ip', ['-n', NS, 'link', 'add', 'cm0', 'type', 'veth', 'peer', 'name', 'cm1']);
    await must('ip', ['-n', NS, 'addr', 'add', `${ADDRESS}/24`, 'dev', 'cm0']);
    for (const link of ['cm0', 'cm1']) await must('ip', ['-n', NS, 'link', 'set', link, 'up']);
    writeFileSync(join(dir, 'fixtures.json'), JSON.stringify(setup.fixtures));
    mkdirSync(dataDir, { recursive: true });
    const store = SqliteStore.open(join(dataDir, 'countermand.db'));
    await store.upsertTenant({ id: setup.tenantId, name: 'Test tenant' });
    token = await createEnrollmentToken(store, setup.tenantId, 'plain', { rbacGroupId: 1, rbacGroupName: 'g' });
    await store.close();
  }, 30_000);
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await sh('ip', ['netns', 'del', NS]);
    cleanup(dir);
  });

  const agentArgs = (server: string, name: string, extra: string[] = []) => [
    'agent', '--server', server, '--enrollment-token', token, '--executor', 'simulated',
    '--state-dir', join(dir, name), '--name', `${name}.test`, '--log-level', 'warn', ...extra,
  ];

  it('the server on a non-loopback address without TLS says so; an agent refuses it without --insecure-http, and warns with it', async () => {
    const server = inNamespace(['serve', '--host', ADDRESS, '--port', String(PORT), '--data-dir', dataDir, '--fixtures', join(dir, 'fixtures.json'), '--log-level', 'warn']);
    await server.waitFor(/listening on/);
    // The warning is a log line (the log is written asynchronously, so it may follow the banner).
    await server.waitFor(/listening on a non-loopback address without TLS: tokens, client secrets, enrollment tokens and agent credentials travel in clear/, 10_000);

    const refused = inNamespace(agentArgs(`http://${ADDRESS}:${PORT}`, 'refused'));
    const exit = await refused.exited;
    expect(exit.code).toBe(2);
    const lines = refused.output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^countermand: refusing plain HTTP to ${ADDRESS.replace(/\./g, '\\.')}:${PORT}, which is not a loopback address: .*--insecure-http`));

    const accepted = inNamespace(agentArgs(`http://${ADDRESS}:${PORT}`, 'accepted', ['--insecure-http']));
    await accepted.waitFor(/agent for machine ([0-9a-f]{40}) is running/);
    expect(accepted.output()).toMatch(new RegExp(`countermand agent: warning: plain HTTP to ${ADDRESS.replace(/\./g, '\\.')}:${PORT} \\(--insecure-http\\)`));
    accepted.child.kill('SIGTERM');
    expect((await accepted.exited).code).toBe(0);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  }, 90_000);
});

describe('plain HTTP on loopback', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ fixtures: makeFixtures(0).fixtures });
  });
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await server?.stop();
  });

  it('needs no flag and says nothing: http://localhost', async () => {
    const tenantId = (await server.store.listTenants())[0]!.id;
    const stateDir = mkdtempSync(join(tmpdir(), 'countermand-agent-'));
    const agent = spawnCli([
      'agent', '--server', `http://localhost:${new URL(server.url).port}`, '--enrollment-token', await enrollmentToken(server.store, tenantId),
      '--executor', 'simulated', '--state-dir', stateDir, '--name', 'loopback.test', '--log-level', 'warn',
    ]);
    procs.push(agent);
    try {
      await agent.waitFor(/is running/);
      expect(agent.output()).not.toMatch(/plain HTTP/);
      agent.child.kill('SIGTERM');
      expect((await agent.exited).code).toBe(0);
    } finally {
      cleanup(stateDir);
    }
  }, 30_000);

  it('a server URL that is not http(s) is refused in one line', async () => {
    const { code, output } = await runCli(['agent', '--server', 'ftp://127.0.0.1/', '--enrollment-token', 'x.y', '--executor', 'simulated', '--state-dir', dir]);
    expect(code).toBe(2);
    expect(output.trim()).toBe('countermand: the server URL ftp://127.0.0.1/ must be https:// (or http:// to a loopback address)');
  });
});
