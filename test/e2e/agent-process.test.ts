import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, waitUntil } from '../support/agents.js';
import { appClient, cleanup, makeFixtures, startTestServer, type Client, type TestServer } from '../support/harness.js';
import { runCli, spawnCli, type Spawned } from '../support/process.js';

/**
 * `countermand agent` as a process, killed and restarted mid-action: no action is lost, and
 * none runs twice to completion (its local actions.log and the server's history both show it).
 */

/** A TCP relay to the server that can be cut, to make the server unreachable at a chosen moment. */
class Relay {
  private server: Server;
  private sockets = new Set<Socket>();
  open = true;
  port = 0;

  constructor(private readonly target: number) {
    this.server = createServer((client) => {
      if (!this.open) return client.destroy();
      const upstream = createConnection(this.target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const setup = makeFixtures(0);
let server: TestServer;
let api: Client;
let token: string;
const dirs: string[] = [];
const procs: Spawned[] = [];

beforeAll(async () => {
  server = await startTestServer({ fixtures: setup.fixtures, config: { agentPollSeconds: 2, rateLimitScale: 100 } });
  api = await appClient(server, setup);
  token = await enrollmentToken(server.store, setup.tenantId);
});
afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await server?.stop();
  for (const d of dirs) cleanup(d);
});

function runAgent(url: string, stateDir: string, name: string, simulation: object, extra: string[] = []): Spawned {
  const p = spawnCli([
    'agent',
    ...extra,
    '--server', url,
    '--enrollment-token', token,
    '--state-dir', stateDir,
    '--executor', 'simulated',
    '--simulation', JSON.stringify(simulation),
    '--name', name,
    '--max-wait', '5',
    '--log-level', 'warn',
  ]);
  procs.push(p);
  return p;
}

const logOf = (stateDir: string, actionId: string) =>
  (existsSync(join(stateDir, 'actions.log')) ? readFileSync(join(stateDir, 'actions.log'), 'utf8') : '')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { actionId?: string; event?: string })
    .filter((l) => l.actionId === actionId && l.event)
    .map((l) => l.event);

const statusOf = async (id: string) => (await api.get(`/api/machineactions/${id}`)).body.status as string;

describe('countermand agent, killed and restarted', () => {
  it('killed mid-action: the restarted agent resumes it, and it completes once', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'countermand-agent-'));
    dirs.push(stateDir);
    const first = runAgent(server.url, stateDir, 'restart-1.test', { '*': { durationMs: 3000 } });
    const [, machineId] = await first.waitFor(/agent for machine ([0-9a-f]{40}) is running/);
    const created = await api.post(`/api/machines/${machineId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Quick' });
    await waitUntil(async () => (await statusOf(created.body.id)) === 'InProgress', 10_000, 'InProgress');
    await waitUntil(() => logOf(stateDir, created.body.id).includes('started'), 10_000, 'the agent to start it');
    first.child.kill('SIGKILL');
    await first.exited;
    expect(await statusOf(created.body.id)).toBe('InProgress');

    const second = runAgent(server.url, stateDir, 'restart-1.test', { '*': { durationMs: 500 } });
    const [, again] = await second.waitFor(/agent for machine ([0-9a-f]{40}) is running/);
    expect(again).toBe(machineId);
    await waitUntil(async () => (await statusOf(created.body.id)) === 'Succeeded', 15_000, 'Succeeded');
    expect(logOf(stateDir, created.body.id)).toEqual(['started', 'resumed', 'completed']);
    const history = await server.store.listEvents(setup.tenantId, created.body.id);
    expect(history.map((e) => [e.fromStatus, e.toStatus])).toEqual([
      [null, 'Pending'],
      ['Pending', 'InProgress'],
      ['InProgress', 'Succeeded'],
    ]);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  }, 60_000);

  it('killed after finishing but before its report got through: the restart reports, it does not run again', async () => {
    const relay = new Relay(Number(new URL(server.url).port));
    await relay.listen();
    const url = `http://127.0.0.1:${relay.port}`;
    const stateDir = mkdtempSync(join(tmpdir(), 'countermand-agent-'));
    dirs.push(stateDir);
    const first = runAgent(url, stateDir, 'restart-2.test', { '*': { durationMs: 1500 } });
    const [, machineId] = await first.waitFor(/agent for machine ([0-9a-f]{40}) is running/);
    const created = await api.post(`/api/machines/${machineId}/restrictCodeExecution`, { Comment: 'x' });
    await waitUntil(async () => (await statusOf(created.body.id)) === 'InProgress', 10_000, 'InProgress');
    relay.cut(); // the server becomes unreachable while the action runs
    await waitUntil(() => logOf(stateDir, created.body.id).includes('completed'), 10_000, 'the action to complete locally');
    await new Promise((r) => setTimeout(r, 200)); // its report attempts fail
    first.child.kill('SIGKILL');
    await first.exited;
    expect(await statusOf(created.body.id)).toBe('InProgress');

    relay.open = true;
    const second = runAgent(url, stateDir, 'restart-2.test', { '*': { durationMs: 1500 } });
    await second.waitFor(/is running/);
    await waitUntil(async () => (await statusOf(created.body.id)) === 'Succeeded', 15_000, 'Succeeded');
    expect(logOf(stateDir, created.body.id)).toEqual(['started', 'completed']);
    second.child.kill('SIGTERM');
    await second.exited;
    await relay.close();
  }, 60_000);

  it('stopped with SIGTERM mid-action: nothing is reported, and the restarted agent finishes it', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'countermand-agent-'));
    dirs.push(stateDir);
    const first = runAgent(server.url, stateDir, 'restart-3.test', { '*': { durationMs: 3000 } });
    const [, machineId] = await first.waitFor(/agent for machine ([0-9a-f]{40}) is running/);
    const created = await api.post(`/api/machines/${machineId}/isolate`, { Comment: 'x' });
    await waitUntil(async () => (await statusOf(created.body.id)) === 'InProgress', 10_000, 'InProgress');
    await waitUntil(() => logOf(stateDir, created.body.id).includes('started'));
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(await statusOf(created.body.id)).toBe('InProgress');
    expect(logOf(stateDir, created.body.id)).toEqual(['started', 'interrupted']);
    const second = runAgent(server.url, stateDir, 'restart-3.test', { '*': { durationMs: 200 } });
    await second.waitFor(/is running/);
    await waitUntil(async () => (await statusOf(created.body.id)) === 'Succeeded', 15_000, 'Succeeded');
    expect(logOf(stateDir, created.body.id)).toEqual(['started', 'interrupted', 'resumed', 'completed']);
    second.child.kill('SIGTERM');
    await second.exited;
  }, 60_000);

  it('its credential revoked (the machine re-attached elsewhere): it exits 1 with one line saying what to run; a grant brings it back', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'countermand-agent-'));
    dirs.push(stateDir);
    const first = runAgent(server.url, stateDir, 'moved.test', { '*': { durationMs: 200 } });
    const [, machineId] = await first.waitFor(/agent for machine ([0-9a-f]{40}) is running/);
    const grant = async () => {
      const { code, output, stdout } = await runCli(['enrollment', 'reenroll', '--tenant', setup.tenantId, '--machine', machineId!, '--data-dir', server.dataDir, '--json']);
      expect(code, output).toBe(0);
      return JSON.parse(stdout).reenrollGrant as string;
    };
    // An administrator gives the machine to another agent: this one's credential is revoked.
    const elsewhere = await fetch(`${server.url}/agent/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reenrollGrant: await grant(), machine: { computerDnsName: 'moved.test' } }),
    });
    expect(elsewhere.status).toBe(201);
    const exit = await first.exited;
    expect(exit.code).toBe(1);
    const stopped = first.output().split('\n').filter((l) => l.startsWith('agent stopped:'));
    expect(stopped).toHaveLength(1);
    expect(stopped[0]).toContain(`the server refused the agent credential of machine ${machineId}`);
    expect(stopped[0]).toContain(`countermand enrollment reenroll --tenant ${setup.tenantId} --machine ${machineId}`);
    expect(stopped[0]).toContain(`${stateDir}/credentials.json`);
    // Started as it was, with its enrollment token only: refused at its first check-in, it stops
    // rather than enroll a new machine.
    const stubborn = runAgent(server.url, stateDir, 'moved.test', {});
    expect((await stubborn.exited).code).toBe(1);
    expect(stubborn.output()).toMatch(/agent stopped: the server refused the agent credential/);

    // With a fresh grant it takes the machine back, and keeps it across restarts with the same command line.
    const withGrant = ['--reenroll-grant', await grant()];
    const second = runAgent(server.url, stateDir, 'moved.test', { '*': { durationMs: 200 } }, withGrant);
    const [, again] = await second.waitFor(/agent for machine ([0-9a-f]{40}) is running/);
    expect(again).toBe(machineId);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    const third = runAgent(server.url, stateDir, 'moved.test', { '*': { durationMs: 200 } }, withGrant);
    await third.waitFor(/is running/);
    const created = await api.post(`/api/machines/${machineId}/isolate`, { Comment: 'after the move back' });
    await waitUntil(async () => (await statusOf(created.body.id)) === 'Succeeded', 15_000, 'Succeeded');
    third.child.kill('SIGTERM');
    expect((await third.exited).code).toBe(0);
  }, 90_000);
});
