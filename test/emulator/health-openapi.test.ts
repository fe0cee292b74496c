import SwaggerParser from '@apidevtools/swagger-parser';
import { describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/testing/index.js';
import { DEMO_TENANT_ID } from '../../src/demo.js';
import { makeFixtures, startTestServer } from '../support/harness.js';
import { ADMIN_TOKEN, BACKENDS, startEmulator } from '../support/emulator.js';
import { spawnCli } from '../support/process.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('/health and /ready', () => {
  it('/ready answers 503 naming what it waits for', async () => {
    const { default: Fastify } = await import('fastify');
    const { registerHealthRoutes } = await import('../../src/api/health.js');
    const app = Fastify();
    let loaded = false;
    registerHealthRoutes(app, [
      { name: 'store', waiting: () => null },
      { name: 'fixtures', waiting: () => (loaded ? null : "the emulator's world to load") },
    ]);
    const before = await app.inject('/ready');
    expect([before.statusCode, before.json()]).toEqual([
      503,
      { status: 'not ready', checks: { store: 'ready', fixtures: 'waiting' }, waitingFor: ["the emulator's world to load"] },
    ]);
    loaded = true;
    expect((await app.inject('/ready')).statusCode).toBe(200);
    await app.close();
  });

  it.each(BACKENDS)('answer in JSON without authentication, outside /api and the control prefix (%s)', async (backend) => {
    const server = await startTestServer({ fixtures: makeFixtures(1).fixtures, backend });
    try {
      const health = await fetch(`${server.url}/health`);
      expect([health.status, await health.json()]).toEqual([200, { status: 'live' }]);
      const ready = await fetch(`${server.url}/ready`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready', checks: { store: 'ready', fixtures: 'ready', agents: 'ready' }, waitingFor: [] });
    } finally {
      await server.stop();
    }
  });

  it('/ready waits for the demo fleet to connect, and says so', async () => {
    const server = await startTestServer({
      fixtures: { tenants: [{ id: DEMO_TENANT_ID, name: 'Countermand Demo' }] },
      config: { demoFleetSize: 2, agentPollSeconds: 1 },
    });
    try {
      expect(server.fleet?.agents.every((a) => a.machineId)).toBe(true);
      expect((await fetch(`${server.url}/ready`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it('a CI job starts the emulator in one step and waits for /ready (the CLI, a fixtures file with the emulator section)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countermand-ci-'));
    const setup = makeFixtures(2);
    writeFileSync(join(dir, 'ci.json'), JSON.stringify({ ...setup.fixtures, emulator: { control: { enabled: true }, seed: 7, rules: [{ start: 'step' }] } }));
    const server = spawnCli(['serve', '--port', '0', '--data-dir', join(dir, 'data'), '--fixtures', join(dir, 'ci.json')], { COUNTERMAND_CONTROL_TOKEN: ADMIN_TOKEN, COUNTERMAND_LOG_LEVEL: 'warn' });
    try {
      const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
      await ControlClient.waitUntilReady(url!);
      const control = new ControlClient(url!, ADMIN_TOKEN);
      expect((await control.rules()).map((r) => r.start)).toEqual(['step']);
      expect(await control.machines()).toHaveLength(2);
      expect((await control.settings()).seed).toBe('7');
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a generated admin token is printed once at start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countermand-ci-'));
    const server = spawnCli(['serve', '--port', '0', '--data-dir', dir, '--control', '--demo-fleet', '1'], { COUNTERMAND_LOG_LEVEL: 'warn' });
    try {
      const [, url] = await server.waitFor(/listening on (http:\/\/[^\s]+)/);
      const [, token] = await server.waitFor(/\n {2}(cmc_[A-Za-z0-9_-]{43})\n/);
      const control = new ControlClient(url!, token!);
      await ControlClient.waitUntilReady(url!);
      // Without fixtures, the emulated world is the demo: its tenant, and its machines served in process.
      const machines = await control.machines();
      expect(machines.map((m) => [m.tenantId, m.agent, m.machine.computerDnsName])).toEqual([[DEMO_TENANT_ID, 'simulated', 'sim-01.demo.countermand.local']]);
      expect((await control.reset()).to).toBe('baseline');
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the control API has its own OpenAPI document', () => {
  it('is generated from the routes\' schemas and is a valid OpenAPI 3 document', async () => {
    const e = await startEmulator({ backend: 'sqlite', machines: 1 });
    try {
      const res = await fetch(`${e.server.url}/_countermand/openapi.json`);
      expect(res.status).toBe(200);
      const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { responses: object; requestBody?: object }>> };
      expect(doc.openapi).toBe('3.0.3');
      const paths = Object.keys(doc.paths).sort();
      expect(paths).toEqual(
        [
          '/reset',
          '/fixtures',
          '/machines',
          '/tenants/{tenantId}/machines',
          '/tenants/{tenantId}/machines/{machineId}',
          '/rules',
          '/rules/{id}',
          '/faults',
          '/faults/{id}',
          '/settings',
          '/clock',
          '/clock/advance',
          '/actions/{id}/step',
          '/journal',
          '/quota',
        ]
          .sort(),
      );
      expect((doc as unknown as { servers: { url: string }[] }).servers).toEqual([{ url: '/_countermand' }]);
      for (const [path, methods] of Object.entries(doc.paths)) {
        for (const [method, op] of Object.entries(methods)) expect(Object.keys(op.responses), `${method} ${path}`).toContain('401');
      }
      expect(doc.paths['/rules']!.post!.requestBody).toBeDefined();
      await SwaggerParser.validate(structuredClone(doc) as never);
      // No MDE route and no agent route is in it.
      expect(paths.some((p) => p.startsWith('/api') || p.startsWith('/agent'))).toBe(false);
    } finally {
      await e.server.stop();
    }
  });
});
