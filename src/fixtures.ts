import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Type, type Static, type TSchema } from 'typebox';
import { firstError } from './validation.js';
import { EmulatorFixtures, Guid, IsoTime } from './control/schemas.js';
import { ACTION_STATUSES, ACTION_TYPES, COMMAND_TYPES, HEALTH_STATUSES, type Machine } from './domain/model.js';
import { KNOWN_APP_ROLES, KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS } from './domain/permissions.js';

/**
 * The fixtures file: tenants with their machines, applications and users, loaded at start
 * (upserted, so a restart with the same file changes nothing); with the emulator on, also
 * actions with their history and the `emulator` section (rules, faults, seed, clock), and it is
 * then what a reset goes back to. Format: docs/fixtures.md.
 */


/** A field an export may write as null (the machine has no value), which is not the default. */
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const FixtureMachine = Type.Object(
  {
    id: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{40}$' })),
    computerDnsName: Type.String({ minLength: 1, maxLength: 255 }),
    firstSeen: Type.Optional(Nullable(IsoTime)),
    lastSeen: Type.Optional(Nullable(IsoTime)),
    osPlatform: Type.Optional(Nullable(Type.String())),
    osVersion: Type.Optional(Nullable(Type.String())),
    osProcessor: Type.Optional(Nullable(Type.String())),
    version: Type.Optional(Nullable(Type.String())),
    osBuild: Type.Optional(Nullable(Type.Integer())),
    lastIpAddress: Type.Optional(Nullable(Type.String())),
    lastExternalIpAddress: Type.Optional(Nullable(Type.String())),
    agentVersion: Type.Optional(Nullable(Type.String())),
    osArchitecture: Type.Optional(Nullable(Type.String())),
    healthStatus: Type.Optional(Type.Enum(HEALTH_STATUSES)),
    defenderAvStatus: Type.Optional(Nullable(Type.String())),
    onboardingStatus: Type.Optional(Nullable(Type.String())),
    deviceValue: Type.Optional(Nullable(Type.String())),
    rbacGroupId: Type.Optional(Nullable(Type.Integer())),
    rbacGroupName: Type.Optional(Nullable(Type.String())),
    riskScore: Type.Optional(Nullable(Type.String())),
    exposureLevel: Type.Optional(Nullable(Type.String())),
    isAadJoined: Type.Optional(Type.Boolean()),
    aadDeviceId: Type.Optional(Nullable(Guid)),
    machineTags: Type.Optional(Type.Array(Type.String())),
    ipAddresses: Type.Optional(
      Type.Array(
        Type.Object({
          ipAddress: Type.String(),
          macAddress: Type.Optional(Type.Union([Type.String(), Type.Null()])),
          type: Type.Optional(Type.Union([Type.String(), Type.Null()])),
          operationalStatus: Type.Optional(Type.Union([Type.String(), Type.Null()])),
        }),
      ),
    ),
    /** Emulator: served by an in-process simulated agent, or by none (docs/emulator.md). */
    agent: Type.Optional(Type.Enum(['simulated', 'none'])),
    /** When a Succeeded Offboard ended it (an export keeps it). */
    offboardedAt: Type.Optional(IsoTime),
  },
  { additionalProperties: false },
);
export type FixtureMachine = Static<typeof FixtureMachine>;
export const FixtureMachineSchema = FixtureMachine;

