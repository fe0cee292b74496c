import type { Machine, MachineAction } from '../domain/model.js';
import { toWireTime } from '../domain/time.js';

/**
 * Entities as MDE sends them (contract §3, §9): camelCase, this exact field order, every field
 * present with null for unset values.
 */

export const ODATA_JSON = 'application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8';
export const ERROR_JSON = 'application/json; charset=utf-8';
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
