import type { EntitySetDef } from '../odata/index.js';
import { ACTION_STATUSES, ACTION_TYPES, HEALTH_STATUSES } from './model.js';

/**
 * The properties clients may use in $filter and $orderby (contract §5), with the column each
 * one reads. Column names are the logical schema shared by every store backend; a backend may
 * substitute `existsSql` where its SQL differs.
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
  ],
};

export const MACHINE_SET: EntitySetDef = {
  name: 'Machines',
  maxTop: 10000,
  properties: [
    { name: 'computerDnsName', type: 'string', column: 'm.computer_dns_name' },
    { name: 'id', type: 'guid', column: 'm.id' },
    { name: 'version', type: 'string', column: 'm.version' },
    { name: 'deviceValue', type: 'enum', column: 'm.device_value', enumValues: ['Normal', 'Low', 'High'] },
    { name: 'aadDeviceId', type: 'guid', column: 'm.aad_device_id' },
    {
      name: 'machineTags',
      type: 'tags',
      column: 'm.machine_tags',
      existsSql: 'EXISTS (SELECT 1 FROM json_each(m.machine_tags) WHERE json_each.value = ?)',
    },
    { name: 'lastSeen', type: 'datetime', column: 'm.last_seen' },
    {
      name: 'exposureLevel',
      type: 'enum',
      column: 'm.exposure_level',
      enumValues: ['None', 'Low', 'Medium', 'High'],
    },
    {
      name: 'onboardingStatus',
      type: 'enum',
      column: 'm.onboarding_status',
      enumValues: ['Onboarded', 'CanBeOnboarded', 'Unsupported', 'InsufficientInfo'],
    },
    { name: 'lastIpAddress', type: 'string', column: 'm.last_ip_address' },
    { name: 'healthStatus', type: 'enum', column: 'm.health_status', enumValues: HEALTH_STATUSES },
    { name: 'osPlatform', type: 'string', column: 'm.os_platform' },
    {
      name: 'riskScore',
      type: 'enum',
      column: 'm.risk_score',
      enumValues: ['None', 'Informational', 'Low', 'Medium', 'High'],
    },
    { name: 'rbacGroupId', type: 'number', column: 'm.rbac_group_id' },
  ],
};
