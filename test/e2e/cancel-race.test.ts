import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINAL_STATUSES } from '../../src/domain/lifecycle.js';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { appClient, makeFixtures, startTestServer, type Client, type TestServer } from '../support/harness.js';

/**
 * 1000 rounds of a cancel racing the machine's completion. Whatever the interleaving, an action
 * has exactly one final transition, the API's answers agree with it, and a final action never
 * changes again.
 */
const ROUNDS = 1000;
const MACHINES = 10;

const setup = makeFixtures(0);
let server: TestServer;
let api: Client;
const agents: RunningAgent[] = [];

beforeAll(async () => {
  server = await startTestServer({ fixtures: setup.fixtures, config: { rateLimitsEnabled: false, agentPollSeconds: 5, logLevel: 'warn' } });
  api = await appClient(server, setup);
  const token = await enrollmentToken(server.store, setup.tenantId);
  for (let i = 0; i < MACHINES; i++) {
    // Short, slightly varying work, so completions land around the cancels.
    agents.push(await startAgent(server.url, token, `race-${i}.test`, { '*': { durationMs: 2 + (i % 4) } }));
  }
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await server?.stop();
});

const isFinal = (s: string) => (FINAL_STATUSES as readonly string[]).includes(s);

describe('cancel against completion', () => {
  it(`${ROUNDS} rounds: never two final transitions for one action`, async () => {
    const outcomes = { cancelledPending: 0, cancelledInProgress: 0, cancelLost: 0 };
    const finals = new Map<string, string>();

    async function round(machineId: string, i: number) {
      const created = await api.post(`/api/machines/${machineId}/isolate`, { Comment: `round ${i}` });
      expect(created.status, created.text).toBe(201);
      const id = created.body.id as string;
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 60)));
      const cancel = await api.post(`/api/machineactions/${id}/cancel`, { Comment: 'race' });
      expect([200, 400]).toContain(cancel.status);
      const final = await waitUntil(async () => {
        const a = (await api.get(`/api/machineactions/${id}`)).body;
        return isFinal(a.status) ? a : undefined;
      }, 10_000, `round ${i} to end`);
      if (cancel.status === 200) {
        expect(final.status).toBe('Cancelled');
        const history = await server.store.listEvents(setup.tenantId, id);
        if (history.some((e) => e.toStatus === 'InProgress')) outcomes.cancelledInProgress++;
        else outcomes.cancelledPending++;
      } else {
        expect(cancel.body.error.code).toBe('BadRequest');
        expect(final.status).toBe('Succeeded');
        outcomes.cancelLost++;
      }
      finals.set(id, final.status);
    }

    const perMachine = ROUNDS / MACHINES;
    await Promise.all(
      agents.map(async (a, m) => {
        for (let i = 0; i < perMachine; i++) await round(a.machineId, m * perMachine + i);
      }),
    );
    expect(finals.size).toBe(ROUNDS);

    // Let the last late reports land, then check every history.
    await new Promise((r) => setTimeout(r, 300));
    for (const [id, status] of finals) {
      const history = await server.store.listEvents(setup.tenantId, id);
      const finalTransitions = history.filter((e) => e.kind === 'transition' && e.toStatus !== null && isFinal(e.toStatus));
      expect(finalTransitions, id).toHaveLength(1);
      expect(finalTransitions[0]!.toStatus).toBe(status);
      const after = history.slice(history.indexOf(finalTransitions[0]!) + 1);
      expect(after.every((e) => e.kind === 'late-report' && e.fromStatus === status && e.toStatus === status), id).toBe(true);
      expect((await api.get(`/api/machineactions/${id}`)).body.status).toBe(status);
    }
    console.log(`cancel race over ${ROUNDS} rounds:`, outcomes);
    // The interleavings really happened: cancels won against running work and lost against finished work.
    expect(outcomes.cancelledInProgress + outcomes.cancelledPending).toBeGreaterThan(0);
    expect(outcomes.cancelLost).toBeGreaterThan(0);
  }, 180_000);
});
