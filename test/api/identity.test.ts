import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  SignJWT,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importPKCS8,
  jwtVerify,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnrollmentToken } from '../../src/dispatch/enrollment.js';
import { KNOWN_APP_ROLES, KNOWN_DELEGATED_SCOPES, ROLE_PERMISSIONS, type RolePermission } from '../../src/domain/permissions.js';
import type { Fixtures } from '../../src/fixtures.js';
import { MAX_CLAIM_LENGTH } from '../../src/identity/authenticator.js';
import { Client, TEST_SECRET, appToken, hexId, startTestServer, userToken, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';

/**
 * Identity over HTTP (contract §2, §6, §7, §8): the token service, token verification, the
 * permission table for applications and delegated users, device groups, tenant isolation and
 * rate limits.
 */

const RESOURCE = 'https://api.securitycenter.microsoft.com';
const PASSWORD = 'user-password-123';
const tenantA = randomUUID();
const tenantB = randomUUID();
const ALL_APP = randomUUID();
const B_APP = randomUUID();
const THROTTLED_APP = randomUUID();
const roleApp = Object.fromEntries(KNOWN_APP_ROLES.map((r) => [r, randomUUID()])) as Record<string, string>;
const machinesA = Array.from({ length: 80 }, (_, i) => ({ id: hexId(), computerDnsName: `a-${i}.local`, rbacGroupId: i < 70 ? 1 : 2 }));
const machineB = { id: hexId(), computerDnsName: 'b-0.local', rbacGroupId: 1 };

/** Users: one per delegated scope (all role permissions), one per missing role permission, and some specials. */
const scopeUser = (scope: string) => `scope-${scope.toLowerCase()}@a.test`;
const missingRoleUser = (role: string) => `no-${role.replace(/ /g, '-').toLowerCase()}@a.test`;

function fixtures(): Fixtures {
  const users = [
    ...KNOWN_DELEGATED_SCOPES.map((scope) => ({
      upn: scopeUser(scope),
      password: PASSWORD,
      scopes: [scope],
      rolePermissions: [...ROLE_PERMISSIONS],
    })),
    ...ROLE_PERMISSIONS.map((role) => ({
      upn: missingRoleUser(role),
      password: PASSWORD,
      scopes: [...KNOWN_DELEGATED_SCOPES],
      rolePermissions: ROLE_PERMISSIONS.filter((r) => r !== role),
    })),
    { upn: 'full@a.test', password: PASSWORD, scopes: [...KNOWN_DELEGATED_SCOPES], rolePermissions: [...ROLE_PERMISSIONS] },
    {
      upn: 'group1@a.test',
      password: PASSWORD,
      scopes: [...KNOWN_DELEGATED_SCOPES],
      rolePermissions: [...ROLE_PERMISSIONS],
      deviceGroups: [1],
    },
  ];
  return {
    tenants: [
      {
        id: tenantA,
        name: 'A',
        machines: machinesA.map((m) => ({ ...m, rbacGroupName: `g${m.rbacGroupId}` })),
        applications: [
          { clientId: ALL_APP, clientSecret: TEST_SECRET, displayName: 'All Roles App', roles: [...KNOWN_APP_ROLES] },
          { clientId: THROTTLED_APP, clientSecret: TEST_SECRET, displayName: 'Brute-forced App', roles: [] },
          ...KNOWN_APP_ROLES.map((role) => ({ clientId: roleApp[role]!, clientSecret: TEST_SECRET, displayName: `Only ${role}`, roles: [role] })),
        ],
        users,
      },
      {
        id: tenantB,
        name: 'B',
        machines: [{ ...machineB, rbacGroupName: 'g1' }],
        applications: [{ clientId: B_APP, clientSecret: TEST_SECRET, displayName: 'B App', roles: [...KNOWN_APP_ROLES] }],
      },
    ],
  };
}

let server: TestServer;
let admin: Client;
let pool: typeof machinesA;
const tokens = new Map<string, string>();

async function app(clientId: string): Promise<Client> {
  let token = tokens.get(clientId);
  if (!token) {
    token = await appToken(server, clientId === B_APP ? tenantB : tenantA, clientId);
    tokens.set(clientId, token);
  }
  return new Client(server.url, { authorization: `Bearer ${token}` });
}

async function user(upn: string): Promise<Client> {
  let token = tokens.get(upn);
  if (!token) {
    token = await userToken(server, tenantA, upn, PASSWORD);
    tokens.set(upn, token);
  }
  return new Client(server.url, { authorization: `Bearer ${token}` });
}

function fresh() {
  const m = pool.find((x) => x.rbacGroupId === 1 && machinesA.indexOf(x) < 60);
  if (!m) throw new Error('machine pool exhausted');
  pool = pool.filter((x) => x !== m);
  return m;
}

beforeAll(async () => {
  server = await startTestServer({ fixtures: fixtures(), config: { rateLimitScale: 1000 } });
  pool = [...machinesA];
  admin = await app(ALL_APP);
});
afterAll(async () => {
  await server?.stop();
});

function expect401(res: { status: number; body: any; headers: Headers }, message?: RegExp) {
  expect(res.status).toBe(401);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(res.body.error.code).toBe('Unauthorized');
  expect(res.body.error.target).toBe(res.headers.get('request-id'));
  expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
  if (message) expect(res.body.error.message).toMatch(message);
}

async function post(path: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

describe('token service', () => {
  it('v2 client credentials: the reply and the token are shaped like MDE expects', async () => {
    const res = await post(`/${tenantA}/oauth2/v2.0/token`, {
      grant_type: 'client_credentials',
      client_id: ALL_APP,
      client_secret: TEST_SECRET,
      scope: `${RESOURCE}/.default`,
    });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['token_type', 'expires_in', 'ext_expires_in', 'access_token']);
    expect(res.body.token_type).toBe('Bearer');
    expect(res.body.expires_in).toBe(3599);
    expect(res.body.ext_expires_in).toBe(3599);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const header = decodeProtectedHeader(res.body.access_token);
    expect(header.alg).toBe('RS256');
    expect(header.kid).toEqual(expect.any(String));
    const claims = decodeJwt(res.body.access_token);
    expect(claims).toMatchObject({
      iss: `https://sts.windows.net/${tenantA}/`,
      aud: RESOURCE,
      tid: tenantA,
      appid: ALL_APP,
      app_displayname: 'All Roles App',
      roles: [...KNOWN_APP_ROLES],
    });
    expect(claims.oid).toEqual(expect.any(String));
    expect(claims.exp! - claims.iat!).toBe(3599);
    expect(claims.nbf).toBe(claims.iat);
  });

  it('v1 client credentials with resource, HTTP Basic credentials, GET with a form body, and a doubled slash', async () => {
    const v1 = await post(`//${tenantA}/oauth2/token`, {
      grant_type: 'client_credentials',
      client_id: ALL_APP,
      client_secret: TEST_SECRET,
      resource: 'https://api.security.microsoft.com/',
    });
    expect(v1.status).toBe(200);
    expect(decodeJwt(v1.body.access_token).aud).toBe('https://api.security.microsoft.com');
    const basic = await post(
      `/${tenantA}/oauth2/v2.0/token`,
      { grant_type: 'client_credentials', scope: 'fc780465-2017-40d4-a0c5-307022471b92/.default' },
      { authorization: `Basic ${Buffer.from(`${ALL_APP}:${TEST_SECRET}`).toString('base64')}` },
    );
    expect(basic.status).toBe(200);
    expect(decodeJwt(basic.body.access_token).aud).toBe('fc780465-2017-40d4-a0c5-307022471b92');
    // Some clients send the form as a GET body; fetch will not, so speak HTTP directly.
    const { request } = await import('node:http');
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: ALL_APP, client_secret: TEST_SECRET, resource: RESOURCE }).toString();
    const got = await new Promise<{ status: number; json: any }>((resolve, reject) => {
      const req = request(`${server.url}/${tenantA}/oauth2/token`, {
        method: 'GET',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
      }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(got.status).toBe(200);
    expect(got.json.access_token).toEqual(expect.any(String));
  });

  it('the legacy resource https://api.securitycenter.windows.com (v1 and v2): its tokens work on /api', async () => {
    const legacy = 'https://api.securitycenter.windows.com';
    const v1 = await post(`/${tenantA}/oauth2/token`, { grant_type: 'client_credentials', client_id: ALL_APP, client_secret: TEST_SECRET, resource: legacy });
    expect(v1.status, JSON.stringify(v1.body)).toBe(200);
    expect(decodeJwt(v1.body.access_token).aud).toBe(legacy);
    const v2 = await post(`/${tenantA}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: ALL_APP, client_secret: TEST_SECRET, scope: `${legacy}/.default` });
    expect(v2.status, JSON.stringify(v2.body)).toBe(200);
    const user = await post(`/${tenantA}/oauth2/token`, { grant_type: 'password', username: 'full@a.test', password: PASSWORD, resource: `${legacy}/` });
    expect(user.status, JSON.stringify(user.body)).toBe(200);
    for (const token of [v1.body.access_token, v2.body.access_token, user.body.access_token]) {
      const res = await new Client(server.url, { authorization: `Bearer ${token}` }).get('/api/machines?$top=1');
      expect(res.status, res.text).toBe(200);
    }
  });

  it('password grant gives a delegated token with scp and upn', async () => {
    const res = await post(`/${tenantA}/oauth2/token`, {
      grant_type: 'password',
      username: 'FULL@a.test',
      password: PASSWORD,
      resource: RESOURCE,
      client_id: ALL_APP,
    });
    expect(res.status).toBe(200);
    const claims = decodeJwt(res.body.access_token);
    expect(claims.scp).toBe(KNOWN_DELEGATED_SCOPES.join(' '));
    expect(claims.upn).toBe('full@a.test');
    expect(claims.appid).toBe(ALL_APP);
    expect(claims.roles).toBeUndefined();
  });

  const refusals: [string, string, Record<string, string>, number, string][] = [
    ['wrong secret', `/${tenantA}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: ALL_APP, client_secret: 'wrong-secret-value', scope: `${RESOURCE}/.default` }, 401, 'invalid_client'],
    ['unknown client', `/${tenantA}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: randomUUID(), client_secret: TEST_SECRET, scope: `${RESOURCE}/.default` }, 401, 'invalid_client'],
    ['client of another tenant', `/${tenantA}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: B_APP, client_secret: TEST_SECRET, scope: `${RESOURCE}/.default` }, 401, 'invalid_client'],
    ['unknown tenant', `/${randomUUID()}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: ALL_APP, client_secret: TEST_SECRET, scope: `${RESOURCE}/.default` }, 400, 'invalid_request'],
    ['no grant_type', `/${tenantA}/oauth2/token`, { client_id: ALL_APP, client_secret: TEST_SECRET, resource: RESOURCE }, 400, 'invalid_request'],
    ['unsupported grant', `/${tenantA}/oauth2/token`, { grant_type: 'authorization_code', code: 'x', resource: RESOURCE }, 400, 'unsupported_grant_type'],
    ['foreign resource (v1)', `/${tenantA}/oauth2/token`, { grant_type: 'client_credentials', client_id: ALL_APP, client_secret: TEST_SECRET, resource: 'https://graph.microsoft.com' }, 400, 'invalid_resource'],
    ['foreign scope (v2)', `/${tenantA}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: ALL_APP, client_secret: TEST_SECRET, scope: 'https://graph.microsoft.com/.default' }, 400, 'invalid_scope'],
    ['wrong password', `/${tenantA}/oauth2/token`, { grant_type: 'password', username: 'full@a.test', password: 'nope-nope', resource: RESOURCE }, 400, 'invalid_grant'],
  ];
  it.each(refusals)('%s -> %i %s (RFC 6749 §5.2)', async (_name, path, form, status, error) => {
    const res = await post(path, form);
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
    expect(res.body.error_description).toEqual(expect.any(String));
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  });

  it('a form that is not url-encoded is invalid_request', async () => {
    const res = await fetch(`${server.url}/${tenantA}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials' }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_request');
  });

  it('repeated failures for one client are throttled with Retry-After', async () => {
    const victim = THROTTLED_APP;
    let last = 0;
    for (let i = 0; i < 21; i++) {
      last = (await post(`/${tenantA}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: victim, client_secret: `wrong-${i}-xxxxxxxx`, scope: `${RESOURCE}/.default` })).status;
    }
    expect(last).toBe(429);
    const right = await post(`/${tenantA}/oauth2/v2.0/token`, { grant_type: 'client_credentials', client_id: victim, client_secret: TEST_SECRET, scope: `${RESOURCE}/.default` });
    expect(right.status).toBe(429);
    expect(Number(right.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('stores secrets and passwords only as hashes', () => {
    const db = readFileSync(join(server.dataDir, 'countermand.db'));
    const wal = (() => {
      try {
        return readFileSync(join(server.dataDir, 'countermand.db-wal'));
      } catch {
        return Buffer.alloc(0);
      }
    })();
    for (const secret of [TEST_SECRET, PASSWORD]) {
      expect(db.includes(secret)).toBe(false);
      expect(wal.includes(secret)).toBe(false);
    }
  });

  it('publishes JWKS and OpenID metadata that verify its tokens', async () => {
    const meta = (await (await fetch(`${server.url}/${tenantA}/v2.0/.well-known/openid-configuration`)).json()) as Record<string, string>;
    expect(meta.issuer).toBe(`https://sts.windows.net/${tenantA}/`);
    expect(meta.token_endpoint).toBe(`${server.url}/${tenantA}/oauth2/v2.0/token`);
    const jwks = (await (await fetch(meta.jwks_uri!)).json()) as { keys: object[] };
    const common = (await (await fetch(`${server.url}/common/discovery/keys`)).json()) as { keys: object[] };
    expect(common).toEqual(jwks);
    const token = await appToken(server, tenantA, ALL_APP);
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks as never), { issuer: meta.issuer, audience: RESOURCE });
    expect(payload.appid).toBe(ALL_APP);
    for (const k of jwks.keys as Record<string, unknown>[]) expect(k).not.toHaveProperty('d');
  });
});

