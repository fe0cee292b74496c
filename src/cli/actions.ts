import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  WaitTimeoutError,
  isFinal,
  odataString,
  type ActionBodies,
  type ActionStatus,
  type ActionType,
  type Collection,
  type Countermand,
  type Entity,
  type LiveResponseCommandRequest,
  type MachineAction,
} from '../client/index.js';
import { ACTION_STATUSES, ACTION_TYPES, COMMAND_TYPES } from '../domain/model.js';
import { UsageError, connect, type ConnectionFlags } from './connection.js';
import { details, note, orDash, printJson, printText, shortTime, table, type Column } from './output.js';
import { EXIT, allPages, remoteCommand, run, wholeNumber } from './remote.js';

/**
 * `countermand actions list|get|cancel|wait` and the action verbs (`isolate`, `scan`, ...): the
 * machine-actions API through the typed client (docs/cli.md).
 */

interface OutputFlags extends ConnectionFlags {
  json?: boolean;
}

interface WaitFlags extends OutputFlags {
  timeout?: number;
  interval?: number;
}

const ACTION_COLUMNS: readonly Column<MachineAction>[] = [
  { header: 'ID', value: (a) => a.id },
  { header: 'TYPE', value: (a) => a.type, shrink: true },
  { header: 'STATUS', value: (a) => a.status },
  { header: 'MACHINE', value: (a) => a.computerDnsName ?? a.machineId, shrink: true },
  { header: 'CREATED', value: (a) => shortTime(a.creationDateTimeUtc), optional: true },
  { header: 'REQUESTOR', value: (a) => a.requestor, shrink: true, optional: true },
  { header: 'COMMENT', value: (a) => a.requestorComment ?? '', shrink: true, optional: true },
];

const COMMAND_COLUMNS: readonly Column<MachineAction['commands'][number]>[] = [
  { header: '#', value: (c) => String(c.index) },
  { header: 'COMMAND', value: (c) => c.command.type },
  { header: 'PARAMS', value: (c) => c.command.params.map((p) => `${p.key}=${p.value}`).join(' '), shrink: true },
  { header: 'STATUS', value: (c) => c.commandStatus },
  { header: 'STARTED', value: (c) => shortTime(c.startTime), optional: true },
  { header: 'ENDED', value: (c) => shortTime(c.endTime), optional: true },
  { header: 'ERRORS', value: (c) => c.errors.join('; '), shrink: true, optional: true },
];

/** Every field of the entity, in the wire's order and under the wire's names. */
function actionDetails(a: MachineAction): string {
  const text = details([
    ['id', a.id],
    ['type', a.type],
    ['title', orDash(a.title)],
    ['requestor', a.requestor],
    ['requestorComment', orDash(a.requestorComment)],
    ['status', a.status],
    ['machineId', a.machineId],
    ['computerDnsName', orDash(a.computerDnsName)],
    ['creationDateTimeUtc', a.creationDateTimeUtc],
    ['lastUpdateDateTimeUtc', a.lastUpdateDateTimeUtc],
    ['cancellationRequestor', orDash(a.cancellationRequestor)],
    ['cancellationComment', orDash(a.cancellationComment)],
    ['cancellationDateTimeUtc', orDash(a.cancellationDateTimeUtc)],
    ['errorHResult', String(a.errorHResult)],
    ['scope', orDash(a.scope)],
    ['externalId', orDash(a.externalId)],
    ['requestSource', a.requestSource],
    ['relatedFileInfo', a.relatedFileInfo ? `${a.relatedFileInfo.fileIdentifierType} ${a.relatedFileInfo.fileIdentifier}` : '-'],
    ['commands', a.commands.length ? String(a.commands.length) : '-'],
    ['troubleshootInfo', orDash(a.troubleshootInfo)],
  ]);
  return a.commands.length ? `${text}\n\n${table(a.commands, COMMAND_COLUMNS)}` : text;
}

function printAction(action: Entity<MachineAction>, flags: OutputFlags): void {
  if (flags.json) printJson(action);
  else printText(actionDetails(action));
}

