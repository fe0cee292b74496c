import { MACHINE_ACTION_SET } from '../../../domain/query-sets.js';
import { READ_MACHINES } from '../../../domain/permissions.js';
import { collectionBody, parseCollectionQuery } from '../../collection.js';
import type { Operation } from '../../operation.js';
import { machineActionToWire } from '../../wire.js';

/** GET /api/machineactions (contract §2 row 1). */
export const listMachineActions: Operation = {
  name: 'ListMachineActions',
  method: 'GET',
  path: '/machineactions',
  permissions: READ_MACHINES,
  async handler(request, ctx) {
    const { odata, query } = parseCollectionQuery(request, MACHINE_ACTION_SET, ctx);
    const page = await ctx.actions.list(request.caller, query);
    return {
      status: 200,
      body: collectionBody(request, ctx, { name: 'MachineActions', path: 'machineactions' }, odata, page, machineActionToWire),
    };
  },
};
