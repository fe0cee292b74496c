import { createHash } from 'node:crypto';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readdir, readlink, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { constants as osConstants, userInfo } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { split as shellSplit } from 'shlex';
import type { CommandParam, LiveResponseCommand } from '../../../domain/model.js';
import { DEFAULT_SCRIPT_TIMEOUT_SECONDS, failed, HRESULT, succeeded, type AgentAction, type ExecutionOutcome } from '../../executor.js';
import { CommandError, lastLines, runCommand, type RunResult } from './command.js';
import { throwIfAborted, type ActionEnv } from './env.js';
import { describeKind } from './files.js';
import { ActionFailure, outcomeOf } from './outcome.js';

/**
 * LiveResponse: PutFile, RunScript and GetFile, one command at a time, in a working folder of
 * the action's own (`<stateDir>/live-response/<actionId>/work`, root-only). A failed command
 * stops the ones after it. What each command does, and every choice made here:
 * docs/linux-executor.md ("LiveResponse").
 */

export const LIVE_RESPONSE_DIR = 'live-response';
/** RunScript `Args` value MDE clients send when a script takes none. */
export const NO_ARGS = '--noargs';
/** The PATH scripts get (the agent's own environment is not passed on). */
const SCRIPT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ACTION_ID = /^[A-Za-z0-9-]{1,64}$/;

/**
 * RunScript's `Args` as the script's argument list: split into words the way a POSIX shell
 * splits a command line (blanks separate words; '...' and "..." quote; a backslash escapes the
 * next character), and nothing else: no variable, command or glob expansion, no `;`, `|`, `&`
 * or redirection (they are plain characters of a word), since no shell ever sees it.
 * Absent, blank or exactly `--noargs`: no arguments. Unbalanced quotes are an error.
 */
export function parseArgs(value: string | undefined): string[] {
  if (value === undefined) return [];
  const trimmed = value.trim();
  if (trimmed === '' || trimmed === NO_ARGS) return [];
  try {
    return shellSplit(trimmed);
  } catch (err) {
    throw new ActionFailure(HRESULT.fail, `Args ${JSON.stringify(value.slice(0, 200))} cannot be split into arguments: ${(err as Error).message}`);
  }
}

/** A library file name as a plain file name inside the working folder, or an ActionFailure. */
export function libraryFileName(value: string | undefined, key: string): string {
  if (value === undefined || value === '') throw new ActionFailure(HRESULT.fail, `${key} is missing`);
  if (value.length > 255 || /[/\0]/.test(value) || value === '.' || value === '..') {
    throw new ActionFailure(HRESULT.fail, `${key} ${JSON.stringify(value.slice(0, 300))} is not a plain file name`);
  }
  return value;
}

export interface ScriptLaunch {
  file: string;
  args: string[];
  /** How the program was chosen: from the script's `#!` line, as an ELF executable, or the configured interpreter. */
  via: 'shebang' | 'elf' | 'interpreter';
}

/**
 * How a script is started, from its first bytes. A `#!` line names the interpreter and at most
 * one argument, as the kernel reads it; the interpreter is then started with the script's path
 * (so the working folder does not need to allow execution). An ELF file is executed itself.
 * Anything else is run by `interpreter` (default /bin/bash).
 */
export function scriptLaunch(path: string, head: Buffer, interpreter: string, args: string[]): ScriptLaunch {
  if (head.length >= 4 && head[0] === 0x7f && head.subarray(1, 4).toString('latin1') === 'ELF') return { file: path, args, via: 'elf' };
  if (head.length >= 2 && head[0] === 0x23 && head[1] === 0x21) {
    const end = head.indexOf(0x0a);
    const line = head
      .subarray(2, end < 0 ? head.length : end)
      .toString('utf8')
      .replace(/\r$/, '')
      .trim();
    const m = /^(\S+)(?:[ \t]+(.*))?$/.exec(line);
    if (!m || !isAbsolute(m[1]!)) {
      throw new ActionFailure(HRESULT.fail, `The script's #! line ${JSON.stringify(line.slice(0, 200))} does not name an interpreter by its absolute path`);
    }
    const optional = m[2]?.trim();
    return { file: m[1]!, args: [...(optional ? [optional] : []), path, ...args], via: 'shebang' };
  }
  return { file: interpreter, args: [path, ...args], via: 'interpreter' };
}

/** The RunScript result file, as the contract names its fields. */
export interface ScriptResult {
  script_name: string;
  exit_code: number;
  script_output: string;
  script_errors: string;
}

/** Where `path` lies: inside one of `dirs` (each itself or anything below it). */
function within(path: string, dirs: string[]): string | undefined {
  return dirs.find((d) => path === d || path.startsWith(d === '/' ? '/' : `${d}/`));
}

