import { randomUUID } from 'node:crypto';
import type { Caller } from '../domain/caller.js';
import { ACTION_CATALOG } from '../domain/catalog.js';
import { ERRORS } from '../domain/errors.js';
import { ACTIVE_STATUSES } from '../domain/lifecycle.js';
import type { ActionType, MachineAction } from '../domain/model.js';
import type { ListQuery, Page, Store } from '../domain/store.js';
import type { MachinesService } from './machines.js';

/** Told about every change an agent must learn of (dispatch implements it). */
export interface ActionListener {
  actionCreated(action: MachineAction): void;
  actionCancelled(action: MachineAction): void;
}

export interface ActionsServiceOptions {
  store: Store;
  machines: MachinesService;
  now?: () => number;
  listener?: ActionListener;
}

/**
 * The one place that creates actions and changes their status. Routes, the agent gateway and
 * the sweeper call it; none of them writes status themselves.
 */
export class ActionsService {
  private readonly store: Store;
  private readonly machines: MachinesService;
  private readonly now: () => number;
  private listener: ActionListener | undefined;

  constructor(options: ActionsServiceOptions) {
    this.store = options.store;
    this.machines = options.machines;
    this.now = options.now ?? Date.now;
    this.listener = options.listener;
  }

  setListener(listener: ActionListener): void {
    this.listener = listener;
  }

  /** Creates an action of `type` on the machine named by `machineKey` (id or aadDeviceId). */
  async create(caller: Caller, machineKey: string, type: ActionType, body: Record<string, unknown>): Promise<MachineAction> {
    const machine = await this.machines.resolveForAction(caller, machineKey);
    const definition = ACTION_CATALOG[type];
    const specifics = definition.specifics(body);
    const now = this.now();
    const action: MachineAction = {
      id: randomUUID(),
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
    const outcome = await this.store.insertAction(
      action,
      { at: now, actor: caller.displayName, comment: action.requestorComment },
      definition.tenantConcurrency,
    );
    if (outcome === 'conflict') throw ERRORS.ActiveRequestAlreadyExists();
    if (outcome === 'limit') throw ERRORS.TooManyActive(type, definition.tenantConcurrency!);
    this.listener?.actionCreated(action);
    return action;
  }

  /** The action if the caller may see it (its tenant, and its machine's device group). */
  async get(caller: Caller, id: string): Promise<MachineAction> {
    const action = await this.store.getAction(caller.tenantId, id);
    if (!action || !(await this.machines.visible(caller, action.machineId))) throw ERRORS.ActionNotFound(id);
    return action;
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
    this.listener?.actionCancelled(cancelled);
    return cancelled;
  }
}
