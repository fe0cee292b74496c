import { READ_ALERTS } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { alertEntity } from '../../wire.js';

/** GET /api/alerts/{id} (contract §2 row 23), with its evidence. */
export const getAlert: Operation = {
  name: 'GetAlert',
  method: 'GET',
  path: '/alerts/:id',
  permissions: READ_ALERTS,
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const alert = await ctx.alerts.getAlert(request.caller, id.slice(0, 256));
    return { status: 200, body: alertEntity(ctx.baseUrl(), alert) };
  },
};
