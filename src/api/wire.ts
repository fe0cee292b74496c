import type { ActionEvent, Alert, AlertEvidence, Investigation, LibraryFile, Machine, MachineAction } from '../domain/model.js';
import { toWireTime } from '../domain/time.js';

/**
 * Entities as MDE sends them (contract §3, §9): camelCase, this exact field order, every field
 * present with null for unset values.
 */

export const ODATA_JSON = 'application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8';
export const ERROR_JSON = 'application/json; charset=utf-8';
/** Countermand's own extensions answer plain JSON (they are not OData). */
export const PLAIN_JSON = ERROR_JSON;
export const REQUEST_ID_HEADER = 'request-id';

/** The contract's error envelope (§6); `target` is the request id the response carries. */
export const errorEnvelope = (error: { code: string; message: string }, requestId: string): string =>
  JSON.stringify({ error: { code: error.code, message: error.message, target: requestId } });

export function machineActionToWire(a: MachineAction) {
  return {
    id: a.id,
    type: a.type,
    title: a.title,
    requestor: a.requestor,
    requestorComment: a.requestorComment,
    status: a.status,
    machineId: a.machineId,
    computerDnsName: a.computerDnsName,
    creationDateTimeUtc: toWireTime(a.creationDateTimeUtc),
    lastUpdateDateTimeUtc: toWireTime(a.lastUpdateDateTimeUtc),
    cancellationRequestor: a.cancellationRequestor,
    cancellationComment: a.cancellationComment,
    cancellationDateTimeUtc: toWireTime(a.cancellationDateTimeUtc),
    errorHResult: a.errorHResult,
    scope: a.scope,
    externalId: a.externalId,
    requestSource: a.requestSource,
    relatedFileInfo: a.relatedFileInfo
      ? { fileIdentifier: a.relatedFileInfo.fileIdentifier, fileIdentifierType: a.relatedFileInfo.fileIdentifierType }
      : null,
    commands: a.commands.map((c) => ({
      index: c.index,
      startTime: toWireTime(c.startTime),
      endTime: toWireTime(c.endTime),
      commandStatus: c.commandStatus,
      errors: c.errors,
      command: { type: c.command.type, params: c.command.params.map((p) => ({ key: p.key, value: p.value })) },
    })),
    troubleshootInfo: a.troubleshootInfo,
  };
}

export function machineToWire(m: Machine) {
  return {
    id: m.id,
    computerDnsName: m.computerDnsName,
    firstSeen: toWireTime(m.firstSeen),
    lastSeen: toWireTime(m.lastSeen),
    osPlatform: m.osPlatform,
    osVersion: m.osVersion,
    osProcessor: m.osProcessor,
    version: m.version,
    osBuild: m.osBuild,
    lastIpAddress: m.lastIpAddress,
    lastExternalIpAddress: m.lastExternalIpAddress,
    agentVersion: m.agentVersion,
    osArchitecture: m.osArchitecture,
    healthStatus: m.healthStatus,
    defenderAvStatus: m.defenderAvStatus,
    onboardingStatus: m.onboardingStatus,
    deviceValue: m.deviceValue,
    rbacGroupId: m.rbacGroupId,
    rbacGroupName: m.rbacGroupName,
    riskScore: m.riskScore,
    exposureLevel: m.exposureLevel,
    isAadJoined: m.isAadJoined,
    aadDeviceId: m.aadDeviceId,
    machineTags: m.machineTags,
    ipAddresses: m.ipAddresses.map((ip) => ({
      ipAddress: ip.ipAddress,
      macAddress: ip.macAddress,
      type: ip.type,
      operationalStatus: ip.operationalStatus,
    })),
  };
}

export const entityContext = (base: string, set: string) => `${base}/api/$metadata#${set}/$entity`;
export const collectionContext = (base: string, set: string) => `${base}/api/$metadata#${set}`;

/** A single MachineAction response: its context first, then the entity (contract §3). */
export const actionEntity = (base: string, a: MachineAction) => ({
  '@odata.context': entityContext(base, 'MachineActions'),
  ...machineActionToWire(a),
});

/** A single Machine response (contract §9). */
export const machineEntity = (base: string, m: Machine) => ({
  '@odata.context': entityContext(base, 'Machines'),
  ...machineToWire(m),
});

/** An Investigation as MDE sends it (contract §2 row 21, §10). */
export function investigationToWire(i: Investigation) {
  return {
    id: i.id,
    startTime: toWireTime(i.startTime),
    endTime: toWireTime(i.endTime),
    state: i.state,
    cancelledBy: i.cancelledBy,
    statusDetails: i.statusDetails,
    machineId: i.machineId,
    computerDnsName: i.computerDnsName,
    triggeringAlertId: i.triggeringAlertId,
  };
}

