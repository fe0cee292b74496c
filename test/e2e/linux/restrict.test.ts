import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LinuxExecutorOptions } from '../../../src/agent/executors/linux/index.js';
import { parseMountInfo } from '../../../src/agent/executors/linux/mounts.js';
import { announce, must, ROOT, namespaceOf, runJob, sh, skipReason, start, waitUntil, type Owned } from './support.js';

/**
 * A private mount namespace held open by a `sleep` started with `unshare --mount
 * --propagation private`; every mount, the executor and the probes run in it through
 * `nsenter -m`. Killing the holder drops the namespace and every mount in it, so the host's
 * mounts are never changed, even if a test fails half-way.
 *
 * Layout (T = a fresh temporary directory):
 *   T/mnt          tmpfs (a mount point; nosuid,nodev)
 *   T/mnt/inner    tmpfs below it (nodev)
 *   T/plain        an ordinary directory (not a mount point: the executor bind-mounts it)
 *   T/plain/deep   tmpfs below it (must stay visible through the bind)
 *   T/missing      does not exist (skipped, logged)
 */

const reason = skipReason(['unshare', 'nsenter', 'mount', 'umount'], ['--mount']);
const title = announce('RestrictCodeExecution with noexec remounts in a private mount namespace', reason);

describe.skipIf(reason !== null)(title, () => {
  let holder: Owned | undefined;
  let pid = 0;
  let T = '';
  let options: LinuxExecutorOptions;
  const scripts = () => [join(T, 'mnt/run.sh'), join(T, 'mnt/inner/run.sh'), join(T, 'plain/run.sh'), join(T, 'plain/deep/run.sh')];

  /** Runs something in the namespace; `wd` must exist there (the runner needs the repository root). */
  const nsenter = (wd = ROOT) => ['nsenter', '-t', String(pid), '-m', `--wd=${wd}`, '--'];
  /** A path as the namespace sees it, reachable from the host through the holder's root. */
  const inside = (path: string) => `/proc/${pid}/root${path}`;

  async function runs(script: string): Promise<'ok' | 'EACCES' | string> {
    const [file, ...args] = nsenter();
    const r = await sh(file!, [...args, script]);
    if (r.code === 0 && r.stdout.trim() === 'ok') return 'ok';
    if (r.code === 126 && /Permission denied/.test(r.stderr)) return 'EACCES';
    return `exit ${r.code}: ${r.stderr}`;
  }

  /** The visible (newest) mount at each mount point below T. */
  function visibleUnderT() {
    const byPoint = new Map<string, ReturnType<typeof mountsUnderT>[number]>();
    for (const m of mountsUnderT()) if ((byPoint.get(m.mountPoint)?.id ?? -1) < m.id) byPoint.set(m.mountPoint, m);
    return [...byPoint.values()];
  }

  /** Mounts at and below T in the namespace: mount point -> {id, options, fsType}. */
  function mountsUnderT() {
    const entries = parseMountInfo(readFileSync(`/proc/${pid}/mountinfo`, 'utf8')).filter((e) => e.mountPoint === T || e.mountPoint.startsWith(`${T}/`));
    return entries.map((e) => ({ id: e.id, mountPoint: e.mountPoint, options: e.options.join(','), fsType: e.fsType }));
  }

  async function act(type: 'RestrictCodeExecution' | 'UnrestrictCodeExecution') {
    const r = await runJob(nsenter(), { kind: 'execute', options, action: { type } });
    if (!r.outcome) throw new Error(`no outcome: ${r.error}\n${r.stderr}`);
    return r.outcome;
  }

  let before: ReturnType<typeof mountsUnderT> = [];

  beforeAll(async () => {
    T = mkdtempSync(join(tmpdir(), 'cm-restrict-'));
    mkdirSync(join(T, 'mnt'));
    mkdirSync(join(T, 'plain/deep'), { recursive: true });
    holder = start('unshare', ['--mount', '--propagation', 'private', 'sleep', '300']);
    pid = holder.child.pid!;
    const hostNs = namespaceOf('self', 'mnt');
    await waitUntil('the private mount namespace', () => {
      const ns = namespaceOf(pid, 'mnt');
      return ns !== null && ns !== hostNs;
    });
    const [file, ...args] = nsenter();
    await must(file!, [...args, 'mount', '-t', 'tmpfs', '-o', 'nosuid,nodev,size=4m', 'cmtest', join(T, 'mnt')]);
    mkdirSync(inside(join(T, 'mnt/inner')));
    await must(file!, [...args, 'mount', '-t', 'tmpfs', '-o', 'nodev,size=4m', 'cmtest', join(T, 'mnt/inner')]);
    await must(file!, [...args, 'mount', '-t', 'tmpfs', '-o', 'size=4m', 'cmtest', join(T, 'plain/deep')]);
    for (const s of scripts()) writeFileSync(inside(s), '#!/bin/sh\necho ok\n', { mode: 0o755 });
    options = {
      restrictPaths: [join(T, 'mnt'), join(T, 'plain'), join(T, 'missing')],
      stateDir: join(T, 'state'),
      logFile: join(T, 'log/actions.log'),
      quarantineDir: join(T, 'quarantine'),
    };
    before = mountsUnderT();
  }, 30_000);

  afterAll(async () => {
    await holder?.stop(); // the namespace, and every mount in it, goes with its last process
    if (T) rmSync(T, { recursive: true, force: true });
  }, 20_000);

  it('scripts run before the restriction', async () => {
    for (const s of scripts()) expect(await runs(s), s).toBe('ok');
    expect(before.map((m) => m.mountPoint)).toEqual([join(T, 'mnt'), join(T, 'mnt/inner'), join(T, 'plain/deep')]);
  }, 20_000);

  it('Restrict makes every path (and the mounts below) noexec and skips a missing one', async () => {
    const out = await act('RestrictCodeExecution');
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
    expect(out.detail?.skipped).toEqual([{ path: join(T, 'missing'), reason: 'does not exist' }]);
    for (const s of scripts()) expect(await runs(s), s).toBe('EACCES');
    // A new file is just as blocked.
    writeFileSync(inside(join(T, 'plain/new.sh')), '#!/bin/sh\necho ok\n', { mode: 0o755 });
    expect(await runs(join(T, 'plain/new.sh'))).toBe('EACCES');

    const all = mountsUnderT();
    expect(all.filter((m) => m.mountPoint === join(T, 'plain'))).toHaveLength(1); // the executor's bind
    // ... which carries a copy of plain/deep (the original is hidden under the bind, unchanged).
    expect(all.filter((m) => m.mountPoint === join(T, 'plain/deep'))).toHaveLength(2);
    const now = visibleUnderT();
    expect(now.map((m) => m.mountPoint).sort()).toEqual([join(T, 'mnt'), join(T, 'mnt/inner'), join(T, 'plain'), join(T, 'plain/deep')]);
    for (const m of now) expect(m.options.split(','), m.mountPoint).toContain('noexec');
    // Other options untouched.
    expect(now.find((m) => m.mountPoint === join(T, 'mnt'))!.options.split(',')).toEqual(expect.arrayContaining(['nosuid', 'nodev']));

    const state = JSON.parse(readFileSync(join(T, 'state/restriction.json'), 'utf8'));
    expect(state.paths.map((p: { path: string; createdBind: boolean }) => [p.path, p.createdBind])).toEqual([
      [join(T, 'mnt'), false],
      [join(T, 'plain'), true],
    ]);
  }, 40_000);

  it('Restrict again changes nothing', async () => {
    const mounts = mountsUnderT();
    const out = await act('RestrictCodeExecution');
    expect(out).toMatchObject({ status: 'Succeeded' });
    expect(mountsUnderT()).toEqual(mounts);
  }, 30_000);

  it('Unrestrict restores the exact original mounts and options; again is a no-op', async () => {
    const out = await act('UnrestrictCodeExecution');
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
    expect(mountsUnderT()).toEqual(before);
    for (const s of scripts()) expect(await runs(s), s).toBe('ok');
    expect(existsSync(join(T, 'state/restriction.json'))).toBe(false);

    const again = await act('UnrestrictCodeExecution');
    expect(again).toMatchObject({ status: 'Succeeded' });
    expect(mountsUnderT()).toEqual(before);

    const events = readFileSync(join(T, 'log/actions.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { event: string }).event);
    expect(events).toEqual(expect.arrayContaining(['restrict.skipped', 'restrict.bind', 'restrict.noexec', 'unrestrict.restored', 'unrestrict.unbind']));
  }, 40_000);

  it('Unrestrict detaches a busy bind mount (a process working inside it)', async () => {
    expect((await act('RestrictCodeExecution')).status).toBe('Succeeded');
    // (cd inside the namespace: nsenter --wd would resolve the directory before entering it)
    const busy = start('nsenter', ['-t', String(pid), '-m', '--', 'sh', '-c', 'cd "$1" && exec sleep 60', 'sh', join(T, 'plain')]);
    try {
      await waitUntil('a process working inside the bind', () => {
        try {
          return readlinkSync(`/proc/${busy.child.pid}/exe`).endsWith('/sleep');
        } catch {
          return false;
        }
      });
      const out = await act('UnrestrictCodeExecution');
      expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded' });
      expect(out.detail?.warnings).toEqual([`${join(T, 'plain')}: bind mount was busy and was detached lazily`]);
      expect(mountsUnderT()).toEqual(before);
      for (const s of scripts()) expect(await runs(s), s).toBe('ok');
    } finally {
      await busy.stop();
    }
  }, 40_000);

  it('the host mount table never saw any of it', () => {
    const host = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    expect(host.filter((e) => e.mountPoint.startsWith(T))).toEqual([]);
  });
});