describe('token verification on /api', () => {
  const base = () => ({
    tid: tenantA,
    appid: ALL_APP,
    app_displayname: 'All Roles App',
    oid: randomUUID(),
    roles: ['Machine.Read.All'],
  });

  async function realKey() {
    const [key] = await server.store.listSigningKeys();
    return { kid: key!.kid, privateKey: await importPKCS8(key!.privatePem, 'RS256'), publicJwk: key!.publicJwk };
  }

  async function signed(claims: Record<string, unknown>, opts: { iss?: string; aud?: string; iat?: number; exp?: number; nbf?: number } = {}) {
    const { kid, privateKey } = await realKey();
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid })
      .setIssuer(opts.iss ?? `https://sts.windows.net/${tenantA}/`)
      .setAudience(opts.aud ?? RESOURCE)
      .setIssuedAt(opts.iat ?? now)
      .setNotBefore(opts.nbf ?? now)
      .setExpirationTime(opts.exp ?? now + 3599)
      .sign(privateKey);
  }

  const call = (authorization?: string) =>
    new Client(server.url, authorization === undefined ? {} : { authorization }).get('/api/machines');

  it('accepts a well-formed token signed by a current key', async () => {
    expect((await call(`Bearer ${await signed(base())}`)).status).toBe(200);
  });

  it('missing or malformed Authorization -> 401', async () => {
    expect401(await call(), /missing/);
    expect401(await call('Basic abc'), /bearer/);
    expect401(await call('Bearer'), /bearer/);
    expect401(await call('Bearer not.a.jwt'), /malformed/);
    expect401(await call('Bearer a.b'), /bearer/);
  });

  it('expired (beyond 60 s of skew) -> 401; within the skew -> accepted', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect401(await call(`Bearer ${await signed(base(), { iat: now - 4000, nbf: now - 4000, exp: now - 120 })}`), /expired/);
    expect((await call(`Bearer ${await signed(base(), { iat: now - 4000, nbf: now - 4000, exp: now - 30 })}`)).status).toBe(200);
  });

  it('not yet valid -> 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect401(await call(`Bearer ${await signed(base(), { nbf: now + 600, iat: now, exp: now + 3000 })}`), /not yet valid/);
  });

  it('wrong audience -> 401', async () => {
    expect401(await call(`Bearer ${await signed(base(), { aud: 'https://graph.microsoft.com' })}`), /audience/);
  });

  it('wrong issuer -> 401, also for our own issuer naming another tenant in tid', async () => {
    expect401(await call(`Bearer ${await signed(base(), { iss: 'https://evil.example/' })}`), /issuer/);
    expect401(await call(`Bearer ${await signed({ ...base(), tid: tenantB }, {})}`), /tenant/);
    expect401(await call(`Bearer ${await signed({ ...base(), tid: randomUUID() }, { iss: `https://sts.windows.net/${randomUUID()}/` })}`), /tenant/);
  });

  it('unknown kid -> 401', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT(base())
      .setProtectedHeader({ alg: 'RS256', kid: 'not-a-known-kid' })
      .setIssuer(`https://sts.windows.net/${tenantA}/`)
      .setAudience(RESOURCE)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(privateKey);
    expect401(await call(`Bearer ${token}`), /unknown key/);
  });

  it('bad signature (claims changed after signing) -> 401', async () => {
    const token = await signed(base());
    const [h, , sig] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ ...decodeJwt(token), roles: [...KNOWN_APP_ROLES] })).toString('base64url');
    expect401(await call(`Bearer ${h}.${forged}.${sig}`), /signature/);
  });

  it('alg none -> 401', async () => {
    const { kid } = await realKey();
    const now = Math.floor(Date.now() / 1000);
    const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid })).toString('base64url');
    const p = Buffer.from(JSON.stringify({ ...base(), iss: `https://sts.windows.net/${tenantA}/`, aud: RESOURCE, iat: now, nbf: now, exp: now + 600 })).toString('base64url');
    expect401(await call(`Bearer ${h}.${p}.`));
  });

  it('HS256 signed with the public key (key confusion) -> 401', async () => {
    const { kid, publicJwk } = await realKey();
    const { createHmac } = await import('node:crypto');
    const { createPublicKey } = await import('node:crypto');
    const pem = createPublicKey({ key: publicJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
    const now = Math.floor(Date.now() / 1000);
    for (const secret of [pem, JSON.stringify(publicJwk)]) {
      const h = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid })).toString('base64url');
      const p = Buffer.from(JSON.stringify({ ...base(), iss: `https://sts.windows.net/${tenantA}/`, aud: RESOURCE, iat: now, nbf: now, exp: now + 600 })).toString('base64url');
      const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
      expect401(await call(`Bearer ${h}.${p}.${s}`), /RS256|ES256/);
    }
  });

  it('a token for a user or application that does not exist -> 401', async () => {
    expect401(await call(`Bearer ${await signed({ ...base(), appid: randomUUID() })}`), /application/);
    const { roles: _r, ...userClaims } = base();
    expect401(await call(`Bearer ${await signed({ ...userClaims, scp: 'Machine.Read', upn: 'ghost@a.test', oid: randomUUID() })}`), /user/);
  });

  it('key rotation: tokens of the retired key stay valid, new tokens use the new key, JWKS shows both', async () => {
    const before = await appToken(server, tenantA, ALL_APP);
    const oldKid = decodeProtectedHeader(before).kid;
    const rotated = await server.keys.rotate();
    const after = await appToken(server, tenantA, ALL_APP);
    expect(decodeProtectedHeader(after).kid).toBe(rotated.kid);
    expect(rotated.kid).not.toBe(oldKid);
    const bearer = (t: string) => new Client(server.url, { authorization: `Bearer ${t}` });
    expect((await bearer(before).get('/api/machines?$top=1')).status).toBe(200);
    expect((await bearer(after).get('/api/machines?$top=1')).status).toBe(200);
    const jwks = (await (await fetch(`${server.url}/common/discovery/keys`)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((k) => k.kid).sort()).toEqual([oldKid, rotated.kid].sort());
  });
});

