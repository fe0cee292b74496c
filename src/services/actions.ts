import { randomInt, randomUUID } from 'node:crypto';
import type { Caller } from '../domain/caller.js';
import { ACTION_CATALOG, libraryFileOf } from '../domain/catalog.js';
import { alertId, alertsFromReport } from '../domain/detections.js';
import { ERRORS } from '../domain/errors.js';
import { ACTIVE_STATUSES } from '../domain/lifecycle.js';
import {
  PACKAGE_SLOT,
  type ActionEvent,
  type ActionType,
  type Alert,
  type Investigation,
  type LiveResponseCommand,
  type Machine,
  type MachineAction,
} from '../domain/model.js';
import type { ListQuery, Page, Store } from '../domain/store.js';
import type { ActionChangeKind, ActionChangeRef } from './action-changes.js';
import type { MachinesService } from './machines.js';

/** Told about every change an agent must learn of (dispatch implements it). */
export interface ActionListener {
  actionCreated(action: MachineAction): void;
  /** The server ended it (Cancelled, TimeOut): the machine must stop working on it. */
  actionEnded(action: MachineAction): void;
}

/** Told of every action created and every start and end, for this node's metrics (src/metrics.ts). */
export interface ActionMetrics {
  actionCreated(action: MachineAction): void;
  /** Pending -> InProgress. */
  actionStarted(action: MachineAction): void;
  /** The change that made it final. */
  actionFinished(action: MachineAction): void;
}

/**
 * The emulator's view of the lifecycle (src/control/), set only when the control API is on:
 * told of every new action and every change, and asked before a GET of an action by id
 * (a lifecycle rule may end a phase "after N reads"). Without it nothing here calls out.
 */
export interface ActionObserver {
  created(action: MachineAction): void;
  changed(action: MachineAction): void;
  /** Before the action is answered to a GET: resolves true when it changed it (read it again). */
  read(action: MachineAction): Promise<boolean>;
  /**
   * A create found a non-final action of its conflict group: the existing action to answer with
   * instead of 400 ActiveRequestAlreadyExists, or null to refuse.
   */
  duplicate(existing: MachineAction[], type: ActionType): MachineAction | null;
}

/** The machine an agent speaks for. */
export interface MachineRef {
  tenantId: string;
  machineId: string;
  /** Shown as the actor of the events the machine causes. */
  name: string;
}

export interface MachineOutcome {
  reportId: string;
  status: 'Succeeded' | 'Failed';
  errorHResult: number;
  troubleshootInfo: string | null;
  commands?: LiveResponseCommand[] | undefined;
  detail?: Record<string, unknown> | undefined;
}

/** The server's own actor name in history events (timeouts). */
export const SYSTEM_ACTOR = 'Countermand';

/** E_FAIL, for outcomes the server decides (the agent's codes are in agent/executor.ts). */
const HRESULT_E_FAIL = -2147467259;

const TIMEOUT_COMMENTS = {
  delivery: 'The machine did not pick the action up in time.',
  execution: 'The action ran past its deadline.',
  script: 'A live-response script ran past its timeout and the machine did not stop it.',
} as const;

export interface ActionsServiceOptions {
  store: Store;
  machines: MachinesService;
  now?: () => number;
  metrics?: ActionMetrics;
  /** New action ids (the emulator's seeded stream); default random GUIDs. */
  newId?: () => string;
  /** The random part of new alert ids (the emulator's seeded stream); default crypto.randomInt. */
  randomInt?: (below: number) => number;
}

/**
 * The one place that creates actions and changes their status. Routes, the agent gateway and
 * the sweeper call it; none of them writes status themselves.
 */
export class ActionsService {
  private readonly store: Store;
  private readonly machines: MachinesService;
  private readonly now: () => number;
  private readonly metrics: ActionMetrics | undefined;
  private readonly newId: () => string;
  private readonly randomInt: (below: number) => number;
  private listener: ActionListener | undefined;
  private observer: ((change: ActionChangeRef) => void) | undefined;
  private control: ActionObserver | undefined;

  constructor(options: ActionsServiceOptions) {
    this.store = options.store;
    this.machines = options.machines;
    this.now = options.now ?? Date.now;
    this.metrics = options.metrics;
    this.newId = options.newId ?? randomUUID;
    this.randomInt = options.randomInt ?? randomInt;
  }

