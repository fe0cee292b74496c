import type { ExecutionContext } from '../../executor.js';
import { runChecked, type RunResult } from './command.js';
import type { ResolvedOptions } from './options.js';

/** What each action implementation gets from the executor. */
export interface ActionEnv {
  options: ResolvedOptions;
  context: ExecutionContext;
  /** Records a step: the context's log and the JSON-lines log file. Never throws. */
  note(event: string, detail?: Record<string, unknown>): Promise<void>;
  /** Runs a program with the executor's timeout and the action's signal; non-zero exit throws. */
  run(file: string, args: string[], extra?: { input?: string; okCodes?: number[] }): Promise<RunResult>;
}

export function makeRun(options: ResolvedOptions, signal: AbortSignal): ActionEnv['run'] {
  return (file, args, extra = {}) =>
    runChecked(file, args, {
      timeoutMs: options.commandTimeoutMs,
      signal,
      maxOutputBytes: 256 * 1024,
      ...(extra.input !== undefined ? { input: extra.input } : {}),
      ...(extra.okCodes ? { okCodes: extra.okCodes } : {}),
    });
}

/** Thrown when the action's signal aborted between steps. */
export class AbortedError extends Error {
  constructor(where: string) {
    super(`cancelled ${where}`);
    this.name = 'AbortedError';
  }
}

export function throwIfAborted(signal: AbortSignal, where: string): void {
  if (signal.aborted) throw new AbortedError(where);
}