/** Each directory with its symlinks resolved (ones that do not exist are left out). */
async function resolvedDirs(dirs: string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const d of dirs) {
    const real = await realpath(d).catch(() => null);
    if (real) out.add(real);
  }
  return [...out];
}

interface Folder {
  /** The action's folder: `work/` and `out/`. */
  root: string;
  /** The scripts' working directory: PutFile's files and RunScript's scripts. */
  work: string;
  /** What the executor uploads from (results, file snapshots); scripts are not told about it. */
  out: string;
}

interface CommandSummary {
  index: number;
  type: string;
  status: 'Completed' | 'Failed';
  durationMs: number;
  [key: string]: unknown;
}

export async function liveResponse(env: ActionEnv): Promise<ExecutionOutcome> {
  const { options, context } = env;
  const { action, signal } = context;
  if (!ACTION_ID.test(action.id)) return failed(HRESULT.fail, `Unexpected action id ${JSON.stringify(action.id.slice(0, 80))}`);
  const base = join(options.stateDir, LIVE_RESPONSE_DIR);
  const root = join(base, action.id);
  const folder: Folder = { root, work: join(root, 'work'), out: join(root, 'out') };
  // One LiveResponse runs at a time (the executor's lock): any other folder here was left by an
  // agent that stopped mid-action.
  await mkdir(base, { recursive: true, mode: 0o700 });
  await chmod(base, 0o700);
  for (const name of await readdir(base)) await rm(join(base, name), { recursive: true, force: true });
  for (const dir of [folder.root, folder.work, folder.out]) {
    await mkdir(dir, { mode: 0o700 });
    await chmod(dir, 0o700);
  }

  const commands: LiveResponseCommand[] = [...action.commands]
    .sort((a, b) => a.index - b.index)
    .map((c) => ({ ...c, startTime: null, endTime: null, commandStatus: 'Created', errors: [] }));
  const report = async () => {
    try {
      await context.progress?.(structuredClone(commands));
    } catch {
      /* progress is best effort; the final report carries the commands again */
    }
  };
  const summaries: CommandSummary[] = [];
  try {
    for (const command of commands) {
      throwIfAborted(signal, `before command ${command.index}`);
      const { type } = command.command;
      command.startTime = Date.now();
      await report();
      await env.note('live.command.start', { index: command.index, commandType: type });
      try {
        const detail = await runOne(env, folder, command);
        command.commandStatus = 'Completed';
        command.endTime = Date.now();
        summaries.push({ index: command.index, type, status: 'Completed', durationMs: command.endTime - command.startTime, ...detail });
        await env.note('live.command.end', { index: command.index, commandType: type, status: 'Completed', ...detail });
        await report();
      } catch (err) {
        const outcome = outcomeOf(err);
        command.commandStatus = 'Failed';
        command.endTime = Date.now();
        command.errors = [outcome.troubleshootInfo ?? 'failed'];
        summaries.push({ index: command.index, type, status: 'Failed', durationMs: command.endTime - command.startTime, error: command.errors[0] });
        await env.note('live.command.end', { index: command.index, commandType: type, status: 'Failed', error: command.errors[0] });
        await report();
        const notRun = commands.filter((c) => c.commandStatus === 'Created').length;
        const stopped = notRun > 0 ? ` (${notRun} later command${notRun === 1 ? '' : 's'} not run)` : '';
        return failed(outcome.errorHResult, `Command ${command.index} (${type}) failed: ${outcome.troubleshootInfo}${stopped}`.slice(0, 1000), {
          commands: summaries,
          failedCommand: command.index,
        });
      }
    }
    return succeeded({ commands: summaries });
  } finally {
    // Removed whatever the outcome: the files were for this action only (results are uploaded).
    await rm(folder.root, { recursive: true, force: true }).catch(() => undefined);
  }
}

function param(params: CommandParam[], key: string): string | undefined {
  return params.find((p) => p.key === key)?.value;
}

async function runOne(env: ActionEnv, folder: Folder, command: LiveResponseCommand): Promise<Record<string, unknown>> {
  const { params, type } = command.command;
  switch (type) {
    case 'PutFile': {
      const name = libraryFileName(param(params, 'FileName'), 'FileName');
      const bytes = await fetchInto(env, folder, command.index, name);
      return { fileName: name, bytes };
    }
    case 'RunScript':
      return runScript(env, folder, command.index, params);
    case 'GetFile':
      return getFile(env, folder, command.index, param(params, 'Path'));
    default:
      throw new ActionFailure(HRESULT.notImplemented, `Unknown command type ${JSON.stringify(type)}`);
  }
}

