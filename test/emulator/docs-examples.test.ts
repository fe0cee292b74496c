import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/testing/index.js';
import { cleanup } from '../support/harness.js';
import { BACKENDS } from '../support/emulator.js';
import { freshDatabase } from '../support/postgres.js';
import { ROOT, spawnCli, type Spawned } from '../support/process.js';

/**
 * docs/emulator.md's examples, run as written against the CLI started as its CI recipe says: the
 * fixtures file, the recipe (with the Python sample as the playbook), curl, and every control
 * call's examples. Only the port (8080 in the text, a free one here) and the data dir change.
 */

interface Block {
  lang: string;
  section: string;
  code: string;
}

function docBlocks(): { blocks: Block[]; text: string } {
  const text = readFileSync(join(ROOT, 'docs/emulator.md'), 'utf8');
  const blocks: Block[] = [];
  let section = '';
  for (const part of text.split(/^(```\w*\n[\s\S]*?^```)$/m)) {
    const fence = /^```(\w*)\n([\s\S]*?)```$/.exec(part);
    if (fence) blocks.push({ lang: fence[1]!, section, code: fence[2]! });
    else section = [...part.matchAll(/^#{2,3} (.+)$/gm)].at(-1)?.[1] ?? section;
  }
  return { blocks, text };
}

const { blocks, text } = docBlocks();
const one = (section: string, lang: string) => {
  const found = blocks.filter((b) => b.section === section && b.lang === lang);
  expect(found, `one ${lang} block under "${section}"`).toHaveLength(1);
  return found[0]!.code;
};

const hasPython = (() => {
  try {
    execFileSync('python3', ['-c', 'import requests'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!hasPython) console.warn('[docs/emulator.md Python example skipped] python3 with the requests module is not installed');
const hasPwsh = (() => {
  try {
    execFileSync('pwsh', ['-NoProfile', '-Command', 'exit 0'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!hasPwsh) console.warn('[docs/emulator.md PowerShell example skipped] pwsh is not installed');

/**
 * Runs a shell snippet with bash (errors and failed pipes stop it) and `curl` wrapped to write
 * each answer's status on stderr, so every call's status is checked without touching the output.
 */
function run(code: string, url: string, env: Record<string, string>, cwd: string): string {
  const script = `set -euo pipefail\ncurl() { command curl -w '%{stderr}HTTP %{http_code}\\n' "$@"; }\n${code.replaceAll('http://127.0.0.1:8080', url)}\n`;
  const result = spawnSync('bash', ['-c', script, 'example'], { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  const statuses = [...result.stderr.matchAll(/^HTTP (\d{3})$/gm)].map((m) => Number(m[1]));
  const failed = result.status !== 0 || statuses.length === 0 || statuses.some((s) => s >= 400);
  expect(failed, `example:\n${code}\nexit ${result.status}, statuses ${statuses.join(' ')}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(false);
  return result.stdout;
}

describe.each(BACKENDS)('docs/emulator.md works as written (%s)', (backend) => {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-emulator-docs-'));
  let server: Spawned | undefined;
  let url = '';
  let drop: (() => Promise<void>) | undefined;
  let control: ControlClient;
  const ciJson = JSON.parse(one('A CI recipe', 'json')) as {
    tenants: { id: string; applications: { clientId: string; clientSecret: string; displayName: string }[] }[];
  };
  const tenant = ciJson.tenants[0]!;
  const app = tenant.applications[0]!;
  const recipe = one('A CI recipe', 'sh').trim().split('\n');
  const token = /^export COUNTERMAND_CONTROL_TOKEN=(\S+)$/.exec(recipe[0]!)?.[1];
  const vars = /In the examples, `A='([^']+)'`, `C=(\S+)`\s+and `J='([^']+)'`/.exec(text);

  beforeAll(async () => {
    expect(token, "the recipe's first line sets the admin token").toBeDefined();
    expect(recipe[1]).toBe('countermand serve --fixtures ci.json --port 8080 --data-dir "$(mktemp -d)" &');
    writeFileSync(join(dir, 'ci.json'), one('A CI recipe', 'json'));
    const database = backend === 'postgres' ? await freshDatabase() : null;
    drop = database?.drop;
    server = spawnCli(['serve', '--fixtures', 'ci.json', '--port', '0', '--data-dir', join(dir, 'data')], {
      COUNTERMAND_CONTROL_TOKEN: token!,
      COUNTERMAND_LOG_LEVEL: 'warn',
      ...(database ? { COUNTERMAND_DATABASE_URL: database.url } : {}),
    }, { cwd: dir });
    url = (await server.waitFor(/listening on (http:\/\/[^\s]+)/))[1]!;
    control = new ControlClient(url, token!);
  }, 60_000);
  afterAll(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    await drop?.();
    cleanup(dir);
  });

  const machineIds = async () => {
    const machines = await control.machines();
    const byName = (name: string) => machines.find((m) => m.machine.computerDnsName === name)!.machine.id;
    return { web: byName('web-01.ci.local'), offline: byName('offline-01.ci.local') };
  };

  it.skipIf(!hasPython)('the CI recipe: wait for /ready, reset, the Python sample as the playbook, read the journal', async () => {
    mkdirSync(join(dir, 'playbooks'), { recursive: true });
    writeFileSync(join(dir, 'playbooks/isolate_on_alert.py'), one('Pointing MDE clients at Countermand', 'python').replaceAll('http://127.0.0.1:8080', url));
    const rest = [recipe[0], ...recipe.slice(2)].join('\n');
    await ControlClient.waitUntilReady(url);
    const out = run(rest, url, {}, dir);
    // The reset answers, the playbook prints the action's id and status, the journal shows its two POSTs.
    const printed = /"to":"baseline".*?\n?([0-9a-f-]{36}) Pending\n([\s\S]*)$/.exec(out);
    expect(printed, out).not.toBeNull();
    const journal = JSON.parse(`[${printed![2]!.trim().replace(/\]\s*\[/g, '],[')}]`) as [string, string, number][];
    expect(journal).toEqual([
      ['POST', `/${tenant.id}/oauth2/token`, 200],
      ['POST', expect.stringMatching(/^\/api\/machines\/[0-9a-f]{40}\/isolate$/), 201],
    ]);
  });

  it('curl: a v1 token with resource, then an isolate', async () => {
    await control.reset();
    const { web } = await machineIds();
    const out = run(one('Pointing MDE clients at Countermand', 'sh'), url, { TENANT: tenant.id, CLIENT_ID: app.clientId, CLIENT_SECRET: app.clientSecret, MACHINE: web }, dir);
    const action = JSON.parse(out) as { type: string; status: string; machineId: string; requestor: string };
    expect([action.type, action.status, action.machineId, action.requestor]).toEqual(['Isolate', 'Pending', web, app.displayName]);
  });

  it.skipIf(!hasPwsh)('PowerShell Invoke-RestMethod', async () => {
    await control.reset();
    const script = one('Pointing MDE clients at Countermand', 'powershell').replaceAll('http://127.0.0.1:8080', url);
    const out = execFileSync('pwsh', ['-NoProfile', '-Command', script], { encoding: 'utf8' });
    expect(out.trim()).toBe('Pending');
  });

  it('every control call example, section by section', async () => {
    expect(vars, 'the A, C and J the examples use').not.toBeNull();
    const [, header, base, json] = vars!;
    expect(header).toBe(`Authorization: Bearer ${token}`);
    const env = (extra: Record<string, string> = {}) => ({ A: header!, C: base!.replace('http://127.0.0.1:8080', url), J: json!, TENANT: tenant.id, ...extra });
    const sections = ['World', 'Machines', 'Lifecycle rules', 'Duplicate policy', 'Faults', 'Seed, clock and what repeats', 'Journal and quotas'];
    expect(blocks.filter((b) => b.lang === 'sh' && sections.includes(b.section)).map((b) => b.section)).toEqual(sections);

    await control.reset();
    run(one('World', 'sh'), url, env(), dir);
    // Its last line exported an empty world (after the reset to empty) and loaded it: load ci.json again.
    expect(await control.machines()).toEqual([]);
    await control.loadFixtures(ciJson);

    const { offline, web } = await machineIds();
    run(one('Machines', 'sh'), url, env({ MACHINE: offline }), dir);
    const names = (await control.machines()).map((m) => m.machine.computerDnsName).sort();
    expect(names).toEqual(['db-01.ci.local', 'web-01.ci.local']);

    await control.reset();
    const api = await apiToken(url, tenant.id, app.clientId, app.clientSecret);
    const created = await fetch(`${url}/api/machines/${web}/isolate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api}`, 'content-type': 'application/json' },
      body: JSON.stringify({ Comment: 'docs' }),
    });
    const action = (await created.json()) as { id: string; status: string };
    expect(action.status).toBe('Pending');
    run(one('Lifecycle rules', 'sh'), url, env({ ACTION: action.id }), dir);
    expect(await control.rules()).toEqual([]);
    const stepped = (await (await fetch(`${url}/api/machineactions/${action.id}`, { headers: { authorization: `Bearer ${api}` } })).json()) as { status: string };
    expect(stepped.status).toBe('InProgress');

    run(one('Duplicate policy', 'sh'), url, env(), dir);
    expect((await control.settings()).duplicatePolicy).toBe('returnExisting');
    run(one('Faults', 'sh'), url, env(), dir);
    expect(await control.faults()).toEqual([]);
    const before = Date.parse((await control.clock()).now);
    run(one('Seed, clock and what repeats', 'sh'), url, env(), dir);
    expect(Date.parse((await control.clock()).now) - before).toBeGreaterThanOrEqual(259_201_000);
    expect((await control.settings()).seed).toBe('run-42');
    const out = run(one('Journal and quotas', 'sh'), url, env(), dir);
    expect(out).toContain('"value"');
    expect(await control.journal()).toEqual([]);
  });
});

async function apiToken(url: string, tenantId: string, clientId: string, secret: string): Promise<string> {
  const res = await fetch(`${url}/${tenantId}/oauth2/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret, resource: 'https://api.securitycenter.microsoft.com' }),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}
