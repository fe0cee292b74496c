import { ACTION_DEFINITIONS, type ActionDefinition } from '../../../domain/catalog.js';
import { ACTION_PERMISSIONS } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { machineKey } from '../../route-keys.js';
import { actionEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { MachineAction, MachineKeyParams, entityOf } from '../../wire-schemas.js';

/**
 * POST /api/machines/{id}/{action} for each entry of the action catalog (contract §2 rows 4-7,
 * 9-13): the nine operations differ only in what the catalog says about them.
 */
function createMachineAction(definition: ActionDefinition): Operation {
  return {
    name: definition.type,
    method: 'POST',
    path: `/machines/:id/${definition.route}`,
    permissions: ACTION_PERMISSIONS[definition.type],
    ...(definition.rateLimit ? { rateLimit: definition.rateLimit } : {}),
    body: definition.body,
    doc: {
      tag: TAGS.actions,
      summary: definition.summary,
      description:
        'Creates a Pending action that the machine picks up. At most one unfinished action per machine and conflict group: ' +
        'another is 400 ActiveRequestAlreadyExists (contract §4).',
      params: MachineKeyParams,
      response: { status: 201, description: 'The new action, Pending.', schema: entityOf('MachineActions', MachineAction) },
    },
    async handler(request, ctx) {
      const { id } = request.params as { id: string };
      const action = await ctx.actions.create(
        request.caller,
        machineKey(id),
        definition.type,
        request.body as Record<string, unknown>,
      );
      return {
        status: 201,
        body: actionEntity(ctx.baseUrl(), action),
      };
    },
  };
}

export const createMachineActions: readonly Operation[] = ACTION_DEFINITIONS.map(createMachineAction);
