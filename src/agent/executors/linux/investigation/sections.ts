import { readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import { arch, cpus, freemem, hostname, loadavg, release, totalmem, uptime } from 'node:os';
import { join } from 'node:path';
import { listPids, readProcStat } from '../processes.js';
import type { Collector } from './collector.js';
import { interactiveAccounts, parsePasswd, parseProcNet, parseUtmp, unitSection, UTMP_RECORD_SIZE, type NetSocket, type PasswdEntry } from './parsers.js';
import { readRegular } from '../files.js';

/**
 * What the investigation package collects, section by section (docs/investigation-package.md
 * lists the same). Programs are those a Debian machine has; where one may be missing, the same
 * facts are also read from /proc or from the files themselves.
 */

/** USER_HZ: the unit of process start times in /proc/<pid>/stat (100 on every Linux architecture). */
const CLOCK_TICKS = 100;
const MAX_PROCESSES = 32_768;
const MAX_CMDLINE = 8192;
const MAX_FD_LINKS = 200_000;
/** The systemd unit directories, system first (later ones are overridden by earlier ones). */
const UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
const LOG_FILES = [
  '/var/log/auth.log',
  '/var/log/secure',
  '/var/log/syslog',
  '/var/log/messages',
  '/var/log/kern.log',
  '/var/log/daemon.log',
  '/var/log/audit/audit.log',
  '/var/log/dpkg.log',
  '/var/log/apt/history.log',
  '/var/log/cloud-init.log',
];
const HOME_FILES = ['.profile', '.bash_profile', '.bash_login', '.bashrc', '.bash_logout', '.zshrc', '.zprofile', '.ssh/authorized_keys', '.ssh/authorized_keys2', '.ssh/rc'];
const HOME_DIRS = ['.config/autostart', '.config/systemd/user'];
const HISTORY_FILES = ['.bash_history', '.zsh_history', '.python_history'];
const MAX_USERS = 200;

async function bootTimeMs(): Promise<number | null> {
  const text = await readFile('/proc/stat', 'utf8').catch(() => '');
  const m = /^btime (\d+)$/m.exec(text);
  return m ? Number(m[1]) * 1000 : null;
}

async function accounts(): Promise<PasswdEntry[]> {
  const r = await readRegular('/etc/passwd', { max: 4 * 1024 * 1024 });
  return r.kind === 'file' ? parsePasswd(r.data.toString('utf8')) : [];
}

/** Every process /proc shows: ids, owner, state, start time, executable, working directory and command line. */
async function processList(): Promise<unknown> {
  const boot = await bootTimeMs();
  const users = new Map((await accounts()).map((a) => [a.uid, a.name]));
  const list: unknown[] = [];
  const pids = (await listPids()).slice(0, MAX_PROCESSES);
  for (const pid of pids) {
    const st = await readProcStat(pid);
    if (!st) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim();
    const uid = Number(field('Uid')?.split(/\s+/)[0] ?? -1);
    const gid = Number(field('Gid')?.split(/\s+/)[0] ?? -1);
    const raw = await readFile(`/proc/${pid}/cmdline`).catch(() => Buffer.alloc(0));
    const cmdline = raw
      .subarray(0, MAX_CMDLINE)
      .toString('utf8')
      .split('\0')
      .filter((_, i, all) => i < all.length - 1 || all[i] !== '');
    const exe = await readlink(`/proc/${pid}/exe`).catch(() => null);
    list.push({
      pid,
      ppid: st.ppid,
      pgid: st.pgid,
      sid: st.sid,
      uid,
      user: users.get(uid) ?? null,
      gid,
      state: st.state,
      comm: st.comm,
      startTime: boot === null ? null : new Date(boot + (st.startTicks * 1000) / CLOCK_TICKS).toISOString(),
      threads: st.threads,
      rssKiB: Number(field('VmRSS')?.split(/\s+/)[0] ?? 0),
      exe,
      exeDeleted: exe?.endsWith(' (deleted)') ?? false,
      cwd: await readlink(`/proc/${pid}/cwd`).catch(() => null),
      cmdline,
      cmdlineTruncated: raw.length > MAX_CMDLINE,
    });
  }
  return { collectedAt: new Date().toISOString(), count: list.length, truncated: pids.length >= MAX_PROCESSES, processes: list };
}

/** TCP and UDP sockets of the agent's network namespace, with the processes holding them. */
async function socketList(): Promise<unknown> {
  const owners = new Map<number, { pid: number; comm: string }[]>();
  let links = 0;
  for (const pid of await listPids()) {
    if (links >= MAX_FD_LINKS) break;
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    let comm: string | null = null;
    for (const fd of fds) {
      if (++links > MAX_FD_LINKS) break;
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (!m) continue;
      comm ??= (await readProcStat(pid))?.comm ?? '?';
      const inode = Number(m[1]);
      const list = owners.get(inode) ?? [];
      if (!list.some((o) => o.pid === pid)) list.push({ pid, comm });
      owners.set(inode, list);
    }
  }
  const sockets: (NetSocket & { processes: { pid: number; comm: string }[] })[] = [];
  for (const protocol of ['tcp', 'tcp6', 'udp', 'udp6'] as const) {
    const text = await readFile(`/proc/net/${protocol}`, 'utf8').catch(() => '');
    for (const s of parseProcNet(protocol, text)) sockets.push({ ...s, processes: owners.get(s.inode) ?? [] });
  }
  return {
    collectedAt: new Date().toISOString(),
    listening: sockets.filter((s) => s.state === 'LISTEN' || (s.protocol.startsWith('udp') && s.state === 'UNCONN')),
    connections: sockets.filter((s) => !(s.state === 'LISTEN' || (s.protocol.startsWith('udp') && s.state === 'UNCONN'))),
    ownersTruncated: links >= MAX_FD_LINKS,
  };
}

/** The last `last` records of a utmp-format file (utmp itself is small: all of it). */
async function utmpRecords(path: string, last = 4096): Promise<{ source: string; present: boolean; records: ReturnType<typeof parseUtmp> }> {
  const r = await readRegular(path, { max: last * UTMP_RECORD_SIZE, tail: true, align: UTMP_RECORD_SIZE });
  if (r.kind !== 'file') return { source: path, present: false, records: [] };
  return { source: path, present: true, records: parseUtmp(r.data) };
}

/** Who is logged in now: USER_PROCESS records of utmp whose process still runs. */
async function loggedIn(): Promise<unknown> {
  const all = await utmpRecords('/var/run/utmp');
  const sessions = [];
  for (const r of all.records.filter((x) => x.type === 'USER_PROCESS')) {
    sessions.push({ ...r, processRunning: (await readProcStat(r.pid)) !== null });
  }
  return { source: '/var/run/utmp', present: all.present, sessions };
}

/** Units enabled by a symlink in /etc/systemd/system/<target>.wants or .requires. */
async function enabledUnits(): Promise<unknown> {
  const units: { unit: string; wantedBy: string; link: string; target: string }[] = [];
  for (const dir of await readdir('/etc/systemd/system').catch(() => [] as string[])) {
    const m = /^(.+)\.(wants|requires)$/.exec(dir);
    if (!m) continue;
    for (const unit of (await readdir(join('/etc/systemd/system', dir)).catch(() => [] as string[])).sort()) {
      const link = join('/etc/systemd/system', dir, unit);
      units.push({ unit, wantedBy: m[1]!, link, target: await readlink(link).catch(() => '') });
    }
  }
  return { source: '/etc/systemd/system/*.wants, *.requires', units };
}

/** Every timer unit file, with its [Timer] settings and whether it is enabled. */
async function systemdTimers(): Promise<unknown> {
  const enabled = new Set<string>();
  for (const dir of await readdir('/etc/systemd/system').catch(() => [] as string[])) {
    if (!/\.(wants|requires)$/.test(dir)) continue;
    for (const unit of await readdir(join('/etc/systemd/system', dir)).catch(() => [] as string[])) enabled.add(unit);
  }
  const seenDirs = new Set<string>();
  const seen = new Set<string>();
  const timers: unknown[] = [];
  for (const dir of UNIT_DIRS) {
    const real = await realpath(dir).catch(() => null);
    if (!real || seenDirs.has(real)) continue;
    seenDirs.add(real);
    for (const name of (await readdir(real).catch(() => [] as string[])).sort()) {
      if (!name.endsWith('.timer') || seen.has(name)) continue;
      const r = await readRegular(join(real, name), { max: 64 * 1024 });
      if (r.kind !== 'file') continue;
      seen.add(name);
      const text = r.data.toString('utf8');
      timers.push({ unit: name, path: join(dir, name), enabled: enabled.has(name), timer: unitSection(text, 'Timer'), description: unitSection(text, 'Unit').Description?.[0] ?? null });
    }
  }
  return { source: UNIT_DIRS.join(', '), timers };
}

async function summary(): Promise<unknown> {
  const boot = await bootTimeMs();
  const osRelease = await readRegular('/etc/os-release', { max: 64 * 1024 });
  const pretty = osRelease.kind === 'file' ? /^PRETTY_NAME="?(.*?)"?$/m.exec(osRelease.data.toString('utf8'))?.[1] ?? null : null;
  return {
    hostname: hostname(),
    os: pretty,
    kernel: release(),
    architecture: arch(),
    cpus: cpus().length,
    memoryBytes: totalmem(),
    freeMemoryBytes: freemem(),
    loadAverage: loadavg(),
    bootTime: boot === null ? null : new Date(boot).toISOString(),
    uptimeSeconds: Math.round(uptime()),
    time: new Date().toISOString(),
    timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
  };
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

export async function collectSections(c: Collector): Promise<void> {
  const users = interactiveAccounts(await accounts()).slice(0, MAX_USERS);
  const homes: PasswdEntry[] = [];
  const seenHomes = new Set<string>();
  for (const u of users) {
    if (!u.home.startsWith('/') || u.home === '/' || seenHomes.has(u.home) || !(await isDirectory(u.home))) continue;
    seenHomes.add(u.home);
    homes.push(u);
  }

  c.section('system', 'System information');
  await c.generated('summary.json', 'os, /proc/stat, /etc/os-release', summary);
  await c.command('uname.txt', 'uname', ['-a']);
  for (const f of ['/etc/os-release', '/etc/hostname', '/etc/machine-id', '/proc/cmdline', '/proc/modules', '/proc/self/mountinfo', '/etc/fstab']) await c.file(f);
  await c.command('df.txt', 'df', ['-P', '-T']);

  c.section('processes', 'Processes');
  await c.generated('processes.json', '/proc/<pid>/{stat,status,cmdline,exe,cwd}', processList);
  await c.command('ps.txt', 'ps', ['-eww', '-o', 'user,pid,ppid,pgid,sid,lstart,stat,rss,tty,args', '--forest']);

  c.section('network', 'Network connections and listening sockets');
  await c.generated('sockets.json', '/proc/net/{tcp,tcp6,udp,udp6}, /proc/<pid>/fd', socketList);
  await c.command('ss-listening.txt', 'ss', ['-tulnpe']);
  await c.command('ss-all.txt', 'ss', ['-tuanpe']);
  await c.command('ss-unix.txt', 'ss', ['-xanp']);
  await c.command('addresses.txt', 'ip', ['-d', 'address', 'show']);
  await c.command('routes.txt', 'ip', ['route', 'show', 'table', 'all']);
  await c.command('routes6.txt', 'ip', ['-6', 'route', 'show', 'table', 'all']);
  await c.command('neighbours.txt', 'ip', ['neigh', 'show']);
  await c.command('nftables.txt', 'nft', ['list', 'ruleset']);
  await c.command('iptables.txt', 'iptables-save', []);
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6', '/proc/net/udp', '/proc/net/udp6', '/proc/net/unix', '/etc/hosts', '/etc/resolv.conf', '/etc/nsswitch.conf']) await c.file(f);

  c.section('users', 'Logged-in users and accounts');
  await c.generated('logged-in.json', '/var/run/utmp', loggedIn);
  await c.generated('recent-logins.json', '/var/log/wtmp (last 1000 records)', () => utmpRecords('/var/log/wtmp', 1000));
  await c.generated('failed-logins.json', '/var/log/btmp (last 1000 records)', () => utmpRecords('/var/log/btmp', 1000));
  await c.command('who.txt', 'who', ['-a']);
  await c.command('last.txt', 'last', ['-F', '-w', '-x', '-n', '1000']);
  for (const f of ['/etc/passwd', '/etc/group', '/etc/sudoers']) await c.file(f);
  await c.directory('/etc/sudoers.d', { copy: true, maxDepth: 1 });
  for (const u of homes) {
    for (const f of HISTORY_FILES) await c.file(join(u.home, f), { home: u.home, tail: true });
  }

  c.section('services', 'Services');
  await c.command('units.txt', 'systemctl', ['list-units', '--all', '--no-pager', '--no-legend', '--plain', '--type=service']);
  await c.command('unit-files.txt', 'systemctl', ['list-unit-files', '--no-pager', '--no-legend']);
  await c.command('failed.txt', 'systemctl', ['--failed', '--no-pager', '--no-legend', '--plain']);
  await c.generated('enabled-units.json', '/etc/systemd/system/*.wants', enabledUnits);
  await c.directory('/etc/init.d', { maxDepth: 1 });

  c.section('scheduled-tasks', 'Scheduled jobs');
  await c.command('timers.txt', 'systemctl', ['list-timers', '--all', '--no-pager', '--no-legend']);
  await c.generated('systemd-timers.json', UNIT_DIRS.join(', '), systemdTimers);
  for (const f of ['/etc/crontab', '/etc/anacrontab']) await c.file(f);
  for (const d of ['/etc/cron.d', '/etc/cron.hourly', '/etc/cron.daily', '/etc/cron.weekly', '/etc/cron.monthly', '/etc/cron.yearly']) await c.directory(d, { copy: true, maxDepth: 1 });
  // User crontabs (Debian: crontabs/<user>; Red Hat: <user>), at jobs, anacron stamps.
  await c.directory('/var/spool/cron', { copy: true, maxDepth: 3 });
  await c.directory('/var/spool/anacron', { maxDepth: 1 });

  c.section('installed-packages', 'Installed packages');
  await c.command('dpkg.tsv', 'dpkg-query', ['-W', '-f', '${binary:Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\t${Installed-Size}\\n']);
  await c.command('rpm.tsv', 'rpm', ['-qa', '--qf', '%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{INSTALLTIME:date}\\n']);

  c.section('logs', 'Recent system logs');
  await c.command('journal.txt', 'journalctl', ['--no-pager', '--quiet', '-o', 'short-iso-precise', '--since', '-7d', '-n', '50000']);
  await c.directory('/var/log', { maxDepth: 2, maxEntries: 1000 });
  for (const f of LOG_FILES) await c.file(f, { tail: true });

  c.section('autoruns', 'Autoruns (what starts by itself)');
  for (const f of ['/etc/rc.local', '/etc/ld.so.preload', '/etc/ld.so.conf', '/etc/environment', '/etc/profile', '/etc/bash.bashrc', '/etc/zsh/zshrc', '/etc/modules', '/etc/ssh/sshd_config']) {
    await c.file(f);
  }
  for (const d of ['/etc/systemd/system', '/etc/systemd/user', '/run/systemd/system', '/usr/local/lib/systemd/system']) {
    // Locally defined units and drop-ins (the vendor's in /usr/lib are listed by unit-files.txt).
    await c.directory(d, { copy: true, maxDepth: 3, match: (n) => /\.(service|timer|socket|path|mount|target|conf)$/.test(n) });
  }
  for (const d of ['/etc/profile.d', '/etc/ld.so.conf.d', '/etc/modules-load.d', '/etc/modprobe.d', '/etc/xdg/autostart', '/etc/update-motd.d', '/etc/ssh/sshd_config.d']) {
    await c.directory(d, { copy: true, maxDepth: 1 });
  }
  for (const d of ['/etc/rc0.d', '/etc/rc1.d', '/etc/rc2.d', '/etc/rc3.d', '/etc/rc4.d', '/etc/rc5.d', '/etc/rc6.d', '/etc/rcS.d']) await c.directory(d, { maxDepth: 1 });
  for (const u of homes) {
    for (const f of HOME_FILES) await c.file(join(u.home, f), { home: u.home });
    for (const d of HOME_DIRS) await c.directory(join(u.home, d), { copy: true, maxDepth: 2, home: u.home });
  }
}
