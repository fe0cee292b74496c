import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT } from '../../src/agent/executor.js';
import { Countermand } from '../../src/client/index.js';
import { enrollmentToken, startAgent, type RunningAgent } from '../support/agents.js';
import { Client, TEST_SECRET, appClient, cleanup, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_URL } from '../support/postgres.js';
import { runCli, spawnCli, type SpawnedCli } from '../support/process.js';

/**
 * The client commands (`countermand actions|machines|isolate|...`) run as processes against a
 * started server with simulated agents, as a user runs them: tables and --json, progress and
 * exit codes of `wait`, credentials from flags, the environment or a profile (docs/cli.md).
 */

const BACKENDS = PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);

const USER = { upn: 'analyst@test.local', password: 'analyst-password-1' };

/** The nine verbs, each with what its type needs, and what the created action must then show. */
const VERBS: { args: string[]; type: string; check?: (action: any) => void }[] = [
  { args: ['isolate', '--type', 'Selective'], type: 'Isolate', check: (a) => expect(a.scope).toBe('Selective') },
  { args: ['unisolate'], type: 'Unisolate' },
  { args: ['scan', '--type', 'Full'], type: 'RunAntiVirusScan', check: (a) => expect(a.scope).toBe('Full') },
  { args: ['collect'], type: 'CollectInvestigationPackage' },
  { args: ['restrict'], type: 'RestrictCodeExecution' },
  { args: ['unrestrict'], type: 'UnrestrictCodeExecution' },
  {
    args: ['quarantine', '--sha1', 'AB'.repeat(20)],
    type: 'StopAndQuarantineFile',
    check: (a) => expect(a.relatedFileInfo).toEqual({ fileIdentifier: 'ab'.repeat(20), fileIdentifierType: 'Sha1' }),
  },
  { args: ['offboard'], type: 'Offboard' },
  {
    args: ['live-response', '--command', 'GetFile Path=/var/log/my app.log', '--command', 'GetFile Path=/etc/hostname'],
    type: 'LiveResponse',
    check: (a) =>
      expect(a.commands.map((c: any) => c.command)).toEqual([
        { type: 'GetFile', params: [{ key: 'Path', value: '/var/log/my app.log' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/etc/hostname' }] },
      ]),
  },
];

/** Runs `work` over `items`, a few at a time (each is a process; the machine is shared). */
async function pool<T, R>(items: readonly T[], work: (item: T, index: number) => Promise<R>, width = 4): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i]!, i);
      }
    }),
  );
  return results;
}

/** A loopback port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** `label  value` of a details view. */
const field = (text: string, label: string) => new RegExp(`^${label} +(.*)$`, 'm').exec(text)?.[1];

