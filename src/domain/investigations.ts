import { evidencePath } from './detections.js';
import type { AlertEvidence, Investigation, InvestigationState, MachineAction } from './model.js';

/**
 * How an investigation follows the CollectInvestigationPackage action it owns (contract §10,
 * docs/api-decisions.md). The investigation collects the machine's investigation package; its
 * verdict then comes from the alert that triggered it, if any:
 *
 *   Pending                                  -> Queued
 *   InProgress                               -> Running
 *   Succeeded, no triggering alert           -> Benign (nothing to remediate)
 *   Succeeded, the alert's files quarantined -> SuccessfullyRemediated
 *   Succeeded, a file of the alert still there -> PendingApproval (its remediation is left to
 *                                               the user, as in MDE's semi-automatic mode)
 *   Failed                                   -> Failed
 *   TimeOut                                  -> TerminatedBySystem
 *   Cancelled                                -> TerminatedByUser (cancelledBy: who cancelled)
 */

/** States in which an investigation is still going: it ends when its action ends. */
export const ACTIVE_INVESTIGATION_STATES = ['Queued', 'Running'] as const satisfies readonly InvestigationState[];

export type InvestigationProgress = Pick<Investigation, 'state' | 'statusDetails' | 'cancelledBy' | 'endTime'>;

/**
 * The investigation's state for its action as it now is. `trigger` is the evidence of the
 * triggering alert (null when there is none).
 */
export function investigationProgress(action: MachineAction, trigger: readonly AlertEvidence[] | null): InvestigationProgress {
  const ended = { cancelledBy: null, endTime: action.lastUpdateDateTimeUtc };
  switch (action.status) {
    case 'Pending':
      return { state: 'Queued', statusDetails: 'Waiting for the machine to pick up the investigation package collection.', cancelledBy: null, endTime: null };
    case 'InProgress':
      return { state: 'Running', statusDetails: 'The machine is collecting the investigation package.', cancelledBy: null, endTime: null };
    case 'Failed':
      return { ...ended, state: 'Failed', statusDetails: `The investigation package could not be collected: ${action.troubleshootInfo ?? 'the machine reported a failure'}` };
    case 'TimeOut':
      return { ...ended, state: 'TerminatedBySystem', statusDetails: 'The machine did not collect the investigation package in time.' };
    case 'Cancelled':
      return {
        state: 'TerminatedByUser',
        statusDetails: action.cancellationComment,
        cancelledBy: action.cancellationRequestor,
        endTime: action.lastUpdateDateTimeUtc,
      };
    case 'Succeeded': {
      if (trigger === null) {
        return { ...ended, state: 'Benign', statusDetails: 'Investigation package collected; no alert to remediate.' };
      }
      const present = trigger.filter((e) => e.entityType === 'File' && e.detectionStatus !== 'Blocked');
      if (present.length === 0) {
        return { ...ended, state: 'SuccessfullyRemediated', statusDetails: "Investigation package collected; the alert's files are quarantined." };
      }
      const files = present.slice(0, 3).map(evidencePath);
      return {
        ...ended,
        state: 'PendingApproval',
        statusDetails: `Investigation package collected; remediation awaits you: ${files.join(', ')}${present.length > 3 ? ` and ${present.length - 3} more` : ''} still on the machine.`,
      };
    }
  }
}
