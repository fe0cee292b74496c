import { ACTION_DEFINITIONS, type ActionDefinition } from '../../../domain/catalog.js';
import { ACTION_PERMISSIONS } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { machineKey } from '../../route-keys.js';
import { actionEntity } from '../../wire.js';

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
