import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT } from '../../../src/agent/executor.js';
import type { LinuxExecutorOptions, ScriptResult } from '../../../src/agent/executors/linux/index.js';
import type { CommandParam, CommandType, LiveResponseCommand } from '../../../src/domain/model.js';
import { announce, childrenOf, must, namespaceOf, ROOT, runJob, skipReason, start, waitUntil, type Owned } from './support.js';

/**
 * LiveResponse for real: the executor runs as root inside a PID namespace (`unshare --pid
 * --fork --mount-proc`, held by a `sleep` as its pid 1) through `nsenter -p -m`, so the
 * processes a script starts live in that namespace, the executor's /proc shows only them, and
 * whether any survived can be read from the namespace's own /proc. The context's file transfer
 * is the runner's (run-executor.ts): library files come from a directory, uploads go to one.
 */

const reason = skipReason(['unshare', 'nsenter', 'sleep', 'bash', 'setsid', 'mkfifo', 'mknod'], ['--pid', '--fork', '--mount-proc']);
const title = announce('LiveResponse in a PID namespace', reason);

type Command = { type: CommandType; params: CommandParam[] };
const put = (name: string): Command => ({ type: 'PutFile', params: [{ key: 'FileName', value: name }] });
const run = (name: string, args?: string): Command => ({
  type: 'RunScript',
  params: [{ key: 'ScriptName', value: name }, ...(args !== undefined ? [{ key: 'Args', value: args }] : [])],
});
const get = (path: string): Command => ({ type: 'GetFile', params: [{ key: 'Path', value: path }] });
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe.skipIf(reason !== null)(title, () => {
  let holder: Owned | undefined;
  let inner = 0; // host pid of the namespace's pid 1
  let T = '';
  let LIB = '';
  let ALLOWED = '';
  let OUTSIDE = '';
  let base: LinuxExecutorOptions;
  let unixServer: Server | undefined;
  let n = 0;

  const script = (name: string, body: string) => writeFileSync(join(LIB, name), body);

  async function live(commands: Command[], extra: { options?: LinuxExecutorOptions; abortWhenExists?: string; uploadLimitBytes?: number; scriptTimeoutSeconds?: number } = {}) {
    const uploads = join(T, `uploads-${++n}`);
    mkdirSync(uploads);
    const r = await runJob(['nsenter', '-t', String(inner), '-p', '-m', `--wd=${ROOT}`, '--'], {
      kind: 'execute',
      options: { ...base, ...extra.options },
      action: { type: 'LiveResponse', commands, ...(extra.scriptTimeoutSeconds !== undefined ? { scriptTimeoutSeconds: extra.scriptTimeoutSeconds } : {}) },
      library: LIB,
      uploads,
      ...(extra.abortWhenExists ? { abortWhenExists: extra.abortWhenExists } : {}),
      ...(extra.uploadLimitBytes !== undefined ? { uploadLimitBytes: extra.uploadLimitBytes } : {}),
    });
    if (!r.outcome) throw new Error(`no outcome: ${r.error}\n${r.stderr}`);
    const final = r.progress!.at(-1) ?? [];
    return {
      outcome: r.outcome,
      progress: r.progress!,
      final,
      uploaded: r.uploads!.map((u) => u.index),
      result: (i: number) => JSON.parse(readFileSync(join(uploads, String(i)), 'utf8')) as ScriptResult,
      file: (i: number) => readFileSync(join(uploads, String(i))),
      stderr: r.stderr,
    };
  }

  /** Processes alive in the namespace other than its pid 1, with their command lines. */
  function survivors(): { pid: number; cmdline: string }[] {
    const proc = `/proc/${inner}/root/proc`;
    const out: { pid: number; cmdline: string }[] = [];
    for (const name of readdirSync(proc)) {
      if (!/^\d+$/.test(name) || name === '1') continue;
      try {
        const stat = readFileSync(join(proc, name, 'stat'), 'utf8');
        const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
        if (state === 'Z' || state === 'X') continue;
        out.push({ pid: Number(name), cmdline: readFileSync(join(proc, name, 'cmdline'), 'utf8').replace(/\0/g, ' ').trim() });
      } catch {
        /* gone */
      }
    }
    return out;
  }

  beforeAll(async () => {
    T = mkdtempSync(join(tmpdir(), 'cm-live-'));
    LIB = join(T, 'library');
    ALLOWED = join(T, 'allowed');
    OUTSIDE = join(T, 'outside');
    for (const d of [LIB, ALLOWED, OUTSIDE, join(ALLOWED, 'dir')]) mkdirSync(d, { recursive: true });
    base = { stateDir: join(T, 'state'), logFile: join(T, 'log/actions.log'), quarantineDir: join(T, 'q'), getFileAllowedRoots: [ALLOWED] };
    holder = start('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '600']);
    const hostPidNs = namespaceOf('self', 'pid');
    inner = await waitUntil('the namespace pid 1', () => childrenOf(holder!.child.pid!).find((p) => namespaceOf(p, 'pid') !== hostPidNs) ?? null);
  }, 20_000);

  afterAll(async () => {
    await holder?.stop(); // --kill-child: its pid 1 dies, and with it everything in the namespace
    if (unixServer) await new Promise((r) => unixServer!.close(r));
    if (T) rmSync(T, { recursive: true, force: true });
  }, 20_000);

  it('RunScript: stdout, stderr and the exit code in the result; a non-zero exit still completes the command', async () => {
    script('hello.sh', '#!/bin/sh\necho "hello from $(uname -s)"\necho "a warning" >&2\nexit 3\n');
    const r = await live([run('hello.sh', '--noargs')]);
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Succeeded', errorHResult: 0, troubleshootInfo: null });
    expect(r.result(0)).toEqual({ script_name: 'hello.sh', exit_code: 3, script_output: 'hello from Linux\n', script_errors: 'a warning\n' });
    expect(r.uploaded).toEqual([0]);
    // progress: started (times set, still Created), then Completed.
    expect(r.progress).toHaveLength(2);
    expect(r.progress[0]![0]).toMatchObject({ index: 0, commandStatus: 'Created', endTime: null, errors: [] });
    expect(r.progress[0]![0]!.startTime).toEqual(expect.any(Number));
    const done = r.final[0]!;
    expect(done).toMatchObject({ index: 0, commandStatus: 'Completed', errors: [], command: run('hello.sh', '--noargs') });
    expect(done.endTime!).toBeGreaterThanOrEqual(done.startTime!);
  }, 30_000);

  it('Args reach the script word by word and are never interpreted by a shell; --noargs means none', async () => {
    script('args.sh', '#!/bin/bash\necho "count=$#"\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n');
    const pwned = join(T, 'pwned');
    const args = `plain 'two words' "double $HOME" back\\ slash ';' '|' $(touch ${pwned}) \`touch ${pwned}\` > ${pwned} * --flag=x`;
    const r = await live([run('args.sh', args), run('args.sh', '--noargs'), run('args.sh')]);
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Succeeded' });
    expect(r.result(0).script_output.split('\n')).toEqual([
      'count=14',
      '[plain]',
      '[two words]',
      '[double $HOME]',
      '[back slash]',
      '[;]',
      '[|]',
      `[$(touch]`,
      `[${pwned})]`,
      `[\`touch]`,
      `[${pwned}\`]`,
      '[>]',
      `[${pwned}]`,
      '[*]',
      '[--flag=x]',
      '',
    ]);
    expect(existsSync(pwned)).toBe(false);
    expect(r.result(1).script_output).toBe('count=0\n');
    expect(r.result(2).script_output).toBe('count=0\n');
    // Unbalanced quotes: the command fails, saying so.
    const bad = await live([run('args.sh', `'unterminated`)]);
    expect(bad.outcome).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(bad.outcome.troubleshootInfo).toMatch(/^Command 0 \(RunScript\) failed: Args "'unterminated" cannot be split into arguments/);
  }, 30_000);

  it("a script runs as root in the action's own 0700 folder with PutFile's files and a clean environment; the folder is removed after", async () => {
    const data = randomBytes(4096);
    writeFileSync(join(LIB, 'data.bin'), data);
    // No #! line: run by the configured interpreter (bash).
    script('where.sh', 'echo "shell=${BASH_VERSION:+bash}"\npwd\nstat -c "%a %U:%G" . ..\nid -u\nsha256sum data.bin\nls -l data.bin | cut -c1-10\nenv | sort\n');
    script('strict.sh', '#!/bin/sh -e\nfalse\necho unreachable\n');
    process.env.CM_AGENT_SECRET = 'sentinel-not-for-scripts';
    const r = await live([put('data.bin'), run('where.sh'), run('strict.sh')]).finally(() => delete process.env.CM_AGENT_SECRET);
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Succeeded' });
    const lines = r.result(1).script_output.trim().split('\n');
    const work = lines[1]!;
    expect(lines[0]).toBe('shell=bash');
    expect(work).toMatch(new RegExp(`^${join(T, 'state/live-response')}/[0-9a-f-]{36}/work$`));
    expect(lines[2]).toBe('700 root:root');
    expect(lines[3]).toBe('700 root:root');
    expect(lines[4]).toBe('0');
    expect(lines[5]).toBe(`${sha256(data)}  data.bin`);
    expect(lines[6]).toBe('-rwx------');
    const env = Object.fromEntries(lines.slice(7).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(env).toMatchObject({ PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', USER: 'root', LANG: 'C.UTF-8', COUNTERMAND_WORK_DIR: work, COUNTERMAND_COMMAND_INDEX: '1' });
    expect(env.COUNTERMAND_ACTION_ID).toMatch(/^[0-9a-f-]{36}$/);
    expect(env.CM_AGENT_SECRET).toBeUndefined();
    expect(Object.keys(env).filter((k) => !['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'TERM', 'PWD', 'SHLVL', '_', 'OLDPWD'].includes(k) && !k.startsWith('COUNTERMAND_'))).toEqual([]);
    // #!/bin/sh -e: the one optional argument reaches the interpreter.
    expect(r.result(2)).toEqual({ script_name: 'strict.sh', exit_code: 1, script_output: '', script_errors: '' });
    // The folder is gone; the parent stays, root's alone.
    expect(readdirSync(join(T, 'state/live-response'))).toEqual([]);
  }, 30_000);

  it('a failed command stops the ones after it, and the action fails naming it', async () => {
    script('ok.sh', '#!/bin/sh\necho ok\n');
    writeFileSync(join(ALLOWED, 'fine.txt'), 'fine');
    const first = await live([put('missing.txt'), run('ok.sh'), get(join(ALLOWED, 'fine.txt'))]);
    expect(first.outcome).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(first.outcome.troubleshootInfo).toBe(
      'Command 0 (PutFile) failed: Could not download the library file "missing.txt": 404: the library has no file named missing.txt (2 later commands not run)',
    );
    expect(first.final.map((c) => [c.commandStatus, c.errors.length, c.startTime === null, c.endTime === null])).toEqual([
      ['Failed', 1, false, false],
      ['Created', 0, true, true],
      ['Created', 0, true, true],
    ]);
    expect(first.uploaded).toEqual([]);

    const middle = await live([run('ok.sh'), get(join(ALLOWED, 'nothing-here')), get(join(ALLOWED, 'fine.txt'))]);
    expect(middle.outcome).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fileNotFound });
    expect(middle.outcome.troubleshootInfo).toMatch(/^Command 1 \(GetFile\) failed: ".*nothing-here" does not exist \(1 later command not run\)$/);
    expect(middle.final.map((c) => c.commandStatus)).toEqual(['Completed', 'Failed', 'Created']);
    expect(middle.final[1]!.errors).toEqual([middle.outcome.troubleshootInfo!.replace(/^Command 1 \(GetFile\) failed: /, '').replace(/ \(1 later command not run\)$/, '')]);
    expect(middle.uploaded).toEqual([0]);
    expect(middle.result(0).script_output).toBe('ok\n');
  }, 30_000);

  it('the timeout kills the script with everything it started (ignoring SIGTERM, in a group or session of its own)', async () => {
    script(
      'hang.sh',
      [
        '#!/bin/bash',
        'sleep 301 &',
        "(trap '' TERM INT HUP; sleep 302) &",
        'set -m; sleep 303 & set +m', // its own process group
        'setsid sleep 304 &', // its own session, child of this script
        'echo started',
        'wait',
      ].join('\n'),
    );
    const r = await live([run('hang.sh'), run('hang.sh')], { options: { scriptTimeoutMs: 1500 } });
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Failed', errorHResult: HRESULT.timeout });
    expect(r.outcome.troubleshootInfo).toBe(
      "Command 0 (RunScript) failed: hang.sh was killed after 1500 ms (the script's time limit), with every process it started; its last output: started (1 later command not run)",
    );
    expect(r.final.map((c) => c.commandStatus)).toEqual(['Failed', 'Created']);
    expect(r.final[0]!.errors).toEqual(["hang.sh was killed after 1500 ms (the script's time limit), with every process it started; its last output: started"]);
    // A failed command has no result.
    expect(r.uploaded).toEqual([]);
    expect(survivors()).toEqual([]);
    // Without a setting of its own, the machine uses the limit the server sends with the action.
    const sent = await live([run('hang.sh')], { scriptTimeoutSeconds: 1 });
    expect(sent.outcome.troubleshootInfo).toMatch(/^Command 0 \(RunScript\) failed: hang\.sh was killed after 1000 ms /);
    expect(survivors()).toEqual([]);
  }, 30_000);

  it('cancel kills a running script and its children at once; the commands after it do not run', async () => {
    const marker = join(T, 'cancel-now');
    script('long.sh', '#!/bin/bash\nsleep 305 &\nsetsid sleep 306 &\n(trap "" TERM; sleep 307) &\ntouch "$1"\nwait\n');
    const r = await live([run('long.sh', marker), get(join(ALLOWED, 'fine.txt'))], { abortWhenExists: marker });
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Failed', errorHResult: HRESULT.aborted });
    expect(r.final.map((c) => c.commandStatus)).toEqual(['Failed', 'Created']);
    expect(r.uploaded).toEqual([]);
    expect(survivors()).toEqual([]);
  }, 30_000);

  it('when a script ends by itself, what it left running keeps running (and its output is not waited for)', async () => {
    script('leave.sh', '#!/bin/bash\nsleep 308 &\nsetsid sleep 309 </dev/null >/dev/null 2>&1 &\necho done\n');
    const r = await live([run('leave.sh')]);
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Succeeded' });
    expect(r.result(0)).toMatchObject({ exit_code: 0, script_output: 'done\n' });
    const left = await waitUntil('both children to be seen', () => {
      const s = survivors();
      return s.length === 2 ? s : null;
    });
    expect(left.map((p) => p.cmdline).sort()).toEqual(['sleep 308', 'sleep 309']);
    await must('nsenter', ['-t', String(inner), '-p', '-m', '--', 'kill', '-9', ...left.map((p) => String(p.pid))]);
    await waitUntil('them to die', () => survivors().length === 0);
  }, 30_000);

  it('output past the limit is cut, and the result says how much there was', async () => {
    script('loud.sh', "#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' a\nhead -c 5000 /dev/zero | tr '\\0' b >&2\n");
    const r = await live([run('loud.sh')], { options: { scriptOutputMaxBytes: 1000 } });
    expect(r.outcome).toMatchObject({ status: 'Succeeded' });
    expect(r.result(0).script_output).toBe(`${'a'.repeat(1000)}\n[output truncated: 100000 bytes written, the first 1000 kept]`);
    expect(r.result(0).script_errors).toBe(`${'b'.repeat(1000)}\n[output truncated: 5000 bytes written, the first 1000 kept]`);
  }, 30_000);

  it("GetFile uploads the file's bytes unchanged (absolute, through a symlink inside the root, and relative to the working folder)", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(join(ALLOWED, 'dir', 'evidence.bin'), data);
    symlinkSync(join(ALLOWED, 'dir', 'evidence.bin'), join(ALLOWED, 'alias.bin'));
    script('report.sh', '#!/bin/sh\nprintf "report of %s\\n" "$(hostname)" > report.txt\n');
    const r = await live([run('report.sh'), get(join(ALLOWED, 'dir', 'evidence.bin')), get(join(ALLOWED, 'alias.bin')), get('report.txt')]);
    expect(r.outcome, JSON.stringify(r.outcome)).toMatchObject({ status: 'Succeeded' });
    expect(r.file(1).equals(data)).toBe(true);
    expect(r.file(2).equals(data)).toBe(true);
    expect(r.file(3).toString()).toMatch(/^report of \S+\n$/);
    const detail = (r.outcome.detail!.commands as { sha256?: string; realPath?: string }[])[2]!;
    expect(detail).toMatchObject({ sha256: sha256(data), realPath: join(ALLOWED, 'dir', 'evidence.bin') });
    expect(r.final.map((c) => c.commandStatus)).toEqual(['Completed', 'Completed', 'Completed', 'Completed']);
  }, 30_000);

  it('GetFile refuses traversal, symlink escapes, special files, /proc and oversized files; uploads nothing', async () => {
    writeFileSync(join(OUTSIDE, 'secret.txt'), 'secret');
    symlinkSync(join(OUTSIDE, 'secret.txt'), join(ALLOWED, 'escape'));
    symlinkSync(OUTSIDE, join(ALLOWED, 'escape-dir'));
    symlinkSync('../outside/secret.txt', join(ALLOWED, 'escape-relative'));
    await must('mkfifo', [join(ALLOWED, 'fifo')]);
    await must('mknod', [join(ALLOWED, 'null'), 'c', '1', '3']);
    unixServer = createServer();
    await new Promise<void>((r) => unixServer!.listen(join(ALLOWED, 'sock'), r));
    writeFileSync(join(ALLOWED, 'big.bin'), Buffer.alloc(4097));
    writeFileSync(join(ALLOWED, 'exact.bin'), Buffer.alloc(4096, 7));
    const cases: [string, number, RegExp][] = [
      [`${ALLOWED}/../outside/secret.txt`, HRESULT.accessDenied, /is outside the directories GetFile may read/],
      [`${ALLOWED}/dir/../../outside/secret.txt`, HRESULT.accessDenied, /is outside the directories GetFile may read/],
      [join(ALLOWED, 'escape'), HRESULT.accessDenied, /\(it leads to .*\/outside\/secret\.txt\) is outside/],
      [join(ALLOWED, 'escape-dir', 'secret.txt'), HRESULT.accessDenied, /\(it leads to .*\/outside\/secret\.txt\) is outside/],
      [join(ALLOWED, 'escape-relative'), HRESULT.accessDenied, /\(it leads to .*\/outside\/secret\.txt\) is outside/],
      [join(ALLOWED, 'fifo'), HRESULT.accessDenied, /is a FIFO: GetFile only fetches regular files/],
      [join(ALLOWED, 'sock'), HRESULT.accessDenied, /is a socket/],
      [join(ALLOWED, 'null'), HRESULT.accessDenied, /is a character device/],
      [join(ALLOWED, 'dir'), HRESULT.accessDenied, /is a directory/],
      [join(ALLOWED, 'big.bin'), HRESULT.fail, /is larger than GetFile's limit of 4096 bytes \(4097 bytes\)/],
      [join(ALLOWED, 'nope'), HRESULT.fileNotFound, /does not exist/],
    ];
    for (const [path, hresult, message] of cases) {
      const r = await live([get(path)], { options: { getFileMaxBytes: 4096 } });
      expect(r.outcome, path).toMatchObject({ status: 'Failed', errorHResult: hresult });
      expect(r.outcome.troubleshootInfo, path).toMatch(message);
      expect(r.final[0]!.commandStatus, path).toBe('Failed');
      expect(r.uploaded, path).toEqual([]);
    }
    // The limit itself is allowed; /proc is never read, even with / allowed.
    const exact = await live([get(join(ALLOWED, 'exact.bin'))], { options: { getFileMaxBytes: 4096 } });
    expect(exact.outcome).toMatchObject({ status: 'Succeeded' });
    expect(exact.file(0).equals(Buffer.alloc(4096, 7))).toBe(true);
    for (const path of ['/proc/self/environ', '/proc/1/cmdline', '/sys/kernel/uevent_seqnum', '/dev/zero']) {
      const r = await live([get(path)], { options: { getFileAllowedRoots: ['/'] } });
      expect(r.outcome, path).toMatchObject({ status: 'Failed', errorHResult: HRESULT.accessDenied });
      expect(r.outcome.troubleshootInfo, path).toMatch(/which GetFile never reads/);
    }
  }, 60_000);

  it('an upload the server refuses fails the command', async () => {
    writeFileSync(join(ALLOWED, 'medium.bin'), Buffer.alloc(2000));
    const r = await live([get(join(ALLOWED, 'medium.bin')), get(join(ALLOWED, 'exact.bin'))], { uploadLimitBytes: 1000 });
    expect(r.outcome).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(r.outcome.troubleshootInfo).toMatch(/^Command 0 \(GetFile\) failed: The result could not be uploaded: 413: 2000 bytes/);
    expect(r.final.map((c) => c.commandStatus)).toEqual(['Failed', 'Created']);
  }, 30_000);

  it('the action log records each command', () => {
    const lines = readFileSync(base.logFile!, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; [k: string]: unknown });
    const ran = lines.find((l) => l.event === 'live.runscript.start' && l.script === 'args.sh');
    expect(ran).toMatchObject({ args: expect.arrayContaining(['two words', '$(touch']), via: 'shebang', program: '/bin/bash' });
    expect(lines.filter((l) => l.event === 'live.getfile').every((l) => typeof l.sha256 === 'string')).toBe(true);
    const commands = lines.filter((l) => l.event === 'live.command.end') as unknown as LiveResponseCommand[];
    expect(commands.length).toBeGreaterThan(10);
  });
});