  /** The dispatch side is built after this service (it calls it), so it is attached afterwards. */
  setListener(listener: ActionListener): void {
    this.listener = listener;
  }

  /** Told of every change this service makes, for the event streams (after it is durable). */
  observeChanges(observer: (change: ActionChangeRef) => void): void {
    this.observer = observer;
  }

  private changed(action: MachineAction, change: ActionChangeKind): void {
    this.observer?.({ tenantId: action.tenantId, actionId: action.id, change, action });
  }

  /** The emulator's control plane, when it is on. */
  setObserver(observer: ActionObserver): void {
    this.control = observer;
  }

  /** Creates an action of `type` on the machine named by `machineKey` (id or aadDeviceId). */
  async create(caller: Caller, machineKey: string, type: ActionType, body: Record<string, unknown>): Promise<MachineAction> {
    const machine = await this.machines.resolveForAction(caller, machineKey);
    if (machine.offboardedAt !== null) throw ERRORS.MachineOffboarded(machine.id);
    const definition = ACTION_CATALOG[type];
    const action = this.build(caller, machine, type, body);
    await this.checkLibraryFiles(caller.tenantId, action.commands);
    const outcome = await this.store.insertAction(
      action,
      { at: action.creationDateTimeUtc, actor: caller.displayName, comment: action.requestorComment },
      definition.tenantConcurrency,
    );
    if (outcome === 'offboarded') throw ERRORS.MachineOffboarded(machine.id);
    if (outcome === 'conflict') {
      const existing = this.control?.duplicate(
        (await this.store.listActiveActionsForMachine(action.tenantId, machine.id)).filter((a) => a.conflictKey === action.conflictKey),
        type,
      );
      if (existing) return existing;
      throw ERRORS.ActiveRequestAlreadyExists();
    }
    if (outcome === 'limit') throw ERRORS.TooManyActive(type, definition.tenantConcurrency!);
    this.listener?.actionCreated(action);
    this.metrics?.actionCreated(action);
    this.changed(action, 'created');
    this.control?.created(action);
    return action;
  }

  /**
   * Starts an automated investigation on the machine (contract §2 row 21): it collects the
   * machine's investigation package, as a CollectInvestigationPackage action with the caller as
   * requestor, and follows that action to its end. A package collection already running on the
   * machine is ActiveRequestAlreadyExists, and an offboarded machine is refused, as for the
   * action itself.
   */
  async startInvestigation(caller: Caller, machineKey: string, comment: string): Promise<Investigation> {
    const machine = await this.machines.resolveForAction(caller, machineKey);
    if (machine.offboardedAt !== null) throw ERRORS.MachineOffboarded(machine.id);
    const action = this.build(caller, machine, 'CollectInvestigationPackage', { Comment: comment });
    const investigation = await this.store.insertInvestigation(action, {
      at: action.creationDateTimeUtc,
      actor: caller.displayName,
      comment: action.requestorComment,
    });
    if (investigation === 'offboarded') throw ERRORS.MachineOffboarded(machine.id);
    if (investigation === 'conflict') throw ERRORS.ActiveRequestAlreadyExists();
    this.listener?.actionCreated(action);
    this.metrics?.actionCreated(action);
    this.changed(action, 'created');
    this.control?.created(action);
    return investigation;
  }

  private build(caller: Caller, machine: Machine, type: ActionType, body: Record<string, unknown>): MachineAction {
    const specifics = ACTION_CATALOG[type].specifics(body);
    const now = this.now();
    return {
      id: this.newId(),
      tenantId: caller.tenantId,
      type,
      title: null,
      requestor: caller.displayName,
      requestorId: caller.id,
      requestorComment: typeof body.Comment === 'string' ? body.Comment : null,
      status: 'Pending',
      machineId: machine.id,
      computerDnsName: machine.computerDnsName,
      creationDateTimeUtc: now,
      lastUpdateDateTimeUtc: now,
      cancellationRequestor: null,
      cancellationComment: null,
      cancellationDateTimeUtc: null,
      errorHResult: 0,
      scope: specifics.scope,
      externalId: null,
      requestSource: 'PublicApi',
      relatedFileInfo: specifics.relatedFileInfo,
      commands: specifics.commands,
      troubleshootInfo: null,
      conflictKey: specifics.conflictKey,
      startedAt: null,
    };
  }

