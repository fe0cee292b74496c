import { createHash, randomBytes } from 'node:crypto';
import type { Store } from '../domain/store.js';
import { generateSecret, hashSecret } from '../identity/secrets.js';

export interface DeviceGroup {
  rbacGroupId: number | null;
  rbacGroupName: string | null;
}

/**
 * Creates (or replaces) the tenant's enrollment secret with this label and returns the token
 * agents present, `<id>.<secret>`, once: only the secret's hash is kept.
 */
export async function createEnrollmentToken(
  store: Store,
  tenantId: string,
  label: string,
  group: DeviceGroup = { rbacGroupId: null, rbacGroupName: null },
  now = Date.now(),
): Promise<string> {
  const id = randomBytes(8).toString('hex');
  const secret = generateSecret();
  await store.deleteEnrollmentSecrets(tenantId, label);
  await store.upsertEnrollmentSecret({ id, tenantId, label, secretHash: await hashSecret(secret), ...group, createdAt: now });
  return `${id}.${secret}`;
}

/**
 * Agent credentials (`cma_`) and re-enroll grants (`cmr_`) are 256 random bits: a SHA-256 of
 * them is all the store needs (nothing to slow down against guessing), and finds them directly.
 */
export const AGENT_TOKEN = /^cma_[A-Za-z0-9_-]{43}$/;
export const REENROLL_GRANT = /^cmr_[A-Za-z0-9_-]{43}$/;

export const newOpaqueToken = (prefix: 'cma_' | 'cmr_') => `${prefix}${randomBytes(32).toString('base64url')}`;
export const hashOpaqueToken = (token: string) => createHash('sha256').update(token).digest('hex');

/** How long a re-enroll grant stays usable unless the administrator says otherwise. */
export const DEFAULT_GRANT_HOURS = 24;

/**
 * Issues a one-time grant for an agent to re-attach to an existing machine (a reinstalled host,
 * a lost state dir, an offboarded machine to onboard again) and returns it once.
 */
export async function createReenrollGrant(
  store: Store,
  tenantId: string,
  machineId: string,
  validHours = DEFAULT_GRANT_HOURS,
  now = Date.now(),
): Promise<{ grant: string; expiresAt: number }> {
  const grant = newOpaqueToken('cmr_');
  const expiresAt = now + Math.round(validHours * 3600_000);
  await store.insertReenrollGrant({ tokenHash: hashOpaqueToken(grant), tenantId, machineId, createdAt: now, expiresAt, usedAt: null });
  return { grant, expiresAt };
}
