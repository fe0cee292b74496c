import { READ_ALERTS } from '../../../domain/permissions.js';
import { ALERT_SET } from '../../../domain/query-sets.js';
import type { Alert } from '../../../domain/model.js';
import { collectionBody, parseCollectionQuery } from '../../collection.js';
import type { Operation } from '../../operation.js';
import { alertToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Alert as AlertSchema, collectionOf, odataQuery } from '../../wire-schemas.js';

/**
 * GET /api/alerts (contract §2 row 22). Evidence is listed with `$expand=evidence`, as MDE
 * does; an empty list is a valid answer (a connector's "test connection" asks for `$top=1`).
 */
export const listAlerts: Operation = {
  name: 'ListAlerts',
  method: 'GET',
  path: '/alerts',
  permissions: READ_ALERTS,
  doc: {
    tag: TAGS.alerts,
    summary: 'List alerts',
    description: 'Evidence is listed with $expand=evidence.',
    query: odataQuery(ALERT_SET),
    response: { status: 200, description: 'A page of alerts.', schema: collectionOf('Alerts', AlertSchema) },
  },
  async handler(request, ctx) {
    const { odata, query } = parseCollectionQuery(request, ALERT_SET, ctx);
    const page = await ctx.alerts.listAlerts(request.caller, query);
    const withEvidence = odata.expand?.includes('evidence') ?? false;
    return {
      status: 200,
      body: collectionBody(request, ctx, { name: 'Alerts', path: 'alerts' }, odata, page, (a: Alert) => alertToWire(a, withEvidence)),
    };
  },
};
