import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MACHINE_ACTION_SET, MACHINE_SET } from '../../src/domain/query-sets.js';
import { defineEntitySet } from '../../src/odata/index.js';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';

/**
 * OData query options over HTTP (contract §5). The data set is made once, then only read: 12
 * machines, each with an Isolate (some cancelled) and a scan, created in a known order.
 */

let server: TestServer;
let api: Client;
const setup = makeFixtures(12);
// One machine whose DNS name holds a quote, for '' escapes.
setup.fixtures.tenants[0]!.machines![3]!.computerDnsName = "o'brien.test.local";
setup.machines[3]!.computerDnsName = "o'brien.test.local";
const PAGE = 5;

interface Created {
  id: string;
  type: string;
  status: string;
  machineId: string;
  creationDateTimeUtc: string;
}
const created: Created[] = [];

const ids = (res: { body: { value: { id: string }[] } }) => res.body.value.map((v) => v.id);
const newestFirst = () => [...created].reverse();

beforeAll(async () => {
  server = await startTestServer({ fixtures: setup.fixtures, config: { pageSize: PAGE, rateLimitScale: 1000 } });
  api = await appClient(server, setup);
  for (const [i, m] of setup.machines.entries()) {
    const iso = await api.post(`/api/machines/${m.id}/isolate`, { Comment: `isolate ${i}` });
    created.push(iso.body);
    if (i % 3 === 0) {
      const c = await api.post(`/api/machineactions/${iso.body.id}/cancel`, { Comment: 'x' });
      created[created.length - 1] = c.body;
    }
    const scan = await api.post(`/api/machines/${m.id}/runAntiVirusScan`, { Comment: `scan ${i}`, ScanType: 'Quick' });
    created.push(scan.body);
    // Distinct creation times, so ordering by time is meaningful.
    await new Promise((r) => setTimeout(r, 3));
  }
});
afterAll(async () => {
  await server?.stop();
});

async function filter(f: string, extra = '') {
  const res = await api.get(`/api/machineactions?$filter=${f}&$top=10000${extra}`);
  expect(res.status, res.text).toBe(200);
  return res;
}

