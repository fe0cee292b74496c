import { READ_MACHINES } from '../../../domain/permissions.js';
import { EXTENSIONS_ROOT, type Operation } from '../../operation.js';
import { actionKey } from '../../route-keys.js';
import { PLAIN_JSON, actionEventToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { ActionIdParams } from '../../wire-schemas.js';
import { Type } from 'typebox';

const HistoryEntry = Type.Object(
  {
    sequence: Type.Integer({ description: 'Orders the entries.' }),
    kind: Type.Union([Type.Literal('created'), Type.Literal('transition'), Type.Literal('progress'), Type.Literal('late-report')]),
    dateTimeUtc: Type.String({ description: 'ISO 8601 UTC with 7 fractional digits.' }),
    actor: Type.String({ description: "The requestor, the machine's name, or Countermand for a timeout." }),
    fromStatus: Type.Union([Type.String(), Type.Null()]),
    toStatus: Type.Union([Type.String(), Type.Null()]),
    comment: Type.Union([Type.String(), Type.Null()]),
    detail: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], { description: "What the machine reported, or null." }),
  },
  { title: 'ActionHistoryEntry' },
);

/**
 * GET /countermand/v1/machineactions/{id}/events: an action's history, oldest first. Countermand's
 * own extension (MDE has no such read), with the permissions and visibility of
 * GET /api/machineactions/{id}: an action the caller may not see is 404 NotFound.
 */
export const listActionEvents: Operation = {
  name: 'ListActionEvents',
  method: 'GET',
  root: EXTENSIONS_ROOT,
  path: '/machineactions/:id/events',
  permissions: READ_MACHINES,
  doc: {
    tag: TAGS.events,
    summary: "An action's history, oldest first",
    description: 'Countermand\'s own extension (docs/action-center.md), with the permissions and visibility of GET /api/machineactions/{id}.',
    params: ActionIdParams,
    response: {
      status: 200,
      description: 'Every entry of the action\'s append-only history.',
      contentType: PLAIN_JSON,
      schema: Type.Object({ actionId: Type.String(), value: Type.Array(HistoryEntry) }, { title: 'ActionHistory' }),
    },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const { action, events } = await ctx.actions.history(request.caller, actionKey(id));
    return {
      status: 200,
      contentType: PLAIN_JSON,
      body: { actionId: action.id, value: events.map(actionEventToWire) },
    };
  },
};
