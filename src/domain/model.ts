/** The entities of the contract (§3, §9) as Countermand stores them. Times are epoch ms. */

export const ACTION_TYPES = [
  'RunAntiVirusScan',
  'Offboard',
  'LiveResponse',
  'CollectInvestigationPackage',
  'Isolate',
  'Unisolate',
  'StopAndQuarantineFile',
  'RestrictCodeExecution',
  'UnrestrictCodeExecution',
] as const;
export type ActionType = (typeof ACTION_TYPES)[number];

export const ACTION_STATUSES = ['Pending', 'InProgress', 'Succeeded', 'Failed', 'TimeOut', 'Cancelled'] as const;
export type ActionStatus = (typeof ACTION_STATUSES)[number];

export const COMMAND_TYPES = ['PutFile', 'RunScript', 'GetFile'] as const;
export type CommandType = (typeof COMMAND_TYPES)[number];
export type CommandStatus = 'Created' | 'Completed' | 'Failed';

export interface CommandParam {
  key: string;
  value: string;
}

export interface LiveResponseCommand {
  index: number;
  startTime: number | null;
  endTime: number | null;
  commandStatus: CommandStatus;
  errors: string[];
  command: { type: CommandType; params: CommandParam[] };
}

export interface RelatedFileInfo {
  fileIdentifier: string;
  fileIdentifierType: 'Sha1';
}

export interface MachineAction {
  id: string;
  tenantId: string;
  type: ActionType;
  title: string | null;
  requestor: string;
  /** The caller's stable id (application id or user object id); not on the wire. */
  requestorId: string;
  requestorComment: string | null;
  status: ActionStatus;
  machineId: string;
  computerDnsName: string | null;
  creationDateTimeUtc: number;
  lastUpdateDateTimeUtc: number;
  cancellationRequestor: string | null;
  cancellationComment: string | null;
  cancellationDateTimeUtc: number | null;
  errorHResult: number;
  scope: string | null;
  externalId: string | null;
  requestSource: string;
  relatedFileInfo: RelatedFileInfo | null;
  commands: LiveResponseCommand[];
  troubleshootInfo: string | null;
  /** At most one non-final action per machine and conflict key (contract §4). */
  conflictKey: string;
  /** When the machine acknowledged the start (InProgress); drives the execution deadline. */
  startedAt: number | null;
}

export const HEALTH_STATUSES = [
  'Active',
  'Inactive',
  'ImpairedCommunication',
  'NoSensorData',
  'NoSensorDataImpairedCommunication',
  'Unknown',
] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

/**
 * What an offboarded machine reads as, in MDE's own values (so clients' enums hold): no longer
 * reporting, and no longer onboarded (MDE's onboardingStatus values are Onboarded,
 * CanBeOnboarded, Unsupported, InsufficientInfo). What an onboarded one reads as after enrolling.
 */
export const OFFBOARDED = { healthStatus: 'Inactive', onboardingStatus: 'CanBeOnboarded' } as const satisfies Partial<Machine>;
export const ONBOARDED = { healthStatus: 'Active', onboardingStatus: 'Onboarded' } as const satisfies Partial<Machine>;

export interface IpAddress {
  ipAddress: string;
  macAddress: string | null;
  type: string | null;
  operationalStatus: string | null;
}

export interface Machine {
  tenantId: string;
  id: string;
  computerDnsName: string;
  firstSeen: number | null;
  lastSeen: number | null;
  osPlatform: string | null;
  osVersion: string | null;
  osProcessor: string | null;
  version: string | null;
  osBuild: number | null;
  lastIpAddress: string | null;
  lastExternalIpAddress: string | null;
  agentVersion: string | null;
  osArchitecture: string | null;
  healthStatus: HealthStatus;
  defenderAvStatus: string | null;
  onboardingStatus: string | null;
  deviceValue: string | null;
  rbacGroupId: number | null;
  rbacGroupName: string | null;
  riskScore: string | null;
  exposureLevel: string | null;
  isAadJoined: boolean;
  aadDeviceId: string | null;
  machineTags: string[];
  ipAddresses: IpAddress[];
  /**
   * When a Succeeded Offboard ended the machine; null while it is onboarded. Not on the wire:
   * an offboarded machine reads as healthStatus Inactive, onboardingStatus CanBeOnboarded.
   */
  offboardedAt: number | null;
}

