import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT } from '../../../src/agent/executor.js';
import { restoreQuarantined, type LinuxExecutorOptions, type QuarantineRecord } from '../../../src/agent/executors/linux/index.js';
import { announce, childrenOf, isDead, must, namespaceOf, ROOT, runJob, skipReason, start, waitUntil, which, type Owned } from './support.js';

/**
 * A PID namespace (`unshare --pid --fork --mount-proc`, held by a `sleep` as its pid 1): the
 * payloads and the executor run in it through `nsenter -p -m`, so the executor's /proc shows
 * only the test's processes and it cannot kill anything on the host. Each payload is a copy of
 * `sleep` with random bytes appended, so its SHA-1 is unique. Killing the holder (started with
 * --kill-child) ends the namespace and everything in it.
 */

const reason = skipReason(['unshare', 'nsenter', 'sleep'], ['--pid', '--fork', '--mount-proc']);
const title = announce('StopAndQuarantineFile in a PID namespace', reason);

const sha1Of = (path: string) => createHash('sha1').update(readFileSync(path)).digest('hex');

describe.skipIf(reason !== null)(title, () => {
  let holder: Owned | undefined;
  let inner = 0; // host pid of the namespace's pid 1
  let T = '';
  let options: LinuxExecutorOptions;
  const payloads: Owned[] = [];

  /** A unique executable: sleep plus random bytes. */
  function makePayload(name: string, mode = 0o750): { path: string; sha1: string } {
    const path = join(T, 'bin', name);
    copyFileSync(which('sleep')!, path);
    appendFileSync(path, randomBytes(64));
    chownSync(path, 65534, 65534);
    chmodSync(path, mode);
    return { path, sha1: sha1Of(path) };
  }

  /** Starts `path` inside the namespace; resolves with its host pid once it runs. */
  async function launch(path: string): Promise<{ owned: Owned; pid: number }> {
    const owned = start('nsenter', ['-t', String(inner), '-p', '-m', '--', path, '300']);
    payloads.push(owned);
    const pid = await waitUntil(`${path} to run`, () => {
      for (const child of childrenOf(owned.child.pid!)) {
        try {
          if (readlinkSync(`/proc/${child}/exe`) === path) return child;
        } catch {
          /* not yet */
        }
      }
      return null;
    });
    return { owned, pid };
  }

  /** Kills a payload the test started (by its pid) and waits for its nsenter to report. */
  async function stopPayload(p: { owned: Owned; pid: number }): Promise<void> {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    await p.owned.stop();
  }

  async function quarantine(sha1: string, extra: LinuxExecutorOptions = {}) {
    const r = await runJob(['nsenter', '-t', String(inner), '-p', '-m', `--wd=${ROOT}`, '--'], {
      kind: 'execute',
      options: { ...options, ...extra },
      action: { type: 'StopAndQuarantineFile', sha1 },
    });
    if (!r.outcome) throw new Error(`no outcome: ${r.error}\n${r.stderr}`);
    return r.outcome;
  }

  const record = (sha1: string, n: number) => JSON.parse(readFileSync(join(T, 'quarantine', sha1, `${n}.json`), 'utf8')) as QuarantineRecord;

  beforeAll(async () => {
    T = mkdtempSync(join(tmpdir(), 'cm-quarantine-'));
    mkdirSync(join(T, 'bin'));
    options = { quarantineDir: join(T, 'quarantine'), stateDir: join(T, 'state'), logFile: join(T, 'log/actions.log') };
    holder = start('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '300']);
    const hostPidNs = namespaceOf('self', 'pid');
    inner = await waitUntil('the namespace pid 1', () => childrenOf(holder!.child.pid!).find((p) => namespaceOf(p, 'pid') !== hostPidNs) ?? null);
  }, 20_000);

  afterAll(async () => {
    for (const p of payloads) await p.stop();
    await holder?.stop(); // --kill-child: its pid 1 dies, and with it the whole namespace
    if (T) rmSync(T, { recursive: true, force: true });
  }, 20_000);

  it('kills every process running the file, quarantines it with metadata, and restores it', async () => {
    const { path, sha1 } = makePayload('payload');
    const original = statSync(path);
    const a = await launch(path);
    const b = await launch(path);

    const out = await quarantine(sha1);
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
    expect((out.detail?.killedPids as number[]).length).toBe(2);

    // Both were killed (nsenter passes the child's SIGKILL on).
    for (const p of [a, b]) {
      expect((await p.owned.exited).signal).toBe('SIGKILL');
      expect(isDead(p.pid)).toBe(true);
    }
    // The namespace's pid 1 was spared.
    expect(isDead(inner)).toBe(false);

    expect(existsSync(path)).toBe(false);
    const qfile = join(T, 'quarantine', sha1, '1');
    const q = statSync(qfile);
    expect(q.mode & 0o7777).toBe(0);
    expect(q.uid).toBe(0);
    expect(q.ino).toBe(original.ino); // moved, not copied
    expect(sha1Of(qfile)).toBe(sha1);
    const meta = record(sha1, 1);
    expect(meta).toMatchObject({
      sha1,
      originalPath: path,
      originalInAgentNamespace: true,
      method: 'moved',
      mode: 0o750,
      uid: 65534,
      gid: 65534,
      size: original.size,
      file: '1',
    });
    expect(meta.killedPids).toHaveLength(2);
    expect(Date.parse(meta.quarantinedAt)).toBeGreaterThan(Date.now() - 60_000);

    const restored = await restoreQuarantined(options.quarantineDir!, sha1, { logFile: options.logFile! });
    expect(restored.skipped).toEqual([]);
    expect(restored.restored).toEqual([{ originalPath: path, from: qfile }]);
    const back = statSync(path);
    expect(back.mode & 0o7777).toBe(0o750);
    expect([back.uid, back.gid]).toEqual([65534, 65534]);
    expect(Math.abs(back.mtimeMs - original.mtimeMs)).toBeLessThan(0.01);
    expect(sha1Of(path)).toBe(sha1);
    expect(existsSync(join(T, 'quarantine', sha1))).toBe(false);

    const events = readFileSync(options.logFile!, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { event: string }).event);
    expect(events.filter((e) => e === 'quarantine.kill')).toHaveLength(2);
    expect(events).toContain('quarantine.file');
    expect(events).toContain('quarantine.restore');
  }, 45_000);

  it("refuses the agent's own executable and init's", async () => {
    for (const exe of [process.execPath, which('sleep')!]) {
      // node runs the executor; the namespace's pid 1 is sleep
      const out = await quarantine(sha1Of(exe));
      expect(out, exe).toMatchObject({ status: 'Failed', errorHResult: HRESULT.accessDenied });
      expect(out.troubleshootInfo).toMatch(/^Refusing to stop and quarantine/);
    }
    expect(isDead(inner)).toBe(false);
  }, 30_000);

  it('an unknown SHA-1 fails with fileNotFound and touches nothing', async () => {
    const { path } = makePayload('bystander');
    const p = await launch(path);
    const out = await quarantine(randomBytes(20).toString('hex'));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fileNotFound });
    expect(out.troubleshootInfo).toMatch(/No running process or known file had SHA-1 [0-9a-f]{40}/);
    expect(isDead(p.pid)).toBe(false);
    expect(existsSync(path)).toBe(true);
    await stopPayload(p);
  }, 30_000);

  it('a file quarantined before and dropped again at the same path is found without a process', async () => {
    const { path, sha1 } = makePayload('dropper');
    const p = await launch(path);
    expect((await quarantine(sha1)).status).toBe('Succeeded');
    await p.owned.exited;
    // It comes back (restored here; think "re-downloaded"), not running.
    expect((await restoreQuarantined(options.quarantineDir!, sha1)).restored).toHaveLength(1);
    expect((await quarantine(sha1)).status).toBe('Failed'); // the records are gone with the restore: not known any more
    // Quarantine with a process, put the record aside, drop the file again: it is a known file now.
    const again = await launch(path);
    expect((await quarantine(sha1)).status).toBe('Succeeded');
    await again.owned.exited;
    copyFileSync(join(T, 'quarantine', sha1, '1'), path);
    const out = await quarantine(sha1);
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded' });
    expect(out.detail).toMatchObject({ killedPids: [] });
    expect(existsSync(path)).toBe(false);
    expect(record(sha1, 2)).toMatchObject({ originalPath: path, method: 'moved', killedPids: [] });
  }, 45_000);

  it('an executable deleted after it started is copied from the process and still killed', async () => {
    const { path, sha1 } = makePayload('vanishing');
    const p = await launch(path);
    unlinkSync(path);
    const out = await quarantine(sha1);
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded' });
    expect((await p.owned.exited).signal).toBe('SIGKILL');
    expect(sha1Of(join(T, 'quarantine', sha1, '1'))).toBe(sha1);
    expect(record(sha1, 1)).toMatchObject({ method: 'copied', originalInAgentNamespace: false, originalPath: path });
    const restored = await restoreQuarantined(options.quarantineDir!, sha1);
    expect(restored.restored).toEqual([]);
    expect(restored.skipped[0]?.reason).toMatch(/restore it by hand/);
  }, 30_000);

  it('a quarantine that cannot be written still kills the process, and fails saying so', async () => {
    const { path, sha1 } = makePayload('unquarantinable');
    const p = await launch(path);
    const out = await quarantine(sha1, { quarantineDir: '/dev/null/quarantine' });
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(out.troubleshootInfo).toMatch(/^Killed 1 process but could not quarantine: /);
    expect((await p.owned.exited).signal).toBe('SIGKILL');
    expect(existsSync(path)).toBe(true);
  }, 30_000);

  it('moves across filesystems (payload on a tmpfs in the namespace)', async () => {
    const dir = join(T, 'xdev');
    mkdirSync(dir);
    await must('nsenter', ['-t', String(inner), '-m', '--', 'mount', '-t', 'tmpfs', '-o', 'size=8m', 'cmtest', dir]);
    const { path: staged, sha1 } = makePayload('xdev-payload', 0o700);
    const path = `/proc/${inner}/root${dir}/payload`; // the tmpfs as the host reaches it
    copyFileSync(staged, path);
    chownSync(path, 65534, 65534);
    chmodSync(path, 0o700);
    unlinkSync(staged);
    const p = await launch(`${dir}/payload`);
    const out = await quarantine(sha1);
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded' });
    expect((await p.owned.exited).signal).toBe('SIGKILL');
    expect(existsSync(path)).toBe(false);
    expect(record(sha1, 1)).toMatchObject({ method: 'moved', originalPath: `${dir}/payload`, mode: 0o700 });
    // Restore inside the namespace (the tmpfs exists only there).
    const r = await runJob(['nsenter', '-t', String(inner), '-m', `--wd=${ROOT}`, '--'], { kind: 'restore', quarantineDir: options.quarantineDir!, sha1 });
    expect(r.restore?.restored).toHaveLength(1);
    expect(statSync(path).mode & 0o7777).toBe(0o700);
    expect(sha1Of(path)).toBe(sha1);
  }, 45_000);
});