describe('$filter on machine actions', () => {
  it('eq and ne', async () => {
    const pending = await filter("status eq 'Pending'");
    expect(ids(pending).sort()).toEqual(created.filter((a) => a.status === 'Pending').map((a) => a.id).sort());
    const notPending = await filter("status ne 'Pending'");
    expect(ids(notPending).sort()).toEqual(created.filter((a) => a.status !== 'Pending').map((a) => a.id).sort());
  });

  it('gt, ge, lt, le on creationDateTimeUtc with unquoted dates', async () => {
    const pivot = created[10]!.creationDateTimeUtc;
    const after = await filter(`creationDateTimeUtc gt ${pivot}`);
    expect(ids(after).sort()).toEqual(created.filter((a) => a.creationDateTimeUtc > pivot).map((a) => a.id).sort());
    const ge = await filter(`creationDateTimeUtc ge ${pivot}`);
    expect(ids(ge)).toContain(created[10]!.id);
    const lt = await filter(`creationDateTimeUtc lt ${pivot}`);
    expect(ids(lt).sort()).toEqual(created.filter((a) => a.creationDateTimeUtc < pivot).map((a) => a.id).sort());
    const le = await filter(`creationDateTimeUtc le ${pivot}`);
    expect(ids(le)).toHaveLength(ids(lt).length + 1);
    const shortForm = await filter('creationDateTimeUtc gt 2018-08-01Z');
    expect(shortForm.body.value).toHaveLength(created.length);
    const future = await filter('creationDateTimeUtc ge 2999-11-22T00:00:00Z');
    expect(future.body.value).toHaveLength(0);
  });

  it('in, and, or, not and parentheses', async () => {
    const m0 = setup.machines[0]!.id;
    const m1 = setup.machines[1]!.id;
    const inRes = await filter(`machineId in ('${m0}','${m1}')`);
    expect(inRes.body.value).toHaveLength(4);
    const andRes = await filter(`machineId eq '${m1}' and type eq 'Isolate'`);
    expect(andRes.body.value).toHaveLength(1);
    const orRes = await filter(`(machineId eq '${m0}' or machineId eq '${m1}') and type eq 'RunAntiVirusScan'`);
    expect(orRes.body.value).toHaveLength(2);
    const notRes = await filter(`not (type eq 'Isolate') and machineId eq '${m0}'`);
    expect(notRes.body.value.map((a: Created) => a.type)).toEqual(['RunAntiVirusScan']);
  });

  it('keywords and property names in any case', async () => {
    const m0 = setup.machines[0]!.id;
    const res = await filter(`MachineId EQ '${m0}' AND Type Eq 'Isolate'`);
    expect(res.body.value).toHaveLength(1);
    const or = await filter(`machineid eq '${m0}' Or TYPE eq 'Unisolate'`);
    expect(or.body.value).toHaveLength(2);
  });

  it('startswith', async () => {
    const m0 = setup.machines[0]!.id;
    const res = await filter(`startswith(machineId,'${m0.slice(0, 12)}')`);
    expect(res.body.value.every((a: Created) => a.machineId === m0)).toBe(true);
    expect(res.body.value.length).toBeGreaterThanOrEqual(2);
    const requestor = await filter("startswith(requestor,'test')");
    expect(requestor.body.value).toHaveLength(created.length);
  });

  it("Kibana's wire form: id in (...) AND status eq ... AND type in (...), with + for spaces", async () => {
    const wanted = created.filter((a) => a.status === 'Pending' && a.type === 'Isolate').slice(0, 2);
    const others = created.filter((a) => a.status !== 'Pending').slice(0, 1);
    const list = [...wanted, ...others].map((a) => `'${a.id}'`).join(',');
    const res = await api.get(
      `/api/machineactions?$count=true&$top=5&$skip=0&$orderby=creationDateTimeUtc+desc&$filter=id+in+(${list})+AND+status+eq+'Pending'+AND+type+in+('Isolate','Unisolate')`,
    );
    expect(res.status, res.text).toBe(200);
    expect(res.body['@odata.count']).toBe(2);
    expect(ids(res)).toEqual([wanted[1]!.id, wanted[0]!.id]);
    expect(res.body['@odata.nextLink']).toBeUndefined();
  });

  it("quoted strings with '' escapes and percent-encoding", async () => {
    const res = await filter(encodeURIComponent("requestor eq 'O''Brien'"));
    expect(res.body.value).toHaveLength(0);
    const m = await api.get(`/api/machines?$filter=${encodeURIComponent("computerDnsName eq 'o''brien.test.local'")}`);
    expect(m.status, m.text).toBe(200);
    expect(m.body.value.map((x: { id: string }) => x.id)).toEqual([setup.machines[3]!.id]);
  });
});

