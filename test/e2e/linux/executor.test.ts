import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HRESULT, type ExecutionContext } from '../../../src/agent/executor.js';
import type { ActionType } from '../../../src/domain/model.js';
import { parseFinding } from '../../../src/agent/executors/linux/antivirus.js';
import { CommandError, runCommand } from '../../../src/agent/executors/linux/command.js';
import { buildIsolationRuleset, DEFAULTS, LinuxExecutor, resolveOptions } from '../../../src/agent/executors/linux/index.js';
import { outcomeOf } from '../../../src/agent/executors/linux/linux-executor.js';
import { parseMountInfo, remountOptions } from '../../../src/agent/executors/linux/mounts.js';
import { announce, runJob, sh, skipReason } from './support.js';

/** Checks that need no namespace: options, pure builders, parsers, the command runner, refusals. */

const T = mkdtempSync(join(tmpdir(), 'cm-executor-'));
afterAll(() => rmSync(T, { recursive: true, force: true }));

const safe = { stateDir: join(T, 'state'), logFile: join(T, 'log/actions.log'), quarantineDir: join(T, 'q') };

function ctx(type: ActionType, extra: Partial<ExecutionContext['action']> = {}, signal = new AbortController().signal): ExecutionContext {
  return { action: { id: randomUUID(), type, scope: null, sha1: null, commands: [], comment: null, ...extra }, signal, log: () => undefined };
}

describe('LinuxExecutor options', () => {
  it('has the documented defaults', () => {
    const o = new LinuxExecutor().options;
    expect(o).toMatchObject({
      serverAddresses: [],
      serverPort: null,
      selectiveAllowList: [],
      nftTable: 'countermand',
      restrictPaths: ['/tmp', '/var/tmp', '/dev/shm', '/home'],
      quickScanPaths: ['/tmp', '/var/tmp', '/dev/shm', '/home', '/root'],
      fullScanRoot: '/',
      clamscanPath: 'clamscan',
      clamDatabaseDir: null,
      quarantineDir: '/var/lib/countermand/quarantine',
      stateDir: '/var/lib/countermand/state',
      logFile: '/var/log/countermand/actions.log',
    });
    expect(DEFAULTS.fullScanSystemExcludes).toEqual(['/proc', '/sys', '/dev', '/run']);
  });

  it.each([
    [{ serverAddresses: ['not-an-ip'] }, /serverAddresses/],
    [{ serverAddresses: ['10.0.0.0/8'] }, /single addresses/],
    [{ selectiveAllowList: ['10.0.0.0/33'] }, /prefix length/],
    [{ selectiveAllowList: ['1.2.3.4; flush ruleset'] }, /selectiveAllowList/],
    [{ serverPort: 70000 }, /serverPort/],
    [{ nftTable: 'bad name"' }, /nftTable/],
    [{ restrictPaths: ['relative/dir'] }, /absolute/],
    [{ restrictPaths: ['/'] }, /refusing/],
    [{ quarantineDir: 'q' }, /absolute/],
  ])('rejects %j', (options, message) => {
    expect(() => resolveOptions(options)).toThrow(message);
  });

  it('accepts IPv4/IPv6 addresses and CIDRs', () => {
    const o = resolveOptions({ serverAddresses: ['192.0.2.1', '2001:db8::1'], selectiveAllowList: ['198.51.100.0/24', '2001:db8:1::/48', '203.0.113.9'] });
    expect(o.serverAddresses).toEqual(['192.0.2.1', '2001:db8::1']);
    expect(o.selectiveAllowList).toHaveLength(3);
  });
});

describe('actions this executor does not do', () => {
  const executor = new LinuxExecutor(safe);
  it.each(['LiveResponse', 'CollectInvestigationPackage'] as const)('%s: Failed, notImplemented', async (type) => {
    const out = await executor.execute(ctx(type));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.notImplemented });
    expect(out.troubleshootInfo).toMatch(/not available on the Linux executor/);
  });

  it('Offboard: Succeeded (the agent runtime stops and revokes its credential)', async () => {
    expect(await executor.execute(ctx('Offboard'))).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
  });

  it('an unknown type: Failed, notImplemented (never throws)', async () => {
    const out = await executor.execute(ctx('Teleport' as ActionType));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.notImplemented });
  });
});

