import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanup } from '../support/harness.js';
import { spawnCli, type Spawned } from '../support/process.js';

/**
 * The first start's demo drives the artifacts routes too (issue: the demo application has the
 * permissions they need): the printed curl's token uploads a script with `curl -F`, the demo
 * fleet runs it, and its result downloads by link with no Authorization header.
 */
describe('the demo tenant and fleet with live response', () => {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-demo-'));
  let server: Spawned;
  afterAll(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    cleanup(dir);
  });

  it('uploads with curl -F, runs the script on a demo machine, downloads the result by its link', async () => {
    server = spawnCli(['serve'], { COUNTERMAND_PORT: '0', COUNTERMAND_DATA_DIR: join(dir, 'data'), COUNTERMAND_LOG_LEVEL: 'warn', COUNTERMAND_DEMO_FLEET_SIMULATION: '{"*":{"durationMs":100}}' });
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    const [curl] = await server.waitFor(/curl -s -X POST [^\n]+\\\n[^\n]+\\\n[^\n]+/);
    const token = (JSON.parse(execFileSync('sh', ['-c', curl], { encoding: 'utf8' })) as { access_token: string }).access_token;
    const auth = { authorization: `Bearer ${token}` };

    const script = join(dir, 'triage.sh');
    writeFileSync(script, '#!/bin/sh\nps aux\n');
    const uploaded = JSON.parse(
      execFileSync('curl', ['-s', '-X', 'POST', `${url}/api/libraryfiles`, '-H', `Authorization: Bearer ${token}`, '-F', `File=@${script}`, '-F', 'Description=demo'], { encoding: 'utf8' }),
    ) as { fileName: string; description: string };
    expect(uploaded).toMatchObject({ fileName: 'triage.sh', description: 'demo' });

    const machines = ((await (await fetch(`${url}/api/machines`, { headers: auth })).json()) as { value: { id: string }[] }).value;
    const created = (await (
      await fetch(`${url}/api/machines/${machines[0]!.id}/runliveresponse`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ Comment: 'triage', Commands: [{ type: 'RunScript', params: [{ key: 'ScriptName', value: 'triage.sh' }, { key: 'Args', value: '--noargs' }] }] }),
      })
    ).json()) as { id: string };
    const deadline = Date.now() + 15_000;
    let status = '';
    while (status !== 'Succeeded' && Date.now() < deadline) {
      status = ((await (await fetch(`${url}/api/machineactions/${created.id}`, { headers: auth })).json()) as { status: string }).status;
      if (status !== 'Succeeded') await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe('Succeeded');
    const link = (await (await fetch(`${url}/api/machineactions/${created.id}/GetLiveResponseResultDownloadLink(index=0)`, { headers: auth })).json()) as { value: string };
    const result = JSON.parse(execFileSync('curl', ['-s', link.value], { encoding: 'utf8' })) as { script_name: string; exit_code: number };
    expect(result).toMatchObject({ script_name: 'triage.sh', exit_code: 0 });
  }, 60_000);
});
