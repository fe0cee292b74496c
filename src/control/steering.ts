import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { FastifyBaseLogger } from 'fastify';
import { packageType } from '../agent/agent.js';
import type { ArtifactsService } from '../artifacts/artifacts.js';
import { DEFAULT_SIMULATION, SimulatedExecutor, type Simulation, type SimulationSpec } from '../agent/executors/simulated.js';
import { HRESULT, type AgentAction, type ExecutionContext } from '../agent/executor.js';
import type { AgentGateway, AgentIdentity } from '../dispatch/gateway.js';
import { ApiError, ERRORS } from '../domain/errors.js';
import { isFinal } from '../domain/lifecycle.js';
import type { ActionType, LiveResponseCommand, MachineAction } from '../domain/model.js';
import type { Store } from '../domain/store.js';
import type { ActionObserver, ActionsService, MachineOutcome } from '../services/actions.js';
import type { Clock } from './clock.js';
import type { DuplicatePolicy, Rule, Trigger } from './schemas.js';
import { machineKey } from './world.js';

/**
 * The one place that decides what the emulator's machines do with their actions (a lifecycle
 * rule is the decision of the simulated agent serving the machine), and that carries it out:
 *
 * - a **simulated** machine is served by an in-process agent: it starts the action and runs the
 *   simulated executor, speaking to the agent gateway exactly as an agent's requests do
 *   (start, progress, report); the executor does the work (commands, results) and the plan
 *   says when and how it ends;
 * - an **agent-less** machine has no executor: its actions stay Pending unless a rule or a step
 *   moves them, which this does through the actions service, as the machine;
 * - machines with a real agent (enrolled with `countermand agent`) are not served here.
 *
 * Each action's plan is fixed when it is created (first matching rule, else the machine's
 * default). A phase (Pending, InProgress) ends on its trigger: at once, never, on a step, after
 * seconds of the emulator's clock, or after N reads; whoever causes the end (a step, a read, a
 * clock advance) waits until the change is in the store, so what a test does next sees it.
 */

export type AgentKind = 'simulated' | 'none';

export interface ServedMachine {
  tenantId: string;
  machineId: string;
  name: string;
  agent: AgentKind;
}

export interface Plan {
  ruleId: string | null;
  start: Trigger;
  finish: Trigger;
  outcome: 'Succeeded' | 'Failed' | 'TimeOut';
  errorHResult: number;
  troubleshootInfo: string | null;
  commands: SimulationSpec['commands'];
  /** Reported as the outcome's detail (findings raise alerts). */
  detail: Record<string, unknown> | undefined;
}

interface Gate {
  opened: boolean;
  promise: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  const g: Gate = {
    opened: false,
    promise,
    open() {
      g.opened = true;
      open();
    },
  };
  return g;
}

/** True once the gate opens, false when the signal aborts first. */
function passed(g: Gate, signal: AbortSignal): Promise<boolean> {
  if (g.opened) return Promise.resolve(!signal.aborted);
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => resolve(false);
    signal.addEventListener('abort', onAbort, { once: true });
    void g.promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(!signal.aborted);
    });
  });
}

interface Tracked {
  action: MachineAction;
  machine: ServedMachine;
  plan: Plan;
  phase: 'start' | 'finish' | 'done';
  reads: number;
  gates: { start: Gate; finish: Gate };
  cancelTimers: (() => void)[];
  controller: AbortController;
  waiters: Set<() => void>;
  run: Promise<void>;
}

interface RuleState {
  id: string;
  rule: Rule;
  /** Matches left; null: every one. */
  remaining: number | null;
}

/** How long a cause (step, read, advance) waits for the change it set off before giving up. */
const SETTLE_TIMEOUT_MS = 10_000;

export interface SteeringOptions {
  store: Store;
  actions: ActionsService;
  gateway: AgentGateway;
  clock: Clock;
  logger: FastifyBaseLogger;
  /** Library files, results and packages: what a simulated machine's live response and collection move. */
  artifacts: ArtifactsService;
}

export class Steering implements ActionObserver {
  private readonly machines = new Map<string, ServedMachine>();
  private readonly tracked = new Map<string, Tracked>();
  private rules: RuleState[] = [];
  private ruleCounter = 0;
  private simulation: Simulation = {};
  duplicatePolicy: DuplicatePolicy = 'reject';
  private readonly executor: SimulatedExecutor;