/** The contract's permission table (§2), one row per operation. */
interface Row {
  name: string;
  app: string[];
  delegated: string[];
  role: RolePermission;
  call(c: Client): Promise<{ status: number; body: any }>;
}

async function pendingAction(machine = fresh()) {
  const res = await admin.post(`/api/machines/${machine.id}/isolate`, { Comment: 'setup' });
  expect(res.status).toBe(201);
  return res.body.id as string;
}

let readable: Promise<string> | undefined;

/** An alert raised the only way there is: an agent reports a scan that found something. */
async function raisedAlert(): Promise<string> {
  const enrolled = await new Client(server.url).post('/agent/v1/enroll', {
    enrollmentToken: await createEnrollmentToken(server.store, tenantA, 'permissions', { rbacGroupId: 3, rbacGroupName: 'g3' }),
    machine: { computerDnsName: 'alerting.a.local' },
  });
  const machineAgent = new Client(server.url, { authorization: `Bearer ${enrolled.body.agentToken}` });
  const scan = await admin.post(`/api/machines/${enrolled.body.machineId}/runAntiVirusScan`, { Comment: 'setup', ScanType: 'Quick' });
  const report = await machineAgent.post(`/agent/v1/actions/${scan.body.id}/report`, {
    reportId: 'r',
    status: 'Succeeded',
    errorHResult: 0,
    troubleshootInfo: null,
    detail: { findings: [{ path: '/tmp/eicar.com', signature: 'Eicar-Signature' }] },
  });
  expect(report.body).toEqual({ status: 'Succeeded', applied: true });
  const alerts = (await admin.get(`/api/alerts?$top=1`)).body.value;
  expect(alerts[0].machineId).toBe(enrolled.body.machineId);
  return alerts[0].id as string;
}
let alerted: Promise<string> | undefined;

