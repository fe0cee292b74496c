import type { ActionStatus } from './model.js';

/**
 * The rules of an action's lifecycle (contract §4). Every status change in Countermand is a
 * conditional update "to X, only from one of allowedFrom(X)", decided by the database, so two
 * racing changes (a cancel and a completion) have exactly one winner.
 *
 *   Pending -> InProgress -> Succeeded | Failed
 *   Pending | InProgress -> TimeOut | Cancelled
 *   Pending -> Succeeded | Failed  (a final report whose start acknowledgement was lost)
 */
export const ACTIVE_STATUSES = ['Pending', 'InProgress'] as const satisfies readonly ActionStatus[];
export const FINAL_STATUSES = ['Succeeded', 'Failed', 'TimeOut', 'Cancelled'] as const satisfies readonly ActionStatus[];

export function isFinal(status: ActionStatus): boolean {
  return (FINAL_STATUSES as readonly ActionStatus[]).includes(status);
}

export function allowedFrom(to: ActionStatus): readonly ActionStatus[] {
  if (to === 'Pending') return [];
  if (to === 'InProgress') return ['Pending'];
  return ACTIVE_STATUSES;
}