/** The status an action ended in, as the command's exit code. */
function exitFor(status: ActionStatus): number {
  switch (status) {
    case 'Failed':
      return EXIT.Failed;
    case 'TimeOut':
      return EXIT.TimeOut;
    case 'Cancelled':
      return EXIT.Cancelled;
    default:
      return EXIT.ok;
  }
}

const clock = () => `${new Date().toISOString().slice(11, 19)}Z`;

/** Progress on stderr: each status change, and each live-response command as it starts and ends. */
function progressPrinter() {
  return (action: MachineAction, previous: MachineAction | null) => {
    if (!previous) note(`waiting for ${action.type} ${action.id} on ${action.computerDnsName ?? action.machineId} (Ctrl-C stops the waiting, not the action)`);
    const lines: string[] = [];
    for (const command of action.commands) {
      const before = previous?.commands.find((c) => c.index === command.index);
      const state = commandState(command);
      if (state !== (before ? commandState(before) : 'Created')) {
        const errors = command.errors.length ? `: ${command.errors.join('; ')}` : '';
        lines.push(`${clock()}   command ${command.index + 1}/${action.commands.length} ${command.command.type} ${state}${errors}`);
      }
    }
    if (action.status !== previous?.status) {
      const why = action.status === 'Failed' || action.status === 'TimeOut' ? failureDetail(action) : action.status === 'Cancelled' ? cancelDetail(action) : '';
      // A status the action moves into comes before its commands' news; a final one after it.
      const line = `${clock()} ${action.status}${why}`;
      if (isFinal(action.status)) lines.push(line);
      else lines.unshift(line);
    }
    for (const line of lines) note(line);
  };
}

const commandState = (c: MachineAction['commands'][number]) =>
  c.commandStatus === 'Created' ? (c.startTime ? 'running' : 'Created') : c.commandStatus;

function failureDetail(a: MachineAction): string {
  const parts = [a.errorHResult ? `errorHResult ${a.errorHResult}` : null, a.troubleshootInfo].filter(Boolean);
  return parts.length ? ` (${parts.join(': ')})` : '';
}

function cancelDetail(a: MachineAction): string {
  return a.cancellationRequestor ? ` by ${a.cancellationRequestor}${a.cancellationComment ? `: ${a.cancellationComment}` : ''}` : '';
}

/** Waits for a final status with progress on stderr; prints the action; the status is the exit code. */
async function waitAndReport(client: Countermand, id: string, flags: WaitFlags): Promise<number> {
  try {
    const action = await client.waitForAction(id, {
      ...(flags.timeout !== undefined ? { timeoutMs: flags.timeout * 1000 } : {}),
      ...(flags.interval !== undefined ? { intervalMs: flags.interval * 1000 } : {}),
      onProgress: progressPrinter(),
    });
    printAction(action, flags);
    return exitFor(action.status);
  } catch (error) {
    if (!(error instanceof WaitTimeoutError)) throw error;
    printAction(error.action as Entity<MachineAction>, flags);
    note(`countermand: stopped waiting after ${flags.timeout} s: ${error.action.type} ${error.action.id} is still ${error.action.status} (it carries on)`);
    return EXIT.stillRunning;
  }
}

function withWaitOptions(command: Command): Command {
  return command
    .option('--timeout <seconds>', 'stop waiting after this long (exit code 6); the action carries on', positiveNumber)
    .addOption(new Option('--interval <seconds>', 'between two reads of the action').default(1).argParser(positiveNumber).hideHelp());
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('Expected a number of seconds > 0.');
  return n;
}

/** Comma-separated values of a fixed set, matched case-insensitively, returned as the set spells them. */
function oneOf(allowed: readonly string[]) {
  return (value: string, previous: string[] = []): string[] => [
    ...previous,
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean)
      .map((v) => {
        const match = allowed.find((a) => a.toLowerCase() === v.toLowerCase());
        if (!match) throw new InvalidArgumentError(`'${v}' is not one of ${allowed.join(', ')}.`);
        return match;
      }),
  ];
}