/** Fetches a library file into the working folder under its name (replacing one put there before). */
async function fetchInto(env: ActionEnv, folder: Folder, index: number, name: string): Promise<number> {
  const { context } = env;
  if (!context.fetchLibraryFile) throw new ActionFailure(HRESULT.notImplemented, 'This agent cannot download library files');
  const incoming = join(folder.out, `${index}.incoming`);
  try {
    await context.fetchLibraryFile(name, incoming);
  } catch (err) {
    await rm(incoming, { force: true });
    if (context.signal.aborted) throw err;
    throw new ActionFailure(HRESULT.fail, `Could not download the library file ${JSON.stringify(name)}: ${(err as Error).message ?? err}`);
  }
  const s = await stat(incoming);
  // Executable by root only (the folder is root's alone): a script may run a file put before it.
  await chmod(incoming, 0o700);
  await rename(incoming, join(folder.work, name));
  return s.size;
}

async function upload(env: ActionEnv, index: number, source: string): Promise<void> {
  const { context } = env;
  if (!context.uploadCommandResult) throw new ActionFailure(HRESULT.notImplemented, 'This agent cannot upload command results');
  try {
    await context.uploadCommandResult(index, source);
  } catch (err) {
    if (context.signal.aborted) throw err;
    throw new ActionFailure(HRESULT.fail, `The result could not be uploaded: ${(err as Error).message ?? err}`);
  }
}

/** The whole environment a script gets: a fixed PATH, root's identity, and where it runs. */
function scriptEnvironment(folder: Folder, actionId: string, index: number): NodeJS.ProcessEnv {
  const user = userInfo();
  return {
    PATH: SCRIPT_PATH,
    HOME: user.homedir,
    USER: user.username,
    LOGNAME: user.username,
    LANG: 'C.UTF-8',
    TERM: 'dumb',
    PWD: folder.work,
    COUNTERMAND_ACTION_ID: actionId,
    COUNTERMAND_COMMAND_INDEX: String(index),
    COUNTERMAND_WORK_DIR: folder.work,
  };
}

/** The script's exit code; killed by a signal: 128 + its number, as shells report it. */
function exitCodeOf(result: RunResult): number {
  if (result.code !== null) return result.code;
  const signo = result.signal ? (osConstants.signals as Record<string, number>)[result.signal] : undefined;
  return 128 + (signo ?? 0);
}

/**
 * How long a script may run: the machine's own setting if it has one, else what the server
 * sent with the action, else the contract's 10 minutes.
 */
export function scriptTimeoutOf(configuredMs: number | null, action: Pick<AgentAction, 'scriptTimeoutSeconds'>): number {
  if (configuredMs !== null) return configuredMs;
  const seconds = action.scriptTimeoutSeconds;
  return (seconds !== undefined && Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_SCRIPT_TIMEOUT_SECONDS) * 1000;
}

async function runScript(env: ActionEnv, folder: Folder, index: number, params: CommandParam[]): Promise<Record<string, unknown>> {
  const { options, context } = env;
  const timeoutMs = scriptTimeoutOf(options.scriptTimeoutMs, context.action);
  const name = libraryFileName(param(params, 'ScriptName'), 'ScriptName');
  const args = parseArgs(param(params, 'Args'));
  await fetchInto(env, folder, index, name);
  const path = join(folder.work, name);
  const head = Buffer.alloc(256);
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  let length: number;
  try {
    length = (await handle.read(head, 0, head.length, 0)).bytesRead;
  } finally {
    await handle.close();
  }
  const launch = scriptLaunch(path, head.subarray(0, length), options.scriptInterpreter, args);
  await env.note('live.runscript.start', { index, script: name, args, program: launch.file, via: launch.via });

  const started = Date.now();
  let result: RunResult;
  try {
    result = await runCommand(launch.file, launch.args, {
      timeoutMs,
      signal: context.signal,
      maxOutputBytes: options.scriptOutputMaxBytes,
      cwd: folder.work,
      env: scriptEnvironment(folder, context.action.id, index),
      processTree: true,
    });
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    if (err.kind === 'notFound') throw new ActionFailure(HRESULT.fileNotFound, `${launch.file}, which runs ${name}, was not found`);
    if (err.kind !== 'timeout') throw err;
    // Timed out: the script and everything it started were killed. A failed command has no
    // result, so the end of what it printed goes into the error, to show where it stopped.
    const printed = lastLines(`${err.result?.stdout ?? ''}${err.result?.stderr ? `\n${err.result.stderr}` : ''}`, 300);
    await env.note('live.runscript.end', { index, script: name, killed: 'timeout', timeoutMs, durationMs: Date.now() - started });
    throw new ActionFailure(
      HRESULT.timeout,
      `${name} was killed after ${timeoutMs} ms (the script's time limit), with every process it started${printed ? `; its last output: ${printed}` : ''}`,
    );
  }

  const max = options.scriptOutputMaxBytes;
  const output = (text: string, total = 0) => (total > max ? `${text}\n[output truncated: ${total} bytes written, the first ${max} kept]` : text);
  const scriptResult: ScriptResult = {
    script_name: name,
    exit_code: exitCodeOf(result),
    script_output: output(result.stdout, result.stdoutBytes),
    script_errors: output(result.stderr, result.stderrBytes),
  };
  const file = join(folder.out, `${index}.json`);
  await writeFile(file, JSON.stringify(scriptResult), { mode: 0o600 });
  const detail = {
    script: name,
    args: args.length,
    exitCode: scriptResult.exit_code,
    outputBytes: result.stdoutBytes ?? result.stdout.length,
    errorBytes: result.stderrBytes ?? result.stderr.length,
    truncated: result.truncated,
    durationMs: Date.now() - started,
  };
  await env.note('live.runscript.end', { index, ...detail });
  await upload(env, index, file);
  return detail;
}

