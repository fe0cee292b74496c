import { spawn, spawnSync } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdtempSync, rmdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './process.js';

/**
 * Running code as a second, unprivileged OS user (`nobody`, uid 65534) the way an attacker or a
 * non-root operator would: through setpriv, started by a root test runner.
 *
 * That user must be able to read the checkout (node_modules/tsx, src, test). A checkout inside a
 * directory others cannot enter (e.g. a clone under /root) is made visible without copying it: the
 * command runs in a private mount namespace where the checkout is bind-mounted on an empty
 * directory under /tmp, and every path it is given is under that mount. Nothing outside the
 * namespace changes. When even that cannot work, `reason` says why and the tests skip, printing it.
 */
export const NOBODY_UID = 65534;
const SETPRIV = ['setpriv', `--reuid=${NOBODY_UID}`, `--regid=${NOBODY_UID}`, '--clear-groups', '--'];

export interface Unprivileged {
  /** Where the checkout is, as the unprivileged process sees it. */
  root: string;
  /** The program and arguments that run `command` as nobody (paths in it under `root`). */
  wrap(command: string[]): [string, string[]];
  /** `node --import tsx <script>` for a script of the checkout (a path relative to it). */
  nodeScript(script: string, args?: string[]): string[];
  /** Removes the (empty) mount point, if one was made; call it in afterAll. */
  dispose(): void;
}

const TSX_LOADER = relative(ROOT, createRequire(join(ROOT, 'package.json')).resolve('tsx'));
const SEARCH_PATH = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', ...(process.env.PATH ?? '').split(':')];
const has = (program: string) =>
  SEARCH_PATH.some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

function runner(root: string, mount: boolean): Unprivileged {
  return {
    root,
    dispose() {
      if (!mount) return;
      try {
        rmdirSync(root);
      } catch {
        /* already gone */
      }
    },
    wrap(command) {
      if (!mount) return [SETPRIV[0]!, [...SETPRIV.slice(1), ...command]];
      // $0 = the checkout, $1 = the mount point; the rest is the command.
      const script = 'mount --bind "$0" "$1" && shift && exec "$@"';
      return ['unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, ROOT, root, ...SETPRIV, ...command]];
    },
    nodeScript(script, args = []) {
      return [process.execPath, '--import', pathToFileURL(join(root, TSX_LOADER)).href, join(root, script), ...args];
    },
  };
}

/** Whether nobody can run node and read the checkout's loader and sources through `candidate`. */
function probe(candidate: Unprivileged): string | null {
  const check = `for (const f of ${JSON.stringify([TSX_LOADER, 'package.json', 'src/cli/main.ts'].map((f) => join(candidate.root, f)))}) require('node:fs').accessSync(f, 4)`;
  const [file, args] = candidate.wrap([process.execPath, '-e', check]);
  const r = spawnSync(file, args, { cwd: '/', timeout: 15_000, encoding: 'utf8' });
  return r.status === 0 ? null : (r.stderr.trim().split('\n').find((l) => /Error|denied|EACCES/.test(l)) ?? r.error?.message ?? `exit ${r.status}`);
}

let cached: { runner: Unprivileged | null; reason: string | null } | undefined;

/** How to run as nobody here, or why that cannot be done (then `runner` is null). */
export function unprivileged(): { runner: Unprivileged | null; reason: string | null } {
  if (cached) return cached;
  const cannot = setprivReason();
  if (cannot) return (cached = { runner: null, reason: cannot });
  const direct = runner(ROOT, false);
  const directProblem = probe(direct);
  if (directProblem === null) return (cached = { runner: direct, reason: null });
  if (!has('unshare') || !has('mount')) {
    return (cached = { runner: null, reason: `nobody cannot read the checkout at ${ROOT} (${directProblem}), and unshare/mount are missing to bind-mount it` });
  }
  const mountPoint = mkdtempSync('/tmp/countermand-checkout-');
  chmodSync(mountPoint, 0o755);
  const mounted = runner(mountPoint, true);
  process.once('exit', () => mounted.dispose());
  const mountedProblem = probe(mounted);
  if (mountedProblem === null) return (cached = { runner: mounted, reason: null });
  mounted.dispose();
  return (cached = {
    runner: null,
    reason: `nobody cannot read the checkout at ${ROOT}, even bind-mounted on ${mountPoint} (${mountedProblem}): its files must be readable by others (a checkout made under umask 077 is not)`,
  });
}

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion as nobody (bounded); `command` is already under the runner's root. */
export function runAs(runner: Unprivileged, command: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  const [file, args] = runner.wrap(command);
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: '/', env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Why processes cannot be started as nobody here at all (setpriv as root), or null. */
export function setprivReason(): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'needs root (to start processes as nobody with setpriv)';
  if (!has('setpriv')) return 'setpriv is missing (apt-get install util-linux)';
  return null;
}

/** Runs a system program (cat, ls) as nobody to completion: what another local user could do. */
export function asNobody(program: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(SETPRIV[0]!, [...SETPRIV.slice(1), program, ...args], { cwd: '/', timeout: 15_000, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
