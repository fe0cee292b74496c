import { MACHINE_SET } from '../../../domain/query-sets.js';
import { READ_MACHINES } from '../../../domain/permissions.js';
import { collectionBody, parseCollectionQuery } from '../../collection.js';
import type { Operation } from '../../operation.js';
import { machineToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Machine, collectionOf, odataQuery } from '../../wire-schemas.js';

/** GET /api/machines (contract §2 row 15). */
export const listMachines: Operation = {
  name: 'ListMachines',
  method: 'GET',
  path: '/machines',
  permissions: READ_MACHINES,
  doc: {
    tag: TAGS.machines,
    summary: 'List machines',
    description: "A user sees only the machines of their device groups.",
    query: odataQuery(MACHINE_SET),
    response: { status: 200, description: 'A page of machines.', schema: collectionOf('Machines', Machine) },
  },
  async handler(request, ctx) {
    const { odata, query } = parseCollectionQuery(request, MACHINE_SET, ctx);
    const page = await ctx.machines.list(request.caller, query);
    return {
      status: 200,
      body: collectionBody(request, ctx, { name: 'Machines', path: 'machines' }, odata, page, machineToWire),
    };
  },
};