  constructor(private readonly options: SteeringOptions) {
    this.executor = new SimulatedExecutor(
      {},
      {
        now: options.clock.now,
        steering: {
          spec: (action) => this.specOf(this.tracked.get(action.id)?.plan),
          finish: (action, signal) => {
            const t = this.tracked.get(action.id);
            return t ? passed(t.gates.finish, signal) : Promise.resolve(false);
          },
        },
      },
    );
  }

  // ---- configuration -------------------------------------------------------------------------

  setSimulation(simulation: Simulation): void {
    this.simulation = simulation;
  }

  listRules(): (Rule & { id: string; remaining: number | null })[] {
    return this.rules.map((r) => ({ ...r.rule, id: r.id, remaining: r.remaining }));
  }

  /** Replaces every rule (their counts start again). */
  setRules(rules: readonly Rule[]): void {
    const states = rules.map((rule) => this.ruleState(rule));
    const ids = new Set<string>();
    for (const s of states) {
      if (ids.has(s.id)) throw ERRORS.InvalidInput(`Rule id '${s.id}' appears twice.`);
      ids.add(s.id);
    }
    this.rules = states;
  }

  /** Adds a rule at the end, or at `position` (0 is tried first). */
  addRule(rule: Rule, position?: number): Rule & { id: string; remaining: number | null } {
    const state = this.ruleState(rule);
    if (this.rules.some((r) => r.id === state.id)) throw ERRORS.InvalidInput(`A rule with id '${state.id}' exists already.`);
    this.rules.splice(position ?? this.rules.length, 0, state);
    return { ...state.rule, id: state.id, remaining: state.remaining };
  }

  removeRule(id: string): boolean {
    const before = this.rules.length;
    this.rules = this.rules.filter((r) => r.id !== id);
    return this.rules.length < before;
  }

  private ruleState(rule: Rule): RuleState {
    const id = rule.id ?? `rule-${++this.ruleCounter}`;
    return { id, rule: { ...rule, id }, remaining: rule.times ?? null };
  }

  // ---- machines --------------------------------------------------------------------------------

  listMachines(): ServedMachine[] {
    return [...this.machines.values()];
  }

  agentOf(tenantId: string, machineId: string): AgentKind | null {
    return this.machines.get(machineKey(tenantId, machineId))?.agent ?? null;
  }

  /**
   * Serves the machine (or changes how): its non-final actions are taken up with fresh plans.
   * `active` lists them when the caller knows them already (a reset loads them itself).
   */
  async serve(machine: ServedMachine, active?: readonly MachineAction[]): Promise<void> {
    await this.forget(machine.tenantId, machine.machineId);
    this.machines.set(machineKey(machine.tenantId, machine.machineId), machine);
    for (const action of active ?? (await this.options.store.listActiveActionsForMachine(machine.tenantId, machine.machineId))) {
      if (!this.tracked.has(action.id)) this.track(action, machine);
    }
  }

  /** Stops serving the machine: what its agent was doing is abandoned (actions keep their status). */
  async forget(tenantId: string, machineId: string): Promise<void> {
    const key = machineKey(tenantId, machineId);
    if (!this.machines.delete(key)) return;
    await this.abandon([...this.tracked.values()].filter((t) => machineKey(t.machine.tenantId, t.machine.machineId) === key));
  }

  /** Stops everything (a reset): no machine served, nothing running, no rule. */
  async clear(): Promise<void> {
    this.machines.clear();
    this.rules = [];
    this.ruleCounter = 0;
    await this.abandon([...this.tracked.values()]);
  }

  private async abandon(list: Tracked[]): Promise<void> {
    for (const t of list) this.untrack(t);
    // Nothing a served action was doing may write after this returns (a reset reuses ids).
    await Promise.allSettled(list.map((t) => t.run));
  }

  // ---- the observer (ActionsService calls these) ---------------------------------------------

  created(action: MachineAction): void {
    const machine = this.machines.get(machineKey(action.tenantId, action.machineId));
    if (machine) this.track(action, machine);
  }

  changed(action: MachineAction): void {
    const t = this.tracked.get(action.id);
    if (!t) return;
    t.action = action;
    if (isFinal(action.status)) {
      this.untrack(t);
    } else if (action.status === 'InProgress' && t.phase === 'start') {
      t.phase = 'finish';
      t.reads = 0;
      this.cancelTimers(t);
      this.arm(t, t.plan.finish, t.gates.finish, action.startedAt ?? this.options.clock.now());
    }
    for (const wake of [...t.waiters]) wake();
  }

