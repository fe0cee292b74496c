import type { FastifyRequest } from 'fastify';
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { Authenticator } from '../api/app.js';
import type { Caller } from '../domain/caller.js';
import { ApiError, ERRORS } from '../domain/errors.js';
import type { RolePermission } from '../domain/permissions.js';
import type { Store } from '../domain/store.js';
import { textProblem } from '../validation.js';
import { CLOCK_SKEW_SECONDS, type KeyRing } from './keys.js';
import { issuerFor, normalizeAudience } from './tokens.js';

/** A real identity provider whose tokens are accepted for one Countermand tenant. */
export interface TrustedIssuer {
  /** The exact `iss`, e.g. `https://sts.windows.net/<entra tenant id>/`. */
  issuer: string;
  jwksUri: string;
  /** The Countermand tenant its tokens act in. */
  tenantId: string;
}

export interface TokenAuthenticatorOptions {
  store: Store;
  keys: KeyRing;
  issuerBase: string;
  trustedIssuers: readonly TrustedIssuer[];
  /** Normalised accepted audiences (a function: the server's own URL is known after listen). */
  audiences: () => ReadonlySet<string>;
  now?: () => number;
}

const ALGORITHMS = ['RS256', 'ES256'];
/** A verified token is trusted this long before its application or user is looked up again. */
const CALLER_CACHE_MS = 10_000;
const CALLER_CACHE_SIZE = 10_000;

const unauthorized = (message: string) =>
  new ApiError('Unauthorized', 401, message, { 'www-authenticate': 'Bearer error="invalid_token"' });

/** Longest identity claim kept: Entra's UPNs and display names stay well under it. */
export const MAX_CLAIM_LENGTH = 256;

/**
 * A string claim that names the caller, or undefined when absent. A trusted issuer's claims
 * reach storage (the requestor of an action), so they pass the same text check as client
 * input; a token carrying text no store can keep is refused rather than stored mangled.
 */
function identityClaim(payload: JWTPayload, name: string): string | undefined {
  const value = payload[name];
  if (typeof value !== 'string' || !value) return undefined;
  const problem = value.length > MAX_CLAIM_LENGTH ? `is longer than ${MAX_CLAIM_LENGTH} characters` : textProblem(value);
  if (problem) throw unauthorized(`The access token's '${name}' claim ${problem}.`);
  return value;
}

/**
 * Verifies the bearer token of every /api request (contract §7) and turns it into a Caller:
 * RS256/ES256 only, signature from a known key of the token's issuer, exp/nbf with 60 s of
 * skew, issuer and audience checked. Our own tokens name a tenant that must exist, and an
 * application or user that must still exist.
 */
export class TokenAuthenticator implements Authenticator {
  private readonly external = new Map<string, { issuer: TrustedIssuer; keys: JWTVerifyGetKey }>();
  private readonly cache = new Map<string, { caller: Caller; until: number }>();
  private readonly now: () => number;
  private readonly ownIssuer: RegExp;

  constructor(private readonly options: TokenAuthenticatorOptions) {
    this.now = options.now ?? Date.now;
    for (const issuer of options.trustedIssuers) {
      this.external.set(issuer.issuer, { issuer, keys: createRemoteJWKSet(new URL(issuer.jwksUri)) });
    }
    const base = issuerFor(options.issuerBase, 'TENANT').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    this.ownIssuer = new RegExp(`^${base.replace('TENANT', '([0-9a-f-]{36})')}$`);
  }

  /** Forgets every verified token's caller (the emulator replaced the applications and users). */
  forget(): void {
    this.cache.clear();
  }

