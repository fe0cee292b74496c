import { randomBytes } from 'node:crypto';
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
