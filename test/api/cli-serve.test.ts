import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { appToken, cleanup, makeFixtures } from '../support/harness.js';
import { runCli, spawnCli, type Spawned } from '../support/process.js';

describe('countermand serve', () => {
  const dirs: string[] = [];
  const procs: Spawned[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    for (const d of dirs.splice(0)) cleanup(d);
  });

  it('starts on the embedded store, creating the database under --data-dir, and stops cleanly on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countermand-cli-'));
    dirs.push(dir);
    const dataDir = join(dir, 'data');
    const setup = makeFixtures(2);
    const { fixtures, machines } = setup;
    const fixturesPath = join(dir, 'fixtures.json');
    writeFileSync(fixturesPath, JSON.stringify(fixtures));
    const server = spawnCli(['serve', '--port', '0', '--data-dir', dataDir, '--fixtures', fixturesPath, '--log-level', 'warn']);
    procs.push(server);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    expect(existsSync(join(dataDir, 'countermand.db'))).toBe(true);

    const auth = { authorization: `Bearer ${await appToken({ url: url! }, setup.tenantId, setup.clientId)}` };
    const created = await fetch(`${url}/api/machines/${machines[0]!.id}/isolate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ Comment: 'from the CLI test' }),
    });
    expect(created.status).toBe(201);
    const action = (await created.json()) as { id: string };

    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);

    // A second start on the same data dir finds the action: acknowledged means stored.
    const again = spawnCli(['serve', '--port', '0', '--data-dir', dataDir, '--fixtures', fixturesPath, '--log-level', 'warn']);
    procs.push(again);
    const [, url2] = await again.waitFor(/listening on (http:\/\/[^\s]+)/);
    const read = await fetch(`${url2}/api/machineactions/${action.id}`, { headers: auth });
    expect(read.status).toBe(200);
    expect(((await read.json()) as { requestorComment: string }).requestorComment).toBe('from the CLI test');
    again.child.kill('SIGTERM');
    await again.exited;
  });

  it('on a fresh data dir (settings from the environment) seeds the demo tenant and prints a curl that gets a working token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countermand-cli-'));
    dirs.push(dir);
    // The demo fleet's own timings are slow enough to follow by hand (the README test); quick here.
    const server = spawnCli(['serve'], {
      COUNTERMAND_PORT: '0',
      COUNTERMAND_DATA_DIR: dir,
      COUNTERMAND_LOG_LEVEL: 'warn',
      COUNTERMAND_DEMO_FLEET_SIMULATION: '{"*":{"durationMs":2000}}',
    });
    procs.push(server);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    const [curl] = await server.waitFor(/curl -s -X POST [^\n]+\\\n[^\n]+\\\n[^\n]+/);
    expect(existsSync(join(dir, 'countermand.db'))).toBe(true);

    // Run the printed command exactly as a newcomer would paste it.
    const { execFileSync } = await import('node:child_process');
    const reply = JSON.parse(execFileSync('sh', ['-c', curl], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(Object.keys(reply)).toEqual(['token_type', 'expires_in', 'ext_expires_in', 'access_token']);
    const res = await fetch(`${url}/api/machines`, { headers: { authorization: `Bearer ${reply.access_token}` } });
    expect(res.status).toBe(200);
    const fleet = ((await res.json()) as { value: { id: string; computerDnsName: string }[] }).value;
    expect(fleet.map((m) => m.computerDnsName).sort()).toEqual([
      'sim-01.demo.countermand.local',
      'sim-02.demo.countermand.local',
      'sim-03.demo.countermand.local',
    ]);
    expect((await fetch(`${url}/api/machines`)).status).toBe(401);

    // The demo fleet carries actions out: an isolate goes Pending -> InProgress -> Succeeded.
    const auth = { authorization: `Bearer ${reply.access_token}`, 'content-type': 'application/json' };
    const created = (await (
      await fetch(`${url}/api/machines/${fleet[0]!.id}/isolate`, { method: 'POST', headers: auth, body: JSON.stringify({ Comment: 'demo' }) })
    ).json()) as { id: string; status: string };
    expect(created.status).toBe('Pending');
    const seen = new Set<string>();
    const deadline = Date.now() + 15_000;
    while (!seen.has('Succeeded') && Date.now() < deadline) {
      const now = (await (await fetch(`${url}/api/machineactions/${created.id}`, { headers: auth })).json()) as { status: string };
      seen.add(now.status);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect([...seen]).toEqual(expect.arrayContaining(['InProgress', 'Succeeded']));

    // The demo application may drive alerts, investigations and findbyip too.
    expect((await fetch(`${url}/api/alerts?$top=1`, { headers: auth })).status).toBe(200);
    const investigation = await fetch(`${url}/api/machines/${fleet[1]!.id}/startInvestigation`, { method: 'POST', headers: auth, body: JSON.stringify({ Comment: 'demo' }) });
    expect(investigation.status).toBe(201);
    const found = await fetch(`${url}/api/machines/findbyip(ip='10.200.0.2',timestamp=${new Date().toISOString()})`, { headers: auth });
    expect(((await found.json()) as { value: { computerDnsName: string }[] }).value.map((m) => m.computerDnsName)).toEqual(['sim-01.demo.countermand.local']);

    // The secret is shown once: a second start on the same data dir does not seed again.
    server.child.kill('SIGTERM');
    await server.exited;
    const again = spawnCli(['serve'], { COUNTERMAND_PORT: '0', COUNTERMAND_DATA_DIR: dir, COUNTERMAND_LOG_LEVEL: 'warn' });
    procs.push(again);
    await again.waitFor(/listening on/);
    expect(again.output()).not.toMatch(/client_secret=/);
  });

  it('refuses a bad setting or bad fixtures with a message and exit code 2', async () => {
    const bad = await runCli(['serve', '--port', 'eighty']);
    expect(bad.code).toBe(2);
    expect(bad.output).toMatch(/invalid setting port/);
    const dir = mkdtempSync(join(tmpdir(), 'countermand-cli-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'f.json'), JSON.stringify({ tenants: [{ id: 'not-a-guid', name: 'x' }] }));
    const fixtures = await runCli(['serve', '--port', '0', '--data-dir', dir, '--fixtures', join(dir, 'f.json')]);
    expect(fixtures.code).toBe(2);
    expect(fixtures.output).toMatch(/tenants\/0\/id/);
  });
  it('with --log-format pretty and --metrics-port: readable log lines, and metrics on their own loopback port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countermand-cli-'));
    dirs.push(dir);
    const setup = makeFixtures(1);
    writeFileSync(join(dir, 'f.json'), JSON.stringify(setup.fixtures));
    const server = spawnCli(['serve', '--port', '0', '--data-dir', join(dir, 'data'), '--fixtures', join(dir, 'f.json'), '--log-format', 'pretty', '--metrics-port', '0']);
    procs.push(server);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    const [, metricsUrl] = await server.waitFor(/Metrics at (http:\/\/127\.0\.0\.1:\d+)\/metrics/);
    expect(server.stderr()).toContain(`documentation at ${url}/docs`);
    // No token configured: open on the loopback listener, not served on the API's.
    const metrics = await fetch(`${metricsUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('countermand_actions_created_total{type="Isolate"} 0');
    expect((await fetch(`${url}/metrics`)).status).toBe(404);
    await server.waitFor(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: Server listening at/m);
    expect(server.stdout()).not.toMatch(/^\{/m);
    const bad = await runCli(['serve', '--log-format', 'fancy']);
    expect(bad.code).not.toBe(0);
    expect(bad.output).toMatch(/--log-format/);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  });
});