  /**
   * Live response runs only what the tenant's library holds: a PutFile or RunScript naming a
   * file that was never uploaded is refused here, not discovered on the machine.
   */
  private async checkLibraryFiles(tenantId: string, commands: readonly LiveResponseCommand[]): Promise<void> {
    for (const { index, command } of commands) {
      const name = libraryFileOf(command);
      if (name !== null && !(await this.store.getLibraryFile(tenantId, name))) {
        throw ERRORS.InvalidInput(`Commands[${index}]: the library has no file '${name}'; upload it first (POST /api/libraryfiles).`);
      }
    }
  }

  /** The action if the caller may see it (its tenant, and its machine's device group). */
  async get(caller: Caller, id: string): Promise<MachineAction> {
    let action = await this.store.getAction(caller.tenantId, id);
    if (!action || !(await this.machines.visible(caller, action.machineId))) throw ERRORS.ActionNotFound(id);
    if (this.control && (await this.control.read(action))) action = (await this.store.getAction(caller.tenantId, id)) ?? action;
    return action;
  }

  /** The action's history, oldest first, if the caller may see the action. */
  async history(caller: Caller, id: string): Promise<{ action: MachineAction; events: ActionEvent[] }> {
    const action = await this.get(caller, id);
    return { action, events: await this.store.listEvents(action.tenantId, action.id) };
  }

  list(caller: Caller, query: Omit<ListQuery, 'deviceGroups'>): Promise<Page<MachineAction>> {
    return this.store.listActions(caller.tenantId, { ...query, deviceGroups: caller.deviceGroups });
  }

  /**
   * Cancels a non-final action (contract §4): one conditional update, so of many simultaneous
   * cancels exactly one succeeds and the rest see a final status.
   */
  async cancel(caller: Caller, action: MachineAction, comment: string): Promise<MachineAction> {
    const now = this.now();
    const cancelled = await this.store.transitionAction({
      tenantId: action.tenantId,
      actionId: action.id,
      from: ACTIVE_STATUSES,
      to: 'Cancelled',
      patch: {
        cancellationRequestor: caller.displayName,
        cancellationComment: comment,
        cancellationDateTimeUtc: now,
      },
      event: { at: now, actor: caller.displayName, comment },
    });
    if (!cancelled) {
      const current = await this.store.getAction(action.tenantId, action.id);
      throw ERRORS.CancelOfFinalAction(action.id, current?.status ?? action.status);
    }
    this.listener?.actionEnded(cancelled);
    this.metrics?.actionFinished(cancelled);
    this.changed(cancelled, 'cancelled');
    this.control?.changed(cancelled);
    return cancelled;
  }

  /** The machine acknowledges it started: Pending -> InProgress. Repeating it is harmless. */
  async start(machine: MachineRef, actionId: string): Promise<MachineAction | null> {
    const now = this.now();
    const started = await this.store.transitionAction({
      tenantId: machine.tenantId,
      actionId,
      from: ['Pending'],
      to: 'InProgress',
      patch: { startedAt: now },
      event: { at: now, actor: machine.name, comment: null },
    });
    if (started) this.metrics?.actionStarted(started);
    if (started) this.changed(started, 'started');
    if (started) this.control?.changed(started);
    return started ?? this.store.getAction(machine.tenantId, actionId);
  }

  /** Live-response command progress, while InProgress. Returns the action as it now is. */
  async progress(machine: MachineRef, actionId: string, commands: LiveResponseCommand[]): Promise<MachineAction | null> {
    const now = this.now();
    const updated = await this.store.transitionAction({
      tenantId: machine.tenantId,
      actionId,
      from: ['InProgress'],
      to: 'InProgress',
      patch: { commands },
      event: { at: now, actor: machine.name, comment: null, kind: 'progress', detail: { commands: summarize(commands) } },
    });
    if (updated) this.changed(updated, 'progress');
    return updated ?? this.store.getAction(machine.tenantId, actionId);
  }