describe('paging, ordering and counting', () => {
  it('defaults to newest first', async () => {
    const res = await api.get('/api/machineactions?$top=100');
    expect(ids(res)).toEqual(newestFirst().map((a) => a.id));
  });

  it('$orderby asc and desc', async () => {
    const asc = await api.get('/api/machineactions?$orderby=creationDateTimeUtc asc&$top=3');
    expect(ids(asc)).toEqual(created.slice(0, 3).map((a) => a.id));
    const byType = await api.get('/api/machineactions?$orderby=type desc&$top=100');
    const types = byType.body.value.map((a: Created) => a.type);
    expect(types).toEqual([...types].sort().reverse());
  });

  it('$top and $skip page through the same order; $count counts all matches', async () => {
    const res = await api.get('/api/machineactions?$top=4&$skip=2&$count=true');
    expect(ids(res)).toEqual(newestFirst().slice(2, 6).map((a) => a.id));
    expect(res.body['@odata.count']).toBe(created.length);
    expect(res.body['@odata.nextLink']).toBeUndefined();
    const none = await api.get('/api/machineactions?$top=0&$count=true');
    expect(none.body.value).toEqual([]);
    expect(none.body['@odata.count']).toBe(created.length);
    const noCount = await api.get('/api/machineactions?$top=1');
    expect(noCount.body).not.toHaveProperty('@odata.count');
  });

  it('without $top, a full page links to the next with $skip, keeping the query', async () => {
    const seen: string[] = [];
    let url: string | undefined = `${server.url}/api/machineactions?$filter=type+eq+'RunAntiVirusScan'&$count=true`;
    let pages = 0;
    while (url) {
      const res = await api.get(url.slice(server.url.length));
      expect(res.status).toBe(200);
      expect(res.body['@odata.count']).toBe(12);
      expect(res.body.value.length).toBeLessThanOrEqual(PAGE);
      seen.push(...ids(res));
      url = res.body['@odata.nextLink'];
      if (url) expect(decodeURIComponent(url)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/machineactions\?.*\$filter=type\+eq\+'RunAntiVirusScan'.*\$skip=\d+$/);
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(newestFirst().filter((a) => a.type === 'RunAntiVirusScan').map((a) => a.id));
  });

  it('an exact last page has no nextLink', async () => {
    const res = await api.get(`/api/machineactions?$filter=machineId eq '${setup.machines[0]!.id}'`);
    expect(res.body.value).toHaveLength(2);
    expect(res.body['@odata.nextLink']).toBeUndefined();
  });
});

describe('$orderby over every scalar property (contract §5)', () => {
  type Scalar = string | number | boolean | null;
  /** OData's order: nulls first ascending; otherwise the values' own order (the wire's datetimes sort as text). */
  const before = (a: Scalar, b: Scalar) => (a === null ? b !== null : b === null ? false : a < b);
  const sorted = (values: Scalar[], direction: 'asc' | 'desc') =>
    values.every((v, i) => i === 0 || (direction === 'asc' ? !before(v, values[i - 1]!) : !before(values[i - 1]!, v)));

  it("a connector's isolation-state query: lastUpdateDateTimeUtc desc over the machine's Isolate/Unisolate", async () => {
    const m = setup.machines[0]!.id;
    const exact = await api.get(
      `/api/machineactions?$orderby=lastUpdateDateTimeUtc desc&$filter=status eq 'Succeeded' AND type in ('Isolate','Unisolate') AND machineId eq '${m}'`,
    );
    expect(exact.status, exact.text).toBe(200);
    expect(exact.body.value).toEqual([]);
    // The order is the property's, not the creation order: on a fresh machine, an isolate
    // cancelled after a scan was created is the one last updated.
    const small = makeFixtures(1);
    const other = await startTestServer({ fixtures: small.fixtures });
    try {
      const c = await appClient(other, small);
      const id = small.machines[0]!.id;
      const isolate = await c.post(`/api/machines/${id}/isolate`, { Comment: 'first' });
      await new Promise((r) => setTimeout(r, 3));
      await c.post(`/api/machines/${id}/runAntiVirusScan`, { Comment: 'second', ScanType: 'Quick' });
      await new Promise((r) => setTimeout(r, 3));
      await c.post(`/api/machineactions/${isolate.body.id}/cancel`, { Comment: 'third' });
      const byUpdate = await c.get(`/api/machineactions?$orderby=lastUpdateDateTimeUtc desc&$filter=machineId eq '${id}'`);
      expect(byUpdate.body.value.map((a: Created) => a.type)).toEqual(['Isolate', 'RunAntiVirusScan']);
      const byCreation = await c.get(`/api/machineactions?$orderby=creationDateTimeUtc desc&$filter=machineId eq '${id}'`);
      expect(byCreation.body.value.map((a: Created) => a.type)).toEqual(['RunAntiVirusScan', 'Isolate']);
      const byCancel = await c.get('/api/machineactions?$orderby=cancellationDateTimeUtc asc');
      expect(byCancel.body.value.map((a: Created & { cancellationDateTimeUtc: string | null }) => a.cancellationDateTimeUtc === null)).toEqual([true, false]);
    } finally {
      await other.stop();
    }
  });

  const cases = [
    ...MACHINE_ACTION_SET.properties.map((p) => ['machineactions', p] as const),
    ...MACHINE_SET.properties.map((p) => ['machines', p] as const),
  ].filter(([, p]) => p.type !== 'tags');
  it.each(cases.map(([path, p]) => [`${path}: ${p.name}`, path, p.name]))('%s', async (_, path, name) => {
    for (const direction of ['asc', 'desc'] as const) {
      const res = await api.get(`/api/${path}?$orderby=${name} ${direction}&$top=10000`);
      expect(res.status, res.text).toBe(200);
      const values = res.body.value.map((e: Record<string, Scalar>) => e[name] ?? null);
      expect(values.length).toBeGreaterThan(0);
      expect(sorted(values, direction), `${name} ${direction}: ${JSON.stringify(values)}`).toBe(true);
    }
  });

  it('an order-only property cannot filter: 400 naming the filterable ones', async () => {
    const res = await api.get("/api/machineactions?$filter=lastUpdateDateTimeUtc gt 2020-01-01Z");
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('ODataError');
    expect(res.body.error.message).toContain("'lastUpdateDateTimeUtc' cannot be used in $filter");
    expect(res.body.error.message).toContain('creationDateTimeUtc');
    const machine = await api.get('/api/machines?$filter=isAadJoined eq true');
    expect(machine.status).toBe(400);
    expect(machine.body.error.message).toContain("'isAadJoined' cannot be used in $filter");
  });

  it('the property lists are well formed, and list every scalar field of the wire entities', async () => {
    for (const set of [MACHINE_ACTION_SET, MACHINE_SET]) expect(() => defineEntitySet(set)).not.toThrow();
    const action = (await api.get('/api/machineactions?$top=1')).body.value[0];
    const machine = (await api.get('/api/machines?$top=1')).body.value[0];
    const scalars = (entity: Record<string, unknown>) =>
      Object.keys(entity).filter((k) => entity[k] === null || typeof entity[k] !== 'object').sort();
    // relatedFileInfo is an object when set; null here, but never a scalar.
    expect(scalars(action).filter((k) => k !== 'relatedFileInfo')).toEqual(MACHINE_ACTION_SET.properties.map((p) => p.name).sort());
    expect(scalars(machine)).toEqual(MACHINE_SET.properties.filter((p) => p.type !== 'tags').map((p) => p.name).sort());
  });
});

describe('$filter on machines', () => {
  it('filters by tags, platform, group, health, dates and DNS name prefix', async () => {
    const byTag = await api.get("/api/machines?$filter=machineTags/any(tag: tag eq 'prod')");
    expect(byTag.status, byTag.text).toBe(200);
    expect(byTag.body.value.map((m: { id: string }) => m.id)).toEqual([setup.machines[0]!.id]);
    const byPlatform = await api.get("/api/machines?$filter=osPlatform eq 'Debian'&$count=true");
    expect(byPlatform.body['@odata.count']).toBe(6);
    const byGroup = await api.get('/api/machines?$filter=rbacGroupId eq 2&$top=100');
    expect(byGroup.body.value).toHaveLength(6);
    const healthy = await api.get("/api/machines?$filter=healthStatus eq 'Active' and lastSeen gt 2020-01-01Z&$count=true&$top=0");
    expect(healthy.body['@odata.count']).toBe(12);
    const prefix = await api.get("/api/machines?$filter=startswith(computerDnsName,'HOST-1')&$top=100");
    expect(prefix.body.value.map((m: { computerDnsName: string }) => m.computerDnsName).sort()).toEqual([
      'host-1.test.local',
      'host-10.test.local',
      'host-11.test.local',
    ]);
    const ip = await api.get("/api/machines?$filter=lastIpAddress eq '10.1.0.2'");
    expect(ip.body.value.map((m: { id: string }) => m.id)).toEqual([setup.machines[1]!.id]);
  });

  it('pages machines with nextLink too', async () => {
    const res = await api.get('/api/machines');
    expect(res.body.value).toHaveLength(PAGE);
    expect(res.body['@odata.nextLink']).toMatch(/\/api\/machines\?\$skip=5$/);
  });
});

describe('invalid queries -> 400 ODataError', () => {
  const bad: [string, RegExp][] = [
    ["$filter=nosuch eq 'x'", /nosuch/],
    ["$filter=status eq 'Pending' and", /\$filter/],
    ["$filter=status eq 'Nope'", /Nope|status/],
    ["$filter=status gt 'Pending'", /gt|status/],
    ['$filter=(((', /\$filter/],
    ['$select=id', /select/],
    ['$expand=x', /expand/],
    ['$top=10001', /top/],
    ['$top=-1', /top/],
    ['$skip=abc', /skip/],
    ['$orderby=nosuch desc', /nosuch/],
    ['$count=maybe', /count/],
    ["$filter=status eq 'Pending'&$filter=status eq 'Failed'", /filter/],
  ];
  it.each(bad)('%s', async (query, message) => {
    const res = await api.get(`/api/machineactions?${query}`);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('ODataError');
    expect(res.body.error.message).toMatch(message);
    expect(res.body.error.target).toBe(res.headers.get('request-id'));
  });

  it('a deeply nested filter is refused, not a crash', async () => {
    const res = await api.get(`/api/machineactions?$filter=${'('.repeat(2000)}`);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('ODataError');
  });

  it('SQL in a literal is only ever a value', async () => {
    const res = await filter(encodeURIComponent("requestor eq 'x'' OR 1=1 --'"));
    expect(res.body.value).toHaveLength(0);
  });
});
