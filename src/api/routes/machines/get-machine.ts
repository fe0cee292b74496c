import { READ_MACHINES } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { machineKey } from '../../route-keys.js';
import { machineEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Machine, MachineKeyParams, entityOf } from '../../wire-schemas.js';

/** GET /api/machines/{id}: by id, aadDeviceId or computerDnsName (contract §2 row 16). */
export const getMachine: Operation = {
  name: 'GetMachine',
  method: 'GET',
  path: '/machines/:id',
  permissions: READ_MACHINES,
  doc: {
    tag: TAGS.machines,
    summary: 'Get a machine',
    description: 'By id, aadDeviceId or computerDnsName.',
    params: MachineKeyParams,
    response: { status: 200, description: 'The machine.', schema: entityOf('Machines', Machine) },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const machine = await ctx.machines.get(request.caller, machineKey(id));
    return { status: 200, body: machineEntity(ctx.baseUrl(), machine) };
  },
};
