import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { appToken, cleanup, makeFixtures } from '../support/harness.js';
import { runCli, spawnCli, type Spawned } from '../support/process.js';

/**
 * The demo fleet (simulated agents that report Succeeded for anything) only ever joins the demo
 * tenant a first start creates: never a tenant an operator brought in fixtures.
 */
describe('the demo fleet', () => {
  const dirs: string[] = [];
  const procs: Spawned[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    for (const d of dirs.splice(0)) cleanup(d);
  });

  it('does not join a tenant from fixtures: no simulated machines, no demo-fleet enrollment token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countermand-fleet-'));
    dirs.push(dir);
    const setup = makeFixtures(1);
    setup.fixtures.tenants[0]!.name = 'Prod';
    writeFileSync(join(dir, 'prod.json'), JSON.stringify(setup.fixtures));
    const dataDir = join(dir, 'data');
    // The fleet's default size (3): nothing turns it off.
    const server = spawnCli(['serve', '--port', '0', '--data-dir', dataDir, '--fixtures', join(dir, 'prod.json'), '--log-level', 'info']);
    procs.push(server);
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    await server.waitFor(/no demo tenant in this store: the demo fleet does not start/);

    const auth = { authorization: `Bearer ${await appToken({ url: url! }, setup.tenantId, setup.clientId)}` };
    const machines = (await (await fetch(`${url}/api/machines`, { headers: auth })).json()) as { value: { computerDnsName: string }[] };
    expect(machines.value.map((m) => m.computerDnsName)).toEqual([setup.machines[0]!.computerDnsName]);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);

    const tokens = await runCli(['enrollment', 'list', '--tenant', setup.tenantId, '--data-dir', dataDir, '--json']);
    expect(tokens.code, tokens.output).toBe(0);
    expect(JSON.parse(tokens.stdout)).toEqual([]);
  });

  it('the removed demoFleetTenant setting is refused by name, in a file or the environment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countermand-fleet-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ demoFleetTenant: makeFixtures(0).tenantId }));
    const fromFile = await runCli(['serve', '--port', '0', '--data-dir', dir, '--config', join(dir, 'config.json')]);
    expect(fromFile.code).toBe(2);
    expect(fromFile.output.trim()).toMatch(/^countermand: setting 'demoFleetTenant' in .*config\.json no longer exists: the demo fleet only joins the demo tenant/);
    const fromEnv = await runCli(['serve', '--port', '0', '--data-dir', dir], { COUNTERMAND_DEMO_FLEET_TENANT: makeFixtures(0).tenantId });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.output.trim()).toMatch(/^countermand: COUNTERMAND_DEMO_FLEET_TENANT \(setting demoFleetTenant\) no longer exists/);
  });
});