const WireTime = Type.Union([IsoTime, Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);

/** An action with its history, as an export writes it: the wire entity plus what only the store keeps. */
const FixtureAction = Type.Object(
  {
    id: Guid,
    type: Type.Enum(ACTION_TYPES),
    title: Type.Optional(NullableString),
    requestor: Type.String(),
    requestorId: Type.Optional(Type.String()),
    requestorComment: Type.Optional(NullableString),
    status: Type.Enum(ACTION_STATUSES),
    machineId: Type.String({ pattern: '^[0-9a-fA-F]{40}$' }),
    computerDnsName: Type.Optional(NullableString),
    creationDateTimeUtc: IsoTime,
    lastUpdateDateTimeUtc: IsoTime,
    cancellationRequestor: Type.Optional(NullableString),
    cancellationComment: Type.Optional(NullableString),
    cancellationDateTimeUtc: Type.Optional(WireTime),
    errorHResult: Type.Optional(Type.Integer()),
    scope: Type.Optional(NullableString),
    externalId: Type.Optional(NullableString),
    requestSource: Type.Optional(Type.String()),
    relatedFileInfo: Type.Optional(
      Type.Union([Type.Object({ fileIdentifier: Type.String(), fileIdentifierType: Type.Literal('Sha1') }), Type.Null()]),
    ),
    commands: Type.Optional(
      Type.Array(
        Type.Object({
          index: Type.Integer({ minimum: 0 }),
          startTime: WireTime,
          endTime: WireTime,
          commandStatus: Type.Enum(['Created', 'Completed', 'Failed']),
          errors: Type.Array(Type.String()),
          command: Type.Object({
            type: Type.Enum(COMMAND_TYPES),
            params: Type.Array(Type.Object({ key: Type.String(), value: Type.String() })),
          }),
        }),
      ),
    ),
    troubleshootInfo: Type.Optional(NullableString),
    /** The conflict group it holds while not final (default: its type's). */
    conflictKey: Type.Optional(Type.String({ minLength: 1 })),
    /** When the machine started it (drives the execution deadline). */
    startedDateTimeUtc: Type.Optional(WireTime),
    events: Type.Optional(
      Type.Array(
        Type.Object(
          {
            at: IsoTime,
            actor: Type.String(),
            kind: Type.Enum(['created', 'transition', 'progress', 'late-report']),
            fromStatus: Type.Union([Type.Enum(ACTION_STATUSES), Type.Null()]),
            toStatus: Type.Union([Type.Enum(ACTION_STATUSES), Type.Null()]),
            comment: NullableString,
            detail: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
            reportId: Type.Optional(NullableString),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false },
);
export type FixtureAction = Static<typeof FixtureAction>;

const FixtureApplication = Type.Object(
  {
    clientId: Guid,
    /** Exactly one of clientSecret and clientSecretHash (what an export writes). */
    clientSecret: Type.Optional(Type.String({ minLength: 16 })),
    clientSecretHash: Type.Optional(Type.String({ pattern: '^scrypt\\$' })),
    /** The `oid` of its tokens (default: derived from the tenant and client id). */
    objectId: Type.Optional(Guid),
    displayName: Type.String({ minLength: 1 }),
    roles: Type.Array(Type.Enum(KNOWN_APP_ROLES)),
  },
  { additionalProperties: false },
);

const FixtureUser = Type.Object(
  {
    upn: Type.String({ minLength: 3 }),
    /** Exactly one of password and passwordHash (what an export writes). */
    password: Type.Optional(Type.String({ minLength: 8 })),
    passwordHash: Type.Optional(Type.String({ pattern: '^scrypt\\$' })),
    objectId: Type.Optional(Guid),
    scopes: Type.Array(Type.Enum(KNOWN_DELEGATED_SCOPES)),
    rolePermissions: Type.Array(Type.Enum(ROLE_PERMISSIONS)),
    /** rbacGroupIds the user may see; omitted means all device groups. */
    deviceGroups: Type.Optional(Type.Array(Type.Integer())),
  },
  { additionalProperties: false },
);

const FixtureTenant = Type.Object(
  {
    id: Guid,
    name: Type.String({ minLength: 1 }),
    machines: Type.Optional(Type.Array(FixtureMachine)),
    applications: Type.Optional(Type.Array(FixtureApplication)),
    users: Type.Optional(Type.Array(FixtureUser)),
    /** Emulator only: actions with their history (what an export writes). */
    actions: Type.Optional(Type.Array(FixtureAction)),
  },
  { additionalProperties: false },
);
export type FixtureTenant = Static<typeof FixtureTenant>;

export const FixturesSchema = Type.Object(
  {
    tenants: Type.Array(FixtureTenant),
    /** Rules, faults, seed, clock and control settings (docs/fixtures.md, docs/emulator.md). */
    emulator: Type.Optional(EmulatorFixtures),
  },
  { additionalProperties: false },
);
export type Fixtures = Static<typeof FixturesSchema>;

export class FixturesError extends Error {
  override name = 'FixturesError';
}

export function parseFixtures(json: unknown, source: string): Fixtures {
  const invalid = firstError(FixturesSchema, json);
  if (invalid) throw new FixturesError(`${source}: ${invalid.path || '/'} ${invalid.message}`);
  const fixtures = json as Fixtures;
  const ids = new Set<string>();
  for (const tenant of fixtures.tenants) {
    if (ids.has(tenant.id.toLowerCase())) throw new FixturesError(`${source}: tenant ${tenant.id} appears twice`);
    ids.add(tenant.id.toLowerCase());
    for (const [i, app] of (tenant.applications ?? []).entries()) {
      if ((app.clientSecret === undefined) === (app.clientSecretHash === undefined)) {
        throw new FixturesError(`${source}: /tenants/${tenant.id}/applications/${i} needs exactly one of clientSecret and clientSecretHash`);
      }
    }
    for (const [i, user] of (tenant.users ?? []).entries()) {
      if ((user.password === undefined) === (user.passwordHash === undefined)) {
        throw new FixturesError(`${source}: /tenants/${tenant.id}/users/${i} needs exactly one of password and passwordHash`);
      }
    }
  }
  return fixtures;
}

export function readFixtures(path: string): Fixtures {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new FixturesError(`cannot read fixtures ${path}: ${(error as Error).message}`);
  }
  return parseFixtures(json, path);
}

/** A machine id for fixtures that give none: stable for the same tenant and DNS name. */
export function derivedMachineId(tenantId: string, computerDnsName: string): string {
  return createHash('sha1').update(`${tenantId.toLowerCase()}/${computerDnsName.toLowerCase()}`).digest('hex');
}

export function fixtureMachine(tenantId: string, m: Static<typeof FixtureMachine>, now: number): Machine {
  const time = (iso: string | null | undefined) => (iso === undefined ? now : iso === null ? null : Date.parse(iso));
  /** Absent: the default; null (an export's): null. */
  const or = <T,>(value: T | null | undefined, fallback: T | null): T | null => (value === undefined ? fallback : value);
  return {
    tenantId,
    id: (m.id ?? derivedMachineId(tenantId, m.computerDnsName)).toLowerCase(),
    computerDnsName: m.computerDnsName,
    firstSeen: time(m.firstSeen),
    lastSeen: time(m.lastSeen),
    osPlatform: or(m.osPlatform, 'Linux'),
    osVersion: or(m.osVersion, null),
    osProcessor: or(m.osProcessor, 'x64'),
    version: or(m.version, null),
    osBuild: or(m.osBuild, null),
    lastIpAddress: m.lastIpAddress === undefined ? (m.ipAddresses?.[0]?.ipAddress ?? null) : m.lastIpAddress,
    lastExternalIpAddress: or(m.lastExternalIpAddress, null),
    agentVersion: or(m.agentVersion, null),
    osArchitecture: or(m.osArchitecture, '64-bit'),
    healthStatus: m.healthStatus ?? 'Active',
    defenderAvStatus: or(m.defenderAvStatus, null),
    onboardingStatus: or(m.onboardingStatus, 'Onboarded'),
    deviceValue: or(m.deviceValue, 'Normal'),
    rbacGroupId: or(m.rbacGroupId, null),
    rbacGroupName: or(m.rbacGroupName, null),
    riskScore: or(m.riskScore, 'None'),
    exposureLevel: or(m.exposureLevel, 'None'),
    isAadJoined: m.isAadJoined ?? false,
    aadDeviceId: m.aadDeviceId?.toLowerCase() ?? null,
    machineTags: m.machineTags ?? [],
    ipAddresses: (m.ipAddresses ?? []).map((ip) => ({
      ipAddress: ip.ipAddress,
      macAddress: ip.macAddress ?? null,
      type: ip.type ?? null,
      operationalStatus: ip.operationalStatus ?? null,
    })),
    offboardedAt: m.offboardedAt ? Date.parse(m.offboardedAt) : null,
  };
}
