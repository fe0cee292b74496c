import type {
  ActionEvent,
  AgentCredential,
  Alert,
  Investigation,
  Application,
  EnrollmentSecret,
  Machine,
  MachineAction,
  ReenrollGrant,
  SigningKey,
  User,
} from '../../domain/model.js';
import type { TransitionPatch } from '../../domain/store.js';

/**
 * Mapping between entities and rows, shared by every SQL backend. Columns are listed once, in
 * one order, so the INSERT statements and the parameter arrays cannot drift apart.
 */

export type Row = Record<string, unknown>;

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export const ACTION_COLUMNS = [
  'id',
  'tenant_id',
  'type',
  'title',
  'requestor',
  'requestor_id',
  'requestor_comment',
  'status',
  'machine_id',
  'computer_dns_name',
  'created_at',
  'updated_at',
  'cancellation_requestor',
  'cancellation_comment',
  'cancelled_at',
  'error_hresult',
  'scope',
  'external_id',
  'request_source',
  'related_file_info',
  'commands',
  'troubleshoot_info',
  'conflict_key',
  'started_at',
] as const;

export function actionParams(a: MachineAction): unknown[] {
  return [
    a.id,
    a.tenantId,
    a.type,
    a.title,
    a.requestor,
    a.requestorId,
    a.requestorComment,
    a.status,
    a.machineId,
    a.computerDnsName,
    a.creationDateTimeUtc,
    a.lastUpdateDateTimeUtc,
    a.cancellationRequestor,
    a.cancellationComment,
    a.cancellationDateTimeUtc,
    a.errorHResult,
    a.scope,
    a.externalId,
    a.requestSource,
    a.relatedFileInfo === null ? null : JSON.stringify(a.relatedFileInfo),
    JSON.stringify(a.commands),
    a.troubleshootInfo,
    a.conflictKey,
    a.startedAt,
  ];
}

export function rowToAction(r: Row): MachineAction {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    type: r.type as MachineAction['type'],
    title: strOrNull(r.title),
    requestor: String(r.requestor),
    requestorId: String(r.requestor_id),
    requestorComment: strOrNull(r.requestor_comment),
    status: r.status as MachineAction['status'],
    machineId: String(r.machine_id),
    computerDnsName: strOrNull(r.computer_dns_name),
    creationDateTimeUtc: num(r.created_at),
    lastUpdateDateTimeUtc: num(r.updated_at),
    cancellationRequestor: strOrNull(r.cancellation_requestor),
    cancellationComment: strOrNull(r.cancellation_comment),
    cancellationDateTimeUtc: numOrNull(r.cancelled_at),
    errorHResult: num(r.error_hresult),
    scope: strOrNull(r.scope),
    externalId: strOrNull(r.external_id),
    requestSource: String(r.request_source),
    relatedFileInfo: r.related_file_info === null ? null : JSON.parse(String(r.related_file_info)),
    commands: JSON.parse(String(r.commands)),
    troubleshootInfo: strOrNull(r.troubleshoot_info),
    conflictKey: String(r.conflict_key),
    startedAt: numOrNull(r.started_at),
  };
}

/** Column of each field a transition may patch. */
const PATCH_COLUMNS: Readonly<Record<keyof TransitionPatch, string>> = {
  cancellationRequestor: 'cancellation_requestor',
  cancellationComment: 'cancellation_comment',
  cancellationDateTimeUtc: 'cancelled_at',
  errorHResult: 'error_hresult',
  troubleshootInfo: 'troubleshoot_info',
  startedAt: 'started_at',
  commands: 'commands',
};

export function patchAssignments(patch: TransitionPatch): { sql: string[]; params: unknown[] } {
  const sql: string[] = [];
  const params: unknown[] = [];
  for (const [field, value] of Object.entries(patch) as [keyof TransitionPatch, unknown][]) {
    if (value === undefined) continue;
    sql.push(`${PATCH_COLUMNS[field]} = ?`);
    params.push(field === 'commands' ? JSON.stringify(value) : value);
  }
  return { sql, params };
}

