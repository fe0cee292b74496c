import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanup } from '../support/harness.js';
import { ROOT, spawnCli, type Spawned } from '../support/process.js';

/** The README's "Try it" commands, as written, one per entry (continuation lines joined). */
function readmeCommands(): { token: string; steps: string[] } {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Try it'), readme.indexOf('## ', readme.indexOf('## Try it') + 3));
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\\\n\s*/g, '').trim().split('\n'));
  return { token: blocks[0]!.join(' '), steps: blocks[1]! };
}

const sh = (command: string, env: Record<string, string> = {}) =>
  execFileSync('sh', ['-c', command], { encoding: 'utf8', env: { ...process.env, ...env } });

/** A person following the README's quick start against `npm start`'s defaults: isolate, filter, watch, cancel. */
describe('the README quick start works as written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-readme-'));
  let server: Spawned;
  afterAll(async () => {
    if (server?.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    cleanup(dir);
  });

  it('isolate, see it Pending then InProgress, cancel it by hand', async () => {
    server = spawnCli(['serve'], { COUNTERMAND_PORT: '0', COUNTERMAND_DATA_DIR: dir, COUNTERMAND_LOG_LEVEL: 'warn' });
    const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
    const [, secret] = await server.waitFor(/client_secret=(\S+)/);
    const here = (command: string) => command.replaceAll('http://127.0.0.1:8080', url!);
    const { token: tokenCommand, steps } = readmeCommands();
    expect(steps.map((s) => s.split(' ')[0])).toEqual(['TOKEN=<access_token', 'curl', 'curl', 'curl', 'curl', 'curl']);

    const token = JSON.parse(sh(here(tokenCommand.replace('<printed secret>', secret!)))).access_token as string;
    const env = { TOKEN: token };
    const machines = JSON.parse(sh(here(steps[1]!), env)).value as { id: string }[];
    expect(machines).toHaveLength(3);

    const isolated = JSON.parse(sh(here(steps[2]!.replace('<machine id>', machines[0]!.id)), env));
    expect([isolated.type, isolated.status, isolated.requestorComment]).toEqual(['Isolate', 'Pending', 'suspicious beacon']);

    const pending = JSON.parse(sh(here(steps[3]!), env));
    expect(pending.value.map((a: { id: string }) => a.id)).toContain(isolated.id);
    expect(pending['@odata.count']).toBeGreaterThanOrEqual(1);

    const byId = here(steps[4]!.replace('<action id>', isolated.id));
    expect(JSON.parse(sh(byId, env)).status).toBe('Pending');
    // Twenty seconds in, the machine has started it (waiting for that state, at most a minute).
    let status = 'Pending';
    for (const deadline = Date.now() + 60_000; status === 'Pending' && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = JSON.parse(sh(byId, env)).status;
    }
    expect(status).toBe('InProgress');

    const cancelled = JSON.parse(sh(here(steps[5]!.replace('<action id>', isolated.id)), env));
    expect([cancelled.status, cancelled.cancellationComment]).toEqual(['Cancelled', 'false positive']);
    expect(JSON.parse(sh(byId, env)).status).toBe('Cancelled');
  }, 120_000);
});
