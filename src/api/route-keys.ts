import { ERRORS } from '../domain/errors.js';

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const MAX_KEY_LENGTH = 256;

/** An action id from the path: a GUID (Edm.Guid), compared lower-case. */
export function actionKey(raw: string): string {
  if (!GUID.test(raw)) throw ERRORS.InvalidGuidKey(raw.slice(0, MAX_KEY_LENGTH));
  return raw.toLowerCase();
}

const MACHINE_ID = /^[0-9a-fA-F]{40}$/;

/**
 * A machine key from the path: an id, aadDeviceId or DNS name; looked up, never trusted. Ids and
 * GUIDs are stored lower-case, so they are matched lower-case.
 */
export function machineKey(raw: string): string {
  if (raw.length === 0 || raw.length > MAX_KEY_LENGTH) throw ERRORS.ResourceNotFound(raw.slice(0, MAX_KEY_LENGTH));
  return MACHINE_ID.test(raw) || GUID.test(raw) ? raw.toLowerCase() : raw;
}