export const MACHINE_COLUMNS = [
  'tenant_id',
  'id',
  'computer_dns_name',
  'first_seen',
  'last_seen',
  'os_platform',
  'os_version',
  'os_processor',
  'version',
  'os_build',
  'last_ip_address',
  'last_external_ip_address',
  'agent_version',
  'os_architecture',
  'health_status',
  'defender_av_status',
  'onboarding_status',
  'device_value',
  'rbac_group_id',
  'rbac_group_name',
  'risk_score',
  'exposure_level',
  'is_aad_joined',
  'aad_device_id',
  'machine_tags',
  'ip_addresses',
  'offboarded_at',
] as const;

export function machineParams(m: Machine): unknown[] {
  return [
    m.tenantId,
    m.id,
    m.computerDnsName,
    m.firstSeen,
    m.lastSeen,
    m.osPlatform,
    m.osVersion,
    m.osProcessor,
    m.version,
    m.osBuild,
    m.lastIpAddress,
    m.lastExternalIpAddress,
    m.agentVersion,
    m.osArchitecture,
    m.healthStatus,
    m.defenderAvStatus,
    m.onboardingStatus,
    m.deviceValue,
    m.rbacGroupId,
    m.rbacGroupName,
    m.riskScore,
    m.exposureLevel,
    m.isAadJoined ? 1 : 0,
    m.aadDeviceId,
    JSON.stringify(m.machineTags),
    JSON.stringify(m.ipAddresses),
    m.offboardedAt,
  ];
}

export function rowToMachine(r: Row): Machine {
  return {
    tenantId: String(r.tenant_id),
    id: String(r.id),
    computerDnsName: String(r.computer_dns_name),
    firstSeen: numOrNull(r.first_seen),
    lastSeen: numOrNull(r.last_seen),
    osPlatform: strOrNull(r.os_platform),
    osVersion: strOrNull(r.os_version),
    osProcessor: strOrNull(r.os_processor),
    version: strOrNull(r.version),
    osBuild: numOrNull(r.os_build),
    lastIpAddress: strOrNull(r.last_ip_address),
    lastExternalIpAddress: strOrNull(r.last_external_ip_address),
    agentVersion: strOrNull(r.agent_version),
    osArchitecture: strOrNull(r.os_architecture),
    healthStatus: r.health_status as Machine['healthStatus'],
    defenderAvStatus: strOrNull(r.defender_av_status),
    onboardingStatus: strOrNull(r.onboarding_status),
    deviceValue: strOrNull(r.device_value),
    rbacGroupId: numOrNull(r.rbac_group_id),
    rbacGroupName: strOrNull(r.rbac_group_name),
    riskScore: strOrNull(r.risk_score),
    exposureLevel: strOrNull(r.exposure_level),
    isAadJoined: Boolean(num(r.is_aad_joined)),
    aadDeviceId: strOrNull(r.aad_device_id),
    machineTags: JSON.parse(String(r.machine_tags)),
    ipAddresses: JSON.parse(String(r.ip_addresses)),
    offboardedAt: numOrNull(r.offboarded_at),
  };
}

export function rowToEvent(r: Row): ActionEvent {
  return {
    seq: num(r.seq),
    actionId: String(r.action_id),
    at: num(r.at),
    actor: String(r.actor),
    kind: r.kind as ActionEvent['kind'],
    fromStatus: strOrNull(r.from_status) as ActionEvent['fromStatus'],
    toStatus: strOrNull(r.to_status) as ActionEvent['toStatus'],
    comment: strOrNull(r.comment),
    detail: r.detail === null || r.detail === undefined ? null : JSON.parse(String(r.detail)),
  };
}

export const placeholders = (n: number): string => Array.from({ length: n }, () => '?').join(', ');

export const APPLICATION_COLUMNS = ['tenant_id', 'client_id', 'object_id', 'display_name', 'secret_hash', 'roles', 'created_at'] as const;

export function applicationParams(a: Application): unknown[] {
  return [a.tenantId, a.clientId, a.objectId, a.displayName, a.secretHash, JSON.stringify(a.roles), a.createdAt];
}