/** startInvestigation, then its package collection cancelled, so the next call can start one. */
async function investigate(c: Client, machine: { id: string }) {
  const res = await c.post(`/api/machines/${machine.id}/startInvestigation`, { Comment: 'p' });
  if (res.status === 201) {
    const action = (await admin.get(`/api/machineactions?$filter=machineId eq '${machine.id}' and status eq 'Pending'`)).body.value[0];
    await admin.post(`/api/machineactions/${action.id}/cancel`, { Comment: 'cleanup' });
  }
  return res;
}
let investigation: Promise<string> | undefined;

/** Each permission row works on a machine of its own, and leaves no action pending behind it. */
const scratch = (row: number) => machinesA[60 + row]!;
async function settle(res: { status: number; body: any }) {
  if (res.status === 201) await admin.post(`/api/machineactions/${res.body.id}/cancel`, { Comment: 'cleanup' });
  return res;
}

const ACTION_ROWS: [string, string, object, string[], string[], RolePermission][] = [
  ['isolate', 'isolate', { Comment: 'p' }, ['Machine.Isolate'], ['Machine.Isolate'], 'Active remediation actions'],
  ['unisolate', 'unisolate', { Comment: 'p' }, ['Machine.Isolate'], ['Machine.Isolate'], 'Active remediation actions'],
  ['runAntiVirusScan', 'runAntiVirusScan', { Comment: 'p', ScanType: 'Quick' }, ['Machine.Scan'], ['Machine.Scan'], 'Active remediation actions'],
  ['collectInvestigationPackage', 'collectInvestigationPackage', { Comment: 'p' }, ['Machine.CollectForensics'], ['Machine.CollectForensics'], 'Alerts investigation'],
  ['restrictCodeExecution', 'restrictCodeExecution', { Comment: 'p' }, ['Machine.RestrictExecution'], ['Machine.RestrictExecution'], 'Active remediation actions'],
  ['unrestrictCodeExecution', 'unrestrictCodeExecution', { Comment: 'p' }, ['Machine.RestrictExecution'], ['Machine.RestrictExecution'], 'Active remediation actions'],
  ['offboard', 'offboard', { Comment: 'p' }, ['Machine.Offboard'], ['Machine.Offboard'], 'Manage security settings'],
  ['StopAndQuarantineFile', 'StopAndQuarantineFile', { Comment: 'p', Sha1: 'c'.repeat(40) }, ['Machine.StopAndQuarantine', 'Machine.ReadWrite.All'], ['Machine.StopAndQuarantine'], 'Active remediation actions'],
  ['runliveresponse', 'runliveresponse', { Comment: 'p', Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] }] }, ['Machine.LiveResponse'], ['Machine.LiveResponse'], 'Live response advanced'],
];
const READ = { app: ['Machine.Read.All', 'Machine.ReadWrite.All'], delegated: ['Machine.Read', 'Machine.ReadWrite'], role: 'View data' as RolePermission };
const READ_ALERTS = { app: ['Alert.Read.All', 'Alert.ReadWrite.All'], delegated: ['Alert.Read', 'Alert.ReadWrite'], role: 'View data' as RolePermission };
const ANY_ACTION = ['Machine.CollectForensics', 'Machine.Isolate', 'Machine.RestrictExecution', 'Machine.Scan', 'Machine.Offboard', 'Machine.StopAndQuarantine', 'Machine.LiveResponse'];