const MACHINE_ID = /^[0-9a-f]{40}$/i;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * What to put in an action's path for `<machine>`: an id or aadDeviceId as given (the action
 * routes take both), a computer name looked up first (GET /api/machines/{name}).
 */
export async function machineForAction(client: Countermand, given: string): Promise<string> {
  return MACHINE_ID.test(given) || GUID.test(given) ? given : (await client.getMachine(given)).id;
}

/** `2h`, `30m`, `7d` ago, or an ISO 8601 time, as an OData datetime literal. */
function sinceLiteral(value: string): string {
  const relative = /^(\d+)([smhd])$/.exec(value);
  const units = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const at = relative ? Date.now() - Number(relative[1]) * units[relative[2] as keyof typeof units] : Date.parse(value);
  if (!Number.isFinite(at)) throw new UsageError(`--since: '${value}' is neither a time (2025-05-01T10:00:00Z) nor a duration (30m, 2h, 7d)`);
  return new Date(at).toISOString();
}

interface ListFlags extends OutputFlags {
  status?: string[];
  type?: string[];
  machine?: string;
  requestor?: string;
  since?: string;
  filter?: string;
  orderby?: string;
  top?: number;
  skip?: number;
  all?: boolean;
}

const DEFAULT_TOP = 50;

const inList = (property: string, values: readonly string[]) =>
  values.length === 1 ? `${property} eq ${odataString(values[0]!)}` : `${property} in (${values.map(odataString).join(',')})`;

async function listActions(flags: ListFlags): Promise<number> {
  if (flags.all && flags.top !== undefined) throw new UsageError('--all reads every page; it does not go with --top');
  const client = connect(flags);
  const clauses: string[] = [];
  if (flags.status?.length) clauses.push(inList('status', flags.status));
  if (flags.type?.length) clauses.push(inList('type', flags.type));
  if (flags.machine) {
    const id = MACHINE_ID.test(flags.machine) ? flags.machine.toLowerCase() : (await client.getMachine(flags.machine)).id;
    clauses.push(`machineId eq ${odataString(id)}`);
  }
  if (flags.requestor) clauses.push(`requestor eq ${odataString(flags.requestor)}`);
  if (flags.since) clauses.push(`creationDateTimeUtc ge ${sinceLiteral(flags.since)}`);
  if (flags.filter) clauses.push(clauses.length ? `(${flags.filter})` : flags.filter);
  const query = {
    ...(clauses.length ? { filter: clauses.join(' and ') } : {}),
    ...(flags.orderby ? { orderby: flags.orderby } : {}),
    ...(flags.skip !== undefined ? { skip: flags.skip } : {}),
    count: true,
  };
  let page: Collection<MachineAction>;
  if (flags.all) {
    page = await allPages(client.pages<MachineAction>('/machineactions', query));
  } else {
    page = await client.listMachineActions({ ...query, top: flags.top ?? DEFAULT_TOP });
  }
  if (flags.json) {
    printJson(page);
  } else if (page.value.length === 0) {
    note('no machine actions match');
  } else {
    printText(table(page.value, ACTION_COLUMNS));
    const total = page['@odata.count'];
    if (total !== undefined && total > page.value.length) note(`${page.value.length} of ${total}: --top, --skip or --all for more`);
  }
  return EXIT.ok;
}

