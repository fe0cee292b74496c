import { CommentBody } from '../../../domain/catalog.js';
import { START_INVESTIGATION } from '../../../domain/permissions.js';
import { RATE_LIMITS } from '../../../domain/rate-limits.js';
import type { Operation } from '../../operation.js';
import { machineKey } from '../../route-keys.js';
import { investigationEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Investigation, MachineKeyParams, entityOf } from '../../wire-schemas.js';

/**
 * POST /api/machines/{id}/startInvestigation (contract §2 row 21): 201 with the Investigation,
 * not a MachineAction. The investigation collects the machine's investigation package.
 */
export const startInvestigation: Operation = {
  name: 'StartInvestigation',
  method: 'POST',
  path: '/machines/:id/startInvestigation',
  permissions: START_INVESTIGATION,
  rateLimit: RATE_LIMITS.startInvestigation,
  body: CommentBody,
  doc: {
    tag: TAGS.investigations,
    summary: 'Start an automated investigation',
    description: "It collects the machine's investigation package (a CollectInvestigationPackage action) and follows it.",
    params: MachineKeyParams,
    response: { status: 201, description: 'The investigation (not a MachineAction).', schema: entityOf('Investigations', Investigation) },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const { Comment } = request.body as { Comment: string };
    const investigation = await ctx.actions.startInvestigation(request.caller, machineKey(id), Comment);
    return { status: 201, body: investigationEntity(ctx.baseUrl(), investigation) };
  },
};
