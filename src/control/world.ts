import { createHash } from 'node:crypto';
import { ACTION_CATALOG } from '../domain/catalog.js';
import { DirectoryError } from '../identity/directory.js';
import { KNOWN_APP_ROLES, KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS } from '../domain/permissions.js';
import type { Application, LiveResponseCommand, Machine, MachineAction, User } from '../domain/model.js';
import type { World } from '../domain/store.js';
import { toWireTime } from '../domain/time.js';
import { machineActionToWire, machineToWire } from '../api/wire.js';
import { fixtureMachine, type FixtureAction, type FixtureMachine, type Fixtures } from '../fixtures.js';
import { hashSecret } from '../identity/secrets.js';

/**
 * Fixtures to a world (what the store is replaced with on a reset or a load) and back (an
 * export). Secrets are hashed once: a hash made for a secret is remembered by the secret's
 * SHA-256, so loading or resetting to the same fixtures again costs no scrypt.
 */
export class SecretHashes {
  private readonly hashes = new Map<string, Promise<string>>();

  hash(secret: string): Promise<string> {
    const key = createHash('sha256').update(secret).digest('hex');
    let hash = this.hashes.get(key);
    if (!hash) {
      hash = hashSecret(secret);
      this.hashes.set(key, hash);
      hash.catch(() => this.hashes.delete(key));
    }
    return hash;
  }
}