/** `RunScript ScriptName=collect.sh Args=--since 1h`: a type, then Key=value pairs (a value runs to the next known key). */
export function parseCommand(text: string): LiveResponseCommandRequest {
  const [typeWord = '', ...rest] = text.trim().split(/\s+/);
  const type = COMMAND_TYPES.find((t) => t.toLowerCase() === typeWord.toLowerCase());
  if (!type) throw new UsageError(`--command '${text}': begin with ${COMMAND_TYPES.join(', ')}`);
  const body = rest.join(' ');
  if (!body.trim()) return { type, params: [] };
  const keys = /(?:^|\s)(FileName|ScriptName|Args|Path)=/g;
  const starts = [...body.matchAll(keys)];
  if (starts.length === 0 || body.slice(0, starts[0]!.index).trim() !== '') {
    throw new UsageError(`--command '${text}': parameters are Key=value (FileName, ScriptName, Args, Path)`);
  }
  const params = starts.map((m, i) => {
    const from = m.index! + m[0].length;
    const to = i + 1 < starts.length ? starts[i + 1]!.index! : body.length;
    return { key: m[1]!, value: body.slice(from, to).trim() };
  });
  return { type, params };
}

/** A JSON file of commands: `[{type, params}]`, or a request body with `Commands` (and maybe `Comment`). */
function commandsFile(path: string): { Commands: LiveResponseCommandRequest[]; Comment?: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new UsageError(`--commands-file ${path}: ${(error as Error).message}`);
  }
  if (Array.isArray(parsed)) return { Commands: parsed as LiveResponseCommandRequest[] };
  if (parsed && typeof parsed === 'object' && Array.isArray((parsed as { Commands?: unknown }).Commands)) {
    const body = parsed as { Commands: LiveResponseCommandRequest[]; Comment?: unknown };
    return { Commands: body.Commands, ...(typeof body.Comment === 'string' ? { Comment: body.Comment } : {}) };
  }
  throw new UsageError(`--commands-file ${path}: expected a JSON array of commands or an object with "Commands"`);
}

interface VerbFlags extends WaitFlags {
  comment?: string;
  wait?: boolean;
  type?: string;
  sha1?: string;
  command?: string[];
  commandsFile?: string;
}

interface Verb<T extends ActionType = ActionType> {
  name: string;
  type: T;
  description: string;
  /** Options this verb adds to the common ones. */
  options?: (command: Command) => Command;
  body(flags: VerbFlags, comment: string): ActionBodies[T];
}

const verb = <T extends ActionType>(v: Verb<T>): Verb => v as unknown as Verb;

/** One entry per action type (contract §2): its verb, the fields its body needs, and how flags fill them. */
const VERBS: readonly Verb[] = [
  verb({
    name: 'isolate',
    type: 'Isolate',
    description: 'isolate a machine from the network',
    options: (c) => c.addOption(new Option('--type <type>', 'isolation type').choices(['Full', 'Selective', 'UnManagedDevice']).default('Full')),
    body: (f, Comment) => ({ Comment, IsolationType: f.type as 'Full' | 'Selective' | 'UnManagedDevice' }),
  }),
  verb({ name: 'unisolate', type: 'Unisolate', description: 'release a machine from isolation', body: (_f, Comment) => ({ Comment }) }),
  verb({
    name: 'scan',
    type: 'RunAntiVirusScan',
    description: 'run an antivirus scan',
    options: (c) => c.addOption(new Option('--type <type>', 'scan type').choices(['Quick', 'Full']).default('Quick')),
    body: (f, Comment) => ({ Comment, ScanType: f.type as 'Quick' | 'Full' }),
  }),
  verb({ name: 'collect', type: 'CollectInvestigationPackage', description: 'collect an investigation package', body: (_f, Comment) => ({ Comment }) }),
  verb({ name: 'restrict', type: 'RestrictCodeExecution', description: 'restrict code execution', body: (_f, Comment) => ({ Comment }) }),
  verb({ name: 'unrestrict', type: 'UnrestrictCodeExecution', description: 'remove the code execution restriction', body: (_f, Comment) => ({ Comment }) }),
  verb({
    name: 'quarantine',
    type: 'StopAndQuarantineFile',
    description: 'stop and quarantine a file, by its SHA-1',
    options: (c) => c.requiredOption('--sha1 <hash>', "the file's SHA-1 (40 hex characters)"),
    body: (f, Comment) => ({ Comment, Sha1: f.sha1! }),
  }),
  verb({ name: 'offboard', type: 'Offboard', description: 'offboard a machine (its agent stops and its credential is revoked)', body: (_f, Comment) => ({ Comment }) }),
  verb({
    name: 'live-response',
    type: 'LiveResponse',
    description: 'run live-response commands (PutFile, RunScript, GetFile, in that order)',
    options: (c) =>
      c
        .option('--command <command>', "a command, e.g. 'RunScript ScriptName=collect.sh Args=--fast' (repeat for several)", (v, prev: string[] = []) => [...prev, v])
        .option('--commands-file <file>', 'a JSON file: an array of {type, params}, or a body with Commands'),
    body(f, Comment) {
      if (f.command?.length && f.commandsFile) throw new UsageError('give --command or --commands-file, not both');
      if (f.commandsFile) return { Comment, Commands: commandsFile(f.commandsFile).Commands };
      if (!f.command?.length) throw new UsageError("live-response needs --command (e.g. --command 'GetFile Path=/var/log/syslog') or --commands-file");
      return { Comment, Commands: f.command.map(parseCommand) };
    },
  }),
];

