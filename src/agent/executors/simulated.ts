import { ACTION_TYPES, type ActionType, type LiveResponseCommand } from '../../domain/model.js';
import { failed, HRESULT, succeeded, type ExecutionContext, type ExecutionOutcome, type Executor } from '../executor.js';

/** How one action type behaves on a simulated machine. */
export interface SimulationSpec {
  /** How long it runs (live response: spread over its commands). */
  durationMs?: number;
  outcome?: 'Succeeded' | 'Failed';
  /** The failure code reported with outcome Failed (default E_FAIL). */
  errorHResult?: number;
  troubleshootInfo?: string;
  /**
   * Reported as the outcome's detail, as a real executor reports what it found: e.g. for
   * RunAntiVirusScan `{"findings": [{"path": "/tmp/eicar.com", "signature": "Eicar-Signature"}]}`,
   * which the server turns into an alert (docs/agents.md).
   */
  detail?: Record<string, unknown>;
}

/** Per action type, with `*` as the default for the others. */
export type Simulation = Partial<Record<ActionType | '*', SimulationSpec>>;

export const DEFAULT_SIMULATION: Required<Pick<SimulationSpec, 'durationMs' | 'outcome'>> = { durationMs: 2000, outcome: 'Succeeded' };

export function parseSimulation(value: unknown): Simulation {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('a simulation is a JSON object keyed by action type');
  for (const [key, spec] of Object.entries(value)) {
    if (key !== '*' && !(ACTION_TYPES as readonly string[]).includes(key)) throw new Error(`unknown action type in the simulation: ${key}`);
    const s = spec as SimulationSpec;
    if (typeof s !== 'object' || s === null) throw new Error(`simulation.${key} must be an object`);
    if (s.durationMs !== undefined && !(Number.isFinite(s.durationMs) && s.durationMs >= 0)) throw new Error(`simulation.${key}.durationMs must be a number >= 0`);
    if (s.outcome !== undefined && s.outcome !== 'Succeeded' && s.outcome !== 'Failed') throw new Error(`simulation.${key}.outcome must be Succeeded or Failed`);
    if (s.errorHResult !== undefined && !Number.isInteger(s.errorHResult)) throw new Error(`simulation.${key}.errorHResult must be an integer`);
    if (s.detail !== undefined && (typeof s.detail !== 'object' || s.detail === null || Array.isArray(s.detail))) {
      throw new Error(`simulation.${key}.detail must be an object`);
    }
  }
  return value as Simulation;
}

/**
 * A machine that only pretends: each action takes its configured time and ends with its
 * configured outcome. It stops at once when the action is cancelled, like a real executor
 * should, and walks live-response commands one by one so progress can be watched.
 */
export class SimulatedExecutor implements Executor {
  readonly name = 'simulated';

  constructor(private readonly simulation: Simulation = {}) {}

  private spec(type: ActionType) {
    return { ...DEFAULT_SIMULATION, ...this.simulation['*'], ...this.simulation[type] };
  }

  async execute(context: ExecutionContext): Promise<ExecutionOutcome> {
    const { action, signal } = context;
    const spec = this.spec(action.type);
    const began = Date.now();
    const stopped = () =>
      failed(HRESULT.aborted, `stopped after ${Date.now() - began} ms: the action was cancelled`, { abortedAfterMs: Date.now() - began });
    if (action.type === 'LiveResponse' && action.commands.length > 0) {
      const commands: LiveResponseCommand[] = action.commands.map((c) => ({ ...c, errors: [...c.errors] }));
      const slice = spec.durationMs / commands.length;
      for (const [i, command] of commands.entries()) {
        command.startTime = Date.now();
        await context.progress?.(commands);
        if (!(await sleep(slice, signal))) return stopped();
        command.endTime = Date.now();
        const last = i === commands.length - 1;
        if (last && spec.outcome === 'Failed') {
          command.commandStatus = 'Failed';
          command.errors.push(spec.troubleshootInfo ?? 'simulated failure');
        } else {
          command.commandStatus = 'Completed';
        }
        await context.progress?.(commands);
      }
    } else if (!(await sleep(spec.durationMs, signal))) {
      return stopped();
    }
    context.log(`simulated ${action.type}: ${spec.outcome}`);
    const detail = { simulated: true, ...spec.detail };
    return spec.outcome === 'Succeeded'
      ? succeeded(detail)
      : failed(spec.errorHResult ?? HRESULT.fail, spec.troubleshootInfo ?? `simulated ${action.type} failure`, detail);
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