/** A GUID derived from a name: an application's or user's objectId that stays the same across loads. */
export function derivedGuid(...parts: string[]): string {
  const b = createHash('sha1').update(parts.join('/').toLowerCase()).digest();
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const parseTime = (iso: string): number => Date.parse(iso);
const parseTimeOrNull = (iso: string | null | undefined): number | null => (iso ? Date.parse(iso) : null);

function checkAll(values: readonly string[], known: readonly string[], what: string): void {
  const unknown = values.filter((v) => !known.includes(v));
  if (unknown.length > 0) throw new DirectoryError(`unknown ${what}: ${unknown.join(', ')}`);
}

export interface WorldMachine {
  machine: Machine;
  agent: 'simulated' | 'none';
}

/** What a world is besides its store contents: which machines the emulator serves, and how. */
export interface LoadedWorld {
  world: World;
  machines: WorldMachine[];
}

/**
 * The world the fixtures describe, at clock time `now` (machines' default first/last seen).
 * Throws a DirectoryError or FixturesError-like message for what the schema cannot check.
 */
export async function fixturesToWorld(
  fixtures: Fixtures,
  options: { now: number; hashes: SecretHashes; defaultAgent: 'simulated' | 'none' },
): Promise<LoadedWorld> {
  const world: World = { tenants: [], applications: [], users: [], machines: [], actions: [] };
  const served: WorldMachine[] = [];
  const hashing: Promise<void>[] = [];
  for (const t of fixtures.tenants) {
    const tenantId = t.id.toLowerCase();
    world.tenants.push({ id: tenantId, name: t.name });
    const machines = new Map<string, Machine>();
    for (const m of t.machines ?? []) {
      const machine = fixtureMachine(tenantId, m, options.now);
      if (machines.has(machine.id)) throw new DirectoryError(`tenant ${tenantId}: machine ${machine.id} appears twice`);
      machines.set(machine.id, machine);
      world.machines.push(machine);
      served.push({ machine, agent: m.agent ?? options.defaultAgent });
    }
    for (const a of t.applications ?? []) {
      checkAll(a.roles, KNOWN_APP_ROLES, 'application roles');
      const clientId = a.clientId.toLowerCase();
      const app: Application = {
        tenantId,
        clientId,
        objectId: (a.objectId ?? derivedGuid('application', tenantId, clientId)).toLowerCase(),
        displayName: a.displayName,
        secretHash: a.clientSecretHash ?? '',
        roles: [...a.roles],
        createdAt: options.now,
      };
      if (a.clientSecret !== undefined) hashing.push(options.hashes.hash(a.clientSecret).then((h) => void (app.secretHash = h)));
      world.applications.push(app);
    }
    for (const u of t.users ?? []) {
      checkAll(u.scopes, KNOWN_DELEGATED_SCOPES, 'delegated scopes');
      checkAll(u.rolePermissions, ROLE_PERMISSIONS, 'role permissions');
      const user: User = {
        tenantId,
        objectId: (u.objectId ?? derivedGuid('user', tenantId, u.upn)).toLowerCase(),
        upn: u.upn,
        passwordHash: u.passwordHash ?? '',
        scopes: [...u.scopes],
        rolePermissions: [...u.rolePermissions],
        deviceGroups: u.deviceGroups === undefined ? null : [...u.deviceGroups],
        createdAt: options.now,
      };
      if (u.password !== undefined) hashing.push(options.hashes.hash(u.password).then((h) => void (user.passwordHash = h)));
      world.users.push(user);
    }
    for (const a of t.actions ?? []) {
      const machine = machines.get(a.machineId.toLowerCase());
      if (!machine) throw new DirectoryError(`tenant ${tenantId}: action ${a.id} names machine ${a.machineId}, which the tenant does not have`);
      world.actions.push(fixtureAction(tenantId, machine, a));
    }
  }
  // Scrypt runs in the thread pool: every new secret side by side.
  await Promise.all(hashing);
  world.actions.sort((x, y) => x.creationDateTimeUtc - y.creationDateTimeUtc);
  return { world, machines: served };
}

function fixtureAction(tenantId: string, machine: Machine, a: FixtureAction): World['actions'][number] {
  const commands: LiveResponseCommand[] = (a.commands ?? []).map((c) => ({
    index: c.index,
    startTime: parseTimeOrNull(c.startTime),
    endTime: parseTimeOrNull(c.endTime),
    commandStatus: c.commandStatus,
    errors: [...c.errors],
    command: { type: c.command.type, params: c.command.params.map((p) => ({ key: p.key, value: p.value })) },
  }));
  const relatedFileInfo = a.relatedFileInfo ?? null;
  return {
    id: a.id.toLowerCase(),
    tenantId,
    type: a.type,
    title: a.title ?? null,
    requestor: a.requestor,
    requestorId: a.requestorId ?? a.requestor,
    requestorComment: a.requestorComment ?? null,
    status: a.status,
    machineId: machine.id,
    computerDnsName: a.computerDnsName ?? machine.computerDnsName,
    creationDateTimeUtc: parseTime(a.creationDateTimeUtc),
    lastUpdateDateTimeUtc: parseTime(a.lastUpdateDateTimeUtc),
    cancellationRequestor: a.cancellationRequestor ?? null,
    cancellationComment: a.cancellationComment ?? null,
    cancellationDateTimeUtc: parseTimeOrNull(a.cancellationDateTimeUtc),
    errorHResult: a.errorHResult ?? 0,
    scope: a.scope ?? null,
    externalId: a.externalId ?? null,
    requestSource: a.requestSource ?? 'PublicApi',
    relatedFileInfo,
    commands,
    troubleshootInfo: a.troubleshootInfo ?? null,
    conflictKey:
      a.conflictKey ??
      ACTION_CATALOG[a.type].specifics({
        Comment: '',
        ScanType: 'Quick',
        Sha1: relatedFileInfo?.fileIdentifier ?? '0'.repeat(40),
        Commands: [],
      }).conflictKey,
    startedAt: parseTimeOrNull(a.startedDateTimeUtc),
    events: (a.events ?? []).map((e) => ({
      at: parseTime(e.at),
      actor: e.actor,
      kind: e.kind,
      fromStatus: e.fromStatus,
      toStatus: e.toStatus,
      comment: e.comment,
      detail: e.detail,
      reportId: e.reportId ?? null,
    })),
  };
}

/** A world as a fixtures document: loading it gives the same world (hashes instead of secrets). */
export function worldToFixtures(world: World, agents: ReadonlyMap<string, 'simulated' | 'none'>): Fixtures {
  return {
    tenants: world.tenants.map((t) => ({
      id: t.id,
      name: t.name,
      machines: world.machines.filter((m) => m.tenantId === t.id).map((m) => exportMachine(m, agents.get(machineKey(m.tenantId, m.id)))),
      applications: world.applications
        .filter((a) => a.tenantId === t.id)
        .map((a) => ({ clientId: a.clientId, clientSecretHash: a.secretHash, objectId: a.objectId, displayName: a.displayName, roles: a.roles })),
      users: world.users
        .filter((u) => u.tenantId === t.id)
        .map((u) => ({
          upn: u.upn,
          passwordHash: u.passwordHash,
          objectId: u.objectId,
          scopes: u.scopes as (typeof KNOWN_DELEGATED_SCOPES)[number][],
          rolePermissions: u.rolePermissions as (typeof ROLE_PERMISSIONS)[number][],
          ...(u.deviceGroups ? { deviceGroups: u.deviceGroups } : {}),
        })),
      actions: world.actions.filter((a) => a.tenantId === t.id).map(exportAction),
    })),
  } as Fixtures;
}

export const machineKey = (tenantId: string, machineId: string) => `${tenantId}/${machineId}`;

function exportMachine(m: Machine, agent: 'simulated' | 'none' | undefined): FixtureMachine {
  const { id, computerDnsName, ...wire } = machineToWire(m);
  // Every field, nulls too (a null is not the fixture format's default).
  const out: Record<string, unknown> = { id, computerDnsName, ...wire };
  if (m.offboardedAt !== null) out.offboardedAt = toWireTime(m.offboardedAt);
  if (agent) out.agent = agent;
  return out as FixtureMachine;
}

function exportAction(a: World['actions'][number]): FixtureAction {
  return {
    ...machineActionToWire(a as MachineAction),
    requestorId: a.requestorId,
    conflictKey: a.conflictKey,
    startedDateTimeUtc: toWireTime(a.startedAt),
    events: a.events.map((e) => ({ ...e, at: toWireTime(e.at) })),
  } as FixtureAction;
}