export interface Tenant {
  id: string;
  name: string;
}

/** One entry of an action's append-only history. */
export interface ActionEvent {
  seq: number;
  actionId: string;
  at: number;
  actor: string;
  kind: ActionEventKind;
  fromStatus: ActionStatus | null;
  toStatus: ActionStatus | null;
  comment: string | null;
  detail: Record<string, unknown> | null;
}

/**
 * created: the action was accepted (null -> Pending).
 * transition: a status change.
 * progress: a live-response command moved, no status change.
 * late-report: the machine reported after the action was final; kept, status unchanged.
 */
export type ActionEventKind = 'created' | 'transition' | 'progress' | 'late-report';

/** An application (client) registered in a tenant; its secret is stored only as a hash. */
export interface Application {
  tenantId: string;
  clientId: string;
  /** The service principal's object id: the `oid` of its tokens. */
  objectId: string;
  displayName: string;
  secretHash: string;
  roles: string[];
  createdAt: number;
}

/** A user for delegated (password-grant) tokens. */
export interface User {
  tenantId: string;
  objectId: string;
  upn: string;
  passwordHash: string;
  /** Delegated scopes put in the token's `scp`. */
  scopes: string[];
  rolePermissions: string[];
  /** rbacGroupIds the user may see; null means every device group. */
  deviceGroups: number[] | null;
  createdAt: number;
}

/** A token-signing key. Retired keys stay published until the tokens they signed expire. */
export interface SigningKey {
  kid: string;
  alg: 'RS256';
  privatePem: string;
  publicJwk: Record<string, unknown>;
  createdAt: number;
  /** When it stopped signing; null for the active key. */
  retiredAt: number | null;
}

/**
 * A tenant's enrollment secret. Agents present `<id>.<secret>`; the id finds the record, the
 * secret is checked against its hash.
 */
export interface EnrollmentSecret {
  id: string;
  tenantId: string;
  /** What it is for (e.g. 'demo-fleet', 'default'); one secret per label. */
  label: string;
  secretHash: string;
  /** The device group machines enrolled with it join. */
  rbacGroupId: number | null;
  rbacGroupName: string | null;
  createdAt: number;
}

/** The credential an enrolled agent uses: good for its one machine, and for nothing on /api. */
export interface AgentCredential {
  /** SHA-256 of the token (the token itself is 256 random bits, so a fast hash suffices). */
  tokenHash: string;
  tenantId: string;
  machineId: string;
  createdAt: number;
  revokedAt: number | null;
}

/**
 * An administrator's one-time permission for an agent to re-attach to one existing machine
 * (`countermand enrollment reenroll`). Only the SHA-256 of the grant is kept.
 */
export interface ReenrollGrant {
  tokenHash: string;
  tenantId: string;
  machineId: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
}

/** Contract §10: the states of an automated investigation, as MDE names them. */
export const INVESTIGATION_STATES = [
  'Unknown',
  'Terminated',
  'SuccessfullyRemediated',
  'Benign',
  'Failed',
  'PartiallyRemediated',
  'Running',
  'PendingApproval',
  'PendingResource',
  'PartiallyInvestigated',
  'TerminatedByUser',
  'TerminatedBySystem',
  'Queued',
  'InnerFailure',
  'PreexistingAlert',
  'UnsupportedOs',
  'UnsupportedAlertType',
  'SuppressedAlert',
] as const;
export type InvestigationState = (typeof INVESTIGATION_STATES)[number];

/**
 * An automated investigation (contract §10). Countermand's investigation collects an
 * investigation package on the machine: it owns that CollectInvestigationPackage action and
 * its state follows the action's (docs/api-decisions.md).
 */