  async authenticate(request: FastifyRequest): Promise<Caller> {
    const header = request.headers.authorization;
    if (!header) throw unauthorized('Authorization header is missing; send Authorization: Bearer <token>.');
    const match = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/i.exec(header.trim());
    if (!match) throw unauthorized('The Authorization header is not a bearer token.');
    const token = match[1]!;
    const now = this.now();
    const cached = this.cache.get(token);
    if (cached && cached.until > now) return cached.caller;

    const verified = await this.verify(token);
    const caller = await this.toCaller(verified.payload, verified.tenantId, verified.own);
    if (this.cache.size >= CALLER_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(token, { caller, until: Math.min(now + CALLER_CACHE_MS, (verified.payload.exp ?? 0) * 1000) });
    return caller;
  }

  private async verify(token: string): Promise<{ payload: JWTPayload; tenantId: string; own: boolean }> {
    let iss: string | undefined;
    try {
      decodeProtectedHeader(token);
      iss = decodeJwt(token).iss;
    } catch {
      throw unauthorized('The access token is malformed.');
    }
    // A configured issuer is matched exactly and wins over the shape of our own issuer (both
    // may be https://sts.windows.net/<tid>/).
    const external = iss ? this.external.get(iss) : undefined;
    const ownTenant = iss && !external ? this.ownIssuer.exec(iss)?.[1] : undefined;
    if (!iss || (!ownTenant && !external)) throw unauthorized('The access token was issued by an untrusted issuer.');

    const getKey: JWTVerifyGetKey = external
      ? external.keys
      : async (header) => {
          const key = await this.options.keys.verificationKey(header.kid);
          if (!key) throw unauthorized('The access token was signed by an unknown key.');
          return key;
        };
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        algorithms: ALGORITHMS,
        issuer: iss,
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ['exp', 'aud'],
        currentDate: new Date(this.now()),
      }));
    } catch (error) {
      throw this.explain(error);
    }
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud ?? ''];
    if (!audiences.some((a) => this.options.audiences().has(normalizeAudience(a)))) {
      throw unauthorized('The access token is not meant for this API (audience not accepted).');
    }
    if (ownTenant) {
      if (payload.tid !== ownTenant || !(await this.options.store.getTenant(ownTenant))) {
        throw unauthorized('The access token names an unknown tenant.');
      }
      return { payload, tenantId: ownTenant, own: true };
    }
    return { payload, tenantId: external!.issuer.tenantId, own: false };
  }

  private explain(error: unknown): ApiError {
    if (error instanceof ApiError) return error;
    if (error instanceof joseErrors.JWTExpired) return unauthorized('The access token has expired.');
    if (error instanceof joseErrors.JWTClaimValidationFailed) {
      return unauthorized(
        error.claim === 'nbf' ? 'The access token is not yet valid.' : `The access token's '${error.claim}' claim is not valid.`,
      );
    }
    if (error instanceof joseErrors.JWSSignatureVerificationFailed) return unauthorized('The access token signature is invalid.');
    if (error instanceof joseErrors.JOSEAlgNotAllowed) return unauthorized('The access token is not signed with RS256 or ES256.');
    if (error instanceof joseErrors.JWKSNoMatchingKey) return unauthorized('The access token was signed by an unknown key.');
    return unauthorized('The access token is invalid.');
  }

  private async toCaller(payload: JWTPayload, tenantId: string, own: boolean): Promise<Caller> {
    const store = this.options.store;
    const claim = (name: string) => identityClaim(payload, name);
    if (typeof payload.scp === 'string') {
      const oid = claim('oid');
      const upn = claim('upn') ?? claim('unique_name');
      if (!oid) throw unauthorized('The delegated access token has no oid claim.');
      const user =
        (await store.getUserByObjectId(tenantId, oid.toLowerCase())) ?? (!own && upn ? await store.getUserByUpn(tenantId, upn) : null);
      if (!user) {
        if (own) throw unauthorized('The user of this access token no longer exists.');
        throw ERRORS.ForbiddenMessage(`The user '${upn ?? oid}' has no Countermand role permissions in this tenant.`);
      }
      return {
        tenantId,
        kind: 'user',
        id: user.objectId,
        displayName: upn ?? user.upn,
        permissions: new Set(payload.scp.split(' ').filter(Boolean)),
        rolePermissions: new Set(user.rolePermissions as RolePermission[]),
        deviceGroups: user.deviceGroups,
      };
    }
    const appid = claim('appid') ?? claim('azp');
    if (!appid) throw unauthorized('The access token has no appid claim.');
    if (own && !(await store.getApplication(tenantId, appid.toLowerCase()))) {
      throw unauthorized('The application of this access token no longer exists.');
    }
    const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === 'string') : [];
    return {
      tenantId,
      kind: 'application',
      id: appid.toLowerCase(),
      displayName: claim('app_displayname') ?? appid,
      permissions: new Set(roles),
      rolePermissions: null,
      deviceGroups: null,
    };
  }
}
