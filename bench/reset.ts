/**
 * `npx tsx bench/reset.ts [--resets N] [--postgres URL-of-a-server]`: how long the emulator's reset takes
 * with a realistic fixture (3 tenants, 150 machines, 6 applications, 6 users, 300 actions with
 * their history), over HTTP as a test suite calls it before every test. The baseline in the same
 * run is a GET /health round trip on the same server (what any call costs). Writes
 * bench/results/reset-<date>.md. Method: docs/benchmarks.md, "Emulator reset".
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG } from '../src/config.js';
import { KNOWN_APP_ROLES } from '../src/domain/permissions.js';
import type { Fixtures } from '../src/fixtures.js';
import { createLogger } from '../src/logger.js';
import { startServer } from '../src/server.js';
import { ControlClient } from '../src/testing/index.js';
import { summarize } from './lib/stats.js';

const args = process.argv.slice(2);
const value = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const RESETS = Number(value('--resets') ?? 100);
const POSTGRES = value('--postgres') ?? null;
const TOKEN = 'bench-admin-token-0123456789';

function realisticFixtures(): Fixtures {
  const hex = () => randomUUID().replace(/-/g, '') + randomUUID().replace(/-/g, '').slice(0, 8);
  const time = (ms: number) => new Date(Date.parse('2025-01-01T00:00:00Z') + ms).toISOString();
  return {
    tenants: Array.from({ length: 3 }, (_, t) => {
      const machines = Array.from({ length: 50 }, (_, i) => ({
        id: hex(),
        computerDnsName: `host-${t}-${i}.bench.local`,
        rbacGroupId: (i % 4) + 1,
        rbacGroupName: `group-${(i % 4) + 1}`,
        machineTags: i % 3 === 0 ? ['prod'] : ['dev'],
        lastIpAddress: `10.${t}.${Math.floor(i / 250)}.${(i % 250) + 1}`,
        agent: (i % 5 === 0 ? 'none' : 'simulated') as 'none' | 'simulated',
      }));
      return {
        id: randomUUID(),
        name: `Bench tenant ${t}`,
        machines,
        applications: [0, 1].map((a) => ({ clientId: randomUUID(), clientSecret: `bench-secret-${t}-${a}-0123456789`, displayName: `App ${a}`, roles: [...KNOWN_APP_ROLES] })),
        users: [0, 1].map((u) => ({ upn: `user${u}@t${t}.bench`, password: `bench-pass-${u}-xyz`, scopes: ['Machine.Read' as const], rolePermissions: ['View data' as const] })),
        actions: Array.from({ length: 100 }, (_, i) => {
          const m = machines[i % machines.length]!;
          return {
            id: randomUUID(),
            type: 'RunAntiVirusScan' as const,
            requestor: 'App 0',
            requestorComment: `scan ${i}`,
            status: 'Succeeded' as const,
            machineId: m.id,
            computerDnsName: m.computerDnsName,
            creationDateTimeUtc: time(i * 1000),
            lastUpdateDateTimeUtc: time(i * 1000 + 500),
            scope: 'Quick',
            conflictKey: 'RunAntiVirusScan',
            events: [
              { at: time(i * 1000), actor: 'App 0', kind: 'created' as const, fromStatus: null, toStatus: 'Pending' as const, comment: `scan ${i}`, detail: null },
              { at: time(i * 1000 + 100), actor: m.computerDnsName, kind: 'transition' as const, fromStatus: 'Pending' as const, toStatus: 'InProgress' as const, comment: null, detail: null },
              { at: time(i * 1000 + 500), actor: m.computerDnsName, kind: 'transition' as const, fromStatus: 'InProgress' as const, toStatus: 'Succeeded' as const, comment: null, detail: { reportId: `r${i}` }, reportId: `r${i}` },
            ],
          };
        }),
      };
    }),
    emulator: { seed: 'bench', rules: [{ match: { actionType: 'Isolate' }, start: 'step' }], faults: [{ kind: 'latency', match: { path: '/api/alerts' }, minMs: 1, maxMs: 2 }] },
  };
}

async function measure(backend: string, databaseUrl: string | null) {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-bench-reset-'));
  const fixturesPath = join(dir, 'fixtures.json');
  writeFileSync(fixturesPath, JSON.stringify(realisticFixtures()));
  const server = await startServer(
    { ...DEFAULT_CONFIG, port: 0, dataDir: dir, fixtures: fixturesPath, databaseUrl, logLevel: 'silent', demoFleetSize: 0, controlEnabled: true, controlToken: TOKEN },
    createLogger('silent'),
  );
  try {
    const control = new ControlClient(server.url, TOKEN);
    for (let i = 0; i < 5; i++) await control.reset(); // warm-up
    const resets: number[] = [];
    const inside: number[] = [];
    const health: number[] = [];
    for (let i = 0; i < RESETS; i++) {
      const began = performance.now();
      const answer = await control.reset();
      resets.push(performance.now() - began);
      inside.push(answer.elapsedMs);
      const h = performance.now();
      await (await fetch(`${server.url}/health`)).text();
      health.push(performance.now() - h);
    }
    return { backend, resets: summarize(resets), inside: summarize(inside), health: summarize(health) };
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A database of its own on the PostgreSQL server named, dropped afterwards. */
async function withDatabase<T>(serverUrl: string, work: (url: string) => Promise<T>): Promise<T> {
  const { default: pg } = await import('pg');
  const name = `cm_bench_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: serverUrl });
    await c.connect();
    await c.query(sql);
    await c.end();
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  try {
    return await work(url.toString());
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
}

const results = [await measure('sqlite', null)];
if (POSTGRES) results.push(await withDatabase(POSTGRES, (url) => measure('postgres', url)));
const f = (n: number) => n.toFixed(2);
const lines = [
  `# Emulator reset (${new Date().toISOString().slice(0, 10)})`,
  '',
  `${RESETS} resets over HTTP after 5 warm-ups; fixture: 3 tenants, 150 machines (120 simulated), 6 applications, 6 users, 300 actions with 900 events, 1 rule, 1 fault. Load average at start: ${loadavg()[0]!.toFixed(2)}.`,
  '',
  '| Backend | Reset p50 (ms) | p99 | max | Server-side p50 | GET /health p50 (baseline) | Reset / baseline (p50) |',
  '|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.backend} | ${f(r.resets.p50)} | ${f(r.resets.p99)} | ${f(r.resets.max)} | ${f(r.inside.p50)} | ${f(r.health.p50)} | ${f(r.resets.p50 / r.health.p50)}x |`),
  '',
];
const out = join(process.cwd(), 'bench', 'results');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `reset-${new Date().toISOString().slice(0, 10)}.md`), lines.join('\n'));
process.stdout.write(lines.join('\n'));
