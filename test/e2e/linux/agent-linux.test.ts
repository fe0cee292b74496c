import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken } from '../../support/agents.js';
import { appClient, appToken, makeFixtures, startTestServer, type Client, type TestServer } from '../../support/harness.js';
import { HRESULT } from '../../../src/agent/executor.js';
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
 *
 * Live response and the investigation package go the whole way too: library files uploaded
 * over multipart, commands run on the machine, results and the package downloaded through
 * their links without an Authorization header, a cancel and the server's script limit killing
 * a script (and its children) on the machine.
 */

const reason = skipReason(['ip', 'nft', 'unshare', 'nsenter', 'mount', 'umount'], ['--net', '--mount']);
const title = announce('countermand agent --executor linux in a network namespace, driven through the API', reason);

const id = randomBytes(3).toString('hex');
const NS = { agent: `cm${id}A`, other: `cm${id}O` };
const LINK = { root: `cm${id}r`, agentUp: `cm${id}u`, agentOther: `cm${id}x`, other: `cm${id}y` };
const TABLE = 'countermand';
const OTHER = { ip: '10.231.77.2', port: 8080 };
const MACHINE_LINE = /Countermand agent for machine ([0-9a-f]{40}) is running/;
/** The server's RunScript limit, sent with each live-response action to the agent. */
const SCRIPT_TIMEOUT_SECONDS = 4;
const FINAL = ['Succeeded', 'Failed', 'Cancelled', 'TimeOut'];
// The EICAR test file (https://www.eicar.org), and a signature database for it the test writes.
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
const SIGNATURE = 'Countermand.Test.EICAR';
const CLAMSCAN = which('clamscan');

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
    clamDb: join(T, 'clamdb'),
    infected: join(T, 'home/ana'),
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
    for (const d of [paths().agentState, paths().restricted, paths().clamDb, paths().infected]) mkdirSync(d, { recursive: true });
    writeFileSync(join(paths().clamDb, 'countermand-test.hdb'), `${createHash('md5').update(EICAR).digest('hex')}:${Buffer.byteLength(EICAR)}:${SIGNATURE}\n`);
    writeFileSync(join(paths().infected, 'eicar.com'), EICAR);

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
    server = await startTestServer({
      fixtures: setup.fixtures,
      config: { host: SERVER_IP, agentPollSeconds: 2, rateLimitScale: 100, liveResponseScriptTimeoutSeconds: SCRIPT_TIMEOUT_SECONDS },
    });
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
    const linuxConfig = {
      stateDir: p.execState,
      logFile: p.logFile,
      quarantineDir: p.quarantine,
      nftTable: TABLE,
      restrictPaths: [p.restricted],
      clamDatabaseDir: p.clamDb,
      quickScanPaths: [p.infected],
    };
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

  it('its check-ins report the address it reaches the server from, and findbyip finds it by it', async () => {
    const machine = await poll('a check-in with the address', async () => {
      const m = (await api.get(`/api/machines/${machineId}`)).body;
      return m.lastIpAddress === AGENT_IP ? m : null;
    }, 15_000);
    expect(machine.lastIpAddress).toBe(AGENT_IP);
    const now = new Date().toISOString();
    const found = await api.get(`/api/machines/findbyip(ip='${AGENT_IP}',timestamp=${now})`);
    expect(found.body.value.map((m: { id: string }) => m.id)).toEqual([machineId]);
    expect((await api.get(`/api/machines/findbyip(ip='${SERVER_IP}',timestamp=${now})`)).body.value).toEqual([]);
  }, 20_000);

  it.skipIf(CLAMSCAN === null)(`RunAntiVirusScan through the API: clamscan finds EICAR, and the server raises an alert of it${CLAMSCAN === null ? ' (skipped: clamscan is not installed)' : ''}`, async () => {
    const scan = await act('runAntiVirusScan', { Comment: 'e2e scan', ScanType: 'Quick' });
    expect(scan.final, JSON.stringify(scan.final)).toMatchObject({ status: 'Succeeded', type: 'RunAntiVirusScan' });
    const alerts = (await api.get(`/api/alerts?$expand=evidence&$filter=detectionSource eq 'Antivirus'`)).body.value;
    expect(alerts).toHaveLength(1);
    const [alert] = alerts;
    expect(alert).toMatchObject({ machineId, severity: 'Medium', status: 'New', threatFamilyName: 'EICAR', computerDnsName: `agent-linux-${id}.test` });
    expect(alert.threatName).toMatch(/^Countermand\.Test\.EICAR(\.UNOFFICIAL)?$/);
    expect(alert.description).toContain(scan.id);
    expect(alert.evidence.map((e: Record<string, unknown>) => [e.entityType, e.filePath, e.fileName, e.sha1, e.sha256, e.detectionStatus])).toEqual([
      ['File', paths().infected, 'eicar.com', createHash('sha1').update(EICAR).digest('hex'), createHash('sha256').update(EICAR).digest('hex'), 'Detected'],
    ]);
    expect((await api.get(`/api/alerts/${alert.id}`)).body.evidence).toEqual(alert.evidence);
  }, 45_000);

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

  // ---- Live response and the investigation package, through the API -------------------------

  /** Uploads a library file the way MDE clients do (multipart/form-data). */
  async function library(name: string, content: string | Buffer): Promise<void> {
    const form = new FormData();
    form.append('File', new Blob([content]), name);
    form.append('OverrideIfExists', 'true');
    const token = await appToken(server!, setup.tenantId, setup.clientId);
    const res = await fetch(`${server!.url}/api/libraryfiles`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
    expect(res.status, await res.text()).toBe(200);
  }
  const command = (type: string, params: Record<string, string>) => ({ type, params: Object.entries(params).map(([key, value]) => ({ key, value })) });
  /** A download as clients do it: the URL alone, without an Authorization header. */
  async function download(url: string): Promise<{ status: number; bytes: Buffer; type: string | null }> {
    const res = await fetch(url);
    return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), type: res.headers.get('content-type') };
  }
  async function resultLink(actionId: string, index: number): Promise<string> {
    const r = await api.get(`/api/machineactions/${actionId}/GetLiveResponseResultDownloadLink(index=${index})`);
    expect(r.status, r.text).toBe(200);
    return r.body.value as string;
  }
  async function finalOf(actionId: string, timeoutMs = 30_000) {
    return poll(
      `action ${actionId} to end`,
      async () => {
        const r = await api.get(`/api/machineactions/${actionId}`);
        return FINAL.includes(r.body.status) ? r.body : null;
      },
      timeoutMs,
    );
  }
  const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

  it('LiveResponse through the API runs on the machine: PutFile, RunScript with Args, GetFile; results downloaded by link without Authorization', async () => {
    await library('helper.txt', 'put by PutFile\n');
    await library('collect.sh', '#!/bin/bash\nprintf "[%s]\\n" "$@"\ncat helper.txt\nid -u\nip -4 -o addr show\n');
    const evidence = randomBytes(2 * 1024 * 1024 + 3);
    writeFileSync(join(T, 'evidence.bin'), evidence);
    const created = await api.post(`/api/machines/${machineId}/runliveresponse`, {
      Comment: 'e2e live response',
      Commands: [
        command('PutFile', { FileName: 'helper.txt' }),
        command('RunScript', { ScriptName: 'collect.sh', Args: `one 'two words' $HOME ; \`id\`` }),
        command('GetFile', { Path: join(T, 'evidence.bin') }),
      ],
    });
    expect(created.status, created.text).toBe(201);
    const final = await finalOf(created.body.id);
    expect(final, JSON.stringify(final)).toMatchObject({ status: 'Succeeded', type: 'LiveResponse', errorHResult: 0 });
    expect(final.commands.map((c: { commandStatus: string }) => c.commandStatus)).toEqual(['Completed', 'Completed', 'Completed']);
    for (const c of final.commands) expect(Date.parse(c.endTime)).toBeGreaterThanOrEqual(Date.parse(c.startTime));

    const result = await download(await resultLink(created.body.id, 1));
    expect(result.status).toBe(200);
    const json = JSON.parse(result.bytes.toString('utf8'));
    expect(Object.keys(json)).toEqual(['script_name', 'exit_code', 'script_output', 'script_errors']);
    expect(json).toMatchObject({ script_name: 'collect.sh', exit_code: 0, script_errors: '' });
    const out = json.script_output as string;
    expect(out.startsWith('[one]\n[two words]\n[$HOME]\n[;]\n[`id`]\nput by PutFile\n0\n')).toBe(true);
    // It ran in the agent's network namespace: the machine's address, not the server's side.
    expect(out).toContain(AGENT_IP);
    expect(out).not.toContain(`${SERVER_IP}/24`);

    const file = await download(await resultLink(created.body.id, 2));
    expect(file.status).toBe(200);
    expect(file.bytes.length).toBe(evidence.length);
    expect(sha256(file.bytes)).toBe(sha256(evidence));
  }, 60_000);

  it("GetFile through the API never hands out the agent's own state (its credential)", async () => {
    const name = readdirSync(paths().agentState).find((f) => statSync(join(paths().agentState, f)).isFile());
    expect(name).toBeDefined();
    const created = await api.post(`/api/machines/${machineId}/runliveresponse`, {
      Comment: 'e2e credential',
      Commands: [command('GetFile', { Path: join(paths().agentState, name!) })],
    });
    expect(created.status, created.text).toBe(201);
    const final = await finalOf(created.body.id);
    expect(final).toMatchObject({ status: 'Failed', errorHResult: HRESULT.accessDenied });
    expect(final.troubleshootInfo).toMatch(/which GetFile never reads/);
    expect(final.commands[0]).toMatchObject({ commandStatus: 'Failed' });
  }, 60_000);

  it('cancel of a running RunScript through the API kills it on the machine, with its children', async () => {
    await library('hang.sh', '#!/bin/bash\nsleep 3001 &\nsetsid sleep 3002 &\necho "$$ $(jobs -p | tr "\\n" " ")" > "$1"\necho started\nwait\n');
    const pidFile = join(T, 'hang.pids');
    const created = await api.post(`/api/machines/${machineId}/runliveresponse`, {
      Comment: 'e2e cancel',
      Commands: [command('RunScript', { ScriptName: 'hang.sh', Args: pidFile })],
    });
    expect(created.status, created.text).toBe(201);
    const pids = await poll('the script to run', async () => (existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim().split(/\s+/).map(Number) : null), 20_000);
    expect(pids).toHaveLength(3);
    expect(pids.every((p) => !isDead(p))).toBe(true);
    const cancelled = await api.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'stop it' });
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.body.status).toBe('Cancelled');
    await poll('the script and its children to die', async () => pids.every((p) => isDead(p)), 15_000);
    await poll('the agent to log the abort', async () => logLines().some((l) => l.action === created.body.id && l.event === 'end' && l.errorHResult === HRESULT.aborted), 15_000);
    expect((await api.get(`/api/machineactions/${created.body.id}`)).body.status).toBe('Cancelled');
  }, 60_000);

  it("the server's RunScript limit reaches the machine: the script is killed there and the command fails", async () => {
    const pidFile = join(T, 'hang-timeout.pids');
    const created = await api.post(`/api/machines/${machineId}/runliveresponse`, {
      Comment: 'e2e timeout',
      Commands: [command('RunScript', { ScriptName: 'hang.sh', Args: pidFile }), command('GetFile', { Path: join(T, 'evidence.bin') })],
    });
    expect(created.status, created.text).toBe(201);
    const final = await finalOf(created.body.id);
    expect(final, JSON.stringify(final)).toMatchObject({ status: 'Failed', errorHResult: HRESULT.timeout });
    expect(final.troubleshootInfo).toMatch(new RegExp(`hang\\.sh was killed after ${SCRIPT_TIMEOUT_SECONDS * 1000} ms .*; its last output: started`));
    expect(final.commands.map((c: { commandStatus: string }) => c.commandStatus)).toEqual(['Failed', 'Created']);
    expect(final.commands[0].errors[0]).toMatch(/^hang\.sh was killed after/);
    const pids = readFileSync(pidFile, 'utf8').trim().split(/\s+/).map(Number);
    await poll('the killed processes to be gone', async () => pids.every((p) => isDead(p)), 10_000);
  }, 60_000);

  it('CollectInvestigationPackage through the API: the package is downloaded through getPackageUri and holds the machine', async () => {
    const pkg = await act('collectInvestigationPackage', { Comment: 'e2e package' });
    expect(pkg.final, JSON.stringify(pkg.final)).toMatchObject({ status: 'Succeeded', type: 'CollectInvestigationPackage' });
    expect(pkg.history).toEqual(NORMAL_HISTORY);
    const uri = await api.get(`/api/machineactions/${pkg.id}/getPackageUri`);
    expect(uri.status, uri.text).toBe(200);
    const file = await download(uri.body.value);
    expect(file.status).toBe(200);
    expect(file.bytes.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]))).toBe(true);
    const archive = join(T, 'package.tar.gz');
    writeFileSync(archive, file.bytes);
    const dir = join(T, 'package');
    mkdirSync(dir);
    await must('tar', ['-xzf', archive, '-C', dir]);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'countermand-investigation-package', actionId: pkg.id });
    expect(manifest.sections.map((s: { name: string }) => s.name)).toEqual(['system', 'processes', 'network', 'users', 'services', 'scheduled-tasks', 'installed-packages', 'logs', 'autoruns']);
    // The machine's own state: its address, its connection to the server held by the agent, the agent itself.
    expect(readFileSync(join(dir, 'network/addresses.txt'), 'utf8')).toContain(AGENT_IP);
    const sockets = JSON.parse(readFileSync(join(dir, 'network/sockets.json'), 'utf8'));
    expect(
      sockets.connections.some(
        (c: { remoteAddress: string; remotePort: number; processes: { pid: number }[] }) =>
          c.remoteAddress === SERVER_IP && c.remotePort === serverPort && c.processes.some((p) => p.pid === pid),
      ),
    ).toBe(true);
    const processes = JSON.parse(readFileSync(join(dir, 'processes/processes.json'), 'utf8')).processes as { pid: number; cmdline: string[] }[];
    expect(processes.find((p) => p.pid === pid)?.cmdline).toEqual(expect.arrayContaining(['agent', '--executor', 'linux']));
    // Nothing stays on the machine.
    expect(readdirSync(join(paths().execState, 'packages'))).toEqual([]);
  }, 60_000);
});