export function registerActionCommands(program: Command): void {
  const actions = program.command('actions').description('machine actions on a server: list, get, cancel, wait');

  const list = remoteCommand(actions, 'list', `list machine actions, newest first (${DEFAULT_TOP} unless --top or --all)`)
    .option('--status <statuses>', `only these statuses, comma-separated (${ACTION_STATUSES.join(', ')})`, oneOf(ACTION_STATUSES))
    .option('--type <types>', 'only these action types, comma-separated', oneOf(ACTION_TYPES))
    .option('--machine <machine>', 'only actions on this machine (id or computer name)')
    .option('--requestor <name>', 'only actions this application or user asked for')
    .option('--since <time>', 'only actions created since: an ISO time or a duration ago (30m, 2h, 7d)')
    .option('--filter <odata>', "an OData $filter, e.g. \"type in ('Isolate','Unisolate')\" (and-ed with the options above)")
    .option('--orderby <odata>', 'an OData $orderby, e.g. "creationDateTimeUtc asc"')
    .option('--top <n>', `at most this many (default ${DEFAULT_TOP})`, wholeNumber)
    .option('--skip <n>', 'skip this many first', wholeNumber)
    .option('--all', 'every match, following the pages');
  list.action(run((flags: ListFlags) => listActions(flags)));

  remoteCommand(actions, 'get <id>', 'show one machine action').action(
    run(async (id: string, flags: OutputFlags) => {
      printAction(await connect(flags).getMachineAction(id), flags);
    }),
  );

  remoteCommand(actions, 'cancel <id>', 'cancel a machine action that has not finished')
    .requiredOption('-m, --comment <text>', 'why (kept in the action as cancellationComment)')
    .action(
      run(async (id: string, flags: OutputFlags & { comment: string }) => {
        printAction(await connect(flags).cancelMachineAction(id, { Comment: flags.comment }), flags);
      }),
    );

  withWaitOptions(
    remoteCommand(actions, 'wait <id>', 'wait for a final status, showing progress; exit 0 Succeeded, 3 Failed, 4 TimeOut, 5 Cancelled'),
  ).action(run((id: string, flags: WaitFlags) => waitAndReport(connect(flags), id, flags)));

  for (const v of VERBS) {
    let command = remoteCommand(program, `${v.name} <machine>`, `${v.description} (machine id or computer name)`).requiredOption(
      '-m, --comment <text>',
      'why (required: it is kept in the action as requestorComment)',
    );
    command = v.options ? v.options(command) : command;
    withWaitOptions(command.option('--wait', 'then wait for a final status, as `actions wait` does')).action(
      run(async (machine: string, flags: VerbFlags) => {
        const body = v.body(flags, flags.comment!);
        const client = connect(flags);
        const created = await client.createMachineAction(await machineForAction(client, machine), v.type, body);
        if (!flags.wait) {
          printAction(created, flags);
          return EXIT.ok;
        }
        return waitAndReport(client, created.id, flags);
      }),
    );
  }
}
