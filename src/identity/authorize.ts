import type { Caller } from '../domain/caller.js';
import { ERRORS } from '../domain/errors.js';
import type { EndpointPermissions } from '../domain/permissions.js';

/** The token's part: one of the app roles, or one of the delegated scopes (contract §2). */
export function authorizeScopes(caller: Caller, app: readonly string[], delegated: readonly string[]): void {
  const accepted = caller.kind === 'application' ? app : delegated;
  if (!accepted.some((p) => caller.permissions.has(p))) throw ERRORS.Forbidden(accepted);
}

/**
 * The whole rule of contract §7: applications need one of the app roles; users need one of the
 * delegated scopes and the role permission. Device-group access is the services' part (404).
 */
export function authorize(caller: Caller, permissions: EndpointPermissions): void {
  authorizeScopes(caller, permissions.app, permissions.delegated);
  if (caller.kind === 'user' && !caller.rolePermissions?.has(permissions.role)) {
    throw ERRORS.ForbiddenMessage(`The user does not have the role permission '${permissions.role}'.`);
  }
}
