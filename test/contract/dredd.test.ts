import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { appClient, appToken, cleanup, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { ROOT } from '../support/process.js';
import { deriveContract } from './derive-contract.js';

/**
 * The contract check: Dredd, a real OpenAPI contract-testing tool, runs the Logic Apps
 * connector's Swagger description (a corrected copy, derived by ./derive-contract.ts) against a
 * started Countermand, for every machine, machine-action, alert and investigation operation it
 * serves.
 */
const SHARED = join(ROOT, '..', 'shared', 'contract', 'wdatp-connector.swagger.json');
const COPY = fileURLToPath(new URL('./wdatp-connector.swagger.json', import.meta.url));
/** The shared original when the checkout sits beside it; else the verbatim copy (README.md). */
const ORIGINAL = existsSync(SHARED) ? SHARED : COPY;
if (!existsSync(SHARED)) console.warn(`[contract] ${SHARED} is not beside this checkout: using the verbatim copy ${COPY}`);
const HOOKS = fileURLToPath(new URL('./hooks.cjs', import.meta.url));
const DREDD = join(ROOT, 'node_modules', '.bin', 'dredd');

const setup = makeFixtures(40);
let server: TestServer;
/** Raises the alert, runs the investigation, and carries out the actions whose download links are checked. */
let agent: RunningAgent | undefined;
const examples = { alertId: '', investigationId: '' };
const dir = mkdtempSync(join(tmpdir(), 'countermand-contract-'));

beforeAll(async () => {
  server = await startTestServer({ fixtures: setup.fixtures, config: { rateLimitScale: 100 } });
  // An alert as alerts come to be: an agent's scan finds something. Then an investigation of it.
  agent = await startAgent(server.url, await enrollmentToken(server.store, setup.tenantId), 'contract.test', {
    RunAntiVirusScan: { durationMs: 50, detail: { findings: [{ path: '/tmp/eicar.com', signature: 'Eicar-Signature' }] } },
    CollectInvestigationPackage: { durationMs: 50 },
    LiveResponse: { durationMs: 50 },
  });
  const api = await appClient(server, setup);
  await api.post(`/api/machines/${agent.machineId}/runAntiVirusScan`, { Comment: 'contract check', ScanType: 'Quick' });
  examples.alertId = await waitUntil(async () => (await api.get('/api/alerts?$top=1')).body.value[0]?.id, 10_000, 'an alert');
  examples.investigationId = (await api.post(`/api/machines/${agent.machineId}/startInvestigation`, { Comment: 'contract check' })).body.id;
});
afterAll(async () => {
  await agent?.stop();
  await server?.stop();
  cleanup(dir);
});

describe('contract check (Dredd + the connector Swagger description)', () => {
  it.skipIf(!existsSync(SHARED))(`the copy is the shared original, byte for byte${existsSync(SHARED) ? '' : ' (skipped: no ../shared beside this checkout)'}`, () => {
    expect(readFileSync(COPY)).toEqual(readFileSync(SHARED));
  });

  it('every served machine, machine-action, alert and investigation operation answers as described', async () => {
    const original = JSON.parse(readFileSync(ORIGINAL, 'utf8')) as Record<string, unknown>;
    const { spec, served, excluded } = deriveContract(original, {
      machineId: setup.machines[0]!.id,
      actionId: '00000000-0000-4000-8000-000000000000',
      ...examples,
    });
    const specPath = join(dir, 'countermand.swagger.json');
    writeFileSync(specPath, JSON.stringify(spec, null, 2));
    // Left out, each with its reason, so the report says what is not checked.
    console.log(`contract check: ${served.length} operations checked; left out:\n${excluded.map(([op, why]) => `  ${op}: ${why}`).join('\n')}`);
    expect(served).toHaveLength(21);
    for (const op of ['POST /api/machines/{machineId}/startInvestigation', 'GET /api/alerts', 'GET /api/alerts/{alertId}', 'GET /api/investigations', 'GET /api/investigations/{investigationId}', 'GET /api/machineactions/{actionId}/getPackageUri', 'GET /api/machineactions/{actionId}/GetLiveResponseResultDownloadLink(index={index})']) {
      expect(served).toContain(op);
    }

    const token = await appToken(server, setup.tenantId, setup.clientId);
    const { code, output } = await new Promise<{ code: number; output: string }>((resolve) => {
      execFile(
        DREDD,
        [specPath, server.url, '--hookfiles', HOOKS, '--language', 'nodejs', '--reporter', 'dot', '--loglevel', 'warning', '--details'],
        {
          cwd: dir,
          env: {
            ...process.env,
            COUNTERMAND_CONTRACT_TOKEN: token,
            COUNTERMAND_CONTRACT_SERVER: server.url,
            COUNTERMAND_CONTRACT_MACHINES: JSON.stringify(setup.machines.slice(1).map((m) => m.id)),
            COUNTERMAND_CONTRACT_AGENT_MACHINE: agent!.machineId,
          },
          timeout: 120_000,
        },
        (error, stdout, stderr) =>
          resolve({
            code: error ? ((error as { code?: number }).code ?? 1) : 0,
            output: `${stdout}\n${stderr}`.replace(/\x1b\[[0-9;]*m/g, ''),
          }),
      );
    });
    const summary = /complete: (\d+) passing, (\d+) failing, (\d+) errors?, (\d+) skipped/.exec(output);
    expect(summary, output).not.toBeNull();
    const [, passing, failing, errors, skipped] = summary!.map(Number);
    expect({ failing, errors, skipped }, output).toEqual({ failing: 0, errors: 0, skipped: 0 });
    // Every served operation became a transaction and passed: none was dropped on the way.
    expect(passing, output).toBe(served.length);
    expect(code, output).toBe(0);
  }, 180_000);
});
