import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRoutes, registerOpenApi } from '../../src/api/openapi.js';
import type { RouteInventoryEntry } from '../../src/api/openapi.js';
import { enrollmentToken, startAgent, waitUntil } from '../support/agents.js';
import { Client, TEST_SECRET, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { uploadLibraryFile } from '../support/library.js';
import { PG_URL } from '../support/postgres.js';

/**
 * The OpenAPI document is valid OpenAPI 3.1 (checked by a maintained validator), lists every
 * route the server registered and documents each one, shows paths as clients send them, and
 * describes the wire truthfully: real responses of the running server validate against the
 * schemas it documents, field order included.
 */
type Json = any;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Every operation of a document, as `METHOD /path`. */
function operations(document: Json): Map<string, Json> {
  const found = new Map<string, Json>();
  for (const [path, item] of Object.entries(document.paths as Record<string, Json>)) {
    for (const method of METHODS) if (item[method]) found.set(`${method.toUpperCase()} ${path}`, item[method]);
  }
  return found;
}

/** A documented operation: a summary, tags, and at least one answer with a described body or none. */
function isDocumented(operation: Json): boolean {
  return (
    !operation['x-undocumented'] &&
    typeof operation.summary === 'string' &&
    operation.summary.length > 0 &&
    Array.isArray(operation.tags) &&
    operation.tags.length > 0 &&
    Object.keys(operation.responses ?? {}).some((status) => /^[23]\d\d$/.test(status))
  );
}

/** What to do about each problem (docs/openapi.md says more). */
const UNDOCUMENTED = 'give it config.openapi, Fastify schema keys (summary, tags, response) or describeRoutes() (docs/openapi.md)';
const NOT_SEEN = 'declare it in buildApp (an operation or an extension), where the document generator sees it (docs/openapi.md)';

/**
 * What is wrong between the routes a server registered and its document: a route missing from
 * it or without documentation, or an operation no route serves. Only the generated 405 siblings
 * (routes the document leaves out) and the HEAD twin of each GET are not listed.
 */
function problems(inventory: RouteInventoryEntry[], document: Json): string[] {
  const listed = operations(document);
  const gets = new Set(inventory.filter((r) => r.methods.includes('GET')).map((r) => r.url));
  const expected = new Set<string>();
  const found: string[] = [];
  for (const route of inventory) {
    if (route.documentedAs === null) continue; // a 405 sibling: checked apart
    route.methods.forEach((method, i) => {
      if (method === 'HEAD' && gets.has(route.url)) return;
      const operation = route.documentedAs![i]!;
      expected.add(operation);
      const entry = listed.get(operation);
      if (!entry) found.push(`${method} ${route.url}: not in the document (as ${operation}); ${NOT_SEEN}`);
      else if (!route.documented || !isDocumented(entry)) found.push(`${method} ${route.url}: listed without documentation; ${UNDOCUMENTED}`);
    });
  }
  for (const operation of listed.keys()) if (!expected.has(operation)) found.push(`${operation}: documented, but no route serves it`);
  return found;
}

/** A copy of a schema with every `#/components/schemas/...` reference replaced by the component. */
function deref(schema: Json, document: Json): Json {
  if (Array.isArray(schema)) return schema.map((s) => deref(s, document));
  if (typeof schema !== 'object' || schema === null) return schema;
  if (typeof schema.$ref === 'string') {
    const name = /^#\/components\/schemas\/(.+)$/.exec(schema.$ref)?.[1];
    if (!name) throw new Error(`unexpected reference ${schema.$ref}`);
    return deref(document.components.schemas[name], document);
  }
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, deref(v, document)]));
}

const ajv = addFormats.default(new Ajv2020({ strict: false, allErrors: true }));

/** The documented body schema of an answer, for the content type the server actually sent. */
function documentedSchema(document: Json, operation: string, status: number, contentType: string | null): Json {
  const [method, path] = operation.split(' ', 2) as [string, string];
  const responses = document.paths[path]?.[method.toLowerCase()]?.responses;
  expect(responses, `${operation} is documented`).toBeDefined();
  const response = responses[String(status)];
  expect(response, `${operation} documents ${status}`).toBeDefined();
  expect(Object.keys(response.content ?? {}), `${operation} ${status}: the content type sent`).toContain(contentType);
  return deref(response.content[contentType!].schema, document);
}

