import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Simulation } from '../../src/agent/executors/simulated.js';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, appClient, makeFixtures, startTestServer, userToken, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';

/**
 * Alerts and investigations end to end (contract §2 rows 21-25, §10): a started server, agents
 * speaking the protocol over HTTP, everything driven through the public API as a SOAR
 * platform would. Alerts come only from what agents report finding; an investigation collects
 * the machine's investigation package and ends in the state its collection decides.
 */

const ALERT_FIELDS = [
  'id', 'incidentId', 'investigationId', 'assignedTo', 'severity', 'status', 'classification', 'determination',
  'investigationState', 'detectionSource', 'detectorId', 'category', 'threatFamilyName', 'title', 'description',
  'alertCreationTime', 'firstEventTime', 'lastEventTime', 'lastUpdateTime', 'resolvedTime', 'machineId',
  'computerDnsName', 'rbacGroupName', 'aadTenantId', 'threatName', 'mitreTechniques', 'relatedUser', 'comments', 'evidence',
];
const EVIDENCE_FIELDS = [
  'entityType', 'evidenceCreationTime', 'sha1', 'sha256', 'fileName', 'filePath', 'processId', 'processCommandLine',
  'processCreationTime', 'parentProcessId', 'parentProcessCreationTime', 'parentProcessFileName', 'parentProcessFilePath',
  'ipAddress', 'url', 'registryKey', 'registryHive', 'registryValueType', 'registryValue', 'accountName', 'domainName',
  'userSid', 'aadUserId', 'userPrincipalName', 'detectionStatus',
];
const INVESTIGATION_FIELDS = ['@odata.context', 'id', 'startTime', 'endTime', 'state', 'cancelledBy', 'statusDetails', 'machineId', 'computerDnsName', 'triggeringAlertId'];
const TIME_7 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/;
const EICAR_SHA1 = '3395856ce81f2b7382dee72602f798b642f14140';
const EICAR_SHA256 = '275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f';

/** What a scan that finds two threats in three files reports (the linux executor's shape). */
const FINDING: Simulation = {
  RunAntiVirusScan: {
    durationMs: 100,
    detail: {
      findings: [
        { path: '/home/ana/eicar.com', signature: 'Win.Test.EICAR_HDB-1', sha1: EICAR_SHA1, sha256: EICAR_SHA256 },
        { path: '/tmp/eicar copy.txt', signature: 'Win.Test.EICAR_HDB-1' },
        { path: '/opt/x/miner', signature: 'Unix.Coinminer.Generic-7088' },
        'not a finding',
      ],
    },
  },
  StopAndQuarantineFile: {
    durationMs: 100,
    detail: { sha1: EICAR_SHA1, files: [{ originalPath: '/usr/local/bin/dropper', killedPids: [4242, 4243] }] },
  },
  CollectInvestigationPackage: { durationMs: 400 },
};

const backends = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!PG_URL) console.warn('[investigations-alerts] PostgreSQL run skipped: COUNTERMAND_TEST_PG_URL is not set');