export function rowToApplication(r: Row): Application {
  return {
    tenantId: String(r.tenant_id),
    clientId: String(r.client_id),
    objectId: String(r.object_id),
    displayName: String(r.display_name),
    secretHash: String(r.secret_hash),
    roles: JSON.parse(String(r.roles)),
    createdAt: num(r.created_at),
  };
}

export const USER_COLUMNS = [
  'tenant_id',
  'object_id',
  'upn',
  'password_hash',
  'scopes',
  'role_permissions',
  'device_groups',
  'created_at',
] as const;

export function userParams(u: User): unknown[] {
  return [
    u.tenantId,
    u.objectId,
    u.upn,
    u.passwordHash,
    JSON.stringify(u.scopes),
    JSON.stringify(u.rolePermissions),
    u.deviceGroups === null ? null : JSON.stringify(u.deviceGroups),
    u.createdAt,
  ];
}

export function rowToUser(r: Row): User {
  return {
    tenantId: String(r.tenant_id),
    objectId: String(r.object_id),
    upn: String(r.upn),
    passwordHash: String(r.password_hash),
    scopes: JSON.parse(String(r.scopes)),
    rolePermissions: JSON.parse(String(r.role_permissions)),
    deviceGroups: r.device_groups === null || r.device_groups === undefined ? null : JSON.parse(String(r.device_groups)),
    createdAt: num(r.created_at),
  };
}

export const SIGNING_KEY_COLUMNS = ['kid', 'alg', 'private_pem', 'public_jwk', 'created_at', 'retired_at'] as const;

export function signingKeyParams(k: SigningKey): unknown[] {
  return [k.kid, k.alg, k.privatePem, JSON.stringify(k.publicJwk), k.createdAt, k.retiredAt];
}

export function rowToSigningKey(r: Row): SigningKey {
  return {
    kid: String(r.kid),
    alg: r.alg as SigningKey['alg'],
    privatePem: String(r.private_pem),
    publicJwk: JSON.parse(String(r.public_jwk)),
    createdAt: num(r.created_at),
    retiredAt: numOrNull(r.retired_at),
  };
}

export const ENROLLMENT_SECRET_COLUMNS = ['id', 'tenant_id', 'label', 'secret_hash', 'rbac_group_id', 'rbac_group_name', 'created_at'] as const;

export function enrollmentSecretParams(e: EnrollmentSecret): unknown[] {
  return [e.id, e.tenantId, e.label, e.secretHash, e.rbacGroupId, e.rbacGroupName, e.createdAt];
}

export function rowToEnrollmentSecret(r: Row): EnrollmentSecret {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    label: String(r.label),
    secretHash: String(r.secret_hash),
    rbacGroupId: numOrNull(r.rbac_group_id),
    rbacGroupName: strOrNull(r.rbac_group_name),
    createdAt: num(r.created_at),
  };
}

export const AGENT_CREDENTIAL_COLUMNS = ['token_hash', 'tenant_id', 'machine_id', 'created_at', 'revoked_at'] as const;

export function agentCredentialParams(c: AgentCredential): unknown[] {
  return [c.tokenHash, c.tenantId, c.machineId, c.createdAt, c.revokedAt];
}

export function rowToAgentCredential(r: Row): AgentCredential {
  return {
    tokenHash: String(r.token_hash),
    tenantId: String(r.tenant_id),
    machineId: String(r.machine_id),
    createdAt: num(r.created_at),
    revokedAt: numOrNull(r.revoked_at),
  };
}

export const REENROLL_GRANT_COLUMNS = ['token_hash', 'tenant_id', 'machine_id', 'created_at', 'expires_at', 'used_at'] as const;

export function reenrollGrantParams(g: ReenrollGrant): unknown[] {
  return [g.tokenHash, g.tenantId, g.machineId, g.createdAt, g.expiresAt, g.usedAt];
}

export function rowToReenrollGrant(r: Row): ReenrollGrant {
  return {
    tokenHash: String(r.token_hash),
    tenantId: String(r.tenant_id),
    machineId: String(r.machine_id),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    usedAt: numOrNull(r.used_at),
  };
}

