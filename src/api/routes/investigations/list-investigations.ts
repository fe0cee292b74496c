import { READ_ALERTS } from '../../../domain/permissions.js';
import { INVESTIGATION_SET } from '../../../domain/query-sets.js';
import { collectionBody, parseCollectionQuery } from '../../collection.js';
import type { Operation } from '../../operation.js';
import { investigationToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Investigation, collectionOf, odataQuery } from '../../wire-schemas.js';

/** GET /api/investigations (contract §2 row 24). */
export const listInvestigations: Operation = {
  name: 'ListInvestigations',
  method: 'GET',
  path: '/investigations',
  permissions: READ_ALERTS,
  doc: {
    tag: TAGS.investigations,
    summary: 'List investigations',
    query: odataQuery(INVESTIGATION_SET),
    response: { status: 200, description: 'A page of investigations.', schema: collectionOf('Investigations', Investigation) },
  },
  async handler(request, ctx) {
    const { odata, query } = parseCollectionQuery(request, INVESTIGATION_SET, ctx);
    const page = await ctx.alerts.listInvestigations(request.caller, query);
    return {
      status: 200,
      body: collectionBody(request, ctx, { name: 'Investigations', path: 'investigations' }, odata, page, investigationToWire),
    };
  },
};