async function getFile(env: ActionEnv, folder: Folder, index: number, value: string | undefined): Promise<Record<string, unknown>> {
  const { options, context } = env;
  if (value === undefined || value.trim() === '') throw new ActionFailure(HRESULT.fail, 'Path is missing');
  if (value.includes('\0')) throw new ActionFailure(HRESULT.fail, 'Path contains a NUL character');
  // A relative path names a file in the working folder (e.g. one a script of this action wrote).
  const requested = resolve(folder.work, value); // normalized: `..` is resolved before any check
  const shown = JSON.stringify(value.slice(0, 300));
  const roots = await resolvedDirs([...options.getFileAllowedRoots, folder.work]);
  const denied = [...new Set([...options.getFileDeniedPaths, ...(await resolvedDirs(options.getFileDeniedPaths))])];
  const check = (path: string) => {
    const deniedBy = within(path, denied);
    if (deniedBy) throw new ActionFailure(HRESULT.accessDenied, `${shown} is under ${deniedBy}, which GetFile never reads`);
    if (!within(path, roots)) {
      const via = path === requested ? '' : ` (it leads to ${path})`;
      throw new ActionFailure(HRESULT.accessDenied, `${shown}${via} is outside the directories GetFile may read: ${options.getFileAllowedRoots.join(', ')}`);
    }
  };
  let real: string;
  try {
    real = await realpath(requested);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Whether something exists outside the roots is not told: such a path is refused as outside.
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      check(requested);
      throw new ActionFailure(HRESULT.fileNotFound, `${shown} does not exist`);
    }
    if (code === 'EACCES') throw new ActionFailure(HRESULT.accessDenied, `${shown} cannot be reached: permission denied`);
    if (code === 'ELOOP') throw new ActionFailure(HRESULT.accessDenied, `${shown} has too many levels of symbolic links`);
    throw err;
  }
  check(real);
  const s = await stat(real);
  if (!s.isFile()) throw new ActionFailure(HRESULT.accessDenied, `${shown} is ${describeKind(s)}: GetFile only fetches regular files`);
  const max = options.getFileMaxBytes;
  const tooLarge = (size: number) => new ActionFailure(HRESULT.fail, `${shown} is larger than GetFile's limit of ${max} bytes (${size} bytes)`);
  if (s.size > max) throw tooLarge(s.size);

  // Opened without following a symlink and without blocking, then checked again through the
  // descriptor: a path changed after the checks above cannot lead anywhere else.
  const handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY).catch((err: NodeJS.ErrnoException) => {
    throw new ActionFailure(err.code === 'EACCES' ? HRESULT.accessDenied : HRESULT.fail, `${shown} could not be opened: ${err.code ?? err.message}`);
  });
  const snapshot = join(folder.out, `${index}.file`);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    const opened = await handle.stat();
    if (!opened.isFile() || opened.dev !== s.dev || opened.ino !== s.ino) throw new ActionFailure(HRESULT.fail, `${shown} changed while it was being opened`);
    check(await readlink(`/proc/self/fd/${handle.fd}`));
    // A snapshot of the bytes read through the checked descriptor is what gets uploaded.
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        if (bytes > max) {
          done(tooLarge(bytes));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    await pipeline(
      createReadStream('', { fd: handle.fd, autoClose: false, start: 0 }),
      counter,
      createWriteStream(snapshot, { flags: 'wx', mode: 0o600 }),
      { signal: context.signal },
    );
  } finally {
    await handle.close();
  }
  const sha256 = hash.digest('hex');
  await env.note('live.getfile', { index, path: value, realPath: real, bytes, sha256 });
  await upload(env, index, snapshot);
  return { path: value, realPath: real, bytes, sha256 };
}