const rootReason = process.getuid?.() === 0 ? null : 'needs root';
describe.skipIf(rootReason !== null)(announce('refusals before anything is changed (as root)', rootReason), () => {
  it('Isolate without serverAddresses refuses (the machine could never be unisolated)', async () => {
    const out = await new LinuxExecutor({ ...safe, nftPath: join(T, 'no-nft') }).execute(ctx('Isolate', { scope: 'Full' }));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(out.troubleshootInfo).toMatch(/no serverAddresses/);
  });

  it('an invalid SHA-1 fails before looking at any process', async () => {
    const out = await new LinuxExecutor(safe).execute(ctx('StopAndQuarantineFile', { sha1: 'xyz' }));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
  });

  it('an action log that cannot be written: Failed before acting', async () => {
    const out = await new LinuxExecutor({ ...safe, logFile: '/dev/null/actions.log', nftPath: join(T, 'no-nft') }).execute(ctx('Unisolate'));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(out.troubleshootInfo).toMatch(/Cannot write the action log/);
  });

  it('nft missing: Failed, fileNotFound', async () => {
    const out = await new LinuxExecutor({ ...safe, nftPath: join(T, 'no-nft') }).execute(ctx('Unisolate'));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fileNotFound });
  });

  it('already cancelled: Failed, aborted', async () => {
    const c = new AbortController();
    c.abort();
    const out = await new LinuxExecutor({ ...safe, nftPath: join(T, 'no-nft') }).execute(ctx('Unisolate', {}, c.signal));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.aborted });
  });
});

const nobodyReason = skipReason(['setpriv']);
describe.skipIf(nobodyReason !== null)(announce('not root (runner started as nobody with setpriv)', nobodyReason), () => {
  const asNobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'];
  it.each(['Isolate', 'Unisolate', 'RestrictCodeExecution', 'UnrestrictCodeExecution', 'RunAntiVirusScan', 'StopAndQuarantineFile'] as const)(
    '%s: Failed, accessDenied',
    async (type) => {
      const r = await runJob(asNobody, {
        kind: 'execute',
        options: { serverAddresses: ['192.0.2.1'], stateDir: '/nonexistent/state', logFile: '/nonexistent/log' },
        action: { type, scope: type === 'RunAntiVirusScan' ? 'Quick' : 'Full', sha1: 'a'.repeat(40) },
      });
      expect(r.outcome, r.error ?? r.stderr).toMatchObject({ status: 'Failed', errorHResult: HRESULT.accessDenied });
      expect(r.outcome!.troubleshootInfo).toMatch(/needs root; the agent runs as uid 65534/);
    },
    30_000,
  );
});

describe('isolation ruleset', () => {
  const plan = {
    table: 'countermand',
    serverAddresses: ['192.0.2.10', '2001:db8::10'],
    serverPort: null,
    allowList: ['198.51.100.0/24', '2001:db8:5::/64'],
    allowDhcp: true,
    actionId: 'e0b5-"; flush ruleset',
  };

  it('Full: only loopback, ND, DHCP and the server; the allow list is not used', () => {
    const full = buildIsolationRuleset({ ...plan, mode: 'Full' });
    expect(full.startsWith('table inet countermand\ndelete table inet countermand\ntable inet countermand {')).toBe(true);
    expect(full).toContain('elements = { 192.0.2.10 }');
    expect(full).toContain('elements = { 2001:db8::10 }');
    expect(full).not.toContain('198.51.100.0/24');
    expect(full).not.toContain('@allow4');
    expect(full).toContain('comment "countermand isolation (Full) by action e0b5-flushruleset"');
    expect(full.match(/policy drop;/g)).toHaveLength(3);
  });

  it('Selective adds the allow list; serverPort narrows the server to one port', () => {
    const sel = buildIsolationRuleset({ ...plan, mode: 'Selective', serverPort: 443 });
    expect(sel).toContain('elements = { 198.51.100.0/24 }');
    expect(sel).toContain('ip daddr @allow4 accept');
    expect(sel).toContain('ip daddr @server4 meta l4proto { tcp, udp } th dport 443 accept');
    expect(sel).not.toMatch(/^\s+ip daddr @server4 accept$/m);
  });

  const nftReason = skipReason(['nft', 'unshare'], ['--net']);
  it.skipIf(nftReason !== null)(announce('is valid nft syntax (nft --check in a throwaway network namespace)', nftReason), async () => {
    for (const mode of ['Full', 'Selective'] as const) {
      for (const serverPort of [null, 8443]) {
        const script = buildIsolationRuleset({ ...plan, mode, serverPort });
        const file = join(T, `ruleset-${mode}-${serverPort}.nft`);
        writeFileSync(file, script);
        const r = await sh('unshare', ['--net', '--', 'nft', '--check', '-f', file]);
        expect(r.code, r.stderr).toBe(0);
      }
    }
  });
});

