import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair, importJWK, importPKCS8, type JWK } from 'jose';
import type { SigningKey } from '../domain/model.js';
import type { Store } from '../domain/store.js';
import { isSealed, openPrivatePem, sealedUnder, type KeyEncryption } from './key-encryption.js';

export const TOKEN_LIFETIME_SECONDS = 3599;
export const CLOCK_SKEW_SECONDS = 60;
/** How often a server re-reads the keys, so a rotation made elsewhere takes over signing. */
export const KEY_REFRESH_MS = 60_000;
/**
 * A key retired this long ago can no longer have signed a valid token: a server may sign with
 * it until its next refresh, and such a token lives its lifetime plus the verifier's skew.
 */
const RETIRED_KEY_GRACE_MS = (TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) * 1000 + 2 * KEY_REFRESH_MS;
/** How long a `kid` found unknown after a re-read stays unknown without another re-read. */
const UNKNOWN_KID_MEMORY_MS = 1_000;

/** A key as jose uses it (a WebCrypto key). */
export type VerificationKey = Awaited<ReturnType<typeof importJWK>>;
type PrivateKey = Awaited<ReturnType<typeof importPKCS8>>;

interface LoadedKey {
  record: SigningKey;
  publicKey: VerificationKey;
  privateKey: PrivateKey | null;
}

export async function newSigningKey(now: number): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return {
    kid,
    alg: 'RS256',
    privatePem: await exportPKCS8(privateKey),
    publicJwk: { ...jwk, kid, use: 'sig', alg: 'RS256' },
    createdAt: now,
    retiredAt: null,
  };
}

export interface KeyRingOptions {
  now?: () => number;
  /** Seals private keys at rest (docs/identity.md); null keeps them in the clear. */
  encryption?: KeyEncryption | null;
  /** Told when a re-read finds a private key it cannot open (another node's key encryption key). */
  onWarning?: (message: string) => void;
}

/**
 * The token-signing keys, shared through the store by every server node. The newest unretired
 * key signs; retired keys stay published and accepted until every token they signed has expired.
 */
export class KeyRing {
  private keys: LoadedKey[] = [];
  private reloading: Promise<void> | undefined;
  private readonly unknown = new Map<string, number>();
  private readonly now: () => number;
  private readonly encryption: KeyEncryption | null;
  private readonly onWarning: (message: string) => void;

  constructor(
    private readonly store: Store,
    options: KeyRingOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.encryption = options.encryption ?? null;
    this.onWarning = options.onWarning ?? (() => undefined);
  }

  /**
   * Loads the keys, creating the first one on a fresh store. With encryption on, keys still
   * stored in the clear (from before it was turned on) are sealed first.
   */
  async init(): Promise<void> {
    if (this.encryption) await reencryptSigningKeys(this.store, { to: this.encryption, onlyClear: true });
    await this.reload(true);
    if (!this.keys.some((k) => k.record.retiredAt === null)) {
      await this.insert(await newSigningKey(this.now()));
      await this.reload(true);
    }
  }

  /** Stores a new key, sealed when encryption is on. */
  private insert(key: SigningKey): Promise<void> {
    return this.store.insertSigningKey({ ...key, privatePem: this.encryption?.seal(key.kid, key.privatePem) ?? key.privatePem });
  }

  /**
   * Re-reads the keys. `strict` (the start) fails on a private key that cannot be opened; a later
   * re-read keeps serving instead: it keeps what it had loaded for that key (or no private key),
   * still publishes every public key, and warns.
   */
  async reload(strict = false): Promise<void> {
    const horizon = this.now() - RETIRED_KEY_GRACE_MS;
    const records = (await this.store.listSigningKeys()).filter((k) => k.retiredAt === null || k.retiredAt >= horizon);
    this.keys = await Promise.all(
      records.map(async (record) => ({
        record,
        publicKey: await importJWK(record.publicJwk as JWK, record.alg),
        privateKey: record.retiredAt === null ? await this.privateKey(record, strict) : null,
      })),
    );
  }

  private async privateKey(record: SigningKey, strict: boolean): Promise<PrivateKey | null> {
    try {
      return await importPKCS8(openPrivatePem(record.kid, record.privatePem, [this.encryption]), record.alg);
    } catch (error) {
      if (strict) throw error;
      this.onWarning(`cannot open the private signing key ${record.kid}: ${(error as Error).message}`);
      return this.keys.find((k) => k.record.kid === record.kid)?.privateKey ?? null;
    }
  }

  /** One re-read at a time: concurrent callers share it. */
  private refresh(): Promise<void> {
    this.reloading ??= this.reload().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  /** Adds a new signing key and retires the others (they stay valid for their tokens' lifetime). */
  async rotate(): Promise<SigningKey> {
    const now = this.now();
    const key = await newSigningKey(now);
    await this.insert(key);
    await this.store.retireSigningKeysExcept(key.kid, now);
    await this.store.pruneSigningKeys(now - RETIRED_KEY_GRACE_MS);
    await this.reload();
    return key;
  }

  signingKey(): { kid: string; key: PrivateKey } {
    const active = this.keys.find((k) => k.record.retiredAt === null && k.privateKey);
    if (!active?.privateKey) throw new Error('no active signing key');
    return { kid: active.record.kid, key: active.privateKey };
  }

  /**
   * The public key for a `kid`. An unknown one makes the ring re-read the store (another node may
   * have created or rotated a key); a kid still unknown after that is not looked up again for a
   * second, so repeating a bogus kid costs no store reads.
   */
  async verificationKey(kid: string | undefined): Promise<VerificationKey | null> {
    if (!kid) return null;
    let found = this.keys.find((k) => k.record.kid === kid);
    const knownMissing = this.unknown.get(kid);
    if (!found && (knownMissing === undefined || this.now() - knownMissing > UNKNOWN_KID_MEMORY_MS)) {
      await this.refresh();
      found = this.keys.find((k) => k.record.kid === kid);
      if (!found) {
        if (this.unknown.size > 1000) this.unknown.clear();
        this.unknown.set(kid, this.now());
      }
    }
    return found?.publicKey ?? null;
  }

  jwks(): { keys: Record<string, unknown>[] } {
    return { keys: this.keys.map((k) => k.record.publicJwk) };
  }
}

/**
 * Rewrites every stored private key under `to` (or in the clear when `to` is null), opening
 * those sealed under `from` or `to`. `onlyClear` seals only the keys stored in the clear and
 * leaves the others as they are (what a start with encryption on does). Each key is replaced
 * only if it is still what was read, so two nodes doing this at once do not clobber each other.
 */
export async function reencryptSigningKeys(
  store: Store,
  options: { to: KeyEncryption | null; from?: KeyEncryption | null; onlyClear?: boolean },
): Promise<{ rewritten: number; unchanged: number }> {
  let rewritten = 0;
  let unchanged = 0;
  for (const key of await store.listSigningKeys()) {
    const under = sealedUnder(key.privatePem);
    if (under === (options.to?.id ?? null) || (options.onlyClear && isSealed(key.privatePem))) {
      unchanged++;
      continue;
    }
    const pem = openPrivatePem(key.kid, key.privatePem, [options.from ?? null, options.to]);
    const next = options.to ? options.to.seal(key.kid, pem) : pem;
    if (await store.replaceSigningKeyPem(key.kid, key.privatePem, next)) rewritten++;
    else unchanged++;
  }
  return { rewritten, unchanged };
}
