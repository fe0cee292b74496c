import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DEFAULT_CONFIG, type ServerConfig } from '../../src/config.js';
import { KNOWN_APP_ROLES } from '../../src/domain/permissions.js';
import type { Fixtures } from '../../src/fixtures.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { freshDatabase } from './postgres.js';

export const ALL_ROLES = [...KNOWN_APP_ROLES];
export const TEST_SECRET = 'test-secret-0123456789';

export const hexId = () => randomUUID().replace(/-/g, '') + randomUUID().replace(/-/g, '').slice(0, 8);

export interface TestMachine {
  id: string;
  computerDnsName: string;
  aadDeviceId: string;
  rbacGroupId: number;
}

/** A tenant with `count` machines and one application holding every role. */
export function makeFixtures(count = 3): { fixtures: Fixtures; tenantId: string; clientId: string; machines: TestMachine[] } {
  const tenantId = randomUUID();
  const clientId = randomUUID();
  const machines = Array.from({ length: count }, (_, i) => ({
    id: hexId(),
    computerDnsName: `host-${i}.test.local`,
    aadDeviceId: randomUUID(),
    rbacGroupId: (i % 2) + 1,
  }));
  return {
    tenantId,
    clientId,
    machines,
    fixtures: {
      tenants: [
        {
          id: tenantId,
          name: 'Test tenant',
          machines: machines.map((m, i) => ({
            ...m,
            rbacGroupName: `group-${m.rbacGroupId}`,
            osPlatform: i % 2 === 0 ? 'Ubuntu' : 'Debian',
            machineTags: i === 0 ? ['prod', 'web'] : ['test'],
            lastIpAddress: `10.1.0.${i + 1}`,
          })),
          applications: [
            { clientId, clientSecret: TEST_SECRET, displayName: 'Test App', roles: ALL_ROLES },
          ],
        },
      ],
    },
  };
}

export interface TestServer extends RunningServer {
  dataDir: string;
  config: ServerConfig;
  logs: string[];
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>;
}

/** Starts a real server on a free loopback port with its own database file. */
export async function startTestServer(options: {
  fixtures: Fixtures;
  config?: Partial<ServerConfig>;
  backend?: 'sqlite' | 'postgres';
}): Promise<TestServer> {
  // A PostgreSQL server gets a database of its own, unless the test names one (several nodes).
  const database = options.backend === 'postgres' && !options.config?.databaseUrl ? await freshDatabase() : null;
  const dataDir = mkdtempSync(join(tmpdir(), 'countermand-test-'));
  const fixturesPath = join(dataDir, 'fixtures.json');
  // Inside the data dir, which the server keeps private: the file holds secrets, so 0600 too.
  writeFileSync(fixturesPath, JSON.stringify(options.fixtures), { mode: 0o600 });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const config: ServerConfig = {
    ...DEFAULT_CONFIG,
    port: 0,
    dataDir,
    fixtures: fixturesPath,
    logLevel: 'info',
    databaseUrl: database?.url ?? null,
    demoFleetSize: 0,
    ...options.config,
  };
  const server = await startServer(config, createLogger(config.logLevel, sink, config.logFormat));
  return {
    ...server,
    dataDir,
    config,
    logs,
    async stop() {
      await server.close();
      await database?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface HttpResult<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

/** A small HTTP client: what a script against MDE does, nothing more. */
export class Client {
  constructor(
    readonly baseUrl: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  withHeaders(headers: Record<string, string>): Client {
    return new Client(this.baseUrl, { ...this.headers, ...headers });
  }

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
    if ((method === 'GET' || method === 'HEAD') && body !== undefined) return this.rawRequest(method, path, body, headers);
    const init: RequestInit = { method, headers: { ...this.headers, ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
    }
    const response = await fetch(`${this.baseUrl}${path}`, init);
    const text = await response.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: response.status, headers: response.headers, body: parsed, text };
  }

  /** fetch refuses a GET with a body; some MDE clients send one, so this speaks HTTP directly. */
  private rawRequest(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<HttpResult> {
    const payload = typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        `${this.baseUrl}${path}`,
        { method, headers: { 'content-type': 'application/json', ...this.headers, ...headers, 'content-length': Buffer.byteLength(payload) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const h = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: h, body: parsed, text });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  get(path: string, headers?: Record<string, string>) {
    return this.request('GET', path, undefined, headers);
  }

  /** A multipart/form-data POST, as a browser or `curl -F` sends it. */
  async postForm(path: string, form: FormData): Promise<HttpResult> {
    const response = await fetch(`${this.baseUrl}${path}`, { method: 'POST', headers: this.headers, body: form });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: response.status, headers: response.headers, body: parsed, text };
  }

  post(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request('POST', path, body, headers);
  }
}

/** A token from the server's own token endpoint, as a client gets one (client credentials). */
export async function appToken(
  server: { url: string },
  tenantId: string,
  clientId: string,
  secret = TEST_SECRET,
  resource = 'https://api.securitycenter.microsoft.com',
): Promise<string> {
  const res = await fetch(`${server.url}/${tenantId}/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope: `${resource}/.default` }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

/** A delegated token (password grant), as a user's script gets one. */
export async function userToken(server: { url: string }, tenantId: string, username: string, password: string): Promise<string> {
  const res = await fetch(`${server.url}/${tenantId}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', username, password, resource: 'https://api.securitycenter.microsoft.com' }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

/** A client that sends the application's bearer token on every call. */
export async function appClient(server: { url: string }, setup: { tenantId: string; clientId: string }): Promise<Client> {
  const token = await appToken(server, setup.tenantId, setup.clientId);
  return new Client(server.url, { authorization: `Bearer ${token}` });
}

export function cleanup(dir: string) {
  rmSync(dir, { recursive: true, force: true });
}
