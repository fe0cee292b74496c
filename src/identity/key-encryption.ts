import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { OperatorError } from '../operator-error.js';

/**
 * Optional encryption at rest of the private signing keys (docs/identity.md, "Keys at rest"):
 * AES-256-GCM under a key encryption key given by COUNTERMAND_KEY_ENCRYPTION_KEY or a file
 * (COUNTERMAND_KEY_ENCRYPTION_KEY_FILE). A sealed key is stored as
 *
 *   countermand-sealed:v1:<key id>:<iv>:<ciphertext>:<tag>      (base64url parts)
 *
 * where the key id names the key encryption key (a hash of it, so a wrong one is told apart
 * from a damaged record) and the key's kid is the additional data: a sealed PEM moved to
 * another key's row does not open.
 */
const SEALED_PREFIX = 'countermand-sealed:v1:';
const KEY_ID_CONTEXT = 'countermand key encryption key id\0';
export const KEY_ENV = 'COUNTERMAND_KEY_ENCRYPTION_KEY';
export const KEY_FILE_ENV = 'COUNTERMAND_KEY_ENCRYPTION_KEY_FILE';

export class KeyEncryptionError extends OperatorError {
  override name = 'KeyEncryptionError';
}

export const isSealed = (stored: string): boolean => stored.startsWith(SEALED_PREFIX);

/** The id of the key encryption key a stored PEM is sealed under, or null for a PEM in the clear. */
export const sealedUnder = (stored: string): string | null => (isSealed(stored) ? (stored.slice(SEALED_PREFIX.length).split(':')[0] ?? '') : null);

/** 32 bytes, as 64 hex digits or base64 (standard or URL-safe). The value itself is never echoed. */
function parseKey(text: string, source: string): Buffer {
  const t = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(t) ? Buffer.from(t, 'base64') : null;
  if (!bytes || bytes.length !== 32) {
    throw new KeyEncryptionError(`${source} must hold 32 random bytes as base64 or hex (make one with: openssl rand -base64 32)`);
  }
  return bytes;
}

export class KeyEncryption {
  /** Names this key in sealed records and messages; reveals nothing of it. */
  readonly id: string;

  private constructor(private readonly key: Buffer) {
    this.id = createHash('sha256').update(KEY_ID_CONTEXT).update(key).digest('hex').slice(0, 16);
  }

  /** From the key's text (`source` names where it came from, for messages). */
  static fromText(text: string, source: string): KeyEncryption {
    return new KeyEncryption(parseKey(text, source));
  }

  static fromFile(file: string): KeyEncryption {
    let text: string;
    try {
      text = readFileSync(resolve(file), 'utf8');
    } catch (error) {
      throw new KeyEncryptionError(`cannot read the key encryption key file ${resolve(file)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    return KeyEncryption.fromText(text, `the key encryption key file ${resolve(file)}`);
  }

  /** The configured key, or null when keys are stored in the clear. */
  static fromConfig(config: { keyEncryptionKey: string | null; keyEncryptionKeyFile: string | null }): KeyEncryption | null {
    if (config.keyEncryptionKey !== null && config.keyEncryptionKeyFile !== null) {
      throw new KeyEncryptionError(`give the key encryption key once: ${KEY_ENV} or ${KEY_FILE_ENV}, not both`);
    }
    if (config.keyEncryptionKey !== null) return KeyEncryption.fromText(config.keyEncryptionKey, `${KEY_ENV} (keyEncryptionKey)`);
    if (config.keyEncryptionKeyFile !== null) return KeyEncryption.fromFile(config.keyEncryptionKeyFile);
    return null;
  }

  /**
   * A key for `purpose` bound to both this key and `material` (a secret kept in the database), so
   * that neither a copy of the database nor this key alone yields it (HMAC-SHA256).
   */
  derive(purpose: string, material: Buffer): Buffer {
    return createHmac('sha256', this.key).update(`countermand ${purpose}\0`).update(material).digest();
  }

  seal(kid: string, pem: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(kid, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(pem, 'utf8'), cipher.final()]);
    const parts = [iv, ciphertext, cipher.getAuthTag()].map((b) => b.toString('base64url'));
    return `${SEALED_PREFIX}${this.id}:${parts.join(':')}`;
  }

  /** The PEM of a record sealed under this key; a record sealed under another key is refused. */
  open(kid: string, stored: string): string {
    const [keyId, iv, ciphertext, tag, extra] = stored.slice(SEALED_PREFIX.length).split(':');
    if (keyId !== this.id) {
      throw new KeyEncryptionError(
        `the signing key ${kid} is encrypted under key encryption key ${keyId}, but the configured one is ${this.id}: configure that key, or re-encrypt with \`countermand keys reencrypt --previous-key-file <file>\``,
      );
    }
    try {
      if (iv === undefined || ciphertext === undefined || tag === undefined || extra !== undefined) throw new Error('malformed');
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(Buffer.from(kid, 'utf8'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      throw new KeyEncryptionError(`the signing key ${kid} does not decrypt under key encryption key ${this.id}: its record was altered or damaged`);
    }
  }
}

/**
 * The private PEM of a stored key: as stored when in the clear, else opened with whichever of
 * `keys` it was sealed under.
 */
export function openPrivatePem(kid: string, stored: string, keys: (KeyEncryption | null)[]): string {
  const under = sealedUnder(stored);
  if (under === null) return stored;
  const key = keys.find((k) => k?.id === under);
  if (key) return key.open(kid, stored);
  const configured = keys.find((k) => k !== null);
  if (configured) return configured.open(kid, stored); // explains the mismatch
  throw new KeyEncryptionError(
    `the signing key ${kid} is encrypted at rest (key encryption key ${under}) and no key is configured: set ${KEY_ENV} or ${KEY_FILE_ENV}`,
  );
}
