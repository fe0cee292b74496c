import type { Authenticator } from '../api/app.js';
import type { Caller } from '../domain/caller.js';
import type { Fixtures } from '../fixtures.js';

/**
 * Attributes every request to one application from the fixtures (the fixtures' defaultCaller,
 * or the first tenant's first application). Only for use until tokens are verified.
 */
export class DefaultCallerAuthenticator implements Authenticator {
  constructor(private readonly caller: Caller) {}

  static fromFixtures(fixtures: Fixtures): DefaultCallerAuthenticator | null {
    const wanted = fixtures.defaultCaller;
    for (const tenant of fixtures.tenants) {
      if (wanted && tenant.id.toLowerCase() !== wanted.tenantId.toLowerCase()) continue;
      const app = (tenant.applications ?? []).find(
        (a) => !wanted || a.clientId.toLowerCase() === wanted.clientId.toLowerCase(),
      );
      if (!app) continue;
      return new DefaultCallerAuthenticator({
        tenantId: tenant.id.toLowerCase(),
        kind: 'application',
        id: app.clientId.toLowerCase(),
        displayName: app.displayName,
        permissions: new Set(app.roles),
        rolePermissions: null,
        deviceGroups: null,
      });
    }
    return null;
  }

  async authenticate(): Promise<Caller> {
    return this.caller;
  }
}