  /**
   * The machine's final report. It ends the action only while it is not final; a report that
   * arrives after a cancel or a timeout is kept in the history and changes nothing (contract
   * §4). The same report sent twice (same reportId) is recorded once.
   */
  async report(machine: MachineRef, action: MachineAction, reported: MachineOutcome): Promise<{ action: MachineAction; applied: boolean } | null> {
    const outcome = await this.withPackage(action, reported);
    const now = this.now();
    const actionId = action.id;
    const detail = { reportId: outcome.reportId, errorHResult: outcome.errorHResult, ...(outcome.detail ?? {}) };
    const alerts = await this.detections(action, outcome, now);
    const ended = await this.store.transitionAction({
      tenantId: machine.tenantId,
      actionId,
      from: ACTIVE_STATUSES,
      to: outcome.status,
      patch: {
        errorHResult: outcome.errorHResult,
        troubleshootInfo: outcome.troubleshootInfo,
        ...(outcome.commands ? { commands: outcome.commands } : {}),
      },
      event: { at: now, actor: machine.name, comment: outcome.troubleshootInfo, detail, reportId: outcome.reportId },
      // The machine is offboarded with the action's success, in the same transaction: it reads as
      // offboarded, takes no more actions, and its agent's credential ends.
      offboardsMachine: action.type === 'Offboard' && outcome.status === 'Succeeded',
      ...(alerts.length > 0 ? { alerts } : {}),
    });
    if (ended) {
      this.metrics?.actionFinished(ended);
      this.changed(ended, 'ended');
      this.control?.changed(ended);
      return { action: ended, applied: true };
    }
    const current = await this.store.getAction(machine.tenantId, actionId);
    if (!current) return null;
    // Kept in the history; the store records a reportId once, so a repeated report adds nothing.
    const appended = await this.store.appendEvent(machine.tenantId, actionId, 'late-report', {
      at: now,
      actor: machine.name,
      comment: `reported ${outcome.status} after the action was ${current.status}`,
      detail: { ...detail, status: outcome.status, ...(outcome.commands ? { commands: summarize(outcome.commands) } : {}) },
      reportId: outcome.reportId,
    });
    if (appended) this.changed(current, 'late-report');
    return { action: current, applied: false };
  }

  /** The alerts a report raises (they are stored only if the report applies). */
  private async detections(action: MachineAction, outcome: MachineOutcome, at: number): Promise<Alert[]> {
    if (!outcome.detail || (action.type !== 'RunAntiVirusScan' && action.type !== 'StopAndQuarantineFile')) return [];
    const machine = await this.store.findMachine(action.tenantId, action.machineId, { aadDeviceId: false, computerDnsName: false });
    const ids = new Set<string>();
    const newId = () => {
      let id = alertId(at, this.randomInt);
      while (ids.has(id)) id = alertId(at, this.randomInt);
      ids.add(id);
      return id;
    };
    return alertsFromReport({ action, machine, status: outcome.status, detail: outcome.detail, at, newId });
  }

  /**
   * A collection reported successful must have uploaded its package: without one there is
   * nothing to download, so the action fails rather than claim a success it cannot show.
   */
  private async withPackage(action: MachineAction, outcome: MachineOutcome): Promise<MachineOutcome> {
    if (action.type !== 'CollectInvestigationPackage' || outcome.status !== 'Succeeded') return outcome;
    if (await this.store.getArtifact(action.tenantId, action.id, PACKAGE_SLOT)) return outcome;
    return {
      ...outcome,
      status: 'Failed',
      errorHResult: HRESULT_E_FAIL,
      troubleshootInfo: 'The machine reported success but uploaded no investigation package.',
    };
  }

  /**
   * Ends an action that was never picked up (`delivery`), ran past its deadline (`execution`)
   * or has a live-response script running past its timeout (`script`, with the commands as they
   * end), from exactly the status the sweeper saw, so a concurrent change wins cleanly.
   */
  async timeOut(action: MachineAction, reason: 'delivery' | 'execution' | 'script', commands?: LiveResponseCommand[]): Promise<MachineAction | null> {
    const now = this.now();
    const timedOut = await this.store.transitionAction({
      tenantId: action.tenantId,
      actionId: action.id,
      from: [reason === 'delivery' ? 'Pending' : 'InProgress'],
      to: 'TimeOut',
      patch: commands ? { commands } : {},
      event: {
        at: now,
        actor: SYSTEM_ACTOR,
        comment: TIMEOUT_COMMENTS[reason],
      },
    });
    if (timedOut) {
      this.listener?.actionEnded(timedOut);
      this.metrics?.actionFinished(timedOut);
      this.changed(timedOut, 'ended');
      this.control?.changed(timedOut);
    }
    return timedOut;
  }
}

/** What a history event keeps of live-response commands: their status, not their parameters. */
function summarize(commands: readonly LiveResponseCommand[]) {
  return commands.map((c) => ({ index: c.index, type: c.command.type, commandStatus: c.commandStatus, errors: c.errors }));
}
