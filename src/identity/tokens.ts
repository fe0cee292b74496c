import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Application, User } from '../domain/model.js';
import { TOKEN_LIFETIME_SECONDS, type KeyRing } from './keys.js';

/**
 * The resources (audiences) MDE clients ask tokens for (contract §7); the server's own URL too.
 * `api.securitycenter.windows.com` is the legacy one: older installs keep it, and the Logic
 * Apps connector's description names that host.
 */
export const MDE_AUDIENCES = [
  'https://api.securitycenter.microsoft.com',
  'https://api.security.microsoft.com',
  'https://securitycenter.onmicrosoft.com/windowsatpservice',
  'https://api.securitycenter.windows.com',
  'fc780465-2017-40d4-a0c5-307022471b92',
] as const;

/** Audiences compare without a trailing slash and case-insensitively (they are URLs or ids). */
export const normalizeAudience = (aud: string): string => aud.trim().replace(/\/+$/, '').toLowerCase();

export function acceptedAudiences(ownBaseUrl: string): Set<string> {
  return new Set([...MDE_AUDIENCES, ownBaseUrl].map(normalizeAudience));
}

/** `https://sts.windows.net/{tid}/`, as MDE's v1.0 tokens carry. */
export const issuerFor = (issuerBase: string, tenantId: string): string => `${issuerBase.replace(/\/+$/, '')}/${tenantId}/`;

/**
 * Issues v1.0-style access tokens shaped like the ones MDE accepts (contract §7): RS256 with a
 * `kid`, `roles` for applications, `scp` + `upn` for users.
 */
export class TokenIssuer {
  constructor(
    private readonly keys: KeyRing,
    private readonly issuerBase: string,
    private readonly now: () => number = Date.now,
    /** Each token's `uti` (the emulator's seeded stream; default random). */
    private readonly newId: () => string = randomUUID,
  ) {}

  private async sign(tenantId: string, audience: string, claims: Record<string, unknown>): Promise<string> {
    const { kid, key } = this.keys.signingKey();
    const iat = Math.floor(this.now() / 1000);
    const iss = issuerFor(this.issuerBase, tenantId);
    return new SignJWT({ ...claims, idp: iss, tid: tenantId, uti: this.newId(), ver: '1.0' })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid })
      .setIssuer(iss)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + TOKEN_LIFETIME_SECONDS)
      .sign(key);
  }

  forApplication(app: Application, audience: string): Promise<string> {
    return this.sign(app.tenantId, audience, {
      appid: app.clientId,
      appidacr: '1',
      app_displayname: app.displayName,
      oid: app.objectId,
      sub: app.objectId,
      idtyp: 'app',
      roles: app.roles,
    });
  }

  /** A delegated token; `client` is the application the user signed in through, if named. */
  forUser(user: User, audience: string, client: Application | null): Promise<string> {
    return this.sign(user.tenantId, audience, {
      appid: client?.clientId ?? PUBLIC_CLIENT_ID,
      appidacr: client ? '1' : '0',
      app_displayname: client?.displayName ?? 'Countermand public client',
      oid: user.objectId,
      sub: user.objectId,
      upn: user.upn,
      unique_name: user.upn,
      idtyp: 'user',
      scp: user.scopes.join(' '),
    });
  }
}

/** The `appid` of delegated tokens requested without a client_id. */
export const PUBLIC_CLIENT_ID = '00000000-0000-0000-0000-00000000c0de';
