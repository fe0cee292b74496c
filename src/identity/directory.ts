import { randomUUID } from 'node:crypto';
import { KNOWN_APP_ROLES, KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS } from '../domain/permissions.js';
import type { Application, Tenant, User } from '../domain/model.js';
import type { Store } from '../domain/store.js';
import { generateSecret, hashSecret, verifySecret } from './secrets.js';

export class DirectoryError extends Error {
  override name = 'DirectoryError';
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function checkAll(values: readonly string[], known: readonly string[], what: string): void {
  const unknown = values.filter((v) => !known.includes(v));
  if (unknown.length > 0) throw new DirectoryError(`unknown ${what}: ${unknown.join(', ')} (known: ${known.join(', ')})`);
}

function guid(value: string | undefined, what: string): string {
  const id = (value ?? randomUUID()).toLowerCase();
  if (!GUID.test(id)) throw new DirectoryError(`${what} must be a GUID: ${value}`);
  return id;
}

export interface NewApplication {
  displayName: string;
  roles: readonly string[];
  clientId?: string;
  /** When absent a secret is generated (and returned once). */
  secret?: string;
}

export interface NewUser {
  upn: string;
  password?: string;
  objectId?: string;
  scopes: readonly string[];
  rolePermissions: readonly string[];
  deviceGroups: readonly number[] | null;
}

/**
 * Tenants, applications and users: what the token service authenticates and the CLI and the
 * fixtures manage. Secrets and passwords are hashed here and nowhere else; the clear value is
 * returned once, at creation.
 */
export class Directory {
  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  async createTenant(name: string, id?: string): Promise<Tenant> {
    const tenant = { id: guid(id, 'tenant id'), name };
    await this.store.upsertTenant(tenant);
    return tenant;
  }

  async requireTenant(id: string): Promise<Tenant> {
    const tenant = await this.store.getTenant(id.toLowerCase());
    if (!tenant) throw new DirectoryError(`no tenant ${id}`);
    return tenant;
  }

  async addApplication(tenantId: string, input: NewApplication): Promise<{ application: Application; secret: string }> {
    await this.requireTenant(tenantId);
    checkAll(input.roles, KNOWN_APP_ROLES, 'application roles');
    const clientId = guid(input.clientId, 'client id');
    const existing = await this.store.getApplication(tenantId.toLowerCase(), clientId);
    const secret = input.secret ?? generateSecret();
    if (secret.length < 16) throw new DirectoryError('a client secret needs at least 16 characters');
    const keepHash = existing && input.secret !== undefined && (await verifySecret(secret, existing.secretHash));
    const application: Application = {
      tenantId: tenantId.toLowerCase(),
      clientId,
      objectId: existing?.objectId ?? randomUUID(),
      displayName: input.displayName,
      secretHash: keepHash ? existing.secretHash : await hashSecret(secret),
      roles: [...input.roles],
      createdAt: existing?.createdAt ?? this.now(),
    };
    await this.store.upsertApplication(application);
    return { application, secret };
  }

  async resetSecret(tenantId: string, clientId: string): Promise<string> {
    const app = await this.store.getApplication(tenantId.toLowerCase(), clientId.toLowerCase());
    if (!app) throw new DirectoryError(`no application ${clientId} in tenant ${tenantId}`);
    const secret = generateSecret();
    await this.store.upsertApplication({ ...app, secretHash: await hashSecret(secret) });
    return secret;
  }

  async addUser(tenantId: string, input: NewUser): Promise<{ user: User; password: string }> {
    await this.requireTenant(tenantId);
    checkAll(input.scopes, KNOWN_DELEGATED_SCOPES, 'delegated scopes');
    checkAll(input.rolePermissions, ROLE_PERMISSIONS, 'role permissions');
    const existing = await this.store.getUserByUpn(tenantId.toLowerCase(), input.upn);
    const password = input.password ?? generateSecret();
    if (password.length < 8) throw new DirectoryError('a password needs at least 8 characters');
    const keepHash = existing && input.password !== undefined && (await verifySecret(password, existing.passwordHash));
    const user: User = {
      tenantId: tenantId.toLowerCase(),
      objectId: existing?.objectId ?? guid(input.objectId, 'object id'),
      upn: input.upn,
      passwordHash: keepHash ? existing.passwordHash : await hashSecret(password),
      scopes: [...input.scopes],
      rolePermissions: [...input.rolePermissions],
      deviceGroups: input.deviceGroups === null ? null : [...input.deviceGroups],
      createdAt: existing?.createdAt ?? this.now(),
    };
    await this.store.upsertUser(user);
    return { user, password };
  }

  /**
   * The application if the secret is right; null otherwise (never says which part was wrong).
   * `source` is who asks, for the hashing queue's turns (secrets.ts).
   */
  async authenticateApplication(tenantId: string, clientId: string, secret: string, source?: string): Promise<Application | null> {
    const app = await this.store.getApplication(tenantId, clientId.toLowerCase());
    // Hash even when the application is unknown, so timing does not tell which ids exist.
    const ok = await verifySecret(secret, app?.secretHash ?? (await dummyHash()), source);
    return app && ok ? app : null;
  }

  async authenticateUser(tenantId: string, upn: string, password: string, source?: string): Promise<User | null> {
    const user = await this.store.getUserByUpn(tenantId, upn);
    const ok = await verifySecret(password, user?.passwordHash ?? (await dummyHash()), source);
    return user && ok ? user : null;
  }
}

/** A valid hash of a random value, verified against when the account does not exist. */
let dummy: Promise<string> | undefined;
const dummyHash = () => (dummy ??= hashSecret(generateSecret()));
