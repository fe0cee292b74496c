import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Type, type Static } from 'typebox';
import { firstError } from './validation.js';
import { HEALTH_STATUSES, type Machine } from './domain/model.js';
import { KNOWN_APP_ROLES, KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS } from './domain/permissions.js';

/**
 * The fixtures file: tenants with their machines, applications and users, loaded at start
 * (upserted, so a restart with the same file changes nothing). Format: docs/fixtures.md.
 */

const Guid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
const IsoTime = Type.String({ format: 'date-time' });

const FixtureMachine = Type.Object(
  {
    id: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{40}$' })),
    computerDnsName: Type.String({ minLength: 1, maxLength: 255 }),
    firstSeen: Type.Optional(IsoTime),
    lastSeen: Type.Optional(IsoTime),
    osPlatform: Type.Optional(Type.String()),
    osVersion: Type.Optional(Type.String()),
    osProcessor: Type.Optional(Type.String()),
    version: Type.Optional(Type.String()),
    osBuild: Type.Optional(Type.Integer()),
    lastIpAddress: Type.Optional(Type.String()),
    lastExternalIpAddress: Type.Optional(Type.String()),
    agentVersion: Type.Optional(Type.String()),
    osArchitecture: Type.Optional(Type.String()),
    healthStatus: Type.Optional(Type.Enum(HEALTH_STATUSES)),
    defenderAvStatus: Type.Optional(Type.String()),
    onboardingStatus: Type.Optional(Type.String()),
    deviceValue: Type.Optional(Type.String()),
    rbacGroupId: Type.Optional(Type.Integer()),
    rbacGroupName: Type.Optional(Type.String()),
    riskScore: Type.Optional(Type.String()),
    exposureLevel: Type.Optional(Type.String()),
    isAadJoined: Type.Optional(Type.Boolean()),
    aadDeviceId: Type.Optional(Guid),
    machineTags: Type.Optional(Type.Array(Type.String())),
    ipAddresses: Type.Optional(
      Type.Array(
        Type.Object({
          ipAddress: Type.String(),
          macAddress: Type.Optional(Type.String()),
          type: Type.Optional(Type.String()),
          operationalStatus: Type.Optional(Type.String()),
        }),
      ),
    ),
  },
  { additionalProperties: false },
);

const FixtureApplication = Type.Object(
  {
    clientId: Guid,
    clientSecret: Type.String({ minLength: 16 }),
    displayName: Type.String({ minLength: 1 }),
    roles: Type.Array(Type.Enum(KNOWN_APP_ROLES)),
  },
  { additionalProperties: false },
);

const FixtureUser = Type.Object(
  {
    upn: Type.String({ minLength: 3 }),
    password: Type.String({ minLength: 8 }),
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
  },
  { additionalProperties: false },
);

export const FixturesSchema = Type.Object(
  {
    tenants: Type.Array(FixtureTenant),
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
  const time = (iso: string | undefined) => (iso ? Date.parse(iso) : now);
  return {
    tenantId,
    id: (m.id ?? derivedMachineId(tenantId, m.computerDnsName)).toLowerCase(),
    computerDnsName: m.computerDnsName,
    firstSeen: time(m.firstSeen),
    lastSeen: time(m.lastSeen),
    osPlatform: m.osPlatform ?? 'Linux',
    osVersion: m.osVersion ?? null,
    osProcessor: m.osProcessor ?? 'x64',
    version: m.version ?? null,
    osBuild: m.osBuild ?? null,
    lastIpAddress: m.lastIpAddress ?? m.ipAddresses?.[0]?.ipAddress ?? null,
    lastExternalIpAddress: m.lastExternalIpAddress ?? null,
    agentVersion: m.agentVersion ?? null,
    osArchitecture: m.osArchitecture ?? '64-bit',
    healthStatus: m.healthStatus ?? 'Active',
    defenderAvStatus: m.defenderAvStatus ?? null,
    onboardingStatus: m.onboardingStatus ?? 'Onboarded',
    deviceValue: m.deviceValue ?? 'Normal',
    rbacGroupId: m.rbacGroupId ?? null,
    rbacGroupName: m.rbacGroupName ?? null,
    riskScore: m.riskScore ?? 'None',
    exposureLevel: m.exposureLevel ?? 'None',
    isAadJoined: m.isAadJoined ?? false,
    aadDeviceId: m.aadDeviceId?.toLowerCase() ?? null,
    machineTags: m.machineTags ?? [],
    ipAddresses: (m.ipAddresses ?? []).map((ip) => ({
      ipAddress: ip.ipAddress,
      macAddress: ip.macAddress ?? null,
      type: ip.type ?? null,
      operationalStatus: ip.operationalStatus ?? null,
    })),
    offboardedAt: null,
  };
}
