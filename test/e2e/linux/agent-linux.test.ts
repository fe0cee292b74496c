import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken } from '../../support/agents.js';
import { appClient, makeFixtures, startTestServer, type Client, type TestServer } from '../../support/harness.js';
import { announce, isDead, must, namespaceOf, ROOT, sh, skipReason, start, waitUntil, which, type Owned } from './support.js';

/**
 * The real `countermand agent --executor linux`, driven only through the public MDE API.
 *
 * Topology (N = a random /24 not used on the host):
 *
 *   root netns                          agent netns                          other netns
 *   server (10.233.N.1:port) ─veth─ 10.233.N.2   10.231.77.1 ─veth─ 10.231.77.2 (TCP "hello")
 *
 * The agent runs as `ip netns exec <agent> unshare --mount --propagation private sh -c 'mount
 * -t tmpfs … <T>/restricted && exec node … agent …'`: every exec keeps the pid, so the spawned
 * child *is* the agent, in the agent netns and in a private mount namespace of its own. The
 * tmpfs (the restrict path) exists only there and vanishes with the process; nft tables exist
 * only in the agent netns and vanish with it. The only change to the root namespace is the
 * root end of one veth pair (removed with the agent netns) and the test's listeners.
 */

const reason = skipReason(['ip', 'nft', 'unshare', 'nsenter', 'mount', 'umount'], ['--net', '--mount']);
const title = announce('countermand agent --executor linux in a network namespace, driven through the API', reason);

const id = randomBytes(3).toString('hex');
const NS = { agent: `cm${id}A`, other: `cm${id}O` };
const LINK = { root: `cm${id}r`, agentUp: `cm${id}u`, agentOther: `cm${id}x`, other: `cm${id}y` };
const TABLE = 'countermand';
const OTHER = { ip: '10.231.77.2', port: 8080 };
const MACHINE_LINE = /Countermand agent for machine ([0-9a-f]{40}) is running/;

/** A /24 in 10.233.0.0/16 that no host address or route mentions. */
function freeSubnet(): string {
  const taken = spawnText('ip', ['-4', 'addr']) + spawnText('ip', ['-4', 'route']);
  for (let n = Math.floor(Math.random() * 250) + 1, tries = 0; tries < 250; n = (n % 250) + 1, tries++) {
    if (!taken.includes(`10.233.${n}.`)) return `10.233.${n}`;
  }
  throw new Error('no free 10.233.x.0/24');
}

function spawnText(file: string, args: string[]): string {
  return String(spawnSync(which(file) ?? file, args, { timeout: 5000 }).stdout ?? '');
}

/**
 * From inside the agent netns: for each target, 'ok' (TCP connected), 'timeout' (no answer in
 * 1.5 s: what a dropped SYN looks like) or the error code (e.g. ECONNREFUSED: nothing listens).
 */
const probeScript = `
const net=require('net');
const targets=JSON.parse(process.argv[1]);
Promise.all(targets.map(([host,port])=>new Promise(res=>{
  const s=net.connect({host,port});
  const done=r=>{s.destroy();res(r)};
  s.setTimeout(1500,()=>done('timeout'));
  s.on('connect',()=>done('ok'));
  s.on('error',e=>done(e.code||String(e)));
}))).then(r=>console.log(JSON.stringify(r)));`;

/** The second test host: accepts and closes; a peer that resets first must not crash it. */
const listener = (port: number) =>
  `require('net').createServer(s=>{s.on('error',()=>{});s.end('hello\\n')}).listen(${port},'0.0.0.0',()=>console.log('listening'))`;

