import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { endianness, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HRESULT, type ExecutionContext } from '../../../src/agent/executor.js';
import type { ActionType } from '../../../src/domain/model.js';
import { parseFinding } from '../../../src/agent/executors/linux/antivirus.js';
import { CommandError, runCommand } from '../../../src/agent/executors/linux/command.js';
import { buildIsolationRuleset, DEFAULTS, LinuxExecutor, resolveOptions } from '../../../src/agent/executors/linux/index.js';
import { outcomeOf } from '../../../src/agent/executors/linux/linux-executor.js';
import { parseMountInfo, remountOptions } from '../../../src/agent/executors/linux/mounts.js';
import { parseArgs, scriptLaunch, scriptTimeoutOf } from '../../../src/agent/executors/linux/live-response.js';
import { parseProcStat, treeMembers } from '../../../src/agent/executors/linux/processes.js';
import { decodeAddress, interactiveAccounts, parsePasswd, parseProcNet, parseUtmp, unitSection, UTMP_RECORD_SIZE } from '../../../src/agent/executors/linux/investigation/parsers.js';
import { unprivileged } from '../../support/unprivileged.js';
import { announce, runJobAsNobody, sh, skipReason } from './support.js';

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

  it('live response and package limits: documented defaults; /proc, /sys and /dev are always refused to GetFile', () => {
    const o = new LinuxExecutor().options;
    expect(o).toMatchObject({
      scriptTimeoutMs: null,
      scriptOutputMaxBytes: 1024 * 1024,
      scriptInterpreter: '/bin/bash',
      getFileAllowedRoots: ['/'],
      getFileDeniedPaths: ['/proc', '/sys', '/dev'],
      getFileMaxBytes: 100 * 1024 * 1024,
      packageCommandTimeoutMs: 30_000,
      packageItemMaxBytes: 16 * 1024 * 1024,
      packageMaxBytes: 256 * 1024 * 1024,
      packageTimeoutMs: 15 * 60_000,
    });
    expect(resolveOptions({ getFileDeniedPaths: ['/var/lib/countermand/agent/'] }).getFileDeniedPaths).toEqual(['/proc', '/sys', '/dev', '/var/lib/countermand/agent']);
    expect(() => resolveOptions({ getFileAllowedRoots: [] })).toThrow(/at least one/);
    expect(() => resolveOptions({ getFileAllowedRoots: ['srv'] })).toThrow(/absolute/);
    expect(() => resolveOptions({ scriptTimeoutMs: 0 })).toThrow(/scriptTimeoutMs/);
    // The RunScript limit: the machine's own setting, else the server's, else 10 minutes.
    expect(scriptTimeoutOf(null, {})).toBe(600_000);
    expect(scriptTimeoutOf(null, { scriptTimeoutSeconds: 90 })).toBe(90_000);
    expect(scriptTimeoutOf(5000, { scriptTimeoutSeconds: 90 })).toBe(5000);
    expect(scriptTimeoutOf(null, { scriptTimeoutSeconds: 0 })).toBe(600_000);
    expect(() => resolveOptions({ scriptInterpreter: 'bash' })).toThrow(/absolute/);
  });

  it('accepts IPv4/IPv6 addresses and CIDRs', () => {
    const o = resolveOptions({ serverAddresses: ['192.0.2.1', '2001:db8::1'], selectiveAllowList: ['198.51.100.0/24', '2001:db8:1::/48', '203.0.113.9'] });
    expect(o.serverAddresses).toEqual(['192.0.2.1', '2001:db8::1']);
    expect(o.selectiveAllowList).toHaveLength(3);
  });
});

describe('actions with nothing to do on the machine, and unknown ones', () => {
  const executor = new LinuxExecutor(safe);
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

  it('LiveResponse on an agent without file transfer: the command fails with notImplemented, the rest are not run', async () => {
    const commands = [
      { index: 0, startTime: null, endTime: null, commandStatus: 'Created' as const, errors: [], command: { type: 'PutFile' as const, params: [{ key: 'FileName', value: 'x.sh' }] } },
      { index: 1, startTime: null, endTime: null, commandStatus: 'Created' as const, errors: [], command: { type: 'GetFile' as const, params: [{ key: 'Path', value: '/etc/hostname' }] } },
    ];
    const out = await new LinuxExecutor(safe).execute(ctx('LiveResponse', { commands }));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.notImplemented });
    expect(out.troubleshootInfo).toBe('Command 0 (PutFile) failed: This agent cannot download library files (1 later command not run)');
  });

  it('CollectInvestigationPackage on an agent that cannot upload: Failed, notImplemented', async () => {
    const out = await new LinuxExecutor(safe).execute(ctx('CollectInvestigationPackage'));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.notImplemented });
  });

  it('already cancelled: Failed, aborted', async () => {
    const c = new AbortController();
    c.abort();
    const out = await new LinuxExecutor({ ...safe, nftPath: join(T, 'no-nft') }).execute(ctx('Unisolate', {}, c.signal));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.aborted });
  });
});

