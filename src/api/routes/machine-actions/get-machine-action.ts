import { READ_MACHINES } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { actionKey } from '../../route-keys.js';
import { actionEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { ActionIdParams, MachineAction, entityOf } from '../../wire-schemas.js';

/** GET /api/machineactions/{id} (contract §2 row 2). */
export const getMachineAction: Operation = {
  name: 'GetMachineAction',
  method: 'GET',
  path: '/machineactions/:id',
  permissions: READ_MACHINES,
  doc: {
    tag: TAGS.actions,
    summary: 'Get a machine action',
    params: ActionIdParams,
    response: { status: 200, description: 'The action.', schema: entityOf('MachineActions', MachineAction) },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const action = await ctx.actions.get(request.caller, actionKey(id));
    return {
      status: 200,
      body: actionEntity(ctx.baseUrl(), action),
    };
  },
};