  async read(action: MachineAction): Promise<boolean> {
    const t = this.tracked.get(action.id);
    if (!t || t.phase === 'done') return false;
    const target = this.readTarget(t);
    if (!target) return false;
    t.reads++;
    if (t.reads <= target.reads) return false;
    await this.fire(t, target.gate);
    return true;
  }

  duplicate(existing: MachineAction[], type: ActionType): MachineAction | null {
    // Only a true duplicate (same type) is answered with the existing action, as MDE has been
    // seen to do; an Unisolate while an Isolate is pending is still refused.
    return this.duplicatePolicy === 'returnExisting' ? (existing.find((a) => a.type === type) ?? null) : null;
  }

  // ---- steps -----------------------------------------------------------------------------------

  /** Ends the action's current phase now, whatever its trigger; resolves when the change is stored. */
  async step(tenantId: string, actionId: string): Promise<void> {
    const t = this.tracked.get(actionId);
    if (!t || t.action.tenantId !== tenantId) {
      throw ERRORS.InvalidInput(
        `Action ${actionId} is not being carried out by an emulated machine (it is final, or its machine has a real agent).`,
      );
    }
    await this.fire(t, t.phase === 'start' ? t.gates.start : t.gates.finish);
  }

  /** The plan of a non-final action served here (for the control API). */
  planOf(actionId: string): Plan | null {
    return this.tracked.get(actionId)?.plan ?? null;
  }

  // ---- inside ------------------------------------------------------------------------------------

  private plan(action: MachineAction, machine: ServedMachine): Plan {
    for (const state of this.rules) {
      const m = state.rule.match ?? {};
      if (m.tenantId && m.tenantId.toLowerCase() !== action.tenantId) continue;
      if (m.machineId && m.machineId.toLowerCase() !== action.machineId) continue;
      if (m.actionType && m.actionType !== action.type) continue;
      if (state.remaining !== null) {
        if (state.remaining <= 0) continue;
        state.remaining--;
      }
      return this.fromRule(state, action.type);
    }
    return this.defaultPlan(machine, action.type);
  }

  private simulated(type: ActionType) {
    return { ...DEFAULT_SIMULATION, ...this.simulation['*'], ...this.simulation[type] };
  }

  private defaultPlan(machine: ServedMachine, type: ActionType): Plan {
    if (machine.agent === 'none') {
      return { ruleId: null, start: 'never', finish: 'never', outcome: 'Succeeded', errorHResult: 0, troubleshootInfo: null, commands: undefined, detail: undefined };
    }
    const spec = this.simulated(type);
    return {
      ruleId: null,
      start: spec.pendingMs > 0 ? { afterSeconds: spec.pendingMs / 1000 } : 'now',
      finish: { afterSeconds: spec.durationMs / 1000 },
      outcome: spec.outcome,
      errorHResult: spec.outcome === 'Failed' ? (spec.errorHResult ?? HRESULT.fail) : 0,
      troubleshootInfo: spec.outcome === 'Failed' ? (spec.troubleshootInfo ?? `simulated ${type} failure`) : null,
      commands: spec.commands,
      detail: spec.detail,
    };
  }

  private fromRule(state: RuleState, type: ActionType): Plan {
    const r = state.rule;
    const outcome = r.outcome ?? 'Succeeded';
    return {
      ruleId: state.id,
      start: r.start ?? 'now',
      finish: r.finish ?? { afterSeconds: this.simulated(type).durationMs / 1000 },
      outcome,
      errorHResult: outcome === 'Failed' ? (r.errorHResult ?? HRESULT.fail) : 0,
      troubleshootInfo: r.troubleshootInfo ?? (outcome === 'Failed' ? `simulated ${type} failure` : null),
      commands: r.commands as SimulationSpec['commands'],
      detail: r.detail ?? this.simulated(type).detail,
    };
  }

  /** What the simulated executor is told to do (the plan's outcome; timing is the gates'). */
  private specOf(plan: Plan | undefined): SimulationSpec {
    if (!plan) return { durationMs: 0, outcome: 'Failed', troubleshootInfo: 'the emulator no longer serves this action' };
    return {
      pendingMs: 0,
      durationMs: 0,
      outcome: plan.outcome === 'Failed' ? 'Failed' : 'Succeeded',
      errorHResult: plan.errorHResult,
      ...(plan.troubleshootInfo !== null ? { troubleshootInfo: plan.troubleshootInfo } : {}),
      ...(plan.commands ? { commands: plan.commands } : {}),
      ...(plan.detail ? { detail: plan.detail } : {}),
    };
  }

