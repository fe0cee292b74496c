import { Type, type Static, type TSchema } from 'typebox';
import { ERRORS } from './errors.js';
import { libraryFileNameProblem } from './library.js';
import { LIVE_RESPONSE_CONCURRENCY, RATE_LIMITS, type RateLimitPolicy } from './rate-limits.js';
import {
  COMMAND_TYPES,
  type ActionType,
  type CommandType,
  type LiveResponseCommand,
  type RelatedFileInfo,
} from './model.js';

/**
 * The action catalog: one entry per action type with everything that differs between types,
 * so routes, validation, the lifecycle and the agents read the same facts (contract §2, §4).
 */

const MAX_COMMENT = 4096;
const Comment = Type.String({ maxLength: MAX_COMMENT });

export const IsolationTypes = ['Full', 'Selective', 'UnManagedDevice'] as const;
export const ScanTypes = ['Quick', 'Full'] as const;

export const CommentBody = Type.Object({ Comment });
export const IsolateBody = Type.Object({
  Comment,
  IsolationType: Type.Optional(Type.Enum(IsolationTypes)),
});
export const ScanBody = Type.Object({ Comment, ScanType: Type.Enum(ScanTypes) });
export const StopAndQuarantineBody = Type.Object({
  Comment,
  Sha1: Type.String({ pattern: '^[0-9a-fA-F]{40}$' }),
});

const MAX_COMMANDS = 50;
const MAX_PARAM_VALUE = 4096;
export const LiveResponseBody = Type.Object({
  Comment,
  Commands: Type.Array(
    Type.Object({
      type: Type.Enum(COMMAND_TYPES),
      params: Type.Array(
        Type.Object({ key: Type.String({ maxLength: 64 }), value: Type.String({ maxLength: MAX_PARAM_VALUE }) }),
        { maxItems: 8 },
      ),
    }),
    { minItems: 1, maxItems: MAX_COMMANDS },
  ),
});
export type LiveResponseBodyT = Static<typeof LiveResponseBody>;

/** What an accepted request turns into, besides the common fields. */
export interface ActionSpecifics {
  scope: string | null;
  relatedFileInfo: RelatedFileInfo | null;
  commands: LiveResponseCommand[];
  conflictKey: string;
}

export interface ActionDefinition {
  type: ActionType;
  /** The path segment under /api/machines/{id}/ (matched case-insensitively). */
  route: string;
  /** What the operation does, in a few words (the OpenAPI document and $metadata show it). */
  summary: string;
  body: TSchema;
  /** Default seconds an InProgress action may run before it becomes TimeOut. */
  executionDeadlineSeconds: number;
  /** Contract §8, when not the default windows. */
  rateLimit?: RateLimitPolicy;
  /** Non-final actions of this type a tenant may have at once (contract §8). */
  tenantConcurrency?: number;
  specifics(body: Record<string, unknown>): ActionSpecifics;
}

const plain = (conflictKey: string) => (): ActionSpecifics => ({
  scope: null,
  relatedFileInfo: null,
  commands: [],
  conflictKey,
});

const HOUR = 3600;

