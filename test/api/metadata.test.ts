import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';

/**
 * GET /api/$metadata, which every `@odata.context` points at, answers an OData 4.0 CSDL
 * document: well-formed XML that declares every entity set the contexts name, each entity type
 * with the wire's properties (in their order), its key, and which may be null.
 */
type Json = any;
const backends = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!PG_URL) console.warn('[metadata] PostgreSQL run skipped: COUNTERMAND_TEST_PG_URL is not set');

const LISTS = new Set(['EntityType', 'ComplexType', 'Property', 'EntitySet', 'Action', 'Function', 'Parameter']);
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  // Elements that may repeat are lists even when there is one (an attribute of the same name is not).
  isArray: (name, _path, _leaf, isAttribute) => !isAttribute && LISTS.has(name),
});

describe.each(backends)('$metadata on %s', (backend) => {
  const setup = makeFixtures(1);
  let server: TestServer;
  let api: Client;
  let schema: Json;
  let xml: string;

  beforeAll(async () => {
    server = await startTestServer({ fixtures: setup.fixtures, backend });
    api = await appClient(server, setup);
    const res = await api.get('/api/$metadata');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/xml; charset=utf-8');
    expect(res.headers.get('odata-version')).toBe('4.0');
    xml = res.text;
    expect(XMLValidator.validate(xml)).toBe(true);
    const edmx = parser.parse(xml)['edmx:Edmx'];
    expect(edmx.Version).toBe('4.0');
    expect(edmx['xmlns:edmx']).toBe('http://docs.oasis-open.org/odata/ns/edmx');
    schema = edmx['edmx:DataServices'].Schema;
    expect(schema.xmlns).toBe('http://docs.oasis-open.org/odata/ns/edm');
  });
  afterAll(async () => {
    await server?.stop();
  });

  const entityType = (name: string) => (schema.EntityType as Json[]).find((t) => t.Name === name);
  const typeOfSet = (set: string) => {
    const entry = (schema.EntityContainer.EntitySet as Json[]).find((s) => s.Name === set);
    return entry ? entityType(entry.EntityType.replace(`${schema.Namespace}.`, '')) : undefined;
  };

  it('declares every entity set the contexts of real answers name, with the wire fields in order', async () => {
    const machine = setup.machines[0]!;
    const action = await api.post(`/api/machines/${machine.id}/isolate`, { Comment: 'metadata' });
    const answers = [
      action,
      await api.get('/api/machineactions'),
      await api.get(`/api/machines/${machine.id}`),
      await api.get('/api/machines'),
      await api.get('/api/alerts'),
      await api.get('/api/investigations'),
    ];
    for (const answer of answers) {
      const context: string = answer.body['@odata.context'];
      expect(context.startsWith(`${server.baseUrl}/api/$metadata#`), context).toBe(true);
      const set = context.split('#')[1]!.replace('/$entity', '');
      const type = typeOfSet(set);
      expect(type, `entity set ${set}`).toBeDefined();
      const entity = answer.body.value ? answer.body.value[0] : answer.body;
      if (!entity) continue; // an empty collection: the set exists, there is nothing to compare
      const fields = Object.keys(entity).filter((k) => !k.startsWith('@odata.'));
      expect((type.Property as Json[]).map((p) => p.Name), set).toEqual(fields);
      for (const property of type.Property as Json[]) {
        // A field sent as null must be declared Nullable.
        if (entity[property.Name] === null) expect(property.Nullable, `${set}.${property.Name}`).toBe('true');
      }
    }
    for (const set of ['MachineActions', 'Machines', 'Alerts', 'Investigations']) expect(typeOfSet(set), set).toBeDefined();
  });

  it('declares every entity set that a context documented in the OpenAPI document names', async () => {
    // Every operation's documented answers, so an operation added later is checked too.
    const document = (await api.get('/openapi.json')).body;
    const fragments = new Set<string>();
    const undescribed: string[] = [];
    const visit = (node: Json, where: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const context = node.properties?.['@odata.context'];
      if (context) {
        const fragment = /\/api\/\$metadata#(.+)$/.exec(String(context.examples?.[0] ?? ''))?.[1];
        if (fragment) fragments.add(fragment);
        else undescribed.push(where); // a context schema not made by entityOf/collectionOf (wire-schemas.ts)
      }
      for (const [key, value] of Object.entries(node)) visit(value, `${where}/${key}`);
    };
    visit(document, '#');
    expect(undescribed).toEqual([]);
    expect(fragments.size).toBeGreaterThanOrEqual(8);
    for (const fragment of fragments) {
      const set = fragment.replace(/\/\$entity$/, '');
      // A primitive result (Edm.String) needs no entity set.
      if (/^(Collection\()?Edm\./.test(set)) continue;
      expect(typeOfSet(set), `entity set ${set} (context #${fragment})`).toBeDefined();
    }
  });

  it('gives each entity type its key and the Edm types its values have', () => {
    const action = entityType('MachineAction');
    expect(action.Key.PropertyRef.Name).toBe('id');
    const prop = (type: Json, name: string) => (type.Property as Json[]).find((p) => p.Name === name);
    expect(prop(action, 'id')).toMatchObject({ Type: 'Edm.Guid', Nullable: 'false' });
    expect(prop(action, 'creationDateTimeUtc')).toMatchObject({ Type: 'Edm.DateTimeOffset', Nullable: 'false' });
    expect(prop(action, 'cancellationDateTimeUtc')).toMatchObject({ Type: 'Edm.DateTimeOffset', Nullable: 'true' });
    expect(prop(action, 'commands').Type).toBe(`Collection(${schema.Namespace}.LiveResponseCommand)`);
    expect(prop(entityType('Machine'), 'isAadJoined').Type).toBe('Edm.Boolean');
    expect(prop(entityType('Machine'), 'machineTags').Type).toBe('Collection(Edm.String)');
    expect(entityType('Alert').Key.PropertyRef.Name).toBe('id');
    // Every complex type a property names is declared.
    const declared = new Set((schema.ComplexType as Json[]).map((t) => `${schema.Namespace}.${t.Name}`));
    for (const type of [...(schema.EntityType as Json[]), ...(schema.ComplexType as Json[])]) {
      for (const p of (type.Property ?? []) as Json[]) {
        const named = /^(?:Collection\()?([^()]+)\)?$/.exec(p.Type)![1]!;
        if (!named.startsWith('Edm.')) expect(declared.has(named), `${type.Name}.${p.Name}: ${named}`).toBe(true);
      }
    }
  });

  it('declares the actions clients call on machines and actions, with their body fields', () => {
    const actions = new Map((schema.Action as Json[]).map((a) => [a.Name, a]));
    for (const name of ['isolate', 'unisolate', 'runAntiVirusScan', 'collectInvestigationPackage', 'restrictCodeExecution', 'unrestrictCodeExecution', 'offboard', 'StopAndQuarantineFile', 'runliveresponse', 'startInvestigation', 'cancel']) {
      expect(actions.has(name), name).toBe(true);
    }
    const isolate = actions.get('isolate');
    expect((isolate.Parameter as Json[]).map((p) => p.Name)).toEqual(['bindingParameter', 'Comment', 'IsolationType']);
    expect(isolate.ReturnType.Type).toBe(`${schema.Namespace}.MachineAction`);
    const findbyip = (schema.Function as Json[]).find((f) => f.Name === 'findbyip');
    expect((findbyip.Parameter as Json[]).map((p) => p.Name)).toEqual(['bindingParameter', 'ip', 'timestamp']);
  });

  it('is served at /api/v1.0/$metadata in any case, needs a token, and refuses other methods', async () => {
    const alias = await api.get('/API/V1.0/$METADATA');
    expect(alias.status).toBe(200);
    expect(alias.text).toBe(xml);
    const anonymous = await new Client(server.url).get('/api/$metadata');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe('Unauthorized');
    const post = await api.post('/api/$metadata', {});
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });
});