describe('parsers', () => {
  it('clamscan findings, including paths with ": " and spaces', () => {
    expect(parseFinding('/tmp/a b: c.com: Eicar-Signature FOUND')).toEqual({ path: '/tmp/a b: c.com', signature: 'Eicar-Signature' });
    expect(parseFinding('/tmp/x: Win.Test.EICAR_HDB-1 FOUND\r')).toEqual({ path: '/tmp/x', signature: 'Win.Test.EICAR_HDB-1' });
    expect(parseFinding('/tmp/x: OK')).toBeNull();
    expect(parseFinding('WARNING: /nonexist: Can\'t access file')).toBeNull();
  });

  it('mountinfo, with octal escapes', () => {
    const [m] = parseMountInfo('65 44 0:39 / /tmp/a\\040b rw,nosuid,relatime shared:5 - tmpfs tmpfs rw,size=1024k\n');
    expect(m).toEqual({ id: 65, parentId: 44, device: '0:39', root: '/', mountPoint: '/tmp/a b', options: ['rw', 'nosuid', 'relatime'], fsType: 'tmpfs', source: 'tmpfs' });
  });

  it('remount options spell out every flag', () => {
    expect(remountOptions(['rw', 'nosuid', 'nodev', 'relatime'], true)).toBe('remount,bind,rw,nosuid,nodev,relatime,noexec');
    expect(remountOptions(['ro', 'noexec'], false)).toBe('remount,bind,ro,strictatime,exec');
  });
});

describe('command runner', () => {
  it('keeps output bounded', async () => {
    const r = await runCommand('head', ['-c', '300000', '/dev/zero'], { timeoutMs: 10_000, maxOutputBytes: 1000 });
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(1000);
    expect(r.truncated).toBe(true);
  });

  it('kills on timeout', async () => {
    const started = Date.now();
    const err = await runCommand('sleep', ['10'], { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).kind).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(outcomeOf(err).errorHResult).toBe(HRESULT.timeout);
  });

  it('kills on abort', async () => {
    const c = new AbortController();
    setTimeout(() => c.abort(), 100);
    const err = await runCommand('sleep', ['10'], { timeoutMs: 10_000, signal: c.signal }).catch((e: unknown) => e);
    expect((err as CommandError).kind).toBe('aborted');
    expect(outcomeOf(err).errorHResult).toBe(HRESULT.aborted);
  });

  it('reports a missing program, and passes arguments verbatim (no shell)', async () => {
    const err = await runCommand(join(T, 'nope'), [], { timeoutMs: 1000 }).catch((e: unknown) => e);
    expect((err as CommandError).kind).toBe('notFound');
    const r = await runCommand('echo', ['$(id)', '; rm -rf /', '`x`'], { timeoutMs: 5000 });
    expect(r.stdout).toBe('$(id) ; rm -rf / `x`\n');
  });

  it('feeds stdin', async () => {
    const r = await runCommand('cat', [], { timeoutMs: 5000, input: 'table inet x\n' });
    expect(r.stdout).toBe('table inet x\n');
  });
});

describe('files the executor writes are private', () => {
  it.skipIf(rootReason !== null)('log file is 0600 in a 0700 directory', async () => {
    await new LinuxExecutor({ ...safe, nftPath: join(T, 'no-nft') }).execute(ctx('Unisolate'));
    expect(statSync(safe.logFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(T, 'log')).mode & 0o777).toBe(0o700);
  });
});