/** The properties of an object schema in their documented order (through allOf). */
function propertyOrder(schema: Json): string[] {
  if (schema.allOf) return (schema.allOf as Json[]).flatMap(propertyOrder);
  return Object.keys(schema.properties ?? {});
}

const backends = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!PG_URL) console.warn('[openapi] PostgreSQL run skipped: COUNTERMAND_TEST_PG_URL is not set');

describe.each(backends)('the OpenAPI document on %s', (backend) => {
  const setup = makeFixtures(2);
  let server: TestServer;
  let document: Json;
  let api: Client;

  beforeAll(async () => {
    // Every optional surface on, so that every route the server can serve is registered and
    // checked: a setting that adds routes is turned on here (docs/openapi.md).
    server = await startTestServer({ fixtures: setup.fixtures, backend, config: { agentPollSeconds: 0.2, metricsToken: 'openapi-metrics-token-0123', controlEnabled: true, controlToken: 'openapi-admin-token-0123456789' } });
    const res = await fetch(`${server.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    document = await res.json();
    api = await appClient(server, setup);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('is valid OpenAPI 3.1, and the validator does refuse a broken copy', async () => {
    expect(document.openapi).toBe('3.1.0');
    await SwaggerParser.validate(structuredClone(document));
    const broken = structuredClone(document);
    delete broken.paths['/api/machines/{id}/isolate'].post.responses['201'].description;
    await expect(SwaggerParser.validate(broken)).rejects.toThrow();
    const misplaced = structuredClone(document);
    misplaced.paths['/api/machines/{id}/isolate'].post.parameters[0].in = 'nowhere';
    await expect(SwaggerParser.validate(misplaced)).rejects.toThrow();
  });

  it('lists and documents every route the server registered, and nothing else', () => {
    const inventory = server.app.routeInventory();
    expect(inventory.length).toBeGreaterThan(40);
    expect(problems(inventory, document)).toEqual([]);
    expect(operations(document).size).toBeGreaterThan(40);
  });

  it('leaves out only the generated 405 siblings, each answering 405 with Allow, and the control API, which has its own document', async () => {
    const left = server.app.routeInventory().filter((r) => r.documentedAs === null);
    const control = left.filter((r) => r.url.startsWith('/_countermand/'));
    const hidden = left.filter((r) => !control.includes(r));
    expect(hidden.length).toBeGreaterThan(10);
    // The emulator's control API (docs/emulator.md) is in /_countermand/openapi.json instead.
    const own = (await (await fetch(`${server.url}/_countermand/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(control.length).toBeGreaterThan(10);
    for (const route of control) {
      if (route.url === '/_countermand/openapi.json') continue;
      expect(Object.keys(own.paths), route.url).toContain(route.url.slice('/_countermand'.length).replace(/:([a-zA-Z]+)/g, '{$1}'));
    }
    for (const route of hidden) {
      const method = route.methods.find((m) => m !== 'HEAD' && m !== 'OPTIONS')!;
      const url = route.url.replace(/:[a-zA-Z]+/g, 'x').replace('*', "(ip='10.0.0.1',timestamp=2024-01-01T00:00:00Z)");
      const res = await api.request(method, url);
      expect(res.status, `${method} ${url}`).toBe(405);
      expect(res.headers.get('allow'), `${method} ${url}`).toBeTruthy();
    }
  });

  it('shows paths as clients send them, with the /api/v1.0 alias said', () => {
    const listed = operations(document);
    for (const operation of [
      'POST /api/machines/{id}/isolate',
      'POST /api/machines/{id}/StopAndQuarantineFile',
      'POST /api/machineactions/{id}/cancel',
      "GET /api/machines/findbyip(ip='{ip}',timestamp={timestamp})",
      'GET /api/$metadata',
      'POST /{tenant}/oauth2/v2.0/token',
      'POST /{tenant}/oauth2/token',
      'POST /agent/v1/checkin',
      'GET /metrics',
      'GET /openapi.json',
      'GET /docs',
    ]) {
      expect(listed.has(operation), operation).toBe(true);
    }
    expect([...listed.keys()].filter((o) => o.includes(':') || o.includes('*'))).toEqual([]);
    expect(document.info.description).toContain('/api/v1.0');
    const findByIp = listed.get("GET /api/machines/findbyip(ip='{ip}',timestamp={timestamp})");
    expect(findByIp.parameters.map((p: Json) => `${p.in}:${p.name}`)).toEqual(['path:ip', 'path:timestamp']);
  });

  it('groups operations by surface: tags that the document declares, in tag groups', () => {
    const declared = new Set((document.tags as Json[]).map((t) => t.name));
    const used = new Set<string>();
    for (const operation of operations(document).values()) for (const tag of operation.tags) used.add(tag);
    for (const tag of used) expect(declared.has(tag), tag).toBe(true);
    const grouped = new Set((document['x-tagGroups'] as Json[]).flatMap((g) => g.tags));
    for (const tag of used) expect(grouped.has(tag), tag).toBe(true);
    expect(listedTags(document, 'POST /agent/v1/checkin')).toEqual(['Agent protocol']);
    expect(listedTags(document, 'POST /api/machines/{id}/isolate')).toEqual(['Machine actions']);
  });

  it('names the entities as components and the security each surface needs', () => {
    for (const name of ['MachineAction', 'Machine', 'Alert', 'Investigation', 'Error', 'CheckinResponse', 'TokenResponse']) {
      expect(document.components.schemas[name], name).toBeDefined();
    }
    const listed = operations(document);
    expect(listed.get('GET /api/machines').security).toEqual([{ mdeToken: [] }]);
    expect(listed.get('POST /agent/v1/checkin').security).toEqual([{ agentCredential: [] }]);
    expect(listed.get('GET /metrics').security).toEqual([{ metricsToken: [] }]);
    expect(listed.get('POST /{tenant}/oauth2/v2.0/token').security).toEqual([{}, { clientSecretBasic: [] }]);
  });

  it('describes the wire truthfully: real answers validate against their documented schemas, in their field order', async () => {
    const machine = setup.machines[0]!;
    const checked: string[] = [];
    const check = (operation: string, res: { status: number; headers: Headers; body: Json }, ordered = true) => {
      const schema = documentedSchema(document, operation, res.status, res.headers.get('content-type'));
      const validate = ajv.compile(schema);
      expect(validate(res.body), `${operation} ${res.status}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      if (ordered && res.status < 300) expect(Object.keys(res.body), `${operation}: field order`).toEqual(propertyOrder(schema));
      checked.push(`${operation} ${res.status}`);
    };

    const isolate = await api.post(`/api/machines/${machine.id}/isolate`, { Comment: 'wire', IsolationType: 'Selective' });
    check('POST /api/machines/{id}/isolate', isolate);
    check('GET /api/machineactions/{id}', await api.get(`/api/machineactions/${isolate.body.id}`));
    check('POST /api/machines/{id}/StopAndQuarantineFile', await api.post(`/api/machines/${machine.id}/StopAndQuarantineFile`, { Comment: 'q', Sha1: 'a'.repeat(40) }));
    const live = await api.post(`/api/machines/${setup.machines[1]!.id}/runliveresponse`, {
      Comment: 'lr',
      Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hostname' }] }],
    });
    check('POST /api/machines/{id}/runliveresponse', live);
    // A collection's fields are optional: their order is that of the ones sent.
    const list = await api.get('/api/machineactions?$count=true&$top=5');
    check('GET /api/machineactions', list, false);
    expect(Object.keys(list.body)).toEqual(['@odata.context', '@odata.count', 'value']);
    for (const item of list.body.value) expect(Object.keys(item)).toEqual(propertyOrder(deref(document.components.schemas.MachineAction, document)));
    check('POST /api/machineactions/{id}/cancel', await api.post(`/api/machineactions/${isolate.body.id}/cancel`, { Comment: 'done' }));
    check('GET /api/machines/{id}', await api.get(`/api/machines/${machine.id}`));
    check('GET /api/machines', await api.get('/api/machines'), false);
    check("GET /api/machines/findbyip(ip='{ip}',timestamp={timestamp})", await api.get(`/api/machines/findbyip(ip='10.1.0.1',timestamp=${new Date().toISOString()})`), false);

    // Errors: the envelope, with its content type.
    check('GET /api/machineactions/{id}', await api.get('/api/machineactions/not-a-guid'));
    check('GET /api/machineactions/{id}', await api.get(`/api/machineactions/${crypto.randomUUID()}`));
    check('GET /api/machines/{id}', await new Client(server.url).get(`/api/machines/${machine.id}`));
    check('POST /api/machines/{id}/isolate', await api.post(`/api/machines/${machine.id}/isolate`, {}));

    // Tokens.
    const token = async (secret: string) => {
      const res = await fetch(`${server.url}/${setup.tenantId}/oauth2/v2.0/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: setup.clientId, client_secret: secret, scope: 'https://api.securitycenter.microsoft.com/.default' }),
      });
      return { status: res.status, headers: res.headers, body: await res.json() };
    };
    check('POST /{tenant}/oauth2/v2.0/token', await token(TEST_SECRET));
    check('POST /{tenant}/oauth2/v2.0/token', await token('wrong'), false);
    const keys = await fetch(`${server.url}/common/discovery/keys`);
    check('GET /common/discovery/keys', { status: keys.status, headers: keys.headers, body: await keys.json() }, false);

    // The agent protocol, spoken by hand.
    const agentApi = new Client(server.url);
    const enrolled = await agentApi.post('/agent/v1/enroll', { enrollmentToken: await enrollmentToken(server.store, setup.tenantId), machine: { computerDnsName: 'wire.test' } });
    check('POST /agent/v1/enroll', enrolled);
    const asAgent = agentApi.withHeaders({ authorization: `Bearer ${enrolled.body.agentToken}` });
    const scan = await api.post(`/api/machines/${enrolled.body.machineId}/runAntiVirusScan`, { Comment: 'wire', ScanType: 'Full' });
    const checkin = await asAgent.post('/agent/v1/checkin', { running: [], maxWaitSeconds: 0 });
    check('POST /agent/v1/checkin', checkin);
    expect(checkin.body.actions.map((a: Json) => a.id)).toContain(scan.body.id);
    for (const action of checkin.body.actions) {
      expect(Object.keys(action)).toEqual(propertyOrder(deref(document.components.schemas.AgentAction, document)));
    }
    check('POST /agent/v1/actions/{id}/start', await asAgent.post(`/agent/v1/actions/${scan.body.id}/start`, {}));
    check(
      'POST /agent/v1/actions/{id}/report',
      await asAgent.post(`/agent/v1/actions/${scan.body.id}/report`, { reportId: 'r1', status: 'Succeeded', errorHResult: 0, troubleshootInfo: null }),
    );
    check('POST /agent/v1/checkin', await new Client(server.url).post('/agent/v1/checkin', { running: [] }));

    // An alert and an investigation, raised and started for real.
    const agent = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId, 'wire-agent'), 'wire-agent.test', {
      RunAntiVirusScan: { durationMs: 10, detail: { findings: [{ path: '/tmp/eicar.com', signature: 'Win.Test.EICAR_HDB-1', sha1: 'b'.repeat(40) }] } },
      '*': { durationMs: 10 },
    });
    try {
      const found = await api.post(`/api/machines/${agent.machineId}/runAntiVirusScan`, { Comment: 'find', ScanType: 'Quick' });
      await waitUntil(async () => (await server.store.getAction(setup.tenantId, found.body.id))?.status === 'Succeeded');
      const alerts = await api.get('/api/alerts?$expand=evidence');
      check('GET /api/alerts', alerts, false);
      expect(alerts.body.value).toHaveLength(1);
      check('GET /api/alerts/{id}', await api.get(`/api/alerts/${alerts.body.value[0].id}`));
      const started = await api.post(`/api/machines/${agent.machineId}/startInvestigation`, { Comment: 'look' });
      check('POST /api/machines/{id}/startInvestigation', started);
      check('GET /api/investigations/{id}', await api.get(`/api/investigations/${started.body.id}`));
      check('GET /api/investigations', await api.get('/api/investigations'), false);

      // The library, a live-response result's link and a package's link.
      check('POST /api/libraryfiles', await uploadLibraryFile(api, 'wire.sh', '#!/bin/sh\necho wire\n', { Description: 'wire' }));
      check('GET /api/libraryfiles', await api.get('/api/libraryfiles'), false);
      const script = await api.post(`/api/machines/${agent.machineId}/runliveresponse`, {
        Comment: 'wire',
        Commands: [{ type: 'RunScript', params: [{ key: 'ScriptName', value: 'wire.sh' }] }],
      });
      await waitUntil(async () => (await server.store.getAction(setup.tenantId, script.body.id))?.status === 'Succeeded');
      check(
        'GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={index})',
        await api.get(`/api/machineactions/${script.body.id}/GetLiveResponseResultDownloadLink(index=0)`),
      );
      const collected = await api.post(`/api/machines/${agent.machineId}/collectInvestigationPackage`, { Comment: 'wire' });
      await waitUntil(async () => (await server.store.getAction(setup.tenantId, collected.body.id))?.status === 'Succeeded');
      check('GET /api/machineactions/{id}/getPackageUri', await api.get(`/api/machineactions/${collected.body.id}/getPackageUri`));
    } finally {
      await agent.stop();
    }
    expect(checked.length).toBeGreaterThan(25);
  });
});

