import type { ActionType } from './model.js';

/** Role permissions a delegated user needs in addition to the token's scope (contract §7). */
export const ROLE_PERMISSIONS = [
  'View data',
  'Active remediation actions',
  'Alerts investigation',
  'Manage security settings',
  'Live response advanced',
] as const;
export type RolePermission = (typeof ROLE_PERMISSIONS)[number];

/** Who may call an endpoint (contract §2): app roles, delegated scopes, and the user's role. */
export interface EndpointPermissions {
  app: readonly string[];
  delegated: readonly string[];
  role: RolePermission;
}

export const READ_MACHINES: EndpointPermissions = {
  app: ['Machine.Read.All', 'Machine.ReadWrite.All'],
  delegated: ['Machine.Read', 'Machine.ReadWrite'],
  role: 'View data',
};

/** GET alerts and investigations (contract §2 rows 22-25). */
export const READ_ALERTS: EndpointPermissions = {
  app: ['Alert.Read.All', 'Alert.ReadWrite.All'],
  delegated: ['Alert.Read', 'Alert.ReadWrite'],
  role: 'View data',
};

/**
 * POST startInvestigation (contract §2 row 21). The role is 'Alerts investigation', MDE's role
 * for starting automated investigations and for collecting packages, which it does.
 */
export const START_INVESTIGATION: EndpointPermissions = {
  app: ['Alert.ReadWrite.All'],
  delegated: ['Alert.ReadWrite'],
  role: 'Alerts investigation',
};

/** Rows 17-19: the live-response library. */
export const MANAGE_LIBRARY: EndpointPermissions = {
  app: ['Library.Manage'],
  delegated: ['Library.Manage'],
  role: 'Live response advanced',
};

/** Row 8: an investigation package's download link. */
export const PACKAGE_URI: EndpointPermissions = {
  app: ['Machine.Read.All', 'Machine.ReadWrite.All'],
  delegated: ['Machine.CollectForensics'],
  role: 'Alerts investigation',
};

/** Row 14: a live-response command result's download link. */
export const LIVE_RESPONSE_RESULT: EndpointPermissions = {
  app: ['Machine.Read.All', 'Machine.ReadWrite.All'],
  delegated: ['Machine.LiveResponse'],
  role: 'Live response advanced',
};

/** Permissions to create each action type. */
export const ACTION_PERMISSIONS: Readonly<Record<ActionType, EndpointPermissions>> = {
  Isolate: { app: ['Machine.Isolate'], delegated: ['Machine.Isolate'], role: 'Active remediation actions' },
  Unisolate: { app: ['Machine.Isolate'], delegated: ['Machine.Isolate'], role: 'Active remediation actions' },
  RunAntiVirusScan: { app: ['Machine.Scan'], delegated: ['Machine.Scan'], role: 'Active remediation actions' },
  CollectInvestigationPackage: {
    app: ['Machine.CollectForensics'],
    delegated: ['Machine.CollectForensics'],
    role: 'Alerts investigation',
  },
  RestrictCodeExecution: {
    app: ['Machine.RestrictExecution'],
    delegated: ['Machine.RestrictExecution'],
    role: 'Active remediation actions',
  },
  UnrestrictCodeExecution: {
    app: ['Machine.RestrictExecution'],
    delegated: ['Machine.RestrictExecution'],
    role: 'Active remediation actions',
  },
  Offboard: { app: ['Machine.Offboard'], delegated: ['Machine.Offboard'], role: 'Manage security settings' },
  StopAndQuarantineFile: {
    app: ['Machine.StopAndQuarantine', 'Machine.ReadWrite.All'],
    delegated: ['Machine.StopAndQuarantine'],
    role: 'Active remediation actions',
  },
  LiveResponse: {
    app: ['Machine.LiveResponse'],
    delegated: ['Machine.LiveResponse'],
    role: 'Live response advanced',
  },
};

/** Any permission that creates some action: what cancel accepts by default. */
export const ANY_ACTION = [
  'Machine.CollectForensics',
  'Machine.Isolate',
  'Machine.RestrictExecution',
  'Machine.Scan',
  'Machine.Offboard',
  'Machine.StopAndQuarantine',
  'Machine.LiveResponse',
] as const;

/**
 * Cancel accepts any action permission, as MDE does (contract §2 row 3). With
 * `strict` (configuration `cancelRequiresMatchingPermission`) it requires the permission that
 * creates the action's type. The user's role is always the one of the action's type.
 */
export function cancelPermissions(type: ActionType, strict: boolean): EndpointPermissions {
  const create = ACTION_PERMISSIONS[type];
  return strict ? create : { app: ANY_ACTION, delegated: ANY_ACTION, role: create.role };
}

/** Every application role and delegated scope the contract names (§2), for validating input. */
export const KNOWN_APP_ROLES = [
  'Machine.Read.All',
  'Machine.ReadWrite.All',
  'Machine.Isolate',
  'Machine.Scan',
  'Machine.CollectForensics',
  'Machine.RestrictExecution',
  'Machine.Offboard',
  'Machine.StopAndQuarantine',
  'Machine.LiveResponse',
  'Library.Manage',
  'Alert.Read.All',
  'Alert.ReadWrite.All',
] as const;

export const KNOWN_DELEGATED_SCOPES = [
  'Machine.Read',
  'Machine.ReadWrite',
  'Machine.Isolate',
  'Machine.Scan',
  'Machine.CollectForensics',
  'Machine.RestrictExecution',
  'Machine.Offboard',
  'Machine.StopAndQuarantine',
  'Machine.LiveResponse',
  'Library.Manage',
  'Alert.Read',
  'Alert.ReadWrite',
] as const;