const ROWS: Row[] = [
  { name: 'GET /api/machineactions', ...READ, call: (c) => c.get('/api/machineactions?$top=1') },
  {
    name: 'GET /api/machineactions/{id}',
    ...READ,
    call: async (c) => c.get(`/api/machineactions/${await (readable ??= pendingAction())}`),
  },
  {
    name: 'POST /api/machineactions/{id}/cancel',
    app: ANY_ACTION,
    delegated: ANY_ACTION,
    role: 'Active remediation actions',
    call: async (c) => {
      const id = await pendingAction(scratch(0));
      const res = await c.post(`/api/machineactions/${id}/cancel`, { Comment: 'p' });
      if (res.status !== 200) await admin.post(`/api/machineactions/${id}/cancel`, { Comment: 'cleanup' });
      return res;
    },
  },
  ...ACTION_ROWS.map(([name, route, body, app, delegated, role], i) => ({
    name: `POST /api/machines/{id}/${name}`,
    app,
    delegated,
    role,
    call: async (c: Client) => settle(await c.post(`/api/machines/${scratch(i + 1).id}/${route}`, body)),
  })),
  { name: 'GET /api/machines', ...READ, call: (c) => c.get('/api/machines?$top=1') },
  { name: 'GET /api/machines/{id}', ...READ, call: (c) => c.get(`/api/machines/${machinesA[0]!.id}`) },
  {
    name: 'GET /api/machines/findbyip(...)',
    ...READ,
    call: (c) => c.get(`/api/machines/findbyip(ip='10.1.2.3',timestamp=${new Date().toISOString()})`),
  },
  {
    name: 'POST /api/machines/{id}/startInvestigation',
    app: ['Alert.ReadWrite.All'],
    delegated: ['Alert.ReadWrite'],
    role: 'Alerts investigation',
    call: (c) => investigate(c, scratch(10)),
  },
  { name: 'GET /api/alerts', ...READ_ALERTS, call: (c) => c.get('/api/alerts?$top=1') },
  { name: 'GET /api/alerts/{id}', ...READ_ALERTS, call: async (c) => c.get(`/api/alerts/${await (alerted ??= raisedAlert())}`) },
  { name: 'GET /api/investigations', ...READ_ALERTS, call: (c) => c.get('/api/investigations?$top=1') },
  {
    name: 'GET /api/investigations/{id}',
    ...READ_ALERTS,
    call: async (c) =>
      c.get(`/api/investigations/${await (investigation ??= investigate(admin, scratch(11)).then((r) => r.body.id as string))}`),
  },
];