function listedTags(document: Json, operation: string): string[] {
  return operations(document).get(operation)?.tags ?? [];
}

describe('the completeness check', () => {
  // The server's router options: a trailing slash names the same route.
  const newApp = () => Fastify({ logger: false, routerOptions: { ignoreTrailingSlash: true } });

  it('names a route added without documentation', async () => {
    const app = newApp();
    registerOpenApi(app, () => {
      app.get('/documented', { config: { openapi: { tags: ['Service'], summary: 'A documented route', responses: { 200: { description: 'OK' } } } } }, async () => 'ok');
      app.post('/forgotten', async () => 'oops');
    });
    await app.ready();
    try {
      const document = JSON.parse((await app.inject({ method: 'GET', url: '/openapi.json' })).body);
      expect(problems(app.routeInventory(), document)).toEqual([`POST /forgotten: listed without documentation; ${UNDOCUMENTED}`]);
    } finally {
      await app.close();
    }
  });

  const ok = { 200: { description: 'OK' } };

  it("documents a plugin's routes through describeRoutes, many files as one operation, and names those it leaves out", async () => {
    const app = newApp();
    // Like a static-files plugin: one hidden route per file, no route options taken.
    const bundle = async (scope: FastifyInstance) => {
      for (const file of ['index.html', 'assets/app-1a2b.js', 'assets/app-3c4d.css', 'notes.txt']) {
        scope.get(`/ui/${file}`, { schema: { hide: true } }, async () => file);
      }
    };
    registerOpenApi(app, () => {
      app.register(async (scope) => {
        describeRoutes(scope, (route) => {
          if (route.url === '/ui/index.html') return { tags: ['Service'], summary: 'The page', responses: ok };
          if (route.url.startsWith('/ui/assets/')) return { tags: ['Service'], summary: 'A file of the bundle', path: '/ui/assets/{file}', responses: ok };
          return undefined;
        });
        await scope.register(bundle);
      });
      // Outside the described scope: not described by accident.
      app.get('/ui/other', { schema: { hide: true } }, async () => 'other');
    });
    await app.ready();
    try {
      const document = JSON.parse((await app.inject({ method: 'GET', url: '/openapi.json' })).body);
      expect(problems(app.routeInventory(), document).sort()).toEqual([
        `GET /ui/notes.txt: listed without documentation; ${UNDOCUMENTED}`,
        `GET /ui/other: listed without documentation; ${UNDOCUMENTED}`,
      ]);
      const listed = [...operations(document).keys()].filter((o) => o.includes('/ui/'));
      expect(listed.sort()).toEqual(['GET /ui/assets/{file}', 'GET /ui/index.html', 'GET /ui/notes.txt', 'GET /ui/other']);
      expect((await app.inject({ method: 'GET', url: '/ui/assets/app-1a2b.js' })).body).toBe('assets/app-1a2b.js');
    } finally {
      await app.close();
    }
  });

  it("takes Fastify's own schema keys as documentation only when they say what the route is", async () => {
    const app = newApp();
    registerOpenApi(app, () => {
      app.get('/self', { schema: { tags: ['Service'], summary: 'Documented by its schema', response: { 200: { type: 'string' } } } }, async () => 'ok');
      app.get('/bare', { schema: { response: { 200: { type: 'string' } } } }, async () => 'ok');
    });
    await app.ready();
    try {
      const document = JSON.parse((await app.inject({ method: 'GET', url: '/openapi.json' })).body);
      expect(problems(app.routeInventory(), document)).toEqual([`GET /bare: listed without documentation; ${UNDOCUMENTED}`]);
    } finally {
      await app.close();
    }
  });

  it('names a route declared on the instance before the generator is loaded', async () => {
    const app = newApp();
    registerOpenApi(app, () => undefined);
    // Registered at once, while the generator (a plugin) loads only at ready().
    app.get('/too-early', { config: { openapi: { tags: ['Service'], summary: 'Too early', responses: ok } } }, async () => 'ok');
    await app.ready();
    try {
      const document = JSON.parse((await app.inject({ method: 'GET', url: '/openapi.json' })).body);
      expect(problems(app.routeInventory(), document)).toEqual([`GET /too-early: not in the document (as GET /too-early); ${NOT_SEEN}`]);
    } finally {
      await app.close();
    }
  });
});
