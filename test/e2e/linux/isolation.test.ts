import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT } from '../../../src/agent/executor.js';
import type { LinuxExecutorOptions } from '../../../src/agent/executors/linux/index.js';
import { announce, must, runJob, sh, skipReason, start, waitUntil, type Owned } from './support.js';

/**
 * Three network namespaces: agent <-veth-> server, agent <-veth-> other, IPv4 and IPv6. TCP
 * listeners in server and other; the executor runs inside `agent` via `ip netns exec`. The root
 * network namespace is never touched (checked at the end).
 */

const reason = skipReason(['ip', 'nft', 'unshare'], ['--net', '--mount']);
const title = announce('Isolate/Unisolate with nftables in network namespaces', reason);

const id = randomBytes(3).toString('hex');
const NS = { agent: `cm${id}a`, server: `cm${id}s`, other: `cm${id}o` };
const PORT = 8080;
const PORT2 = 8081;
const ADDR = {
  server4: '10.231.1.2',
  server6: 'fd00:c0de:1::2',
  other4: '10.231.2.2',
  other6: 'fd00:c0de:2::2',
};
const TABLE = 'countermand';

const listener = (ports: number[]) =>
  `const net=require('net');let n=0;for(const p of ${JSON.stringify(ports)})net.createServer(s=>s.end('hello\\n')).listen(p,'::',()=>{if(++n===${ports.length})console.log('listening')});`;

/** From inside `agent`: which of the targets answer within 1.5 s. */
const probeScript = `
const net=require('net');
const targets=JSON.parse(process.argv[1]);
Promise.all(targets.map(([host,port])=>new Promise(res=>{
  const s=net.connect({host,port});let data='';
  const done=ok=>{s.destroy();res(ok)};
  s.setTimeout(1500,()=>done(false));
  s.on('data',d=>{data+=d;if(data.includes('hello'))done(true)});
  s.on('error',()=>done(false));
}))).then(r=>console.log(JSON.stringify(r)));`;

