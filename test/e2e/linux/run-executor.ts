/**
 * Runs one LinuxExecutor action (or restoreQuarantined) in this process and prints the result
 * as one JSON line on stdout. The e2e tests start it inside the namespaces they create
 * (`ip netns exec`, `nsenter`), so the executor code runs there unmodified:
 *
 *   node --import tsx test/e2e/linux/run-executor.ts '<job JSON>'
 *
 * Job: {"kind":"execute","options":{...LinuxExecutorOptions},"action":{"type":"Isolate","scope":"Full"},"abortAfterMs":0}
 *   or {"kind":"restore","quarantineDir":"...","sha1":"..."}
 * Log lines from the action go to stderr.
 *
 * The file-transfer seam of the ExecutionContext is implemented over local directories, the
 * way the agent implements it over its protocol: fetchLibraryFile copies `<library>/<name>`,
 * uploadCommandResult copies to `<uploads>/<index>`, uploadPackage to `<uploads>/package`.
 * Every progress() call is kept and printed with the outcome.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExecutionContext } from '../../../src/agent/executor.js';
import { LinuxExecutor, restoreQuarantined, type LinuxExecutorOptions } from '../../../src/agent/executors/linux/index.js';
import type { ActionType, CommandParam, CommandType, LiveResponseCommand } from '../../../src/domain/model.js';

export type Job =
  | {
      kind: 'execute';
      options: LinuxExecutorOptions;
      action: {
        type: ActionType;
        scope?: string | null;
        sha1?: string | null;
        id?: string;
        /** LiveResponse: the commands as a client sends them. */
        commands?: { type: CommandType; params: CommandParam[] }[];
        /** LiveResponse: the RunScript timeout as the server sends it. */
        scriptTimeoutSeconds?: number;
      };
      /** Abort the action's signal this many ms after it starts (0: before it starts). */
      abortAfterMs?: number;
      /** Abort the action's signal once this file exists (checked every 20 ms). */
      abortWhenExists?: string;
      /** Where fetchLibraryFile reads library files from. Without it, the context has no fetchLibraryFile. */
      library?: string;
      /** Where uploads go. Without it, the context has no upload functions. */
      uploads?: string;
      /** Uploads larger than this are refused, as a server with that cap would. */
      uploadLimitBytes?: number;
    }
  | { kind: 'restore'; quarantineDir: string; sha1: string };

export interface Upload {
  kind: 'result' | 'package';
  index?: number;
  bytes: number;
  /** Where the executor had the file (it is gone once the action ended). */
  source: string;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as Job;
  if (job.kind === 'restore') {
    const restore = await restoreQuarantined(job.quarantineDir, job.sha1);
    process.stdout.write(`${JSON.stringify({ restore })}\n`);
    return;
  }
  const executor = new LinuxExecutor(job.options);
  const controller = new AbortController();
  if (job.abortAfterMs === 0) controller.abort();
  else if (job.abortAfterMs !== undefined) setTimeout(() => controller.abort(), job.abortAfterMs).unref();
  if (job.abortWhenExists) {
    const marker = job.abortWhenExists;
    const timer = setInterval(() => {
      stat(marker).then(
        () => {
          clearInterval(timer);
          controller.abort();
        },
        () => undefined,
      );
    }, 20);
    timer.unref();
  }
  const progress: LiveResponseCommand[][] = [];
  const uploads: Upload[] = [];
  const accept = async (source: string, target: string) => {
    const { size } = await stat(source);
    if (job.uploadLimitBytes !== undefined && size > job.uploadLimitBytes) throw new Error(`413: ${size} bytes is more than the server accepts`);
    await copyFile(source, target, constants.COPYFILE_EXCL);
    return size;
  };
  const context: ExecutionContext = {
    action: {
      id: job.action.id ?? randomUUID(),
      type: job.action.type,
      scope: job.action.scope ?? null,
      sha1: job.action.sha1 ?? null,
      commands: (job.action.commands ?? []).map((command, index) => ({
        index,
        startTime: null,
        endTime: null,
        commandStatus: 'Created',
        errors: [],
        command,
      })),
      comment: 'e2e',
      ...(job.action.scriptTimeoutSeconds !== undefined ? { scriptTimeoutSeconds: job.action.scriptTimeoutSeconds } : {}),
    },
    signal: controller.signal,
    log: (message, detail) => process.stderr.write(`${message} ${detail ? JSON.stringify(detail) : ''}\n`),
    progress: async (commands) => {
      progress.push(structuredClone(commands));
    },
  };
  if (job.library) {
    const library = job.library;
    context.fetchLibraryFile = async (fileName, destination) => {
      const source = join(library, fileName);
      if (!(await stat(source).then((s) => s.isFile(), () => false))) throw new Error(`404: the library has no file named ${fileName}`);
      await copyFile(source, destination, constants.COPYFILE_EXCL);
    };
  }
  if (job.uploads) {
    const dir = job.uploads;
    context.uploadCommandResult = async (index, source) => {
      uploads.push({ kind: 'result', index, bytes: await accept(source, join(dir, String(index))), source });
    };
    context.uploadPackage = async (source) => {
      uploads.push({ kind: 'package', bytes: await accept(source, join(dir, 'package')), source });
    };
  }
  const outcome = await executor.execute(context);
  process.stdout.write(`${JSON.stringify({ outcome, pid: process.pid, progress, uploads })}\n`);
}

main().catch((err: unknown) => {
  process.stdout.write(`${JSON.stringify({ error: String((err as Error)?.stack ?? err) })}\n`);
  process.exitCode = 1;
});