  /** A Pending action whose machine never starts it can only time out: its finish counts from creation. */
  private timesOutPending(plan: Plan): boolean {
    return plan.start === 'never' && plan.outcome === 'TimeOut';
  }

  private track(action: MachineAction, machine: ServedMachine): void {
    const plan = this.plan(action, machine);
    const t: Tracked = {
      action,
      machine,
      plan,
      phase: action.status === 'Pending' ? 'start' : 'finish',
      reads: 0,
      gates: { start: gate(), finish: gate() },
      cancelTimers: [],
      controller: new AbortController(),
      waiters: new Set(),
      run: Promise.resolve(),
    };
    this.tracked.set(action.id, t);
    if (t.phase === 'start') {
      this.arm(t, plan.start, t.gates.start, action.creationDateTimeUtc);
      if (this.timesOutPending(plan)) this.arm(t, plan.finish, t.gates.finish, action.creationDateTimeUtc);
    } else {
      this.arm(t, plan.finish, t.gates.finish, action.startedAt ?? this.options.clock.now());
    }
    t.run = this.carryOut(t).catch((error: unknown) => {
      // After a reset or a removal the action may be gone: nothing is left to do for it.
      if (!(error instanceof ApiError)) this.options.logger.warn({ err: error, actionId: action.id }, 'emulated machine failed');
    });
  }

  private untrack(t: Tracked): void {
    if (this.tracked.get(t.action.id) === t) this.tracked.delete(t.action.id);
    t.phase = 'done';
    this.cancelTimers(t);
    t.controller.abort();
    for (const wake of [...t.waiters]) wake();
  }

  private cancelTimers(t: Tracked): void {
    for (const cancel of t.cancelTimers) cancel();
    t.cancelTimers = [];
  }

  private arm(t: Tracked, trigger: Trigger, g: Gate, base: number): void {
    if (trigger === 'now') g.open();
    else if (typeof trigger === 'object' && 'afterSeconds' in trigger) {
      t.cancelTimers.push(this.options.clock.schedule(base + trigger.afterSeconds * 1000, () => this.fire(t, g)));
    } else if (typeof trigger === 'object' && 'afterReads' in trigger && trigger.afterReads === 0) g.open();
  }

  /** The reads trigger of the current phase, if it has one. */
  private readTarget(t: Tracked): { reads: number; gate: Gate } | null {
    const { plan } = t;
    if (t.phase === 'start') {
      if (typeof plan.start === 'object' && 'afterReads' in plan.start) return { reads: plan.start.afterReads, gate: t.gates.start };
      if (this.timesOutPending(plan) && typeof plan.finish === 'object' && 'afterReads' in plan.finish) {
        return { reads: plan.finish.afterReads, gate: t.gates.finish };
      }
      return null;
    }
    if (typeof plan.finish === 'object' && 'afterReads' in plan.finish) return { reads: plan.finish.afterReads, gate: t.gates.finish };
    return null;
  }

  /** Opens a gate and waits until the action has left the phase the gate ends. */
  private fire(t: Tracked, g: Gate): Promise<void> {
    const from = t.action.status;
    g.open();
    return this.settled(t, () => t.phase === 'done' || t.action.status !== from);
  }

