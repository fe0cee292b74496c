import type { EntitySetDef } from '../odata/index.js';
import {
  ACTION_STATUSES,
  ACTION_TYPES,
  ALERT_SEVERITIES,
  ALERT_STATUSES,
  HEALTH_STATUSES,
  INVESTIGATION_STATES,
} from './model.js';

/**
 * The one place that says which properties clients may use in $filter and $orderby (contract
 * §5, §10), with the column each one reads. $orderby takes every scalar property of the entity;
 * $filter only the ones the contract lists: the others are marked `orderOnly`. Arrays and
 * objects (commands, ipAddresses, evidence, ...) are in neither. Column names are the logical
 * schema shared by every store backend; a backend may substitute `existsSql` where its SQL
 * differs.
 */
export const MACHINE_ACTION_SET: EntitySetDef = {
  name: 'MachineActions',
  maxTop: 10000,
  properties: [
    { name: 'id', type: 'guid', column: 'a.id' },
    { name: 'status', type: 'enum', column: 'a.status', enumValues: ACTION_STATUSES },
    { name: 'machineId', type: 'guid', column: 'a.machine_id' },
    { name: 'type', type: 'enum', column: 'a.type', enumValues: ACTION_TYPES },
    { name: 'requestor', type: 'string', column: 'a.requestor' },
    { name: 'creationDateTimeUtc', type: 'datetime', column: 'a.created_at' },
    { name: 'title', type: 'string', column: 'a.title', orderOnly: true, nullable: true },
    { name: 'requestorComment', type: 'string', column: 'a.requestor_comment', orderOnly: true, nullable: true },
    { name: 'computerDnsName', type: 'string', column: 'a.computer_dns_name', orderOnly: true, nullable: true },
    { name: 'lastUpdateDateTimeUtc', type: 'datetime', column: 'a.updated_at', orderOnly: true },
    { name: 'cancellationRequestor', type: 'string', column: 'a.cancellation_requestor', orderOnly: true, nullable: true },
    { name: 'cancellationComment', type: 'string', column: 'a.cancellation_comment', orderOnly: true, nullable: true },
    { name: 'cancellationDateTimeUtc', type: 'datetime', column: 'a.cancelled_at', orderOnly: true, nullable: true },
    { name: 'errorHResult', type: 'number', column: 'a.error_hresult', orderOnly: true },
    { name: 'scope', type: 'string', column: 'a.scope', orderOnly: true, nullable: true },
    { name: 'externalId', type: 'string', column: 'a.external_id', orderOnly: true, nullable: true },
    { name: 'requestSource', type: 'string', column: 'a.request_source', orderOnly: true },
    { name: 'troubleshootInfo', type: 'string', column: 'a.troubleshoot_info', orderOnly: true, nullable: true },
  ],
};

export const MACHINE_SET: EntitySetDef = {
  name: 'Machines',
  maxTop: 10000,
  properties: [
    { name: 'computerDnsName', type: 'string', column: 'm.computer_dns_name' },
    { name: 'id', type: 'guid', column: 'm.id' },
    { name: 'version', type: 'string', column: 'm.version', nullable: true },
    { name: 'deviceValue', type: 'enum', column: 'm.device_value', enumValues: ['Normal', 'Low', 'High'], nullable: true },
    { name: 'aadDeviceId', type: 'guid', column: 'm.aad_device_id', nullable: true },
    {
      name: 'machineTags',
      type: 'tags',
      column: 'm.machine_tags',
      existsSql: 'EXISTS (SELECT 1 FROM json_each(m.machine_tags) WHERE json_each.value = ?)',
    },
    { name: 'lastSeen', type: 'datetime', column: 'm.last_seen', nullable: true },
    {
      name: 'exposureLevel',
      type: 'enum',
      column: 'm.exposure_level',
      enumValues: ['None', 'Low', 'Medium', 'High'],
      nullable: true,
    },
    {
      name: 'onboardingStatus',
      type: 'enum',
      column: 'm.onboarding_status',
      enumValues: ['Onboarded', 'CanBeOnboarded', 'Unsupported', 'InsufficientInfo'],
      nullable: true,
    },
    { name: 'lastIpAddress', type: 'string', column: 'm.last_ip_address', nullable: true },
    { name: 'healthStatus', type: 'enum', column: 'm.health_status', enumValues: HEALTH_STATUSES },
    { name: 'osPlatform', type: 'string', column: 'm.os_platform', nullable: true },
    {
      name: 'riskScore',
      type: 'enum',
      column: 'm.risk_score',
      enumValues: ['None', 'Informational', 'Low', 'Medium', 'High'],
      nullable: true,
    },
    { name: 'rbacGroupId', type: 'number', column: 'm.rbac_group_id', nullable: true },
    { name: 'firstSeen', type: 'datetime', column: 'm.first_seen', orderOnly: true, nullable: true },
    { name: 'osVersion', type: 'string', column: 'm.os_version', orderOnly: true, nullable: true },
    { name: 'osProcessor', type: 'string', column: 'm.os_processor', orderOnly: true, nullable: true },
    { name: 'osBuild', type: 'number', column: 'm.os_build', orderOnly: true, nullable: true },
    { name: 'lastExternalIpAddress', type: 'string', column: 'm.last_external_ip_address', orderOnly: true, nullable: true },
    { name: 'agentVersion', type: 'string', column: 'm.agent_version', orderOnly: true, nullable: true },
    { name: 'osArchitecture', type: 'string', column: 'm.os_architecture', orderOnly: true, nullable: true },
    { name: 'defenderAvStatus', type: 'string', column: 'm.defender_av_status', orderOnly: true, nullable: true },
    { name: 'rbacGroupName', type: 'string', column: 'm.rbac_group_name', orderOnly: true, nullable: true },
    { name: 'isAadJoined', type: 'boolean', column: 'm.is_aad_joined', orderOnly: true },
  ],
};

