import { Type, type Static } from 'typebox';
import { ACTION_TYPES, COMMAND_TYPES } from '../domain/model.js';

/**
 * The emulator's own vocabulary, as TypeBox schemas: one definition feeds the fixtures file's
 * validation, the control API's request validation and its OpenAPI document (docs/emulator.md).
 */

export const Guid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
export const MachineIdPattern = '^[0-9a-fA-F]{40}$';
export const IsoTime = Type.String({ format: 'date-time' });
const Name = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$' });

/**
 * When a phase of a simulated action ends: at once (`now`), never (`never`: the action stays
 * where it is), when a test says so (`step`), after seconds of the emulator's clock, or after the
 * action has been read (GET /api/machineactions/{id}) that many times in the phase.
 */
export const Trigger = Type.Union(
  [
    Type.Enum(['now', 'never', 'step']),
    Type.Object({ afterSeconds: Type.Number({ minimum: 0, maximum: 31_536_000 }) }, { additionalProperties: false }),
    Type.Object({ afterReads: Type.Integer({ minimum: 0, maximum: 1_000_000 }) }, { additionalProperties: false }),
  ],
  { description: "'now', 'never', 'step', {afterSeconds: N} or {afterReads: N}" },
);
export type Trigger = Static<typeof Trigger>;

const CommandBehaviour = Type.Object(
  {
    outcome: Type.Enum(['Completed', 'Failed']),
    /** The command's error when it fails. */
    error: Type.Optional(Type.String({ maxLength: 4096 })),
    /** RunScript on a simulated machine: the exit code in its result (the command still completes). */
    exitCode: Type.Optional(Type.Integer({ minimum: -2147483648, maximum: 2147483647 })),
  },
  { additionalProperties: false },
);

export const RuleMatch = Type.Object(
  {
    tenantId: Type.Optional(Guid),
    machineId: Type.Optional(Type.String({ pattern: MachineIdPattern })),
    actionType: Type.Optional(Type.Enum(ACTION_TYPES)),
  },
  { additionalProperties: false },
);

/**
 * A lifecycle rule: what the machine does with the actions it matches. Rules are tried in order
 * and the first that matches an action decides it, when the action is created.
 */
export const Rule = Type.Object(
  {
    id: Type.Optional(Name),
    match: Type.Optional(RuleMatch),
    /** Only the next N matching actions; absent: every one. */
    times: Type.Optional(Type.Integer({ minimum: 1 })),
    /** Pending -> InProgress. Default 'now'. */
    start: Type.Optional(Trigger),
    /** InProgress -> the outcome (from creation when start is 'never'). Default: the machine's simulated duration. */
    finish: Type.Optional(Trigger),
    outcome: Type.Optional(Type.Enum(['Succeeded', 'Failed', 'TimeOut'])),
    /** With outcome Failed (default E_FAIL, -2147467259). */
    errorHResult: Type.Optional(Type.Integer({ minimum: -2147483648, maximum: 4294967295 })),
    troubleshootInfo: Type.Optional(Type.String({ maxLength: 4096 })),
    /**
     * What the machine reports finding, as the simulated executor's `detail` (docs/agents.md): a
     * RunAntiVirusScan with `findings` makes the server raise an alert.
     */
    detail: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    /** Live response, per command type: a Failed command stops the ones after it and fails the action. */
    commands: Type.Optional(
      Type.Object(Object.fromEntries(COMMAND_TYPES.map((t) => [t, Type.Optional(CommandBehaviour)])), { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);
export type Rule = Static<typeof Rule>;

export const FAULT_KINDS = ['error', 'latency', 'throttle', 'outage'] as const;

/**
 * A fault: what happens to requests matching `match` before their route runs. `error` answers
 * with the status and code given; `latency` delays the request; `throttle` answers 429 with a
 * Retry-After; `outage` makes the token endpoints answer 503 (an OAuth error body).
 */
export const Fault = Type.Object(
  {
    id: Type.Optional(Name),
    kind: Type.Enum(FAULT_KINDS),
    match: Type.Optional(
      Type.Object(
        {
          method: Type.Optional(Type.Enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])),
          /** `/api/machines/*\/isolate`: `*` is one path segment (or part of one), `**` any number. Case-insensitive. */
          path: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Share of matching requests affected, drawn from the seeded stream (default 1). */
    rate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    /** Only the next N injections; absent: no end. */
    times: Type.Optional(Type.Integer({ minimum: 1 })),
    /** error / outage: the HTTP status (error default 500, outage 503). */
    status: Type.Optional(Type.Integer({ minimum: 400, maximum: 599 })),
    /** error: the envelope's code (default by status, e.g. InternalServerError). */
    code: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    message: Type.Optional(Type.String({ maxLength: 1024 })),
    /** latency: a delay drawn evenly from [minMs, maxMs]. */
    minMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
    maxMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
    /** throttle: the Retry-After in seconds (default 60). */
    retryAfterSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
  },
  { additionalProperties: false },
);
export type Fault = Static<typeof Fault>;

export const DUPLICATE_POLICIES = ['reject', 'returnExisting'] as const;
export type DuplicatePolicy = (typeof DUPLICATE_POLICIES)[number];

export const ClockSettings = Type.Object(
  {
    mode: Type.Enum(['real', 'manual']),
    /** Where the clock starts (and goes back to on a reset); default: when the server started. */
    start: Type.Optional(IsoTime),
  },
  { additionalProperties: false },
);

export const Seed = Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Integer()]);

/** The fixtures file's `emulator` section (docs/fixtures.md). */
export const EmulatorFixtures = Type.Object(
  {
    control: Type.Optional(
      Type.Object(
        {
          /** Turns the control API on, as --control does. */
          enabled: Type.Optional(Type.Boolean()),
          /** Requests the journal keeps (a ring). */
          journalSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    seed: Type.Optional(Seed),
    clock: Type.Optional(ClockSettings),
    duplicatePolicy: Type.Optional(Type.Enum(DUPLICATE_POLICIES)),
    /** What a fixture machine without `agent` gets (default simulated). */
    defaultAgent: Type.Optional(Type.Enum(['simulated', 'none'])),
    /** How simulated machines behave when no rule matches, per action type (docs/agents.md's format). */
    simulation: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    rules: Type.Optional(Type.Array(Rule, { maxItems: 1000 })),
    faults: Type.Optional(Type.Array(Fault, { maxItems: 1000 })),
  },
  { additionalProperties: false },
);
export type EmulatorFixtures = Static<typeof EmulatorFixtures>;