export const ALERT_COLUMNS = [
  'id',
  'tenant_id',
  'machine_id',
  'action_id',
  'incident_id',
  'investigation_id',
  'investigation_state',
  'assigned_to',
  'severity',
  'status',
  'classification',
  'determination',
  'detection_source',
  'detector_id',
  'category',
  'threat_family_name',
  'threat_name',
  'title',
  'description',
  'created_at',
  'first_event_at',
  'last_event_at',
  'updated_at',
  'resolved_at',
  'computer_dns_name',
  'rbac_group_name',
  'mitre_techniques',
  'related_user',
  'comments',
  'evidence',
] as const;

export function alertParams(a: Alert): unknown[] {
  return [
    a.id,
    a.tenantId,
    a.machineId,
    a.actionId,
    a.incidentId,
    a.investigationId,
    a.investigationState,
    a.assignedTo,
    a.severity,
    a.status,
    a.classification,
    a.determination,
    a.detectionSource,
    a.detectorId,
    a.category,
    a.threatFamilyName,
    a.threatName,
    a.title,
    a.description,
    a.alertCreationTime,
    a.firstEventTime,
    a.lastEventTime,
    a.lastUpdateTime,
    a.resolvedTime,
    a.computerDnsName,
    a.rbacGroupName,
    JSON.stringify(a.mitreTechniques),
    a.relatedUser === null ? null : JSON.stringify(a.relatedUser),
    JSON.stringify(a.comments),
    JSON.stringify(a.evidence),
  ];
}

export function rowToAlert(r: Row): Alert {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    incidentId: numOrNull(r.incident_id),
    investigationId: numOrNull(r.investigation_id),
    assignedTo: strOrNull(r.assigned_to),
    severity: r.severity as Alert['severity'],
    status: r.status as Alert['status'],
    classification: strOrNull(r.classification),
    determination: strOrNull(r.determination),
    investigationState: strOrNull(r.investigation_state) as Alert['investigationState'],
    detectionSource: String(r.detection_source),
    detectorId: String(r.detector_id),
    category: String(r.category),
    threatFamilyName: strOrNull(r.threat_family_name),
    title: String(r.title),
    description: String(r.description),
    alertCreationTime: num(r.created_at),
    firstEventTime: numOrNull(r.first_event_at),
    lastEventTime: numOrNull(r.last_event_at),
    lastUpdateTime: num(r.updated_at),
    resolvedTime: numOrNull(r.resolved_at),
    machineId: String(r.machine_id),
    computerDnsName: strOrNull(r.computer_dns_name),
    rbacGroupName: strOrNull(r.rbac_group_name),
    threatName: strOrNull(r.threat_name),
    mitreTechniques: JSON.parse(String(r.mitre_techniques)),
    relatedUser: r.related_user === null || r.related_user === undefined ? null : JSON.parse(String(r.related_user)),
    comments: JSON.parse(String(r.comments)),
    evidence: JSON.parse(String(r.evidence)),
    actionId: String(r.action_id),
  };
}

/** Columns an investigation is inserted with (seq, its id, is the database's). */
export const INVESTIGATION_COLUMNS = [
  'tenant_id',
  'machine_id',
  'computer_dns_name',
  'action_id',
  'state',
  'status_details',
  'cancelled_by',
  'start_time',
  'end_time',
  'triggering_alert_id',
] as const;

export function investigationParams(i: Omit<Investigation, 'id'>): unknown[] {
  return [
    i.tenantId,
    i.machineId,
    i.computerDnsName,
    i.actionId,
    i.state,
    i.statusDetails,
    i.cancelledBy,
    i.startTime,
    i.endTime,
    i.triggeringAlertId,
  ];
}

export function rowToInvestigation(r: Row): Investigation {
  return {
    id: String(num(r.seq)),
    tenantId: String(r.tenant_id),
    startTime: num(r.start_time),
    endTime: numOrNull(r.end_time),
    state: r.state as Investigation['state'],
    cancelledBy: strOrNull(r.cancelled_by),
    statusDetails: strOrNull(r.status_details),
    machineId: String(r.machine_id),
    computerDnsName: strOrNull(r.computer_dns_name),
    triggeringAlertId: strOrNull(r.triggering_alert_id),
    actionId: String(r.action_id),
  };
}