  private settled(t: Tracked, done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(), SETTLE_TIMEOUT_MS);
      timer.unref();
      const finish = () => {
        clearTimeout(timer);
        t.waiters.delete(check);
        resolve();
      };
      const check = () => {
        if (done()) finish();
      };
      t.waiters.add(check);
    });
  }

  /**
   * A simulated machine's file transfer, in process: the same artifacts-service calls (and so the
   * same checks: the action running, a file its commands name, the upload cap) as the agent
   * protocol's routes make for a real agent, with the link a real agent would be given.
   */
  private fileTransfer(identity: AgentIdentity, action: MachineAction): Pick<ExecutionContext, 'fetchLibraryFile' | 'uploadCommandResult' | 'uploadPackage'> {
    const { artifacts, store } = this.options;
    const running = async () => (await store.getAction(action.tenantId, action.id)) ?? action;
    const upload = async (index: number | null, source: string, contentType: string) => {
      const { size } = await stat(source);
      await artifacts.receive(identity, await running(), index, { source: createReadStream(source), contentType, contentLength: size, sha256: undefined });
    };
    return {
      fetchLibraryFile: async (fileName, destination) => {
        const current = await running();
        const { link } = await artifacts.libraryLink(identity, current, fileName);
        const query = Object.fromEntries(new URL(link, 'http://emulator.invalid').searchParams);
        const { reader } = await artifacts.openLibraryFile(identity, current, fileName, query);
        await pipeline(reader.stream, createWriteStream(destination, { mode: 0o600 })).catch(async (error: unknown) => {
          await rm(destination, { force: true });
          throw error;
        });
      },
      uploadCommandResult: (index, source) => upload(index, source, 'application/octet-stream'),
      uploadPackage: async (source) => upload(null, source, await packageType(source)),
    };
  }

  /** What the machine does with the action, from its current status to the end of its plan. */
  private async carryOut(t: Tracked): Promise<void> {
    const { signal } = t.controller;
    const { machine, plan } = t;
    const identity: AgentIdentity = { tenantId: machine.tenantId, machineId: machine.machineId, name: machine.name, tokenHash: '' };
    const { actions, gateway } = this.options;
    if (t.action.status === 'Pending') {
      const ended = this.timesOutPending(plan) ? passed(t.gates.finish, signal).then((ok) => ok && 'timeout') : new Promise<false>(() => undefined);
      const which = await Promise.race([passed(t.gates.start, signal).then((ok) => ok && 'start'), ended]);
      if (!which || signal.aborted) return;
      if (which === 'timeout') {
        await actions.timeOut(t.action, 'delivery');
        return;
      }
      const started =
        machine.agent === 'simulated'
          ? (await gateway.start(identity, t.action.id)).run
          : (await actions.start(identity, t.action.id))?.status === 'InProgress';
      if (!started || signal.aborted) return;
    }
    if (plan.outcome === 'TimeOut') {
      if (await passed(t.gates.finish, signal)) await actions.timeOut(t.action, 'execution');
      return;
    }
    const reportId = `emulator-${t.action.id}`;
    if (machine.agent === 'simulated') {
      const outcome = await this.executor.execute({
        action: agentAction(t.action),
        signal,
        log: (message, detail) => this.options.logger.debug({ ...detail, actionId: t.action.id, machine: machine.name }, `emulated machine: ${message}`),
        progress: async (commands) => {
          if (!signal.aborted) await gateway.progress(identity, t.action.id, { commands });
        },
        ...this.fileTransfer(identity, t.action),
      });
      if (signal.aborted) return;
      await gateway.report(identity, t.action.id, { reportId, ...outcome, detail: { ...outcome.detail, ...(plan.ruleId ? { rule: plan.ruleId } : {}) } });
      return;
    }
    if (!(await passed(t.gates.finish, signal))) return;
    const commands = t.action.commands.length > 0 ? settleCommands(t.action.commands, plan, this.options.clock.now()) : undefined;
    // A failed command fails the action with its error, as on a simulated machine.
    const failedCommand = commands?.find((c) => c.commandStatus === 'Failed');
    const outcome: MachineOutcome = {
      reportId,
      ...(failedCommand
        ? { status: 'Failed' as const, errorHResult: plan.errorHResult || HRESULT.fail, troubleshootInfo: failedCommand.errors[0] ?? null }
        : { status: plan.outcome, errorHResult: plan.errorHResult, troubleshootInfo: plan.troubleshootInfo }),
      ...(commands ? { commands } : {}),
      detail: { ...plan.detail, emulated: true, ...(plan.ruleId ? { rule: plan.ruleId } : {}) },
    };
    await actions.report(identity, t.action, outcome);
  }
}

function agentAction(a: MachineAction): AgentAction {
  return { id: a.id, type: a.type, scope: a.scope, sha1: a.relatedFileInfo?.fileIdentifier ?? null, commands: a.commands, comment: a.requestorComment };
}

/** An agent-less machine's live-response commands, ended as the plan says (nothing really ran). */
function settleCommands(commands: readonly LiveResponseCommand[], plan: Plan, now: number): LiveResponseCommand[] {
  let stopped = false;
  return commands.map((c) => {
    if (stopped) return { ...c, errors: [...c.errors] };
    const own = plan.commands?.[c.command.type];
    const failed = own?.outcome === 'Failed';
    if (failed) stopped = true;
    return { ...c, startTime: now, endTime: now, commandStatus: failed ? 'Failed' : 'Completed', errors: failed ? [own?.error ?? 'simulated failure'] : [] };
  });
}
