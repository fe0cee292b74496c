import { READ_MACHINES } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { machineKey } from '../../route-keys.js';
import { machineEntity } from '../../wire.js';

/** GET /api/machines/{id}: by id, aadDeviceId or computerDnsName (contract §2 row 16). */
export const getMachine: Operation = {
  name: 'GetMachine',
  method: 'GET',
  path: '/machines/:id',
  permissions: READ_MACHINES,
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const machine = await ctx.machines.get(request.caller, machineKey(id));
    return { status: 200, body: machineEntity(ctx.baseUrl(), machine) };
  },
};
