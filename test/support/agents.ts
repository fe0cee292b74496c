import { Agent } from '../../src/agent/agent.js';
import type { ExecutionContext, ExecutionOutcome, Executor } from '../../src/agent/executor.js';
import { SimulatedExecutor, type Simulation } from '../../src/agent/executors/simulated.js';
import { MemoryState } from '../../src/agent/state.js';
import { createEnrollmentToken } from '../../src/dispatch/enrollment.js';
import type { EnrollRequest } from '../../src/dispatch/protocol.js';
import type { Store } from '../../src/domain/store.js';

/** Polls `probe` until it returns something truthy: tests wait for states, never for time. */
export async function waitUntil<T>(probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}

/** A simulated executor that also records what it was asked and when it noticed a cancel. */
export class WatchedExecutor implements Executor {
  readonly name = 'watched';
  readonly started: string[] = [];
  readonly completed: string[] = [];
  readonly stopped = new Map<string, number>();
  private readonly inner: SimulatedExecutor;

  constructor(simulation: Simulation) {
    this.inner = new SimulatedExecutor(simulation);
  }

  async execute(context: ExecutionContext): Promise<ExecutionOutcome> {
    this.started.push(context.action.id);
    context.signal.addEventListener('abort', () => this.stopped.set(context.action.id, Date.now()), { once: true });
    const outcome = await this.inner.execute(context);
    if (!context.signal.aborted) this.completed.push(context.action.id);
    return outcome;
  }
}

export async function enrollmentToken(store: Store, tenantId: string, label = 'test'): Promise<string> {
  return createEnrollmentToken(store, tenantId, label, { rbacGroupId: 1, rbacGroupName: 'g1' });
}

export interface RunningAgent {
  agent: Agent;
  executor: WatchedExecutor;
  state: MemoryState;
  machineId: string;
  stop(): Promise<void>;
}

/** An in-process agent speaking the real protocol over HTTP. */
export async function startAgent(
  serverUrl: string,
  token: string,
  name: string,
  simulation: Simulation = {},
  state = new MemoryState(),
  ca?: Buffer,
  machine: Omit<EnrollRequest['machine'], 'computerDnsName'> = {},
): Promise<RunningAgent> {
  const executor = new WatchedExecutor(simulation);
  const agent = new Agent({
    serverUrl,
    ...(ca ? { ca } : {}),
    enrollmentToken: token,
    machine: { ...machine, computerDnsName: name },
    state,
    executor,
    maxWaitSeconds: 30,
  });
  await agent.start();
  return { agent, executor, state, machineId: agent.machineId!, stop: () => agent.stop() };
}
