/**
 * The entities as they travel (contract §3, §9): camelCase, times as ISO 8601 UTC strings with
 * seven fractional digits, unset fields as null. These are the wire types, not the server's
 * stored ones (src/domain/model.ts); test/unit/client-types.test.ts checks that the server's
 * serializers produce exactly these shapes.
 */
import type { ACTION_STATUSES, ACTION_TYPES, ALERT_SEVERITIES, ALERT_STATUSES, COMMAND_TYPES, INVESTIGATION_STATES } from '../domain/model.js';

export type ActionType = (typeof ACTION_TYPES)[number];
export type ActionStatus = (typeof ACTION_STATUSES)[number];
export type CommandType = (typeof COMMAND_TYPES)[number];
export type CommandStatus = 'Created' | 'Completed' | 'Failed';
export type IsolationType = 'Full' | 'Selective' | 'UnManagedDevice';
export type ScanType = 'Quick' | 'Full';
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];
export type AlertStatus = (typeof ALERT_STATUSES)[number];
export type InvestigationState = (typeof INVESTIGATION_STATES)[number];
export type HealthStatus =
  | 'Active'
  | 'Inactive'
  | 'ImpairedCommunication'
  | 'NoSensorData'
  | 'NoSensorDataImpairedCommunication'
  | 'Unknown';

/** `2025-05-01T10:00:00.1230000Z` */
export type WireTime = string;

export interface CommandParam {
  key: string;
  value: string;
}

/** A live-response command as a request sends it (contract §2: lower-case keys). */
export interface LiveResponseCommandRequest {
  type: CommandType;
  params: CommandParam[];
}

/** A live-response command of an action, with its progress. */
export interface LiveResponseCommand {
  index: number;
  startTime: WireTime | null;
  endTime: WireTime | null;
  commandStatus: CommandStatus;
  errors: string[];
  command: LiveResponseCommandRequest;
}

export interface RelatedFileInfo {
  fileIdentifier: string;
  fileIdentifierType: 'Sha1';
}

/** Contract §3, in the order real responses have. */
export interface MachineAction {
  id: string;
  type: ActionType;
  title: string | null;
  requestor: string;
  requestorComment: string | null;
  status: ActionStatus;
  machineId: string;
  computerDnsName: string | null;
  creationDateTimeUtc: WireTime;
  lastUpdateDateTimeUtc: WireTime;
  cancellationRequestor: string | null;
  cancellationComment: string | null;
  cancellationDateTimeUtc: WireTime | null;
  errorHResult: number;
  scope: string | null;
  externalId: string | null;
  requestSource: string;
  relatedFileInfo: RelatedFileInfo | null;
  commands: LiveResponseCommand[];
  troubleshootInfo: string | null;
}

export interface IpAddress {
  ipAddress: string;
  macAddress: string | null;
  type: string | null;
  operationalStatus: string | null;
}

/** Contract §9. */
export interface Machine {
  id: string;
  computerDnsName: string;
  firstSeen: WireTime | null;
  lastSeen: WireTime | null;
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
}

/** Contract §10: what startInvestigation answers and the investigations collection holds. */
export interface Investigation {
  /** A number as a string (`"63017"`), as MDE's are. */
  id: string;
  startTime: WireTime;
  endTime: WireTime | null;
  state: InvestigationState;
  cancelledBy: string | null;
  statusDetails: string | null;
  machineId: string;
  computerDnsName: string | null;
  triggeringAlertId: string | null;
}

export interface AlertEvidence {
  entityType: 'File' | 'Process';
  evidenceCreationTime: WireTime;
  sha1: string | null;
  sha256: string | null;
  fileName: string | null;
  filePath: string | null;
  processId: number | null;
  processCommandLine: string | null;
  processCreationTime: WireTime | null;
  parentProcessId: number | null;
  parentProcessCreationTime: WireTime | null;
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
  detectionStatus: 'Detected' | 'Blocked' | null;
}

export interface AlertComment {
  comment: string;
  createdBy: string;
  createdTime: WireTime;
}

/** Contract §10, in the order of MDE's docs. A list carries `evidence` only with `expand: 'evidence'`. */
export interface Alert {
  id: string;
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
  alertCreationTime: WireTime;
  firstEventTime: WireTime | null;
  lastEventTime: WireTime | null;
  lastUpdateTime: WireTime;
  resolvedTime: WireTime | null;
  machineId: string;
  computerDnsName: string | null;
  rbacGroupName: string | null;
  aadTenantId: string;
  threatName: string | null;
  mitreTechniques: string[];
  relatedUser: { userName: string; domainName: string } | null;
  comments: AlertComment[];
  evidence: AlertEvidence[];
}

/** Contract §2 "Library files": a file live-response commands use (PutFile, RunScript). */
export interface LibraryFile {
  fileName: string;
  sha256: string;
  description: string | null;
  creationTime: WireTime;
  lastUpdatedTime: WireTime;
  createdBy: string;
  hasParameters: boolean;
  parametersDescription: string | null;
}

/** What `uploadLibraryFile` sends, as the form fields of POST /api/libraryfiles (contract §2 row 18). */
export interface LibraryFileUpload {
  /** The name the library keeps it under (the `File` part's file name). */
  fileName: string;
  /** The file's bytes (at most 20 MB); a string is sent as UTF-8. */
  content: Blob | ArrayBuffer | Uint8Array | string;
  description?: string;
  parametersDescription?: string;
  hasParameters?: boolean;
  /** Replace a file of the same name (without it, an existing name is a 400). */
  overrideIfExists?: boolean;
}

/** A download link as served (contract §2 "Download links"): the URL is `value`. */
export interface DownloadLink {
  '@odata.context': string;
  value: string;
}

/** A single entity as served: its `@odata.context` first, then the fields. */
export type Entity<T> = T & { '@odata.context': string };

/** One page of a collection as served (contract §5). */
export interface Collection<T> {
  '@odata.context': string;
  /** Present when the query asked for `$count=true`: all matches, not the page. */
  '@odata.count'?: number;
  value: T[];
  /** Present when rows remain and the query had no `$top`. */
  '@odata.nextLink'?: string;
}

/** The OData options a collection takes (contract §5), passed through as given. */
export interface ListQuery {
  /** e.g. `status eq 'Pending' and type in ('Isolate','Unisolate')`; see `odataString` for quoting. */
  filter?: string;
  /** e.g. `creationDateTimeUtc desc`. */
  orderby?: string;
  top?: number;
  skip?: number;
  count?: boolean;
  /** `$expand`, where a set has something to expand (alerts: `evidence`). */
  expand?: string;
}

/** The request bodies of contract §2, with the contract's PascalCase names. */
export interface CommentBody {
  Comment: string;
}
export interface IsolateBody extends CommentBody {
  IsolationType?: IsolationType;
}
export interface ScanBody extends CommentBody {
  ScanType: ScanType;
}
export interface StopAndQuarantineBody extends CommentBody {
  Sha1: string;
}
export interface LiveResponseBody extends CommentBody {
  Commands: LiveResponseCommandRequest[];
}