describe.skipIf(reason !== null)(title, () => {
  const owned: Owned[] = [];
  let dir = '';
  let options: LinuxExecutorOptions;

  const inAgent = ['ip', 'netns', 'exec', NS.agent];

  async function reach(targets: [string, number][]): Promise<boolean[]> {
    const r = await must('ip', ['netns', 'exec', NS.agent, process.execPath, '-e', probeScript, JSON.stringify(targets)], 10_000);
    return JSON.parse(r.stdout.trim()) as boolean[];
  }
  const all: [string, number][] = [
    [ADDR.server4, PORT],
    [ADDR.server6, PORT],
    [ADDR.other4, PORT],
    [ADDR.other6, PORT],
  ];

  async function act(type: 'Isolate' | 'Unisolate', scope: string | null, extra: Partial<LinuxExecutorOptions> = {}) {
    const r = await runJob(inAgent, { kind: 'execute', options: { ...options, ...extra }, action: { type, scope } });
    if (!r.outcome) throw new Error(`no outcome: ${r.error}\n${r.stderr}`);
    return r.outcome;
  }

  async function agentTables(): Promise<string> {
    return (await must('ip', ['netns', 'exec', NS.agent, 'nft', 'list', 'tables'])).stdout;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cm-isolation-'));
    options = {
      serverAddresses: [ADDR.server4, ADDR.server6],
      selectiveAllowList: ['10.231.2.0/24', 'fd00:c0de:2::/64'],
      stateDir: join(dir, 'state'),
      logFile: join(dir, 'log', 'actions.log'),
      quarantineDir: join(dir, 'quarantine'),
      nftTable: TABLE,
    };
    for (const ns of Object.values(NS)) await must('ip', ['netns', 'add', ns]);
    for (const ns of Object.values(NS)) await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const links: [string, string, number][] = [
      [NS.server, 'srv', 1],
      [NS.other, 'oth', 2],
    ];
    for (const [peerNs, tag, net] of links) {
      const a = `cm${id}${tag}a`;
      const b = `cm${id}${tag}b`;
      await must('ip', ['link', 'add', a, 'netns', NS.agent, 'type', 'veth', 'peer', 'name', b, 'netns', peerNs]);
      await must('ip', ['-n', NS.agent, 'addr', 'add', `10.231.${net}.1/24`, 'dev', a]);
      await must('ip', ['-n', peerNs, 'addr', 'add', `10.231.${net}.2/24`, 'dev', b]);
      await must('ip', ['-n', NS.agent, 'addr', 'add', `fd00:c0de:${net}::1/64`, 'dev', a, 'nodad']);
      await must('ip', ['-n', peerNs, 'addr', 'add', `fd00:c0de:${net}::2/64`, 'dev', b, 'nodad']);
      await must('ip', ['-n', NS.agent, 'link', 'set', a, 'up']);
      await must('ip', ['-n', peerNs, 'link', 'set', b, 'up']);
    }
    for (const [ns, ports] of [
      [NS.server, [PORT, PORT2]],
      [NS.other, [PORT]],
    ] as const) {
      const l = start('ip', ['netns', 'exec', ns, process.execPath, '-e', listener([...ports])]);
      owned.push(l);
      await waitUntil(`listener in ${ns}`, () => l.output().includes('listening') || (l.child.exitCode !== null && l.output()), 10_000);
      if (!l.output().includes('listening')) throw new Error(`listener in ${ns} failed: ${l.output()}`);
    }
    // A table that is not ours: the executor must leave it alone.
    await must('ip', ['netns', 'exec', NS.agent, 'nft', 'add', 'table', 'inet', 'unrelated']);
  }, 50_000);

  afterAll(async () => {
    for (const o of owned) await o.stop();
    for (const ns of Object.values(NS)) await sh('ip', ['netns', 'del', ns]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('reaches server and other before isolation', async () => {
    expect(await reach(all)).toEqual([true, true, true, true]);
  }, 20_000);

  it('Full isolation keeps the server (v4 and v6) and cuts everything else; isolating again is fine', async () => {
    const first = await act('Isolate', 'Full');
    expect(first, JSON.stringify(first)).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
    expect(first.detail).toMatchObject({ mode: 'Full', table: `inet ${TABLE}`, alreadyIsolated: false });
    expect(await agentTables()).toContain(`table inet ${TABLE}`);
    const started = Date.now();
    expect(await reach(all)).toEqual([true, true, false, false]);
    expect(Date.now() - started).toBeLessThan(5000);

    const again = await act('Isolate', 'Full');
    expect(again).toMatchObject({ status: 'Succeeded' });
    expect(again.detail).toMatchObject({ alreadyIsolated: true });
    expect((await agentTables()).match(new RegExp(`table inet ${TABLE}\\b`, 'g'))).toHaveLength(1);
    expect(await reach(all)).toEqual([true, true, false, false]);

    const state = JSON.parse(readFileSync(join(dir, 'state', 'isolation.json'), 'utf8'));
    expect(state).toMatchObject({ table: TABLE, mode: 'Full', serverAddresses: options.serverAddresses });
  }, 50_000);

  it('UnManagedDevice is isolated like Full', async () => {
    const out = await act('Isolate', 'UnManagedDevice');
    expect(out).toMatchObject({ status: 'Succeeded' });
    expect(out.detail).toMatchObject({ mode: 'Full' });
    expect(await reach([all[0]!, all[2]!])).toEqual([true, false]);
  }, 40_000);

  it('Selective isolation also reaches the allow list', async () => {
    const out = await act('Isolate', 'Selective');
    expect(out).toMatchObject({ status: 'Succeeded' });
    expect(out.detail).toMatchObject({ mode: 'Selective', allowList: options.selectiveAllowList });
    expect(await reach(all)).toEqual([true, true, true, true]);
  }, 40_000);

  it('serverPort lets through only that port of the server', async () => {
    const out = await act('Isolate', 'Full', { serverPort: PORT });
    expect(out).toMatchObject({ status: 'Succeeded' });
    expect(
      await reach([
        [ADDR.server4, PORT],
        [ADDR.server6, PORT],
        [ADDR.server4, PORT2],
        [ADDR.server6, PORT2],
        [ADDR.other4, PORT],
      ]),
    ).toEqual([true, true, false, false, false]);
  }, 40_000);

  it('Unisolate restores everything, leaves other tables alone, and is idempotent', async () => {
    const out = await act('Unisolate', null);
    expect(out).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
    expect(out.detail).toMatchObject({ wasIsolated: true });
    expect(await reach(all)).toEqual([true, true, true, true]);
    const tables = await agentTables();
    expect(tables).not.toContain(`table inet ${TABLE}`);
    expect(tables).toContain('table inet unrelated');

    const again = await act('Unisolate', null);
    expect(again).toMatchObject({ status: 'Succeeded' });
    expect(again.detail).toMatchObject({ wasIsolated: false });

    const log = readFileSync(join(dir, 'log', 'actions.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; event: string });
    expect(log.filter((e) => e.type === 'Isolate' && e.event === 'isolate.applied').length).toBeGreaterThanOrEqual(4);
    expect(log.filter((e) => e.type === 'Unisolate' && e.event === 'unisolate.removed')).toHaveLength(2);
  }, 40_000);

  it('never created a table in the root network namespace', async () => {
    const root = await must('nft', ['list', 'tables']);
    expect(root.stdout).not.toContain(`table inet ${TABLE}`);
  });

  it('refuses an unknown isolation type without touching nftables', async () => {
    const out = await act('Isolate', 'Partial');
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(await agentTables()).not.toContain(`table inet ${TABLE}`);
  }, 20_000);
});
