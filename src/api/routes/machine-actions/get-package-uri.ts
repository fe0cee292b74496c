import { PACKAGE_URI } from '../../../domain/permissions.js';
import { RATE_LIMITS } from '../../../domain/rate-limits.js';
import type { Operation } from '../../operation.js';
import { actionKey } from '../../route-keys.js';
import { linkEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { ActionIdParams, LinkResponse } from '../../wire-schemas.js';

/**
 * GET /api/machineactions/{id}/getPackageUri (contract §2 row 8): a signed link to the
 * investigation package, once the action Succeeded (404 before; 400 InvalidInput for another
 * action type). Its own rate limit: 2 per minute, 120 per hour.
 */
export const getPackageUri: Operation = {
  name: 'GetPackageUri',
  method: 'GET',
  path: '/machineactions/:id/getPackageUri',
  permissions: PACKAGE_URI,
  rateLimit: RATE_LIMITS.packageUri,
  doc: {
    tag: TAGS.actions,
    summary: "Get a download link to a collection's investigation package",
    description:
      'Once the CollectInvestigationPackage action Succeeded (404 NotFound before; 400 InvalidInput for another action type). ' +
      'The link works without an Authorization header for 10 minutes (packageLinkSeconds).',
    params: ActionIdParams,
    response: { status: 200, description: 'The signed link.', schema: LinkResponse },
  },
  async handler(request, ctx) {
    const { id } = request.params as { id: string };
    const base = ctx.baseUrl();
    return { status: 200, body: linkEntity(base, await ctx.artifacts.packageLink(request.caller, actionKey(id), base)) };
  },
};