describe.each(BACKENDS)('countermand client commands against a started server (%s)', (backend) => {
  const setup = makeFixtures(24);
  setup.fixtures.tenants[0]!.users = [
    {
      ...USER,
      scopes: ['Machine.Read', 'Machine.Isolate'],
      rolePermissions: ['View data', 'Active remediation actions'],
      deviceGroups: [2],
    },
  ];
  let server: TestServer;
  let raw: Client;
  let api: Countermand;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const agents: RunningAgent[] = [];
  let ok: RunningAgent;
  let slow: RunningAgent;
  // Fixture machines have no agent: their actions stay Pending. Each test takes its own.
  let spare = 0;
  const machine = () => setup.machines[spare++]!;

  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => runCli(args, { ...env, ...extra });

  beforeAll(async () => {
    server = await startTestServer({
      fixtures: setup.fixtures,
      backend,
      config: { pageSize: 5, rateLimitScale: 1000, agentPollSeconds: 5, sweepIntervalSeconds: 0.2 },
    });
    raw = await appClient(server, setup);
    api = new Countermand({ url: server.url, tenantId: setup.tenantId, clientId: setup.clientId, clientSecret: TEST_SECRET });
    dir = mkdtempSync(join(tmpdir(), 'countermand-cli-actions-'));
    env = {
      COUNTERMAND_URL: server.url,
      COUNTERMAND_TENANT: setup.tenantId,
      COUNTERMAND_CLIENT_ID: setup.clientId,
      COUNTERMAND_CLIENT_SECRET: TEST_SECRET,
      COUNTERMAND_USERNAME: '',
      COUNTERMAND_PASSWORD: '',
      COUNTERMAND_PROFILE: '',
      COUNTERMAND_TOKEN_URL: '',
      // No profile unless a test writes one; never the developer's own.
      COUNTERMAND_PROFILE_FILE: join(dir, 'no-profiles.json'),
      COLUMNS: '',
    };
    const token = await enrollmentToken(server.store, setup.tenantId);
    const start = async (name: string, simulation: object) => {
      const a = await startAgent(server.url, token, name, simulation);
      agents.push(a);
      return a;
    };
    [ok, , slow] = await Promise.all([
      // Live response slow enough for each command's start and end to be seen.
      start('ok.agents.test', { '*': { durationMs: 400 }, LiveResponse: { durationMs: 3000 } }),
      start('failing.agents.test', {
        '*': { durationMs: 300, outcome: 'Failed', errorHResult: HRESULT.accessDenied, troubleshootInfo: 'access denied' },
      }),
      start('slow.agents.test', { '*': { durationMs: 120_000 } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await server?.stop();
    if (dir) cleanup(dir);
  });

  it('machines list and get: an aligned table, and with --json the API\'s own JSON', async () => {
    const [table, json, get, getJson, some] = await Promise.all([
      cli(['machines', 'list']),
      cli(['machines', 'list', '--json']),
      cli(['machines', 'get', 'host-3.test.local']),
      cli(['machines', 'get', setup.machines[3]!.id, '--json']),
      cli(['machines', 'list', '--name', 'host-1', '--top', '3']),
    ]);
    expect(table.code, table.output).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    const header = lines[0]!;
    expect(header).toMatch(/^ID +NAME +HEALTH +LAST SEEN +OS +IP +GROUP +TAGS$/);
    const listed = (await raw.get('/api/machines?$top=50')).body.value as { id: string; computerDnsName: string }[];
    expect(lines).toHaveLength(listed.length + 1);
    for (const m of listed) {
      const line = lines.find((l) => l.startsWith(m.id));
      expect(line, m.id).toBeDefined();
      // Aligned: each value starts under its header.
      expect(line!.indexOf(m.computerDnsName)).toBe(header.indexOf('NAME'));
    }

    expect(json.code, json.output).toBe(0);
    const page = JSON.parse(json.stdout);
    expect(Object.keys(page)).toEqual(['@odata.context', '@odata.count', 'value']);
    expect(page['@odata.count']).toBe(setup.machines.length + agents.length);
    expect(page.value.map((m: any) => m.id)).toEqual(listed.map((m) => m.id));
    const fixture = page.value.find((m: any) => m.id === setup.machines[0]!.id);
    expect(fixture).toEqual(listed.find((m) => m.id === setup.machines[0]!.id));

    expect(get.code, get.output).toBe(0);
    expect(field(get.stdout, 'id')).toBe(setup.machines[3]!.id);
    expect(field(get.stdout, 'computerDnsName')).toBe('host-3.test.local');
    expect(field(get.stdout, 'machineTags')).toBe('test');
    expect(getJson.code).toBe(0);
    expect(JSON.parse(getJson.stdout)).toEqual((await raw.get(`/api/machines/${setup.machines[3]!.id}`)).body);

    // host-1, host-10 ... host-19: 11 match, 3 shown, and the rest said so on stderr.
    expect(some.code, some.output).toBe(0);
    expect(some.stdout.trimEnd().split('\n')).toHaveLength(4);
    expect(some.stderr).toMatch(/^3 of 11: --top, --skip or --all for more$/m);
  });

  it('every action verb creates its action: a details view, and with --json the API\'s entity', async () => {
    const runs = VERBS.flatMap((verb) => [
      { verb, json: false, target: machine() },
      { verb, json: true, target: machine() },
    ]);
    const results = await pool(runs, ({ verb, json, target }) =>
      cli([...verb.args, json ? target.id : target.computerDnsName, '--comment', `${verb.type} by the CLI`, ...(json ? ['--json'] : [])]),
    );
    for (const [i, { verb, json, target }] of runs.entries()) {
      const result = results[i]!;
      expect(result.code, `${verb.args[0]}: ${result.output}`).toBe(0);
      const id = json ? JSON.parse(result.stdout).id : field(result.stdout, 'id');
      const stored = (await raw.get(`/api/machineactions/${id}`)).body;
      expect(stored.type).toBe(verb.type);
      expect(stored.machineId).toBe(target.id);
      expect(stored.requestorComment).toBe(`${verb.type} by the CLI`);
      expect(stored.requestor).toBe('Test App');
      verb.check?.(stored);
      if (json) {
        expect(JSON.parse(result.stdout)).toEqual({ ...stored, '@odata.context': expect.stringMatching(/#MachineActions\/\$entity$/) });
      } else {
        expect(field(result.stdout, 'type')).toBe(verb.type);
        expect(field(result.stdout, 'status')).toBe('Pending');
        expect(field(result.stdout, 'computerDnsName')).toBe(target.computerDnsName);
      }
    }
  });

  it('actions list: filters, --top, --all across pages (the server pages by 5), table and --json', async () => {
    const [m1, m2] = [machine(), machine()];
    await api.isolateMachine(m1.id, { Comment: 'list one', IsolationType: 'Selective' });
    await api.runAntiVirusScan(m1.id, { Comment: 'list two', ScanType: 'Quick' });
    await api.isolateMachine(m2.id, { Comment: 'list three' });
    const everything = (await raw.get('/api/machineactions?$top=10000&$count=true')).body;
    expect(everything['@odata.count']).toBeGreaterThan(10);

    const [all, filtered, byMachine, top, custom, bad, recent, badSince] = await Promise.all([
      cli(['actions', 'list', '--all', '--json']),
      cli(['actions', 'list', '--type', 'isolate', '--status', 'Pending', '--json']),
      cli(['actions', 'list', '--machine', m1.computerDnsName]),
      cli(['actions', 'list', '--top', '2']),
      cli(['actions', 'list', '--filter', "type in ('Isolate','Unisolate')", '--machine', m1.id, '--json']),
      cli(['actions', 'list', '--filter', 'colour eq 1']),
      cli(['actions', 'list', '--since', '1h', '--requestor', 'Test App', '--top', '3', '--json']),
      cli(['actions', 'list', '--since', 'yesterday']),
    ]);
    expect(all.code, all.output).toBe(0);
    const every = JSON.parse(all.stdout);
    expect(every['@odata.count']).toBe(everything['@odata.count']);
    expect(every.value.map((a: any) => a.id)).toEqual(everything.value.map((a: any) => a.id));
    expect(every['@odata.nextLink']).toBeUndefined();

    expect(filtered.code, filtered.output).toBe(0);
    const pendingIsolations = JSON.parse(filtered.stdout).value;
    expect(pendingIsolations.length).toBeGreaterThanOrEqual(3);
    expect(pendingIsolations.every((a: any) => a.type === 'Isolate' && a.status === 'Pending')).toBe(true);
    expect(pendingIsolations.map((a: any) => a.id)).toEqual(
      (await raw.get("/api/machineactions?$filter=type eq 'Isolate' and status eq 'Pending'&$top=50")).body.value.map((a: any) => a.id),
    );

    expect(byMachine.code, byMachine.output).toBe(0);
    const rows = byMachine.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^ID +TYPE +STATUS +MACHINE +CREATED +REQUESTOR +COMMENT$/);
    expect(rows.slice(1).map((r) => r.split(/ {2,}/).slice(1, 4))).toEqual([
      ['RunAntiVirusScan', 'Pending', m1.computerDnsName],
      ['Isolate', 'Pending', m1.computerDnsName],
    ]);

    expect(top.code).toBe(0);
    expect(top.stdout.trimEnd().split('\n')).toHaveLength(3);
    expect(top.stderr).toContain(`2 of ${everything['@odata.count']}`);

    expect(custom.code, custom.output).toBe(0);
    expect(JSON.parse(custom.stdout).value.map((a: any) => a.requestorComment)).toEqual(['list one']);

    expect(recent.code, recent.output).toBe(0);
    expect(JSON.parse(recent.stdout).value.map((a: any) => a.id)).toEqual(everything.value.slice(0, 3).map((a: any) => a.id));
    expect(badSince.code).toBe(2);
    expect(badSince.stderr).toBe("countermand: --since: 'yesterday' is neither a time (2025-05-01T10:00:00Z) nor a duration (30m, 2h, 7d)\n");

    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^countermand: ODataError: .*colour.* \(HTTP 400, request id [0-9a-f-]{36}\)\n$/);
  });

  it('actions get and cancel, table and --json; a cancel of a final action is refused in one line', async () => {
    const [m1, m2] = [machine(), machine()];
    const a1 = await api.restrictCodeExecution(m1.id, { Comment: 'to cancel' });
    const a2 = await api.collectInvestigationPackage(m2.id, { Comment: 'to cancel too' });
    const [get, getJson] = await Promise.all([cli(['actions', 'get', a1.id]), cli(['actions', 'get', a1.id, '--json'])]);
    expect(get.code, get.output).toBe(0);
    expect(field(get.stdout, 'id')).toBe(a1.id);
    expect(field(get.stdout, 'requestorComment')).toBe('to cancel');
    expect(field(get.stdout, 'cancellationRequestor')).toBe('-');
    expect(JSON.parse(getJson.stdout)).toEqual((await raw.get(`/api/machineactions/${a1.id}`)).body);

    const [cancel, cancelJson] = await Promise.all([
      cli(['actions', 'cancel', a1.id, '--comment', 'false positive']),
      cli(['actions', 'cancel', a2.id, '-m', 'not needed', '--json']),
    ]);
    expect(cancel.code, cancel.output).toBe(0);
    expect(field(cancel.stdout, 'status')).toBe('Cancelled');
    expect(field(cancel.stdout, 'cancellationComment')).toBe('false positive');
    expect(cancelJson.code, cancelJson.output).toBe(0);
    const cancelled = JSON.parse(cancelJson.stdout);
    expect(cancelled).toMatchObject({ id: a2.id, status: 'Cancelled', cancellationRequestor: 'Test App', cancellationComment: 'not needed' });
    expect(cancelled).toEqual((await raw.get(`/api/machineactions/${a2.id}`)).body);

    const again = await cli(['actions', 'cancel', a1.id, '-m', 'twice']);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toMatch(
      new RegExp(`^countermand: BadRequest: Action ${a1.id} cannot be cancelled because its status is Cancelled\\. \\(HTTP 400, request id [0-9a-f-]{36}\\)\\n$`),
    );
    const noComment = await cli(['actions', 'cancel', a1.id]);
    expect(noComment.code).toBe(2);
    expect(noComment.stderr).toMatch(/required option '-m, --comment <text>' not specified/);
  });

  it('wait: progress on stderr until Succeeded, exit 0; --json prints the final action', async () => {
    const created = await cli(['isolate', 'ok.agents.test', '-m', 'wait for it', '--wait']);
    expect(created.code, created.output).toBe(0);
    expect(field(created.stdout, 'status')).toBe('Succeeded');
    const id = field(created.stdout, 'id')!;
    expect(created.stderr).toContain(`waiting for Isolate ${id} on ok.agents.test`);
    expect(created.stderr).toMatch(/^\d\d:\d\d:\d\dZ Succeeded$/m);
    // Every status it passed through, in order, once each.
    const statuses = [...created.stderr.matchAll(/^\d\d:\d\d:\d\dZ (\w+)/gm)].map((m) => m[1]);
    expect(statuses.at(-1)).toBe('Succeeded');
    expect(new Set(statuses).size).toBe(statuses.length);
    expect(['Pending', 'InProgress', 'Succeeded'].filter((s) => statuses.includes(s))).toEqual(statuses);

    const again = await cli(['actions', 'wait', id, '--json']);
    expect(again.code, again.output).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual((await raw.get(`/api/machineactions/${id}`)).body);
  });

  it('wait: live-response commands show their progress', async () => {
    const run = await cli([
      'live-response',
      ok.machineId,
      '-m',
      'collect logs',
      '--command',
      'GetFile Path=/var/log/syslog',
      '--command',
      'GetFile Path=/etc/hostname',
      '--wait',
      '--interval',
      '0.2',
    ]);
    expect(run.code, run.output).toBe(0);
    for (const line of ['command 1/2 GetFile running', 'command 1/2 GetFile Completed', 'command 2/2 GetFile running', 'command 2/2 GetFile Completed']) {
      expect(run.stderr).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\dZ +${line}$`, 'm'));
    }
    expect(run.stdout).toMatch(/^0 +GetFile +Path=\/var\/log\/syslog +Completed/m);
    expect(run.stdout).toMatch(/^1 +GetFile +Path=\/etc\/hostname +Completed/m);
  });

  it('wait: Failed exits 3, with the machine\'s error', async () => {
    const run = await cli(['scan', 'failing.agents.test', '-m', 'will fail', '--type', 'Quick', '--wait', '--json']);
    expect(run.code, run.output).toBe(3);
    const action = JSON.parse(run.stdout);
    expect(action).toMatchObject({ type: 'RunAntiVirusScan', status: 'Failed', errorHResult: HRESULT.accessDenied, troubleshootInfo: 'access denied' });
    expect(run.stderr).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\dZ Failed \\(errorHResult ${HRESULT.accessDenied}: access denied\\)$`, 'm'));
    expect((await cli(['actions', 'wait', action.id])).code).toBe(3);
  });

  it('wait: a cancel while waiting ends it with exit 5', async () => {
    const created = await cli(['collect', slow.machineId, '-m', 'slow one', '--json']);
    expect(created.code, created.output).toBe(0);
    const { id } = JSON.parse(created.stdout);
    const waiting: SpawnedCli = spawnCli(['actions', 'wait', id], env);
    try {
      await waiting.waitFor(/Z InProgress$/m);
      const cancel = await cli(['actions', 'cancel', id, '-m', 'taking too long', '--json']);
      expect(cancel.code, cancel.output).toBe(0);
      expect((await waiting.exited).code).toBe(5);
      expect(waiting.stderr()).toMatch(/^\d\d:\d\d:\d\dZ Cancelled by Test App: taking too long$/m);
      expect(field(waiting.stdout(), 'status')).toBe('Cancelled');
    } finally {
      if (waiting.child.exitCode === null) waiting.child.kill('SIGKILL');
    }
  });

  it('wait --timeout gives up with exit 6 and leaves the action running', async () => {
    const target = machine();
    const action = await api.isolateMachine(target.id, { Comment: 'nobody picks this up' });
    const run = await cli(['actions', 'wait', action.id, '--timeout', '1', '--json']);
    expect(run.code, run.output).toBe(6);
    expect(JSON.parse(run.stdout)).toMatchObject({ id: action.id, status: 'Pending' });
    expect(run.stderr).toMatch(new RegExp(`^countermand: stopped waiting after 1 s: Isolate ${action.id} is still Pending \\(it carries on\\)$`, 'm'));
    expect((await api.getMachineAction(action.id)).status).toBe('Pending');
  });

  it('wait: an action nobody picks up in time ends TimeOut, exit 4', async () => {
    const other = makeFixtures(1);
    const short = await startTestServer({
      fixtures: other.fixtures,
      backend,
      config: { deliveryWindowSeconds: 1, sweepIntervalSeconds: 0.2, rateLimitScale: 1000 },
    });
    try {
      const run = await cli(['isolate', other.machines[0]!.id, '-m', 'offline machine', '--wait'], {
        COUNTERMAND_URL: short.url,
        COUNTERMAND_TENANT: other.tenantId,
        COUNTERMAND_CLIENT_ID: other.clientId,
      });
      expect(run.code, run.output).toBe(4);
      expect(field(run.stdout, 'status')).toBe('TimeOut');
      expect(run.stderr).toMatch(/^\d\d:\d\d:\d\dZ TimeOut/m);
    } finally {
      await short.stop();
    }
  });

  it('credentials: flags win over the environment, which wins over the profile; the profile must be 0600', async () => {
    const profiles = join(dir, `profiles-${backend}.json`);
    const bare = { ...env, COUNTERMAND_URL: '', COUNTERMAND_TENANT: '', COUNTERMAND_CLIENT_ID: '', COUNTERMAND_CLIENT_SECRET: '', COUNTERMAND_PROFILE_FILE: profiles };
    const flags = ['--url', server.url, '--tenant', setup.tenantId, '--client-id', setup.clientId];

    // Flags alone.
    const byFlags = await runCli(['machines', 'get', 'host-0.test.local', ...flags, '--client-secret', TEST_SECRET, '--json'], bare);
    expect(byFlags.code, byFlags.output).toBe(0);
    expect(JSON.parse(byFlags.stdout).id).toBe(setup.machines[0]!.id);

    // A profile saved by the CLI (after its credentials got a token), 0600, used with nothing else.
    const saved = await runCli(['profile', 'save', 'lab', ...flags], { ...bare, COUNTERMAND_CLIENT_SECRET: TEST_SECRET });
    expect(saved.code, saved.output).toBe(0);
    expect(saved.stderr).toContain(`saved profile "lab" in ${profiles}`);
    expect(statSync(profiles).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(profiles, 'utf8')).lab).toEqual({ url: server.url, tenant: setup.tenantId, clientId: setup.clientId, clientSecret: TEST_SECRET });
    const [byProfile, byProfileEnv, listed] = await Promise.all([
      runCli(['machines', 'list', '--profile', 'lab', '--top', '1', '--json'], bare),
      runCli(['machines', 'list', '--top', '1', '--json'], { ...bare, COUNTERMAND_PROFILE: 'lab' }),
      runCli(['profile', 'list'], bare),
    ]);
    expect(byProfile.code, byProfile.output).toBe(0);
    expect(byProfileEnv.code, byProfileEnv.output).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`^lab +${server.url} +${setup.tenantId} +${setup.clientId}$`, 'm'));
    expect(listed.output).not.toContain(TEST_SECRET);

    // A wrong secret in the profile: the environment's right one wins. A wrong one in a flag beats the environment's.
    writeFileSync(profiles, JSON.stringify({ default: { url: server.url, tenant: setup.tenantId, clientId: setup.clientId, clientSecret: 'wrong-profile-secret' } }), { mode: 0o600 });
    const [profileOnly, envWins, flagWins] = await Promise.all([
      runCli(['machines', 'list', '--top', '1'], bare),
      runCli(['machines', 'list', '--top', '1'], { ...bare, COUNTERMAND_CLIENT_SECRET: TEST_SECRET }),
      runCli(['machines', 'list', '--client-secret', 'wrong-flag-secret'], { ...bare, COUNTERMAND_CLIENT_SECRET: TEST_SECRET }),
    ]);
    expect(profileOnly.code).toBe(1);
    expect(envWins.code, envWins.output).toBe(0);
    expect(flagWins.code).toBe(1);
    expect(flagWins.stderr).toMatch(/^countermand: invalid_client: .* \(HTTP 401(, request id [0-9a-f-]{36})?\)\n$/);
    expect(flagWins.output).not.toMatch(/wrong-flag-secret|wrong-profile-secret/);
    expect(flagWins.output).not.toContain(TEST_SECRET);

    // Readable by others: refused, with what to do.
    chmodSync(profiles, 0o644);
    const open = await runCli(['machines', 'list'], bare);
    expect(open.code).toBe(2);
    expect(open.stderr).toBe(`countermand: the profile file ${profiles} holds secrets but other users can access it (mode 0644): run chmod 600 ${profiles}\n`);
    chmodSync(profiles, 0o600);

    const [missing, nothing] = await Promise.all([
      runCli(['machines', 'list', '--profile', 'nosuch'], bare),
      runCli(['actions', 'list'], { ...bare, COUNTERMAND_PROFILE_FILE: join(dir, 'absent.json') }),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`countermand: no profile "nosuch" in ${profiles} (there are: default)\n`);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/^countermand: no server given: use --url, COUNTERMAND_URL or a profile/);
  });

  it('a user signs in with the password grant and sees only the machines of their device group', async () => {
    const run = await cli(['machines', 'list', '--all', '--json'], {
      COUNTERMAND_CLIENT_ID: '',
      COUNTERMAND_CLIENT_SECRET: '',
      COUNTERMAND_USERNAME: USER.upn,
      COUNTERMAND_PASSWORD: USER.password,
    });
    expect(run.code, run.output).toBe(0);
    const seen = JSON.parse(run.stdout).value.map((m: any) => m.id).sort();
    expect(seen).toEqual(setup.machines.filter((m) => m.rbacGroupId === 2).map((m) => m.id).sort());
    expect(run.output).not.toContain(USER.password);
  });

  it('errors are one line with the code, the message and the request id', async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    const closed = await closedPort();
    const [notFound, noMachine, unreachable] = await Promise.all([
      cli(['actions', 'get', unknown]),
      cli(['isolate', 'no-such-machine.test.local', '-m', 'x']),
      cli(['machines', 'list'], { COUNTERMAND_URL: `http://127.0.0.1:${closed}` }),
    ]);
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toMatch(new RegExp(`^countermand: NotFound: Machine action ${unknown} was not found \\(HTTP 404, request id [0-9a-f-]{36}\\)\\n$`));
    // The request id is the server's: the same one its log line carries.
    const requestId = /request id ([0-9a-f-]{36})/.exec(notFound.stderr)![1]!;
    expect(server.logs.some((l) => l.includes(requestId))).toBe(true);
    expect(noMachine.code).toBe(1);
    expect(noMachine.stderr).toMatch(/^countermand: ResourceNotFound: Machine no-such-machine\.test\.local was not found \(HTTP 404, request id [0-9a-f-]{36}\)\n$/);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toBe(`countermand: ConnectionFailed: cannot reach http://127.0.0.1:${closed}: ECONNREFUSED\n`);
  });

  it('tables fit the terminal: with COLUMNS=80 no line is longer, and ids are never cut', async () => {
    const [actions, machines] = await Promise.all([
      cli(['actions', 'list', '--top', '10'], { COLUMNS: '80' }),
      cli(['machines', 'list', '--top', '10'], { COLUMNS: '80' }),
    ]);
    for (const run of [actions, machines]) {
      expect(run.code, run.output).toBe(0);
      const lines = run.stdout.trimEnd().split('\n');
      expect(lines.length).toBeGreaterThan(5);
      for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(80);
    }
    const ids = (await api.listMachineActions({ top: 10 })).value.map((a) => a.id);
    expect(actions.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(' ')[0])).toEqual(ids);
  });
  // Each command is a process of its own: on a loaded machine a few dozen take their time.
}, 180_000);