export const investigationEntity = (base: string, i: Investigation) => ({
  '@odata.context': entityContext(base, 'Investigations'),
  ...investigationToWire(i),
});

function evidenceToWire(e: AlertEvidence) {
  return {
    entityType: e.entityType,
    evidenceCreationTime: toWireTime(e.evidenceCreationTime),
    sha1: e.sha1,
    sha256: e.sha256,
    fileName: e.fileName,
    filePath: e.filePath,
    processId: e.processId,
    processCommandLine: e.processCommandLine,
    processCreationTime: toWireTime(e.processCreationTime),
    parentProcessId: e.parentProcessId,
    parentProcessCreationTime: toWireTime(e.parentProcessCreationTime),
    parentProcessFileName: e.parentProcessFileName,
    parentProcessFilePath: e.parentProcessFilePath,
    ipAddress: e.ipAddress,
    url: e.url,
    registryKey: e.registryKey,
    registryHive: e.registryHive,
    registryValueType: e.registryValueType,
    registryValue: e.registryValue,
    accountName: e.accountName,
    domainName: e.domainName,
    userSid: e.userSid,
    aadUserId: e.aadUserId,
    userPrincipalName: e.userPrincipalName,
    detectionStatus: e.detectionStatus,
  };
}

/**
 * An Alert as MDE sends it (contract §10), in the order of its docs. Lists carry `evidence`
 * only with `$expand=evidence`, as MDE's do; a single alert always carries it.
 */
export function alertToWire(a: Alert, withEvidence: boolean) {
  return {
    id: a.id,
    incidentId: a.incidentId,
    investigationId: a.investigationId,
    assignedTo: a.assignedTo,
    severity: a.severity,
    status: a.status,
    classification: a.classification,
    determination: a.determination,
    investigationState: a.investigationState,
    detectionSource: a.detectionSource,
    detectorId: a.detectorId,
    category: a.category,
    threatFamilyName: a.threatFamilyName,
    title: a.title,
    description: a.description,
    alertCreationTime: toWireTime(a.alertCreationTime),
    firstEventTime: toWireTime(a.firstEventTime),
    lastEventTime: toWireTime(a.lastEventTime),
    lastUpdateTime: toWireTime(a.lastUpdateTime),
    resolvedTime: toWireTime(a.resolvedTime),
    machineId: a.machineId,
    computerDnsName: a.computerDnsName,
    rbacGroupName: a.rbacGroupName,
    aadTenantId: a.tenantId,
    threatName: a.threatName,
    mitreTechniques: a.mitreTechniques,
    relatedUser: a.relatedUser ? { userName: a.relatedUser.userName, domainName: a.relatedUser.domainName } : null,
    comments: a.comments.map((c) => ({ comment: c.comment, createdBy: c.createdBy, createdTime: toWireTime(c.createdTime) })),
    evidence: withEvidence ? a.evidence.map(evidenceToWire) : [],
  };
}

export const alertEntity = (base: string, a: Alert) => ({
  '@odata.context': entityContext(base, 'Alerts'),
  ...alertToWire(a, true),
});
/**
 * One entry of an action's history, for Countermand's history extension (docs/action-center.md):
 * who did what when, the status it moved from and to (null for entries that change no status),
 * the comment, and the machine's report detail.
 */
export function actionEventToWire(e: ActionEvent) {
  return {
    sequence: e.seq,
    kind: e.kind,
    dateTimeUtc: toWireTime(e.at),
    actor: e.actor,
    fromStatus: e.fromStatus,
    toStatus: e.toStatus,
    comment: e.comment,
    detail: e.detail,
  };
}

/** A library file as MDE lists it (contract §2 rows 17-18), in its field order. */
export function libraryFileToWire(f: LibraryFile) {
  return {
    fileName: f.fileName,
    sha256: f.sha256,
    description: f.description,
    creationTime: toWireTime(f.creationTime),
    lastUpdatedTime: toWireTime(f.lastUpdatedTime),
    createdBy: f.createdBy,
    hasParameters: f.hasParameters,
    parametersDescription: f.parametersDescription,
  };
}

export const libraryFileEntity = (base: string, f: LibraryFile) => ({
  '@odata.context': entityContext(base, 'LibraryFiles'),
  ...libraryFileToWire(f),
});

/** A download link (contract §2 rows 8, 14): an Edm.String whose value is the URL. */
export const linkEntity = (base: string, url: string) => ({
  '@odata.context': `${base}/api/$metadata#Edm.String`,
  value: url,
});
