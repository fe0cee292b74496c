import { CommentBody } from '../../../domain/catalog.js';
import { ANY_ACTION, cancelPermissions } from '../../../domain/permissions.js';
import { authorize, authorizeScopes } from '../../../identity/authorize.js';
import type { Operation } from '../../operation.js';
import { actionKey } from '../../route-keys.js';
import { actionEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { ActionIdParams, MachineAction, entityOf } from '../../wire-schemas.js';

/**
 * POST /api/machineactions/{id}/cancel (contract §2 row 3, §4). Authorised after the action is
 * loaded: the user's role permission depends on the action's type.
 */
export const cancelMachineAction: Operation = {
  name: 'CancelMachineAction',
  method: 'POST',
  path: '/machineactions/:id/cancel',
  permissions: null,
  body: CommentBody,
  doc: {
    tag: TAGS.actions,
    summary: 'Cancel a machine action',
    description:
      'Only a Pending or InProgress action: it becomes Cancelled at once (the machine is told to stop). ' +
      'Cancelling a final action is 400 BadRequest naming its status. Any action permission lets the caller look the action up; ' +
      "a user also needs the role permission of the action's type.",
    params: ActionIdParams,
    response: { status: 200, description: 'The action, now Cancelled.', schema: entityOf('MachineActions', MachineAction) },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const key = actionKey(id);
    const caller = request.caller;
    // Any action permission lets the caller look the action up: 403 comes before 404, as on
    // every other write.
    authorizeScopes(caller, ANY_ACTION, ANY_ACTION);
    const action = await ctx.actions.get(caller, key);
    authorize(caller, cancelPermissions(action.type, ctx.cancelRequiresMatchingPermission));
    const { Comment } = request.body as { Comment: string };
    const cancelled = await ctx.actions.cancel(caller, action, Comment);
    return {
      status: 200,
      body: actionEntity(ctx.baseUrl(), cancelled),
    };
  },
};
