import { CommanderError, InvalidArgumentError, type Command } from 'commander';
import { CountermandError, type Collection } from '../client/index.js';
import { UsageError, withConnectionOptions } from './connection.js';
import { note } from './output.js';

/** What the commands that talk to a server share: options, exit codes, errors, paging. */

/** Exit codes of the client commands (docs/cli.md). */
export const EXIT = {
  ok: 0,
  /** The server refused the request, or could not be reached. */
  requestFailed: 1,
  /** Bad flags or settings. */
  usage: 2,
  Failed: 3,
  TimeOut: 4,
  Cancelled: 5,
  /** `wait --timeout` ran out before the action was final. */
  stillRunning: 6,
} as const;

/** A subcommand with the connection options and --json; a usage mistake exits 2, as settings do. */
export function remoteCommand(parent: Command, nameAndArgs: string, description: string): Command {
  const command = parent.command(nameAndArgs).description(description);
  withConnectionOptions(command).option('--json', "print the API's JSON instead of a table");
  return usageExit(command);
}

/** Commander's own errors (an unknown option, a missing argument) as exit code 2; help stays 0. */
export function usageExit(command: Command): Command {
  return command.exitOverride((error: CommanderError) => {
    process.exit(error.exitCode === 0 ? 0 : EXIT.usage);
  });
}

/**
 * Runs a command's work; what goes wrong is one line on stderr with a distinct exit code. The
 * envelope's code and message and the request id are in it; nothing secret ever is.
 */
export function run<A extends unknown[]>(work: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = (await work(...args)) ?? EXIT.ok;
    } catch (error) {
      if (error instanceof CountermandError) {
        fail(error.describe(), EXIT.requestFailed);
      } else if (error instanceof UsageError) {
        fail(error.message, EXIT.usage);
      } else {
        throw error;
      }
    }
  };
}

function fail(message: string, code: number): void {
  note(`countermand: ${message}`);
  process.exitCode = code;
}

export function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('Expected a whole number >= 0.');
  return Number(value);
}

/** Every page, each from the one before's nextLink, as one collection (the first page's context and count). */
export async function allPages<T>(pages: AsyncIterable<Collection<T>>): Promise<Collection<T>> {
  let first: Collection<T> | undefined;
  const value: T[] = [];
  for await (const page of pages) {
    first ??= page;
    value.push(...page.value);
  }
  const { '@odata.nextLink': _last, ...head } = first!;
  return { ...head, value };
}