export interface Investigation {
  /** A number, shown as a string (`"63017"`), as MDE's are. */
  id: string;
  tenantId: string;
  /** When it was started (created). */
  startTime: number;
  endTime: number | null;
  state: InvestigationState;
  cancelledBy: string | null;
  statusDetails: string | null;
  machineId: string;
  computerDnsName: string | null;
  triggeringAlertId: string | null;
  /** The CollectInvestigationPackage action it runs; not on the wire. */
  actionId: string;
}

export const ALERT_SEVERITIES = ['UnSpecified', 'Informational', 'Low', 'Medium', 'High'] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];
export const ALERT_STATUSES = ['Unknown', 'New', 'InProgress', 'Resolved'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

/** One piece of an alert's evidence, with MDE's fields (unset ones null). */
export interface AlertEvidence {
  entityType: 'File' | 'Process';
  evidenceCreationTime: number;
  sha1: string | null;
  sha256: string | null;
  fileName: string | null;
  /** The folder, as MDE gives it (`fileName` is the name in it). */
  filePath: string | null;
  processId: number | null;
  processCommandLine: string | null;
  processCreationTime: number | null;
  parentProcessId: number | null;
  parentProcessCreationTime: number | null;
  parentProcessFileName: string | null;
  parentProcessFilePath: string | null;
  ipAddress: string | null;
  url: string | null;
  registryKey: string | null;
  registryHive: string | null;
  registryValueType: string | null;
  registryValue: string | null;
  accountName: string | null;
  domainName: string | null;
  userSid: string | null;
  aadUserId: string | null;
  userPrincipalName: string | null;
  /** `Detected` (found, left in place) or `Blocked` (stopped and quarantined). */
  detectionStatus: 'Detected' | 'Blocked' | null;
}

export interface AlertComment {
  comment: string;
  createdBy: string;
  createdTime: number;
}

/**
 * An alert (contract §10). Countermand raises alerts only from what its agents report finding
 * (docs/api-decisions.md): each one is linked to its machine and to the action that found it.
 */
export interface Alert {
  /** `da<ticks>_<n>`, shaped like MDE's (docs/api-decisions.md). */
  id: string;
  tenantId: string;
  incidentId: number | null;
  investigationId: number | null;
  assignedTo: string | null;
  severity: AlertSeverity;
  status: AlertStatus;
  classification: string | null;
  determination: string | null;
  investigationState: InvestigationState | null;
  detectionSource: string;
  detectorId: string;
  category: string;
  threatFamilyName: string | null;
  title: string;
  description: string;
  alertCreationTime: number;
  firstEventTime: number | null;
  lastEventTime: number | null;
  lastUpdateTime: number;
  resolvedTime: number | null;
  machineId: string;
  computerDnsName: string | null;
  rbacGroupName: string | null;
  threatName: string | null;
  mitreTechniques: string[];
  relatedUser: { userName: string; domainName: string } | null;
  comments: AlertComment[];
  evidence: AlertEvidence[];
  /** The action whose report raised it; not on the wire. */
  actionId: string;
}

/** A file in a tenant's live-response library (contract §2 rows 17-19). */
export interface LibraryFile {
  tenantId: string;
  fileName: string;
  /** SHA-256 of the content, lower-case hex: also the key of its blob. */
  sha256: string;
  size: number;
  description: string | null;
  creationTime: number;
  lastUpdatedTime: number;
  /** Who uploaded it first: the application's display name or the user's UPN, like `requestor`. */
  createdBy: string;
  hasParameters: boolean;
  parametersDescription: string | null;
}

/**
 * What a machine uploaded for one of its actions: a live-response command's result (slot
 * `command/<index>`) or an investigation package (slot `package`). The bytes are a blob.
 */
export interface ActionArtifact {
  tenantId: string;
  actionId: string;
  slot: ArtifactSlot;
  sha256: string;
  size: number;
  /** The name a download offers (Content-Disposition). */
  fileName: string;
  contentType: string;
  createdAt: number;
  /** The action's creation time: retention counts from it. */
  actionCreatedAt: number;
}

export type ArtifactSlot = 'package' | `command/${number}`;
export const PACKAGE_SLOT: ArtifactSlot = 'package';
export const commandSlot = (index: number): ArtifactSlot => `command/${index}`;