describe('permissions (contract §2): applications', () => {
  it.each(ROWS)('$name', async (row) => {
    for (const role of KNOWN_APP_ROLES) {
      const res = await row.call(await app(roleApp[role]!));
      if (row.app.includes(role)) {
        expect(res.status, `${role} should be allowed: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      } else {
        expect(res.status, `${role} should be refused`).toBe(403);
        expect(res.body.error.code).toBe('Forbidden');
        for (const accepted of row.app) expect(res.body.error.message).toContain(accepted);
      }
    }
  });
});

describe('permissions (contract §2, §7): delegated users need the scope and the role permission', () => {
  it.each(ROWS)('$name', async (row) => {
    for (const scope of KNOWN_DELEGATED_SCOPES) {
      const res = await row.call(await user(scopeUser(scope)));
      if (row.delegated.includes(scope)) {
        expect(res.status, `${scope} should be allowed: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      } else {
        expect(res.status, `${scope} should be refused`).toBe(403);
        for (const accepted of row.delegated) expect(res.body.error.message).toContain(accepted);
      }
    }
    for (const role of ROLE_PERMISSIONS) {
      const res = await row.call(await user(missingRoleUser(role)));
      if (role === row.role) {
        expect(res.status, `without '${role}' should be refused`).toBe(403);
        expect(res.body.error.message).toContain(role);
      } else {
        expect(res.status, `without '${role}' should still be allowed: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      }
    }
  });

  it('cancel needs the role permission of the cancelled action type', async () => {
    const scanId = (await admin.post(`/api/machines/${fresh().id}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Full' })).body.id;
    const noRemediation = await user(missingRoleUser('Active remediation actions'));
    expect((await noRemediation.post(`/api/machineactions/${scanId}/cancel`, { Comment: 'x' })).status).toBe(403);
    const pkgId = (await admin.post(`/api/machines/${fresh().id}/collectInvestigationPackage`, { Comment: 'x' })).body.id;
    expect((await noRemediation.post(`/api/machineactions/${pkgId}/cancel`, { Comment: 'x' })).status).toBe(200);
  });
});

describe('cancelRequiresMatchingPermission', () => {
  it('by default any action permission cancels; with the switch only the matching one does', async () => {
    const scanOnly = () => appToken(server, tenantA, roleApp['Machine.Scan']!);
    const isolation = await pendingAction();
    const lenient = await new Client(server.url, { authorization: `Bearer ${await scanOnly()}` }).post(
      `/api/machineactions/${isolation}/cancel`,
      { Comment: 'x' },
    );
    expect(lenient.status).toBe(200);

    const s = await startTestServer({ fixtures: fixtures(), config: { cancelRequiresMatchingPermission: true } });
    try {
      const all = new Client(s.url, { authorization: `Bearer ${await appToken(s, tenantA, ALL_APP)}` });
      const scan = new Client(s.url, { authorization: `Bearer ${await appToken(s, tenantA, roleApp['Machine.Scan']!)}` });
      const iso = await all.post(`/api/machines/${machinesA[0]!.id}/isolate`, { Comment: 'x' });
      const refused = await scan.post(`/api/machineactions/${iso.body.id}/cancel`, { Comment: 'x' });
      expect(refused.status).toBe(403);
      expect(refused.body.error.message).toContain('Machine.Isolate');
      const av = await all.post(`/api/machines/${machinesA[0]!.id}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Quick' });
      expect((await scan.post(`/api/machineactions/${av.body.id}/cancel`, { Comment: 'x' })).status).toBe(200);
    } finally {
      await s.stop();
    }
  });
});

describe('device groups and tenants', () => {
  it('a user outside a device group sees 404 and filtered lists', async () => {
    const g1 = await user('group1@a.test');
    const outside = machinesA.find((m) => m.rbacGroupId === 2)!;
    const inside = machinesA[1]!;
    expect((await g1.get(`/api/machines/${outside.id}`)).body.error.code).toBe('ResourceNotFound');
    expect((await g1.get(`/api/machines/${inside.id}`)).status).toBe(200);
    const listed = await g1.get('/api/machines?$top=10000&$count=true');
    expect(listed.body['@odata.count']).toBe(70);
    expect(listed.body.value.every((m: { rbacGroupId: number }) => m.rbacGroupId === 1)).toBe(true);
    const create = await g1.post(`/api/machines/${outside.id}/isolate`, { Comment: 'x' });
    expect(create.status).toBe(404);
    expect(create.body.error.code).toBe('ResourceNotFound');

    const hidden = await admin.post(`/api/machines/${outside.id}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Quick' });
    expect(hidden.status).toBe(201);
    expect((await g1.get(`/api/machineactions/${hidden.body.id}`)).status).toBe(404);
    expect((await g1.post(`/api/machineactions/${hidden.body.id}/cancel`, { Comment: 'x' })).status).toBe(404);
    const actions = await g1.get(`/api/machineactions?$filter=machineId eq '${outside.id}'&$count=true`);
    expect(actions.body['@odata.count']).toBe(0);
    expect((await admin.get(`/api/machineactions/${hidden.body.id}`)).body.status).toBe('Pending');
  });

  it("another tenant's machines and actions do not exist for a caller (404, absent from lists)", async () => {
    const b = await app(B_APP);
    const aAction = await pendingAction();
    expect((await b.get(`/api/machineactions/${aAction}`)).body.error.code).toBe('NotFound');
    expect((await b.post(`/api/machineactions/${aAction}/cancel`, { Comment: 'x' })).status).toBe(404);
    expect((await admin.get(`/api/machineactions/${aAction}`)).body.status).toBe('Pending');
    expect((await b.get(`/api/machines/${machinesA[0]!.id}`)).body.error.code).toBe('ResourceNotFound');
    expect((await b.post(`/api/machines/${machinesA[0]!.id}/isolate`, { Comment: 'x' })).status).toBe(404);
    const bList = await b.get('/api/machineactions?$count=true');
    expect(bList.body['@odata.count']).toBe(0);
    expect((await b.get('/api/machines')).body.value.map((m: { id: string }) => m.id)).toEqual([machineB.id]);
    expect((await admin.get(`/api/machines/${machineB.id}`)).status).toBe(404);
  });

  it('requestor and cancellationRequestor are the application name or the user UPN', async () => {
    const u = await user('full@a.test');
    const created = await u.post(`/api/machines/${fresh().id}/isolate`, { Comment: 'by user' });
    expect(created.body.requestor).toBe('full@a.test');
    expect(created.body.requestSource).toBe('PublicApi');
    const cancelled = await admin.post(`/api/machineactions/${created.body.id}/cancel`, { Comment: 'by app' });
    expect(cancelled.body.cancellationRequestor).toBe('All Roles App');
  });
});

describe('rate limits (contract §8)', () => {
  it('the 101st call within a minute -> 429 TooManyRequests with Retry-After, per caller and per endpoint', async () => {
    const s = await startTestServer({ fixtures: fixtures() });
    try {
      const token = await appToken(s, tenantA, ALL_APP);
      const c = new Client(s.url, { authorization: `Bearer ${token}` });
      const results = await Promise.all(Array.from({ length: 100 }, () => c.get('/api/machines?$top=1')));
      expect(results.every((r) => r.status === 200)).toBe(true);
      const limited = await c.get('/api/machines?$top=1');
      expect(limited.status).toBe(429);
      expect(limited.body.error.code).toBe('TooManyRequests');
      const retryAfter = Number(limited.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      // The same path under /api/v1.0 is the same endpoint.
      expect((await c.get('/api/v1.0/machines?$top=1')).status).toBe(429);
      // Another endpoint, and another caller, have their own budgets.
      expect((await c.get('/api/machineactions?$top=1')).status).toBe(200);
      const other = new Client(s.url, { authorization: `Bearer ${await appToken(s, tenantA, roleApp['Machine.Read.All']!)}` });
      expect((await other.get('/api/machines?$top=1')).status).toBe(200);
    } finally {
      await s.stop();
    }
  });

  it('Retry-After is honest: before it elapses another 429, after it a call succeeds (minute window shortened to 3 s)', async () => {
    const s = await startTestServer({ fixtures: fixtures(), config: { rateLimitWindowScale: 0.05 } });
    try {
      const c = new Client(s.url, { authorization: `Bearer ${await appToken(s, tenantA, ALL_APP)}` });
      let first429: { headers: Headers } | undefined;
      for (let i = 0; i < 101 && !first429; i++) {
        const r = await c.get('/api/machineactions?$top=1');
        if (r.status === 429) first429 = r;
      }
      expect(first429).toBeDefined();
      const retryAfter = Number(first429!.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(3);
      const early = await c.get('/api/machineactions?$top=1');
      expect(early.status).toBe(429);
      await new Promise((r) => setTimeout(r, retryAfter * 1000 + 50));
      expect((await c.get('/api/machineactions?$top=1')).status).toBe(200);
    } finally {
      await s.stop();
    }
  });

  it('live response: 10 per minute per caller', async () => {
    const s = await startTestServer({ fixtures: fixtures() });
    try {
      const c = new Client(s.url, { authorization: `Bearer ${await appToken(s, tenantA, ALL_APP)}` });
      const body = { Comment: 'lr', Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] }] };
      const statuses: number[] = [];
      for (let i = 0; i < 11; i++) statuses.push((await c.post(`/api/machines/${machinesA[i]!.id}/runliveresponse`, body)).status);
      expect(statuses.slice(0, 10).every((x) => x === 201)).toBe(true);
      expect(statuses[10]).toBe(429);
    } finally {
      await s.stop();
    }
  });

  it('at most 25 unfinished live-response actions per tenant, then 429', async () => {
    const s = await startTestServer({ fixtures: fixtures(), config: { rateLimitScale: 10 } });
    try {
      const c = new Client(s.url, { authorization: `Bearer ${await appToken(s, tenantA, ALL_APP)}` });
      const body = { Comment: 'lr', Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] }] };
      const results = await Promise.all(machinesA.slice(0, 30).map((m) => c.post(`/api/machines/${m.id}/runliveresponse`, body)));
      expect(results.filter((r) => r.status === 201)).toHaveLength(25);
      const refused = results.filter((r) => r.status === 429);
      expect(refused).toHaveLength(5);
      expect(refused[0]!.body.error.code).toBe('TooManyRequests');
      // Finishing one (here: cancelling it) makes room for one more.
      await c.post(`/api/machineactions/${results.find((r) => r.status === 201)!.body.id}/cancel`, { Comment: 'x' });
      expect((await c.post(`/api/machines/${machinesA[40]!.id}/runliveresponse`, body)).status).toBe(201);
      expect((await c.post(`/api/machines/${machinesA[41]!.id}/runliveresponse`, body)).status).toBe(429);
    } finally {
      await s.stop();
    }
  });
});

// A trusted issuer's claims become the requestor the store keeps, so both stores see them.
describe.each(PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const))('external issuer on %s', (backend) => {
  let jwksServer: Server;
  let jwksUrl: string;
  let privateKey: Parameters<SignJWT['sign']>[0];
  const externalTid = randomUUID();
  const issuer = `https://sts.windows.net/${externalTid}/`;
  let s: TestServer;

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'entra-1', alg: 'ES256', use: 'sig' };
    jwksServer = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const address = jwksServer.address() as { port: number };
    jwksUrl = `http://127.0.0.1:${address.port}/discovery/keys`;
    s = await startTestServer({
      backend,
      fixtures: fixtures(),
      config: { trustedIssuers: [{ issuer, jwksUri: jwksUrl, tenantId: tenantA }] },
    });
  });
  afterAll(async () => {
    await s?.stop();
    await new Promise<void>((r) => jwksServer.close(() => r()));
  });

  const make = (claims: Record<string, unknown>, alg = 'ES256', kid = 'entra-1') => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ tid: externalTid, ...claims })
      .setProtectedHeader({ alg, kid })
      .setIssuer(issuer)
      .setAudience('https://api.securitycenter.microsoft.com')
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + 600)
      .sign(privateKey);
  };

  it('accepts tokens of a configured issuer, served by its JWKS, in the mapped tenant', async () => {
    const now = Math.floor(Date.now() / 1000);
    const appTok = await make({ appid: randomUUID(), app_displayname: 'Entra App', roles: ['Machine.Read.All', 'Machine.Isolate'] });
    const c = new Client(s.url, { authorization: `Bearer ${appTok}` });
    const machines = await c.get('/api/machines?$top=1&$count=true');
    expect(machines.status).toBe(200);
    expect(machines.body['@odata.count']).toBe(80);
    const created = await c.post(`/api/machines/${machinesA[0]!.id}/isolate`, { Comment: 'from Entra' });
    expect(created.status).toBe(201);
    expect(created.body.requestor).toBe('Entra App');
    // A delegated token maps to a Countermand user by UPN.
    const userTok = await make({ scp: 'Machine.Read', upn: 'full@a.test', oid: randomUUID() });
    expect((await new Client(s.url, { authorization: `Bearer ${userTok}` }).get('/api/machines?$top=1')).status).toBe(200);
    const strangerTok = await make({ scp: 'Machine.Read', upn: 'stranger@elsewhere', oid: randomUUID() });
    expect((await new Client(s.url, { authorization: `Bearer ${strangerTok}` }).get('/api/machines?$top=1')).status).toBe(403);
    // Signed by another key under the same kid: refused.
    const { privateKey: otherKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ tid: externalTid, appid: randomUUID(), roles: ['Machine.Read.All'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'entra-1' })
      .setIssuer(issuer)
      .setAudience('https://api.securitycenter.microsoft.com')
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(otherKey);
    expect401(await new Client(s.url, { authorization: `Bearer ${forged}` }).get('/api/machines'));
  });

  // A correctly signed token is still outside input: its identity claims become the requestor
  // the store keeps, so text no store can hold is refused, the same way on both stores.
  it.each([
    ['a NUL in app_displayname', { app_displayname: 'Entra\u0000App' }, /'app_displayname' claim contains a NUL/],
    ['a lone surrogate in app_displayname', { app_displayname: 'Entra \ud800' }, /'app_displayname' claim contains an unpaired/],
    ['an over-long app_displayname', { app_displayname: 'x'.repeat(MAX_CLAIM_LENGTH + 1) }, /'app_displayname' claim is longer/],
    ['a NUL in appid', { appid: `${randomUUID()}\u0000` }, /'appid' claim contains a NUL/],
    ['a NUL in azp', { appid: undefined, azp: 'a\u0000b' }, /'azp' claim contains a NUL/],
  ])('refuses %s with 401 and writes nothing', async (_name, claims, message) => {
    const tok = await make({ appid: randomUUID(), roles: ['Machine.Read.All', 'Machine.Isolate'], ...claims });
    const c = new Client(s.url, { authorization: `Bearer ${tok}` });
    const machine = machinesA[1]!.id;
    expect401(await c.post(`/api/machines/${machine}/isolate`, { Comment: 'bad claim' }), message);
    const good = new Client(s.url, { authorization: `Bearer ${await make({ appid: randomUUID(), roles: ['Machine.Read.All'] })}` });
    const listed = await good.get(`/api/machineactions?$filter=machineId eq '${machine}'`);
    expect(listed.status).toBe(200);
    expect(listed.body.value).toEqual([]);
  });

  it.each([
    ['a NUL in upn', { upn: 'full@a.test\u0000' }, /'upn' claim contains a NUL/],
    ['a lone surrogate in unique_name', { unique_name: '\udc00full@a.test' }, /'unique_name' claim contains an unpaired/],
    ['a NUL in oid', { oid: 'o\u0000id' }, /'oid' claim contains a NUL/],
  ])('refuses a delegated token with %s', async (_name, claims, message) => {
    const tok = await make({ scp: 'Machine.Read', oid: randomUUID(), ...claims });
    expect401(await new Client(s.url, { authorization: `Bearer ${tok}` }).get('/api/machines?$top=1'), message);
  });
});
