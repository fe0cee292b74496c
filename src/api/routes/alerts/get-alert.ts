import { READ_ALERTS } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { alertEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Alert, AlertIdParams, entityOf } from '../../wire-schemas.js';

/** GET /api/alerts/{id} (contract §2 row 23), with its evidence. */
export const getAlert: Operation = {
  name: 'GetAlert',
  method: 'GET',
  path: '/alerts/:id',
  permissions: READ_ALERTS,
  doc: {
    tag: TAGS.alerts,
    summary: 'Get an alert, with its evidence',
    params: AlertIdParams,
    response: { status: 200, description: 'The alert.', schema: entityOf('Alerts', Alert) },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const alert = await ctx.alerts.getAlert(request.caller, id.slice(0, 256));
    return { status: 200, body: alertEntity(ctx.baseUrl(), alert) };
  },
};
