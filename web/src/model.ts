/**
 * The entities as the API sends them (contract §3, §9; docs/action-center.md for the history),
 * and the facts about action types the UI needs to offer them. The domain's own lists are
 * imported, not copied, so the UI offers exactly what the server accepts.
 */
import type { ActionStatus, ActionType, CommandType, HealthStatus } from '../../src/domain/model.js';
import { ACTION_PERMISSIONS, ANY_ACTION, READ_MACHINES, type EndpointPermissions } from '../../src/domain/permissions.js';
import type { Session } from './api.js';

export { ACTION_STATUSES, ACTION_TYPES, COMMAND_TYPES, HEALTH_STATUSES } from '../../src/domain/model.js';
export { isFinal } from '../../src/domain/lifecycle.js';
export type { ActionStatus, ActionType, CommandType, HealthStatus };

export interface CommandWire {
  index: number;
  startTime: string | null;
  endTime: string | null;
  commandStatus: 'Created' | 'Completed' | 'Failed';
  errors: string[];
  command: { type: CommandType; params: { key: string; value: string }[] };
}

export interface MachineAction {
  id: string;
  type: ActionType;
  title: string | null;
  requestor: string;
  requestorComment: string | null;
  status: ActionStatus;
  machineId: string;
  computerDnsName: string | null;
  creationDateTimeUtc: string;
  lastUpdateDateTimeUtc: string;
  cancellationRequestor: string | null;
  cancellationComment: string | null;
  cancellationDateTimeUtc: string | null;
  errorHResult: number;
  scope: string | null;
  externalId: string | null;
  requestSource: string;
  relatedFileInfo: { fileIdentifier: string; fileIdentifierType: string } | null;
  commands: CommandWire[];
  troubleshootInfo: string | null;
}

export interface Machine {
  id: string;
  computerDnsName: string;
  firstSeen: string | null;
  lastSeen: string | null;
  osPlatform: string | null;
  osVersion: string | null;
  version: string | null;
  lastIpAddress: string | null;
  agentVersion: string | null;
  healthStatus: HealthStatus;
  onboardingStatus: string | null;
  rbacGroupId: number | null;
  rbacGroupName: string | null;
  machineTags: string[];
  ipAddresses: { ipAddress: string; macAddress: string | null; type: string | null; operationalStatus: string | null }[];
}

/** One entry of GET /countermand/v1/machineactions/{id}/events. */
export interface HistoryEntry {
  sequence: number;
  kind: 'created' | 'transition' | 'progress' | 'late-report';
  dateTimeUtc: string;
  actor: string;
  fromStatus: ActionStatus | null;
  toStatus: ActionStatus | null;
  comment: string | null;
  detail: Record<string, unknown> | null;
}

/** The event stream's change kinds (docs/action-center.md). */
export type ChangeKind = 'created' | 'started' | 'progress' | 'ended' | 'cancelled' | 'late-report';

/** Each type's route under /api/machines/{id}/ (contract §2) and the body fields it needs. */
export const ACTION_ROUTES: Readonly<Record<ActionType, string>> = {
  Isolate: 'isolate',
  Unisolate: 'unisolate',
  RunAntiVirusScan: 'runAntiVirusScan',
  CollectInvestigationPackage: 'collectInvestigationPackage',
  RestrictCodeExecution: 'restrictCodeExecution',
  UnrestrictCodeExecution: 'unrestrictCodeExecution',
  Offboard: 'offboard',
  StopAndQuarantineFile: 'StopAndQuarantineFile',
  LiveResponse: 'runliveresponse',
};

/** The choices of contract §2's request bodies (src/domain/catalog.ts validates them). */
export const ISOLATION_TYPES = ['Full', 'Selective', 'UnManagedDevice'] as const;
export const SCAN_TYPES = ['Quick', 'Full'] as const;
/** The parameters each live-response command takes (docs/api-decisions.md). */
export const COMMAND_PARAMS: Readonly<Record<CommandType, { key: string; required: boolean }[]>> = {
  PutFile: [{ key: 'FileName', required: true }],
  RunScript: [
    { key: 'ScriptName', required: true },
    { key: 'Args', required: false },
  ],
  GetFile: [{ key: 'Path', required: true }],
};

/** Contract §2 rows 8 and 14: who may ask for the download links. */
const PACKAGE_LINK: EndpointPermissions = { app: READ_MACHINES.app, delegated: ['Machine.CollectForensics'], role: 'Alerts investigation' };
const RESULT_LINK: EndpointPermissions = { app: READ_MACHINES.app, delegated: ['Machine.LiveResponse'], role: 'Live response advanced' };

/** Whether the token carries one of the permissions (the server also checks roles and groups). */
function allows(session: Session, permissions: { app: readonly string[]; delegated: readonly string[] }): boolean {
  const accepted = session.kind === 'application' ? permissions.app : permissions.delegated;
  return accepted.some((p) => session.permissions.has(p));
}

export const can = {
  read: (s: Session) => allows(s, READ_MACHINES),
  create: (s: Session, type: ActionType) => allows(s, ACTION_PERMISSIONS[type]),
  cancel: (s: Session) => allows(s, { app: ANY_ACTION, delegated: ANY_ACTION }),
  packageLink: (s: Session) => allows(s, PACKAGE_LINK),
  resultLink: (s: Session) => allows(s, RESULT_LINK),
};

/**
 * The later of two versions of one action: a read that was answered after a live change arrived
 * must not roll the change back. Wire times have a fixed width, so they compare as text; on a tie
 * the incoming version wins (a late report changes no time).
 */
export function later(current: MachineAction | undefined, incoming: MachineAction): MachineAction {
  return current && current.id === incoming.id && current.lastUpdateDateTimeUtc > incoming.lastUpdateDateTimeUtc ? current : incoming;
}

/** Isolation and restriction are each one group of opposite actions (contract §4, §9). */
export const STATE_GROUPS = {
  isolation: { on: 'Isolate', off: 'Unisolate' },
  restriction: { on: 'RestrictCodeExecution', off: 'UnrestrictCodeExecution' },
} as const satisfies Record<string, { on: ActionType; off: ActionType }>;

export interface DerivedState {
  /** From the newest Succeeded action of the group; null when there has been none. */
  on: boolean | null;
  /** The scope of the Isolate that holds (Full, Selective...). */
  scope: string | null;
  /** An action of the group that has not finished yet. */
  pending: MachineAction | null;
}

/**
 * A machine's isolation or restriction as clients derive it (contract §9: MDE has no such
 * field): the newest Succeeded action of the group decides; a pending one is shown beside it.
 * `actions` are the machine's actions of the group, newest first.
 */
export function deriveState(actions: readonly MachineAction[], group: { on: ActionType; off: ActionType }): DerivedState {
  const succeeded = actions.find((a) => a.status === 'Succeeded');
  const pending = actions.find((a) => a.status === 'Pending' || a.status === 'InProgress') ?? null;
  return {
    on: succeeded ? succeeded.type === group.on : null,
    scope: succeeded?.type === group.on ? succeeded.scope : null,
    pending,
  };
}
