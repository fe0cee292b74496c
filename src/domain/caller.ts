import type { RolePermission } from './permissions.js';

/**
 * Who is calling, as established once per request by the authentication hook. Route handlers
 * and services only ever see this, never the token.
 */
export interface Caller {
  tenantId: string;
  kind: 'application' | 'user';
  /** Application (client) id, or the user's object id. Rate limits are keyed by it. */
  id: string;
  /** What `requestor` shows: the application's display name, or the user's UPN. */
  displayName: string;
  /** App roles (`roles`) or delegated scopes (`scp`). */
  permissions: ReadonlySet<string>;
  /** Delegated users only: their role permissions. */
  rolePermissions: ReadonlySet<RolePermission> | null;
  /** Delegated users only: the device groups (rbacGroupId) they may see; null means all. */
  deviceGroups: readonly number[] | null;
}
