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
 */
import { randomUUID } from 'node:crypto';
import type { ExecutionContext } from '../../../src/agent/executor.js';
import { LinuxExecutor, restoreQuarantined, type LinuxExecutorOptions } from '../../../src/agent/executors/linux/index.js';
import type { ActionType } from '../../../src/domain/model.js';

export type Job =
  | {
      kind: 'execute';
      options: LinuxExecutorOptions;
      action: { type: ActionType; scope?: string | null; sha1?: string | null; id?: string };
      /** Abort the action's signal this many ms after it starts (0: before it starts). */
      abortAfterMs?: number;
    }
  | { kind: 'restore'; quarantineDir: string; sha1: string };

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
  const context: ExecutionContext = {
    action: {
      id: job.action.id ?? randomUUID(),
      type: job.action.type,
      scope: job.action.scope ?? null,
      sha1: job.action.sha1 ?? null,
      commands: [],
      comment: 'e2e',
    },
    signal: controller.signal,
    log: (message, detail) => process.stderr.write(`${message} ${detail ? JSON.stringify(detail) : ''}\n`),
  };
  const outcome = await executor.execute(context);
  process.stdout.write(`${JSON.stringify({ outcome, pid: process.pid })}\n`);
}

main().catch((err: unknown) => {
  process.stdout.write(`${JSON.stringify({ error: String((err as Error)?.stack ?? err) })}\n`);
  process.exitCode = 1;
});