export const ACTION_CATALOG: Readonly<Record<ActionType, ActionDefinition>> = {
  Isolate: {
    type: 'Isolate',
    route: 'isolate',
    summary: 'Isolate a machine from the network',
    body: IsolateBody,
    executionDeadlineSeconds: HOUR,
    specifics: (body) => ({
      scope: (body.IsolationType as string | undefined) ?? 'Full',
      relatedFileInfo: null,
      commands: [],
      conflictKey: 'Isolation',
    }),
  },
  Unisolate: {
    type: 'Unisolate',
    route: 'unisolate',
    summary: 'Release a machine from isolation',
    body: CommentBody,
    executionDeadlineSeconds: HOUR,
    specifics: plain('Isolation'),
  },
  RunAntiVirusScan: {
    type: 'RunAntiVirusScan',
    route: 'runAntiVirusScan',
    summary: 'Run an antivirus scan',
    body: ScanBody,
    executionDeadlineSeconds: 24 * HOUR,
    specifics: (body) => ({
      scope: body.ScanType as string,
      relatedFileInfo: null,
      commands: [],
      conflictKey: 'RunAntiVirusScan',
    }),
  },
  CollectInvestigationPackage: {
    type: 'CollectInvestigationPackage',
    route: 'collectInvestigationPackage',
    summary: 'Collect an investigation package',
    body: CommentBody,
    executionDeadlineSeconds: 3 * HOUR,
    specifics: plain('CollectInvestigationPackage'),
  },
  RestrictCodeExecution: {
    type: 'RestrictCodeExecution',
    route: 'restrictCodeExecution',
    summary: 'Restrict app execution to trusted code',
    body: CommentBody,
    executionDeadlineSeconds: HOUR,
    specifics: plain('CodeExecution'),
  },
  UnrestrictCodeExecution: {
    type: 'UnrestrictCodeExecution',
    route: 'unrestrictCodeExecution',
    summary: 'Lift the app execution restriction',
    body: CommentBody,
    executionDeadlineSeconds: HOUR,
    specifics: plain('CodeExecution'),
  },
  Offboard: {
    type: 'Offboard',
    route: 'offboard',
    summary: 'Offboard a machine',
    body: CommentBody,
    executionDeadlineSeconds: HOUR,
    specifics: plain('Offboard'),
  },
  StopAndQuarantineFile: {
    type: 'StopAndQuarantineFile',
    route: 'StopAndQuarantineFile',
    summary: 'Stop and quarantine a file',
    body: StopAndQuarantineBody,
    executionDeadlineSeconds: HOUR,
    specifics: (body) => {
      const sha1 = (body.Sha1 as string).toLowerCase();
      return {
        scope: null,
        relatedFileInfo: { fileIdentifier: sha1, fileIdentifierType: 'Sha1' },
        commands: [],
        conflictKey: `StopAndQuarantineFile:${sha1}`,
      };
    },
  },
  LiveResponse: {
    type: 'LiveResponse',
    route: 'runliveresponse',
    summary: 'Run live-response commands',
    body: LiveResponseBody,
    executionDeadlineSeconds: 2 * HOUR,
    rateLimit: RATE_LIMITS.liveResponse,
    tenantConcurrency: LIVE_RESPONSE_CONCURRENCY,
    specifics: (body) => ({
      scope: null,
      relatedFileInfo: null,
      commands: liveResponseCommands(body as LiveResponseBodyT),
      conflictKey: 'LiveResponse',
    }),
  },
};

export const ACTION_DEFINITIONS: readonly ActionDefinition[] = Object.values(ACTION_CATALOG);

/** Parameters each live-response command takes: required ones first (contract §2). */
const COMMAND_PARAMS: Readonly<Record<CommandType, { required: readonly string[]; optional: readonly string[] }>> = {
  PutFile: { required: ['FileName'], optional: [] },
  RunScript: { required: ['ScriptName'], optional: ['Args'] },
  GetFile: { required: ['Path'], optional: [] },
};
const COMMAND_ORDER: Readonly<Record<CommandType, number>> = { PutFile: 0, RunScript: 1, GetFile: 2 };
/** The parameter of each command type that names a library file. */
const LIBRARY_PARAM: Readonly<Partial<Record<CommandType, string>>> = { PutFile: 'FileName', RunScript: 'ScriptName' };

/** The library file a command names (PutFile's FileName, RunScript's ScriptName), or null. */
export function libraryFileOf(command: LiveResponseCommand['command']): string | null {
  const key = LIBRARY_PARAM[command.type];
  return key ? (command.params.find((p) => p.key === key)?.value ?? null) : null;
}

/**
 * Checks what the body schema cannot: each command's parameter names, library file names, and
 * the order PutFile, RunScript, GetFile. Throws the contract's errors.
 */
function liveResponseCommands(body: LiveResponseBodyT): LiveResponseCommand[] {
  let previous = -1;
  return body.Commands.map((command, index) => {
    const where = `Commands[${index}]`;
    const rank = COMMAND_ORDER[command.type];
    if (rank < previous) {
      throw ERRORS.InvalidRequestBody(
        `${where}: command types must appear in the order PutFile, RunScript, GetFile.`,
      );
    }
    previous = rank;
    const allowed = COMMAND_PARAMS[command.type];
    const seen = new Set<string>();
    for (const param of command.params) {
      if (![...allowed.required, ...allowed.optional].includes(param.key)) {
        throw ERRORS.InvalidRequestBody(`${where}: ${command.type} does not take the parameter '${param.key}'.`);
      }
      if (seen.has(param.key)) throw ERRORS.InvalidRequestBody(`${where}: parameter '${param.key}' is repeated.`);
      seen.add(param.key);
    }
    for (const key of allowed.required) {
      if (!seen.has(key)) throw ERRORS.MissingRequiredParameter(`${where}.params.${key}`);
    }
    for (const param of command.params) {
      const problem = param.key === LIBRARY_PARAM[command.type] ? libraryFileNameProblem(param.value) : null;
      if (problem) throw ERRORS.InvalidInput(`${where}: '${param.key}' must be the name of a library file: it ${problem}.`);
      if (param.key === 'Path' && param.value.trim() === '') {
        throw ERRORS.InvalidInput(`${where}: 'Path' must not be empty.`);
      }
    }
    return {
      index,
      startTime: null,
      endTime: null,
      commandStatus: 'Created' as const,
      errors: [],
      command: { type: command.type, params: command.params.map((p) => ({ key: p.key, value: p.value })) },
    };
  });
}