// Runs as nobody even when the checkout sits where nobody can enter (see unprivileged.ts).
const nobody = unprivileged();
afterAll(() => nobody.runner?.dispose());
describe.skipIf(nobody.runner === null)(announce('not root (runner started as nobody with setpriv)', nobody.reason), () => {
  it.each(['Isolate', 'Unisolate', 'RestrictCodeExecution', 'UnrestrictCodeExecution', 'RunAntiVirusScan', 'StopAndQuarantineFile', 'LiveResponse', 'CollectInvestigationPackage'] as const)(
    '%s: Failed, accessDenied',
    async (type) => {
      const r = await runJobAsNobody(nobody.runner!, {
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

describe('RunScript Args: split like a shell command line, never interpreted', () => {
  it.each([
    [undefined, []],
    ['', []],
    ['   ', []],
    ['--noargs', []],
    [' --noargs ', []],
    ['--noargs x', ['--noargs', 'x']],
    ['OfficeClickToRun', ['OfficeClickToRun']],
    ['-Path /tmp/a  -Verbose', ['-Path', '/tmp/a', '-Verbose']],
    [`one 'two words' "three $HOME" four\\ five`, ['one', 'two words', 'three $HOME', 'four five']],
    ['a;b | c && `id` $(id) > /etc/x *', ['a;b', '|', 'c', '&&', '`id`', '$(id)', '>', '/etc/x', '*']],
    [`"it's" 'say "hi"' ""`, ["it's", 'say "hi"', '']],
    ['# not a comment', ['#', 'not', 'a', 'comment']],
  ])('%j -> %j', (value, args) => {
    expect(parseArgs(value)).toEqual(args);
  });

  it('unbalanced quotes are an error naming Args', () => {
    expect(() => parseArgs(`a 'b`)).toThrow(/Args "a 'b" cannot be split into arguments/);
  });
});

describe('how a script is started', () => {
  const run = (head: string | Buffer) => scriptLaunch('/w/s', Buffer.isBuffer(head) ? head : Buffer.from(head), '/bin/bash', ['x']);
  it('a #! line names the interpreter and at most one argument, as the kernel reads it', () => {
    expect(run('#!/bin/sh\necho')).toEqual({ file: '/bin/sh', args: ['/w/s', 'x'], via: 'shebang' });
    expect(run('#! /usr/bin/env python3 -u\r\n')).toEqual({ file: '/usr/bin/env', args: ['python3 -u', '/w/s', 'x'], via: 'shebang' });
    expect(run('#!/bin/sh -e')).toEqual({ file: '/bin/sh', args: ['-e', '/w/s', 'x'], via: 'shebang' });
    expect(() => run('#!sh\n')).toThrow(/absolute path/);
    expect(() => run('#!\n')).toThrow(/absolute path/);
  });
  it('an ELF file runs itself; anything else goes to the interpreter', () => {
    expect(run(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1]))).toEqual({ file: '/w/s', args: ['x'], via: 'elf' });
    expect(run('echo hi\n')).toEqual({ file: '/bin/bash', args: ['/w/s', 'x'], via: 'interpreter' });
    expect(run('')).toEqual({ file: '/bin/bash', args: ['/w/s', 'x'], via: 'interpreter' });
  });
});

describe('process trees', () => {
  const st = (pid: number, ppid: number, pgid: number, sid: number, state = 'S') =>
    parseProcStat(`${pid} (a b) c)) ${state} ${ppid} ${pgid} ${sid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 ${pid * 10} 1000 50 18446744073709551615`)!;
  it('parses /proc/<pid>/stat with spaces and parentheses in comm', () => {
    expect(st(42, 1, 42, 42)).toMatchObject({ pid: 42, comm: 'a b) c)', state: 'S', ppid: 1, pgid: 42, sid: 42, startTicks: 420, threads: 1, rssPages: 50 });
  });
  it('members: group, session and (with descendants) children that left both; never pid 1 or a zombie', () => {
    const stats = [st(1, 0, 1, 1), st(100, 1, 100, 100), st(101, 100, 100, 100), st(102, 101, 102, 100), st(103, 101, 103, 103), st(104, 103, 104, 104), st(105, 100, 100, 100, 'Z'), st(200, 1, 200, 200), st(201, 1, 100, 100)];
    expect(treeMembers(stats, 100, false).sort()).toEqual([100, 101, 102, 201]);
    expect(treeMembers(stats, 100, true).sort()).toEqual([100, 101, 102, 103, 104, 201]);
  });
});

describe('investigation package parsers', () => {
  it('/proc/net/tcp and tcp6 lines', () => {
    const le = endianness() === 'LE';
    const v4 = le ? '0100007F' : '7F000001';
    const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: ${v4}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: ${v4}:1F90 ${v4}:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1
`;
    expect(parseProcNet('tcp', tcp)).toEqual([
      { protocol: 'tcp', localAddress: '127.0.0.1', localPort: 8080, remoteAddress: '0.0.0.0', remotePort: 0, state: 'LISTEN', uid: 0, inode: 4242 },
      { protocol: 'tcp', localAddress: '127.0.0.1', localPort: 8080, remoteAddress: '127.0.0.1', remotePort: 50000, state: 'ESTABLISHED', uid: 1000, inode: 4343 },
    ]);
    const loop6 = le ? '00000000000000000000000001000000' : '00000000000000000000000000000001';
    const mapped = le ? '0000000000000000FFFF00000100007F' : '00000000000000000000FFFF7F000001';
    expect(decodeAddress(loop6)).toBe('::1');
    expect(decodeAddress(mapped)).toBe('::ffff:127.0.0.1');
    expect(decodeAddress(le ? 'B80D0120000000000000000001000000' : '20010DB8000000000000000000000001')).toBe('2001:db8::1');
    const udp = `header\n   5: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0 0\n`;
    expect(parseProcNet('udp', udp)[0]).toMatchObject({ localPort: 68, state: 'UNCONN', inode: 99 });
  });

  it('utmp records (glibc layout)', () => {
    const buf = Buffer.alloc(UTMP_RECORD_SIZE * 2);
    const write = endianness() === 'LE' ? { i16: buf.writeInt16LE.bind(buf), i32: buf.writeInt32LE.bind(buf) } : { i16: buf.writeInt16BE.bind(buf), i32: buf.writeInt32BE.bind(buf) };
    write.i16(7, 0);
    write.i32(4321, 4);
    buf.write('pts/7', 8);
    buf.write('ts/7', 40);
    buf.write('alice', 44);
    buf.write('203.0.113.5', 76);
    write.i32(99, 336);
    write.i32(1_700_000_000, 340);
    write.i32(250_000, 344);
    Buffer.from([203, 0, 113, 5]).copy(buf, 348);
    write.i16(2, UTMP_RECORD_SIZE); // BOOT_TIME
    buf.write('~', UTMP_RECORD_SIZE + 40);
    buf.write('reboot', UTMP_RECORD_SIZE + 44);
    const [login, boot] = parseUtmp(buf);
    expect(login).toEqual({ type: 'USER_PROCESS', pid: 4321, line: 'pts/7', id: 'ts/7', user: 'alice', host: '203.0.113.5', session: 99, time: '2023-11-14T22:13:20.250Z', address: '203.0.113.5' });
    expect(boot).toMatchObject({ type: 'BOOT_TIME', user: 'reboot', address: null });
    expect(parseUtmp(buf.subarray(0, UTMP_RECORD_SIZE + 10))).toHaveLength(1); // a partial record is ignored
  });

  it('/etc/passwd and which accounts count as interactive', () => {
    const entries = parsePasswd('root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n# c\nbad\nalice:x:1000:1000:A,,,:/home/alice:/bin/zsh\nsync:x:4:65534:sync:/bin:/bin/sync\n');
    expect(entries.map((e) => e.name)).toEqual(['root', 'daemon', 'alice', 'sync']);
    expect(interactiveAccounts(entries).map((e) => e.name)).toEqual(['root', 'alice']);
  });

  it('a unit file section', () => {
    expect(unitSection('[Unit]\nDescription=x\n[Timer]\n# c\nOnCalendar=daily\nOnCalendar=weekly\nPersistent=true\n[Install]\nWantedBy=timers.target\n', 'Timer')).toEqual({
      OnCalendar: ['daily', 'weekly'],
      Persistent: ['true'],
    });
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
