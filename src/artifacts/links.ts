import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ERRORS } from '../domain/errors.js';
import type { Store } from '../domain/store.js';
import type { KeyEncryption } from '../identity/key-encryption.js';
import { toWireTime } from '../domain/time.js';

/**
 * Signed links: a URL that carries its own credential, like a storage SAS URL. The signature is
 * an HMAC-SHA256 over what the link names (its kind, tenant, action, the item and, for agent
 * links, the machine) and its expiry, with a key kept in the database and created once (and
 * bound to the key encryption key when there is one), so every server node behind the same
 * database signs and verifies the same links. Nothing about a link
 * is stored: it is valid because its signature verifies and its expiry has not passed.
 */

export type LinkKind = 'result' | 'package' | 'library';

export interface LinkClaims {
  kind: LinkKind;
  tenantId: string;
  actionId: string;
  /** 'result': the command index; 'package': 'package'; 'library': the file name. */
  item: string;
  /** 'library' links are for one machine's agent; '' otherwise. */
  machineId: string;
  /** Epoch seconds. */
  expires: number;
}

const KEY_ID = 'downloads';
const VERSION = 'v1';

export class LinkSigner {
  private constructor(
    private readonly key: Buffer,
    private readonly now: () => number,
  ) {}

  /**
   * Loads the shared key, creating it on a fresh database. With a key encryption key configured
   * (docs/identity.md, "Keys at rest") the signing key is derived from both, so a copy of the
   * database alone cannot forge a link; every node needs the same key encryption key anyway.
   */
  static async load(store: Store, options: { encryption?: KeyEncryption | null; now?: () => number } = {}): Promise<LinkSigner> {
    const now = options.now ?? Date.now;
    const secret = Buffer.from(await store.linkKey(KEY_ID, randomBytes(32).toString('base64url'), now()), 'base64url');
    return new LinkSigner(options.encryption ? options.encryption.derive('download links', secret) : secret, now);
  }

  /** The signature of `claims`, base64url (43 characters). */
  sign(claims: LinkClaims): string {
    const message = [VERSION, claims.kind, claims.tenantId, claims.machineId, claims.actionId, claims.item, String(claims.expires)].join('\n');
    return createHmac('sha256', this.key).update(message).digest('base64url');
  }

  /** Expiry `lifetimeSeconds` from now, in epoch seconds (rounded up, so a link never lives less). */
  expiry(lifetimeSeconds: number): number {
    return Math.ceil(this.now() / 1000 + lifetimeSeconds);
  }

  /**
   * Checks a link's query (`expires`, `sig`) against what its path names. A signature that does
   * not verify is refused before the expiry is even looked at, so a forged expiry learns nothing.
   */
  verify(claims: Omit<LinkClaims, 'expires'>, query: { expires?: unknown; sig?: unknown }): void {
    const expires = typeof query.expires === 'string' && /^\d{1,12}$/.test(query.expires) ? Number(query.expires) : null;
    const sig = typeof query.sig === 'string' ? query.sig : null;
    if (expires === null || sig === null) throw ERRORS.LinkInvalid();
    const expected = Buffer.from(this.sign({ ...claims, expires }));
    const given = Buffer.from(sig);
    // Constant-time: the comparison takes as long whatever prefix matches.
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw ERRORS.LinkInvalid();
    if (expires * 1000 <= this.now()) throw ERRORS.LinkExpired(toWireTime(expires * 1000));
  }

  /** The query string of a link: `expires=<epoch seconds>&sig=<signature>`. */
  query(claims: LinkClaims): string {
    return `expires=${claims.expires}&sig=${this.sign(claims)}`;
  }
}