/** Mount points at or below `dir` in a mountinfo text (field 5; octal escapes as the kernel writes them). */
function mountPointsUnder(dir: string, mountinfo: string): string[] {
  return mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

interface LogLine {
  action: string;
  type: string;
  event: string;
  [key: string]: unknown;
}

describe.skipIf(reason !== null)(title, () => {
  const setup = makeFixtures(0);
  const subnet = reason === null ? freeSubnet() : '10.233.0';
  const SERVER_IP = `${subnet}.1`;
  const AGENT_IP = `${subnet}.2`;

  const owned: Owned[] = [];
  let server: TestServer | undefined;
  let api: Client;
  let T = '';
  let agent: ChildProcess | undefined;
  let agentOutput = '';
  let agentExited: Promise<unknown> = Promise.resolve();
  let pid = 0;
  let machineId = '';
  let serverPort = 0;
  /** A second port on the server's address: not the API, so isolation must cut it. */
  let sideServer: Server | undefined;
  let sidePort = 0;

  const paths = () => ({
    agentState: join(T, 'agent-state'),
    execState: join(T, 'exec/state'),
    logFile: join(T, 'exec/log/actions.log'),
    quarantine: join(T, 'exec/quarantine'),
    restricted: join(T, 'restricted'),
    script: join(T, 'restricted/run.sh'),
  });

  async function reach(targets: [string, number][]): Promise<string[]> {
    const r = await must('ip', ['netns', 'exec', NS.agent, process.execPath, '-e', probeScript, JSON.stringify(targets)], 10_000);
    return JSON.parse(r.stdout.trim()) as string[];
  }
  const targets = (): [string, number][] => [
    [SERVER_IP, serverPort],
    [SERVER_IP, sidePort],
    [OTHER.ip, OTHER.port],
  ];

  async function tables(where: 'agent' | 'root'): Promise<string> {
    const r = where === 'agent' ? await must('ip', ['netns', 'exec', NS.agent, 'nft', 'list', 'tables']) : await must('nft', ['list', 'tables']);
    return r.stdout;
  }
  const hasOurTable = (listing: string) => new RegExp(`^table inet ${TABLE}$`, 'm').test(listing);

  /** Runs the script in the agent's own mount and network namespaces. */
  async function runScript(): Promise<'ok' | 'EACCES' | string> {
    const r = await sh('nsenter', ['--target', String(pid), '--mount', '--net', '--wd=/', '--', paths().script], 10_000);
    if (r.code === 0 && r.stdout.trim() === 'ok') return 'ok';
    if (r.code === 126 && /Permission denied/.test(r.stderr)) return 'EACCES';
    return `exit ${r.code ?? r.signal}: ${r.stderr}`;
  }

  const agentAlive = () => agent !== undefined && agent.exitCode === null && agent.signalCode === null;

  async function poll<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (!agentAlive()) throw new Error(`the agent exited while waiting for ${what}:\n${agentOutput}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; agent output:\n${agentOutput}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Creates an action through the API and waits until it is final; returns it with its history. */
  async function act(route: string, body: Record<string, unknown>) {
    const created = await api.post(`/api/machines/${machineId}/${route}`, body);
    expect(created.status, created.text).toBe(201);
    expect(created.body.status).toBe('Pending');
    const actionId = created.body.id as string;
    const seen = new Set<string>();
    const final = await poll(
      `${route} to finish`,
      async () => {
        const r = await api.get(`/api/machineactions/${actionId}`);
        seen.add(r.body.status as string);
        return ['Succeeded', 'Failed', 'Cancelled', 'TimeOut'].includes(r.body.status) ? r.body : null;
      },
      20_000,
    );
    const history = (await server!.store.listEvents(setup.tenantId, actionId)).map((e) => [e.fromStatus, e.toStatus]);
    // What the API showed along the way is a prefix of Pending -> InProgress -> final.
    expect([...seen].filter((x) => !['Pending', 'InProgress', final.status].includes(x))).toEqual([]);
    return { id: actionId, final, history, succeededAt: Date.now() };
  }
  const NORMAL_HISTORY = [
    [null, 'Pending'],
    ['Pending', 'InProgress'],
    ['InProgress', 'Succeeded'],
  ];

  const lastSeen = async () => Date.parse((await api.get(`/api/machines/${machineId}`)).body.lastSeen as string);

  function logLines(): LogLine[] {
    const file = paths().logFile;
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine);
  }

  beforeAll(async () => {
    T = mkdtempSync(join(tmpdir(), 'cm-agent-linux-'));
    for (const d of [paths().agentState, paths().restricted]) mkdirSync(d, { recursive: true });

    // Namespaces and links.
    for (const ns of Object.values(NS)) await must('ip', ['netns', 'add', ns]);
    for (const ns of Object.values(NS)) await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await must('ip', ['link', 'add', LINK.root, 'type', 'veth', 'peer', 'name', LINK.agentUp, 'netns', NS.agent]);
    await must('ip', ['addr', 'add', `${SERVER_IP}/24`, 'dev', LINK.root]);
    await must('ip', ['link', 'set', LINK.root, 'up']);
    await must('ip', ['-n', NS.agent, 'addr', 'add', `${AGENT_IP}/24`, 'dev', LINK.agentUp]);
    await must('ip', ['-n', NS.agent, 'link', 'set', LINK.agentUp, 'up']);
    await must('ip', ['link', 'add', LINK.agentOther, 'netns', NS.agent, 'type', 'veth', 'peer', 'name', LINK.other, 'netns', NS.other]);
    await must('ip', ['-n', NS.agent, 'addr', 'add', '10.231.77.1/24', 'dev', LINK.agentOther]);
    await must('ip', ['-n', NS.other, 'addr', 'add', `${OTHER.ip}/24`, 'dev', LINK.other]);
    await must('ip', ['-n', NS.agent, 'link', 'set', LINK.agentOther, 'up']);
    await must('ip', ['-n', NS.other, 'link', 'set', LINK.other, 'up']);

    // The second test host.
    const l = start('ip', ['netns', 'exec', NS.other, process.execPath, '-e', listener(OTHER.port)]);
    owned.push(l);
    await waitUntil('listener in other', () => l.output().includes('listening') || (l.child.exitCode !== null && l.output()), 10_000);
    if (!l.output().includes('listening')) throw new Error(`listener in other failed: ${l.output()}`);

    // The server, on the root end of the veth pair, and a side port on the same address.
    server = await startTestServer({ fixtures: setup.fixtures, config: { host: SERVER_IP, agentPollSeconds: 2, rateLimitScale: 100 } });
    serverPort = Number(new URL(server.url).port);
    expect(new URL(server.url).hostname).toBe(SERVER_IP);
    sideServer = createServer((s) => {
      s.on('error', () => undefined);
      s.end();
    });
    await new Promise<void>((r) => sideServer!.listen(0, SERVER_IP, r));
    sidePort = (sideServer.address() as { port: number }).port;
    api = await appClient(server, setup);
    const token = await enrollmentToken(server.store, setup.tenantId);

    // The agent: netns `agent`, a private mount namespace with a tmpfs at T/restricted.
    const p = paths();
    const linuxConfig = { stateDir: p.execState, logFile: p.logFile, quarantineDir: p.quarantine, nftTable: TABLE, restrictPaths: [p.restricted] };
    const args = [
      'netns', 'exec', NS.agent,
      'unshare', '--mount', '--propagation', 'private',
      'sh', '-c', 'mount -t tmpfs -o size=4m,mode=0755 cmagent "$0" && exec "$@"', p.restricted,
      process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'agent',
      '--server', server.url,
      // Plain HTTP to the root end of the test's own veth pair: it never leaves the machine.
      '--insecure-http',
      '--enrollment-token', token,
      '--state-dir', p.agentState,
      '--executor', 'linux',
      '--linux-config', JSON.stringify(linuxConfig),
      '--name', `agent-linux-${id}.test`,
      '--max-wait', '5',
      '--log-level', 'warn',
    ];
    // Its own process group, so afterAll can kill it together with anything it started.
    agent = spawn(which('ip')!, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const child = agent;
    agentExited = new Promise((r) => child.on('close', r));
    child.stdout!.on('data', (c: Buffer) => (agentOutput += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (agentOutput += c.toString()));
    pid = child.pid!;
    const match = await waitUntil('the agent to enroll', () => agentOutput.match(MACHINE_LINE) ?? (!agentAlive() && 'exited'), 25_000);
    if (match === 'exited') throw new Error(`the agent exited before enrolling:\n${agentOutput}`);
    machineId = match[1]!;

    // The script, written into the agent's tmpfs through its root.
    writeFileSync(`/proc/${pid}/root${p.script}`, '#!/bin/sh\necho ok\n', { mode: 0o755 });
  }, 50_000);

  afterAll(async () => {
    if (agent?.pid) {
      // The whole process group: the agent and whatever it started (nft, mount, ...).
      try {
        process.kill(-agent.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await Promise.race([agentExited, new Promise((r) => setTimeout(r, 5000))]);
    }
    for (const o of owned) await o.stop();
    if (sideServer) await new Promise((r) => sideServer!.close(r));
    await server?.stop().catch(() => undefined);
    for (const ns of Object.values(NS)) await sh('ip', ['netns', 'del', ns]);
    // Deleting the agent netns removes both veth ends; make sure of the root one.
    if ((await sh('ip', ['link', 'show', LINK.root])).code === 0) await sh('ip', ['link', 'del', LINK.root]);
    if (T) rmSync(T, { recursive: true, force: true });
  }, 30_000);

  it('runs in the agent netns and its own mount namespace; both hosts are reachable; nothing is isolated', async () => {
    expect(namespaceOf(pid, 'net')).not.toBe(namespaceOf('self', 'net'));
    expect(namespaceOf(pid, 'mnt')).not.toBe(namespaceOf('self', 'mnt'));
    expect(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('node');
    const machine = (await api.get(`/api/machines/${machineId}`)).body;
    expect(machine.computerDnsName).toBe(`agent-linux-${id}.test`);
    expect((machine.ipAddresses as { ipAddress: string }[]).map((a) => a.ipAddress)).toContain(AGENT_IP);

    expect(await reach(targets())).toEqual(['ok', 'ok', 'ok']);
    expect(hasOurTable(await tables('agent'))).toBe(false);
    expect(await runScript()).toBe('ok');
    // The tmpfs and the script are the agent's alone.
    expect(readdirSync(paths().restricted)).toEqual([]);
  }, 20_000);

  it('Isolate through the API: carried out in the agent netns; the server stays reachable, the other host does not', async () => {
    const isolate = await act('isolate', { Comment: 'e2e isolate', IsolationType: 'Full' });
    expect(isolate.final, JSON.stringify(isolate.final)).toMatchObject({ status: 'Succeeded', type: 'Isolate' });
    expect(isolate.history).toEqual(NORMAL_HISTORY);

    expect(hasOurTable(await tables('agent'))).toBe(true);
    expect(hasOurTable(await tables('root'))).toBe(false);
    // The CLI filled in the server's address and port from --server.
    const state = JSON.parse(readFileSync(join(paths().execState, 'isolation.json'), 'utf8'));
    expect(state).toMatchObject({ actionId: isolate.id, table: TABLE, mode: 'Full', serverAddresses: [SERVER_IP], serverPort });

    const started = Date.now();
    expect(await reach(targets())).toEqual(['ok', 'timeout', 'timeout']);
    expect(Date.now() - started).toBeLessThan(5000);

    // The agent keeps checking in while isolated.
    const mark = isolate.succeededAt;
    await poll('a check-in after isolation', async () => (await lastSeen()) > mark, 15_000);
  }, 45_000);

  it('Unisolate through the API is delivered to the isolated agent and restores the other host', async () => {
    const unisolate = await act('unisolate', { Comment: 'e2e unisolate' });
    expect(unisolate.final, JSON.stringify(unisolate.final)).toMatchObject({ status: 'Succeeded', type: 'Unisolate' });
    expect(unisolate.history).toEqual(NORMAL_HISTORY);
    expect(hasOurTable(await tables('agent'))).toBe(false);
    expect(existsSync(join(paths().execState, 'isolation.json'))).toBe(false);
    expect(await reach(targets())).toEqual(['ok', 'ok', 'ok']);
    expect(hasOurTable(await tables('root'))).toBe(false);
  }, 45_000);

  it('RestrictCodeExecution through the API makes the restricted directory noexec in the agent mount namespace only', async () => {
    const restrict = await act('restrictCodeExecution', { Comment: 'e2e restrict' });
    expect(restrict.final, JSON.stringify(restrict.final)).toMatchObject({ status: 'Succeeded', type: 'RestrictCodeExecution' });
    expect(restrict.history).toEqual(NORMAL_HISTORY);
    expect(await runScript()).toBe('EACCES');
    const state = JSON.parse(readFileSync(join(paths().execState, 'restriction.json'), 'utf8'));
    expect(state.paths.map((x: { path: string; createdBind: boolean }) => [x.path, x.createdBind])).toEqual([[paths().restricted, false]]);
    // The host's mount namespace has nothing at or below T (the tmpfs is the agent's alone).
    expect(mountPointsUnder(T, readFileSync('/proc/self/mountinfo', 'utf8'))).toEqual([]);
    expect(mountPointsUnder(T, readFileSync(`/proc/${pid}/mountinfo`, 'utf8'))).toEqual([paths().restricted]);
    expect(readdirSync(paths().restricted)).toEqual([]);
  }, 45_000);

  it('UnrestrictCodeExecution through the API lets the script run again', async () => {
    const unrestrict = await act('unrestrictCodeExecution', { Comment: 'e2e unrestrict' });
    expect(unrestrict.final, JSON.stringify(unrestrict.final)).toMatchObject({ status: 'Succeeded', type: 'UnrestrictCodeExecution' });
    expect(unrestrict.history).toEqual(NORMAL_HISTORY);
    expect(await runScript()).toBe('ok');
    expect(existsSync(join(paths().execState, 'restriction.json'))).toBe(false);
  }, 45_000);

  it("the linux executor's log records every action; the root netns never got a table", async () => {
    const lines = logLines();
    const byType = (type: string) => lines.filter((l) => l.type === type);
    for (const type of ['Isolate', 'Unisolate', 'RestrictCodeExecution', 'UnrestrictCodeExecution']) {
      const events = byType(type).map((l) => l.event);
      expect(events[0], type).toBe('start');
      expect(events.at(-1), type).toBe('end');
      expect(byType(type).at(-1), type).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
      expect(new Set(byType(type).map((l) => l.action)).size, type).toBe(1);
      expect(byType(type).every((l) => l.pid === pid), type).toBe(true);
    }
    expect(byType('Isolate').find((l) => l.event === 'isolate.applied')).toMatchObject({ serverAddresses: [SERVER_IP], serverPort, mode: 'Full' });
    expect(byType('Unisolate').find((l) => l.event === 'unisolate.removed')).toMatchObject({ existed: true });
    expect(byType('RestrictCodeExecution').find((l) => l.event === 'restrict.noexec')).toMatchObject({ mountPoint: paths().restricted });
    expect(byType('UnrestrictCodeExecution').find((l) => l.event === 'unrestrict.restored')).toMatchObject({ mountPoint: paths().restricted });
    expect(hasOurTable(await tables('root'))).toBe(false);
    expect(agentAlive()).toBe(true);
    expect(isDead(pid)).toBe(false);
  }, 20_000);
});
