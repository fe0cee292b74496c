import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Countermand, CountermandError } from '../../src/client/index.js';
import { FINAL_STATUSES } from '../../src/domain/lifecycle.js';
import { enrollmentToken, startAgent, type RunningAgent } from '../support/agents.js';
import { TEST_SECRET, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';

/**
 * 1000 rounds of a cancel racing the machine's completion. Whatever the interleaving, an action
 * has exactly one final transition, the API's answers agree with it, and a final action never
 * changes again.
 */
const ROUNDS = 1000;
const MACHINES = 10;

const setup = makeFixtures(0);
let server: TestServer;
let api: Countermand;
const agents: RunningAgent[] = [];

beforeAll(async () => {
  server = await startTestServer({ fixtures: setup.fixtures, config: { rateLimitsEnabled: false, agentPollSeconds: 5, logLevel: 'warn' } });
  // The package's own client, as a SOAR script driving these races would use it.
  api = new Countermand({ url: server.url, tenantId: setup.tenantId, clientId: setup.clientId, clientSecret: TEST_SECRET });
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
      const { id } = await api.isolateMachine(machineId, { Comment: `round ${i}` });
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 60)));
      // Either it is cancelled, or the server refuses: the action was final already.
      const refused = await api.cancelMachineAction(id, { Comment: 'race' }).then(
        () => null,
        (error: unknown) => error,
      );
      const final = await api.waitForAction(id, { intervalMs: 15, timeoutMs: 10_000 });
      if (refused === null) {
        expect(final.status).toBe('Cancelled');
        const history = await server.store.listEvents(setup.tenantId, id);
        if (history.some((e) => e.toStatus === 'InProgress')) outcomes.cancelledInProgress++;
        else outcomes.cancelledPending++;
      } else {
        expect(refused).toBeInstanceOf(CountermandError);
        expect(refused).toMatchObject({ status: 400, code: 'BadRequest' });
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
      expect((await api.getMachineAction(id)).status).toBe(status);
    }
    console.log(`cancel race over ${ROUNDS} rounds:`, outcomes);
    // The interleavings really happened: cancels won against running work and lost against finished work.
    expect(outcomes.cancelledInProgress + outcomes.cancelledPending).toBeGreaterThan(0);
    expect(outcomes.cancelLost).toBeGreaterThan(0);
  }, 180_000);
});