describe.each(backends)('alerts and investigations on %s', (backend) => {
  const setup = makeFixtures(2);
  setup.fixtures.tenants[0]!.users = [
    { upn: 'group2@t.test', password: 'password-123', scopes: ['Alert.Read', 'Alert.ReadWrite', 'Machine.Read'], rolePermissions: ['View data', 'Alerts investigation'], deviceGroups: [2] },
  ];
  const other = makeFixtures(0);
  let server: TestServer;
  let api: Client;
  let token: string;
  const agents: RunningAgent[] = [];

  beforeAll(async () => {
    server = await startTestServer({
      fixtures: { tenants: [...setup.fixtures.tenants, ...other.fixtures.tenants] },
      backend,
      config: { rateLimitScale: 1000, agentPollSeconds: 5 },
    });
    api = await appClient(server, setup);
    token = await enrollmentToken(server.store, setup.tenantId);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await server?.stop();
  });

  async function agent(name: string, simulation: Simulation = FINDING) {
    const a = await startAgent(server.url, token, name, simulation);
    agents.push(a);
    return a;
  }
  const actionDone = (id: string) =>
    waitUntil(async () => {
      const a = (await api.get(`/api/machineactions/${id}`)).body;
      return ['Succeeded', 'Failed', 'TimeOut', 'Cancelled'].includes(a.status) ? a : undefined;
    }, 10_000, `action ${id} to end`);
  const investigationEnds = (id: string) =>
    waitUntil(async () => {
      const i = (await api.get(`/api/investigations/${id}`)).body;
      return i.endTime ? i : undefined;
    }, 10_000, `investigation ${id} to end`);
  const alertsOf = async (machineId: string, expand = true) =>
    (await api.get(`/api/alerts?$orderby=title asc&$top=100${expand ? '&$expand=evidence' : ''}`)).body.value.filter(
      (a: { machineId: string }) => a.machineId === machineId,
    );
  /** The investigation's CollectInvestigationPackage action, found as a client would. */
  const packageAction = async (machineId: string) =>
    (await api.get(`/api/machineactions?$filter=machineId eq '${machineId}' and type eq 'CollectInvestigationPackage'&$top=1`)).body.value[0];

  it("a connection test's GET /api/alerts?$top=1 answers an empty Alerts collection", async () => {
    const res = await (await appClient(server, { tenantId: other.tenantId, clientId: other.clientId })).get('/api/alerts?$top=1');
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8');
    expect(res.body).toEqual({ '@odata.context': `${server.baseUrl}/api/$metadata#Alerts`, value: [] });
    const investigations = await api.get('/api/investigations?$top=1&$count=true');
    expect(investigations.body['@odata.context']).toBe(`${server.baseUrl}/api/$metadata#Investigations`);
  });

  it("a scan's findings become alerts, listed and fetched with MDE's Alert shape", async () => {
    const a = await agent('found.test');
    const scan = await api.post(`/api/machines/${a.machineId}/runAntiVirusScan`, { Comment: 'sweep', ScanType: 'Quick' });
    expect((await actionDone(scan.body.id)).status).toBe('Succeeded');
    const listed = await alertsOf(a.machineId, false);
    expect(listed).toHaveLength(2);
    for (const alert of listed) {
      expect(Object.keys(alert)).toEqual(ALERT_FIELDS);
      expect(alert.evidence).toEqual([]); // lists carry evidence only with $expand=evidence, as MDE's
    }
    const full = await alertsOf(a.machineId);
    const eicar = full.find((x: { threatName: string }) => x.threatName === 'Win.Test.EICAR_HDB-1');
    const miner = full.find((x: { threatName: string }) => x.threatName === 'Unix.Coinminer.Generic-7088');
    expect(eicar).toMatchObject({
      incidentId: null,
      investigationId: null,
      assignedTo: null,
      severity: 'Medium',
      status: 'New',
      classification: null,
      determination: null,
      investigationState: null,
      detectionSource: 'Antivirus',
      category: 'Malware',
      threatFamilyName: 'EICAR_HDB',
      threatName: 'Win.Test.EICAR_HDB-1',
      title: "'Win.Test.EICAR_HDB-1' malware was detected",
      resolvedTime: null,
      machineId: a.machineId,
      computerDnsName: 'found.test',
      rbacGroupName: 'g1',
      aadTenantId: setup.tenantId,
      mitreTechniques: [],
      relatedUser: null,
      comments: [],
    });
    expect(eicar.id).toMatch(/^da\d{18}_\d+$/);
    expect(eicar.description).toContain(scan.body.id);
    for (const t of ['alertCreationTime', 'firstEventTime', 'lastEventTime', 'lastUpdateTime']) expect(eicar[t]).toMatch(TIME_7);
    expect(eicar.evidence.map((e: Record<string, unknown>) => [e.fileName, e.filePath, e.sha1, e.sha256, e.detectionStatus])).toEqual([
      ['eicar.com', '/home/ana', EICAR_SHA1, EICAR_SHA256, 'Detected'],
      ['eicar copy.txt', '/tmp', null, null, 'Detected'],
    ]);
    for (const e of eicar.evidence) expect(Object.keys(e)).toEqual(EVIDENCE_FIELDS);
    expect(miner).toMatchObject({ threatName: 'Unix.Coinminer.Generic-7088', threatFamilyName: 'Generic' });
    expect(miner.evidence).toHaveLength(1);

    const one = await api.get(`/api/alerts/${eicar.id}`);
    expect(one.status).toBe(200);
    expect(Object.keys(one.body)).toEqual(['@odata.context', ...ALERT_FIELDS]);
    expect(one.body['@odata.context']).toBe(`${server.baseUrl}/api/$metadata#Alerts/$entity`);
    expect(one.body).toEqual({ '@odata.context': one.body['@odata.context'], ...eicar });
    // OData like the other collections.
    const filtered = await api.get(`/api/alerts?$filter=severity eq 'medium' and detectionSource eq 'Antivirus' and id eq '${miner.id}'&$count=true`);
    expect(filtered.body['@odata.count']).toBe(1);
    expect((await api.get('/api/alerts?$filter=threatName eq \'x\'')).body.error.code).toBe('ODataError');
    expect((await api.get('/api/alerts?$orderby=threatName desc')).status).toBe(200);
    expect((await api.get('/api/alerts?$expand=comments')).body.error.code).toBe('ODataError');
    // Unknown, and another tenant's: 404 NotFound.
    expect((await api.get('/api/alerts/da000_1')).body.error.code).toBe('NotFound');
    const stranger = await appClient(server, { tenantId: other.tenantId, clientId: other.clientId });
    expect((await stranger.get(`/api/alerts/${eicar.id}`)).status).toBe(404);
    expect((await stranger.get('/api/alerts')).body.value).toEqual([]);
  });

  it('a scan that finds nothing raises nothing; a quarantine raises a Blocked alert with its processes', async () => {
    const a = await agent('quarantine.test', { ...FINDING, RunAntiVirusScan: { durationMs: 50 } });
    await actionDone((await api.post(`/api/machines/${a.machineId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Full' })).body.id);
    expect(await alertsOf(a.machineId)).toEqual([]);
    const q = await api.post(`/api/machines/${a.machineId}/StopAndQuarantineFile`, { Comment: 'dropper', Sha1: EICAR_SHA1.toUpperCase() });
    expect((await actionDone(q.body.id)).status).toBe('Succeeded');
    const [alert] = await alertsOf(a.machineId);
    expect(alert).toMatchObject({ severity: 'Low', title: "'dropper' was stopped and quarantined", threatName: null });
    expect(alert.evidence.map((e: Record<string, unknown>) => [e.entityType, e.fileName, e.filePath, e.sha1, e.processId, e.detectionStatus])).toEqual([
      ['File', 'dropper', '/usr/local/bin', EICAR_SHA1, null, 'Blocked'],
      ['Process', 'dropper', '/usr/local/bin', EICAR_SHA1, 4242, 'Blocked'],
      ['Process', 'dropper', '/usr/local/bin', EICAR_SHA1, 4243, 'Blocked'],
    ]);
  });

  it('an investigation started from an alert: 201 Investigation, the agent collects the package, it ends PendingApproval', async () => {
    const a = await agent('investigate.test');
    await actionDone((await api.post(`/api/machines/${a.machineId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Quick' })).body.id);
    const alerts = await alertsOf(a.machineId);
    const started = await api.post(`/api/machines/${a.machineId}/startInvestigation`, { Comment: 'look closer' });
    expect(started.status, started.text).toBe(201);
    expect(Object.keys(started.body)).toEqual(INVESTIGATION_FIELDS);
    expect(started.body).toMatchObject({
      '@odata.context': `${server.baseUrl}/api/$metadata#Investigations/$entity`,
      endTime: null,
      state: 'Queued',
      cancelledBy: null,
      machineId: a.machineId,
      computerDnsName: 'investigate.test',
    });
    expect(started.body.id).toMatch(/^\d+$/);
    expect(started.body.startTime).toMatch(TIME_7);
    // The machine's newest alert triggers it: of the scan's two, the one raised last.
    const newest = (await api.get('/api/alerts?$top=1')).body.value[0];
    expect(newest.machineId).toBe(a.machineId);
    expect(started.body.triggeringAlertId).toBe(newest.id);
    expect(alerts.map((x: { id: string }) => x.id)).toContain(newest.id);
    // It runs as a package collection on the machine, requested by the caller with its comment.
    const action = await packageAction(a.machineId);
    expect(action).toMatchObject({ type: 'CollectInvestigationPackage', requestor: 'Test App', requestorComment: 'look closer' });
    await waitUntil(async () => ((await api.get(`/api/investigations/${started.body.id}`)).body.state === 'Running' ? true : undefined), 10_000, 'Running');
    const ended = await investigationEnds(started.body.id);
    expect((await api.get(`/api/machineactions/${action.id}`)).body.status).toBe('Succeeded');
    expect(a.executor.completed).toContain(action.id);
    // The alert's files are still on the machine: remediation awaits the user.
    expect(ended).toMatchObject({ state: 'PendingApproval', cancelledBy: null });
    expect(ended.statusDetails).toMatch(/still on the machine/);
    expect(ended.endTime).toMatch(TIME_7);
    const trigger = (await api.get(`/api/alerts/${started.body.triggeringAlertId}`)).body;
    expect(trigger).toMatchObject({ investigationId: Number(started.body.id), investigationState: 'PendingApproval' });
    // Listed with OData like the other collections.
    const listed = await api.get(`/api/investigations?$filter=machineId eq '${a.machineId}' and state eq 'PendingApproval'&$count=true`);
    expect(listed.body['@odata.count']).toBe(1);
    expect(listed.body.value[0]).toEqual(Object.fromEntries(Object.entries(ended).filter(([k]) => k !== '@odata.context')));
    expect((await api.get(`/api/investigations?$filter=id eq '${started.body.id}'`)).body.value).toHaveLength(1);
    expect((await api.get(`/api/investigations?$filter=triggeringAlertId eq '${trigger.id}'`)).body.value).toHaveLength(1);
    expect((await api.get('/api/investigations?$orderby=statusDetails asc')).status).toBe(200);
    expect((await api.get('/api/investigations?$filter=statusDetails eq \'x\'')).body.error.code).toBe('ODataError');
  });

  it('after a quarantine, SuccessfullyRemediated; with no alert, Benign; a failed collection, Failed', async () => {
    const q = await agent('remediated.test');
    await actionDone((await api.post(`/api/machines/${q.machineId}/StopAndQuarantineFile`, { Comment: 'x', Sha1: EICAR_SHA1 })).body.id);
    const remediated = await api.post(`/api/machines/${q.machineId}/startInvestigation`, { Comment: 'check' });
    expect((await investigationEnds(remediated.body.id)).state).toBe('SuccessfullyRemediated');

    const clean = await agent('clean.test');
    const benign = await api.post(`/api/machines/${clean.machineId}/startInvestigation`, { Comment: 'routine' });
    expect(benign.body.triggeringAlertId).toBeNull();
    expect((await investigationEnds(benign.body.id)).state).toBe('Benign');

    const broken = await agent('broken.test', { CollectInvestigationPackage: { durationMs: 100, outcome: 'Failed', troubleshootInfo: 'simulated: disk full' } });
    const failed = await api.post(`/api/machines/${broken.machineId}/startInvestigation`, { Comment: 'x' });
    const ended = await investigationEnds(failed.body.id);
    expect(ended.state).toBe('Failed');
    expect(ended.statusDetails).toContain('simulated: disk full');
  });

  it('cancelling its package collection terminates it (TerminatedByUser, cancelledBy); one per machine at a time', async () => {
    const a = await agent('cancel-inv.test', { CollectInvestigationPackage: { durationMs: 60_000 } });
    const started = await api.post(`/api/machines/${a.machineId}/startInvestigation`, { Comment: 'long' });
    // A package collection runs on the machine: a second investigation, or a manual collection, is refused.
    const again = await api.post(`/api/machines/${a.machineId}/startInvestigation`, { Comment: 'again' });
    expect(again.status).toBe(400);
    expect(again.body.error.code).toBe('ActiveRequestAlreadyExists');
    expect((await api.post(`/api/machines/${a.machineId}/collectInvestigationPackage`, { Comment: 'manual' })).body.error.code).toBe('ActiveRequestAlreadyExists');
    expect((await api.get(`/api/investigations?$filter=machineId eq '${a.machineId}'&$count=true`)).body['@odata.count']).toBe(1);
    const action = await packageAction(a.machineId);
    await waitUntil(async () => ((await api.get(`/api/investigations/${started.body.id}`)).body.state === 'Running' ? true : undefined), 10_000, 'Running');
    await api.post(`/api/machineactions/${action.id}/cancel`, { Comment: 'enough' });
    const ended = (await api.get(`/api/investigations/${started.body.id}`)).body;
    expect(ended).toMatchObject({ state: 'TerminatedByUser', cancelledBy: 'Test App', statusDetails: 'enough' });
    await waitUntil(() => (a.executor.stopped.has(action.id) ? true : undefined), 5000, 'the machine to stop collecting');
    // Once it ended, another can start.
    expect((await api.post(`/api/machines/${a.machineId}/startInvestigation`, { Comment: 'again' })).status).toBe(201);
  });

  it('an offboarded machine is investigated no more: 400, and nothing is created', async () => {
    const a = await agent('offboarded-inv.test', { Offboard: { durationMs: 50 } });
    const offboard = await api.post(`/api/machines/${a.machineId}/offboard`, { Comment: 'bye' });
    expect((await actionDone(offboard.body.id)).status).toBe('Succeeded');
    const res = await api.post(`/api/machines/${a.machineId}/startInvestigation`, { Comment: 'too late' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('InvalidInput');
    expect(res.body.error.message).toMatch(/offboarded/);
    expect((await api.get(`/api/investigations?$filter=machineId eq '${a.machineId}'&$count=true`)).body['@odata.count']).toBe(0);
  });

  it('starting one: bad bodies, unknown machines, other tenants, and device groups', async () => {
    const m = setup.machines[1]!; // device group 2, no agent
    expect((await api.post(`/api/machines/${m.id}/startInvestigation`, {})).body.error.code).toBe('MissingRequiredParameter');
    expect((await api.post(`/api/machines/${m.id}/startInvestigation`, { Comment: 5 })).body.error.code).toBe('InvalidRequestBody');
    const unknown = await api.post(`/api/machines/${'0'.repeat(40)}/startInvestigation`, { Comment: 'x' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('ResourceNotFound');
    const stranger = await appClient(server, { tenantId: other.tenantId, clientId: other.clientId });
    expect((await stranger.post(`/api/machines/${m.id}/startInvestigation`, { Comment: 'x' })).status).toBe(404);
    // A user of device group 2 sees this machine's investigation, not the group-1 machines' ones.
    const user = new Client(server.url, { authorization: `Bearer ${await userToken(server, setup.tenantId, 'group2@t.test', 'password-123')}` });
    const mine = await user.post(`/api/machines/${m.id}/startInvestigation`, { Comment: 'user' });
    expect(mine.status, mine.text).toBe(201);
    const seen = (await user.get('/api/investigations?$top=100')).body.value.map((i: { machineId: string }) => i.machineId);
    expect(new Set(seen)).toEqual(new Set([m.id]));
    const group1 = (await api.get(`/api/investigations?$filter=machineId ne '${m.id}'&$top=1`)).body.value[0];
    expect((await user.get(`/api/investigations/${group1.id}`)).status).toBe(404);
    expect((await user.get('/api/alerts?$top=100')).body.value).toEqual([]);
    const groupOneAlert = (await api.get('/api/alerts?$top=1')).body.value[0];
    expect((await user.get(`/api/alerts/${groupOneAlert.id}`)).status).toBe(404);
    expect((await api.get('/api/investigations/abc')).body.error.code).toBe('NotFound');
    expect((await api.get(`/api/investigations/${'9'.repeat(15)}`)).status).toBe(404);
    // Only the canonical number names an investigation.
    expect((await api.get(`/api/investigations/${mine.body.id}`)).status).toBe(200);
    expect((await api.get(`/api/investigations/0${mine.body.id}`)).status).toBe(404);
  });
});

describe('investigations time out like actions', () => {
  it('a package collection nobody picks up: TimeOut, and the investigation TerminatedBySystem', async () => {
    const fx = makeFixtures(1);
    const s = await startTestServer({ fixtures: fx.fixtures, config: { deliveryWindowSeconds: 1, sweepIntervalSeconds: 0.2 } });
    try {
      const c = await appClient(s, fx);
      const started = await c.post(`/api/machines/${fx.machines[0]!.id}/startInvestigation`, { Comment: 'offline machine' });
      const ended = await waitUntil(async () => {
        const i = (await c.get(`/api/investigations/${started.body.id}`)).body;
        return i.state === 'TerminatedBySystem' ? i : undefined;
      }, 10_000, 'TerminatedBySystem');
      expect(ended.endTime).not.toBeNull();
      expect(ended.statusDetails).toMatch(/in time/);
      const action = (await c.get("/api/machineactions?$filter=type eq 'CollectInvestigationPackage'")).body.value[0];
      expect(action.status).toBe('TimeOut');
    } finally {
      await s.stop();
    }
  });
});

describe('startInvestigation rate limit (contract §8: 50 per hour)', () => {
  it('a parallel burst of 60 gets exactly 50 through, then 429 with Retry-After', async () => {
    const fx = makeFixtures(1);
    const s = await startTestServer({ fixtures: fx.fixtures });
    try {
      const c = await appClient(s, fx);
      const id = fx.machines[0]!.id;
      const results = await Promise.all(Array.from({ length: 60 }, () => c.post(`/api/machines/${id}/startInvestigation`, { Comment: randomUUID() })));
      // One starts; the others in the window are refused by the conflict group; the rest by the limit.
      expect(results.filter((r) => r.status === 201)).toHaveLength(1);
      expect(results.filter((r) => r.status === 400)).toHaveLength(49);
      const limited = results.filter((r) => r.status === 429);
      expect(limited).toHaveLength(10);
      expect(limited[0]!.body.error.code).toBe('TooManyRequests');
      expect(Number(limited[0]!.headers.get('retry-after'))).toBeGreaterThan(60);
      // Another endpoint is not affected.
      expect((await c.get('/api/investigations')).status).toBe(200);
    } finally {
      await s.stop();
    }
  });
});