export const INVESTIGATION_SET: EntitySetDef = {
  name: 'Investigations',
  maxTop: 10000,
  properties: [
    { name: 'startTime', type: 'datetime', column: 'i.start_time' },
    { name: 'id', type: 'integerKey', column: 'i.seq' },
    { name: 'state', type: 'enum', column: 'i.state', enumValues: INVESTIGATION_STATES },
    { name: 'machineId', type: 'guid', column: 'i.machine_id' },
    { name: 'triggeringAlertId', type: 'string', column: 'i.triggering_alert_id', nullable: true },
    { name: 'endTime', type: 'datetime', column: 'i.end_time', orderOnly: true, nullable: true },
    { name: 'cancelledBy', type: 'string', column: 'i.cancelled_by', orderOnly: true, nullable: true },
    { name: 'statusDetails', type: 'string', column: 'i.status_details', orderOnly: true, nullable: true },
    { name: 'computerDnsName', type: 'string', column: 'i.computer_dns_name', orderOnly: true, nullable: true },
  ],
};

export const ALERT_SET: EntitySetDef = {
  name: 'Alerts',
  maxTop: 10000,
  expand: ['evidence'],
  properties: [
    { name: 'alertCreationTime', type: 'datetime', column: 'al.created_at' },
    { name: 'lastUpdateTime', type: 'datetime', column: 'al.updated_at' },
    { name: 'incidentId', type: 'number', column: 'al.incident_id', nullable: true },
    { name: 'investigationId', type: 'number', column: 'al.investigation_id', nullable: true },
    { name: 'id', type: 'string', column: 'al.id' },
    { name: 'assignedTo', type: 'string', column: 'al.assigned_to', nullable: true },
    { name: 'detectionSource', type: 'string', column: 'al.detection_source' },
    { name: 'lastEventTime', type: 'datetime', column: 'al.last_event_at', nullable: true },
    { name: 'status', type: 'enum', column: 'al.status', enumValues: ALERT_STATUSES },
    { name: 'severity', type: 'enum', column: 'al.severity', enumValues: ALERT_SEVERITIES },
    { name: 'category', type: 'string', column: 'al.category' },
    { name: 'classification', type: 'string', column: 'al.classification', orderOnly: true, nullable: true },
    { name: 'determination', type: 'string', column: 'al.determination', orderOnly: true, nullable: true },
    { name: 'investigationState', type: 'string', column: 'al.investigation_state', orderOnly: true, nullable: true },
    { name: 'detectorId', type: 'string', column: 'al.detector_id', orderOnly: true },
    { name: 'threatFamilyName', type: 'string', column: 'al.threat_family_name', orderOnly: true, nullable: true },
    { name: 'title', type: 'string', column: 'al.title', orderOnly: true },
    { name: 'description', type: 'string', column: 'al.description', orderOnly: true },
    { name: 'firstEventTime', type: 'datetime', column: 'al.first_event_at', orderOnly: true, nullable: true },
    { name: 'resolvedTime', type: 'datetime', column: 'al.resolved_at', orderOnly: true, nullable: true },
    { name: 'machineId', type: 'guid', column: 'al.machine_id', orderOnly: true },
    { name: 'computerDnsName', type: 'string', column: 'al.computer_dns_name', orderOnly: true, nullable: true },
    { name: 'rbacGroupName', type: 'string', column: 'al.rbac_group_name', orderOnly: true, nullable: true },
    { name: 'aadTenantId', type: 'guid', column: 'al.tenant_id', orderOnly: true },
    { name: 'threatName', type: 'string', column: 'al.threat_name', orderOnly: true, nullable: true },
  ],
};

/** The live-response library (contract §2 row 17). */
export const LIBRARY_FILE_SET: EntitySetDef = {
  name: 'LibraryFiles',
  maxTop: 10000,
  properties: [
    { name: 'fileName', type: 'string', column: 'l.file_name' },
    { name: 'sha256', type: 'string', column: 'l.sha256' },
    { name: 'createdBy', type: 'string', column: 'l.created_by' },
    { name: 'creationTime', type: 'datetime', column: 'l.created_at' },
    { name: 'lastUpdatedTime', type: 'datetime', column: 'l.updated_at' },
    { name: 'description', type: 'string', column: 'l.description', orderOnly: true, nullable: true },
    { name: 'hasParameters', type: 'number', column: 'l.has_parameters', orderOnly: true },
    { name: 'parametersDescription', type: 'string', column: 'l.parameters_description', orderOnly: true, nullable: true },
  ],
};
