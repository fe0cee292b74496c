import { MACHINE_ACTION_SET } from '../../../domain/query-sets.js';
import { READ_MACHINES } from '../../../domain/permissions.js';
import { collectionBody, parseCollectionQuery } from '../../collection.js';
import type { Operation } from '../../operation.js';
import { machineActionToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { MachineAction, collectionOf, odataQuery } from '../../wire-schemas.js';

/** GET /api/machineactions (contract §2 row 1). */
export const listMachineActions: Operation = {
  name: 'ListMachineActions',
  method: 'GET',
  path: '/machineactions',
  permissions: READ_MACHINES,
  doc: {
    tag: TAGS.actions,
    summary: 'List machine actions',
    description: 'Newest first unless $orderby says otherwise.',
    query: odataQuery(MACHINE_ACTION_SET),
    response: { status: 200, description: 'A page of actions.', schema: collectionOf('MachineActions', MachineAction) },
  },
  async handler(request, ctx) {
    const { odata, query } = parseCollectionQuery(request, MACHINE_ACTION_SET, ctx);
    const page = await ctx.actions.list(request.caller, query);
    return {
      status: 200,
      body: collectionBody(request, ctx, { name: 'MachineActions', path: 'machineactions' }, odata, page, machineActionToWire),
    };
  },
};
