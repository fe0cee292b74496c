import { READ_ALERTS } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { investigationEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Investigation, InvestigationIdParams, entityOf } from '../../wire-schemas.js';

/** GET /api/investigations/{id} (contract §2 row 25). Ids are numbers shown as strings. */
export const getInvestigation: Operation = {
  name: 'GetInvestigation',
  method: 'GET',
  path: '/investigations/:id',
  permissions: READ_ALERTS,
  doc: {
    tag: TAGS.investigations,
    summary: 'Get an investigation',
    params: InvestigationIdParams,
    response: { status: 200, description: 'The investigation.', schema: entityOf('Investigations', Investigation) },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const investigation = await ctx.alerts.getInvestigation(request.caller, id.slice(0, 256));
    return { status: 200, body: investigationEntity(ctx.baseUrl(), investigation) };
  },
};
