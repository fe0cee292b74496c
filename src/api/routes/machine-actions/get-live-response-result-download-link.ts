import { ERRORS } from '../../../domain/errors.js';
import { LIVE_RESPONSE_RESULT } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { actionKey } from '../../route-keys.js';
import { linkEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { LinkResponse, ResultIndexParams } from '../../wire-schemas.js';

/** The OData function call as clients send it, parentheses and `=` raw (or percent-encoded). */
const FUNCTION_CALL = /^GetLiveResponseResultDownloadLink\(index=(\d{1,9})\)$/i;

/**
 * GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n}) (contract §2 row 14):
 * a signed link, valid 30 minutes, to the result of a completed RunScript or GetFile command.
 * The last segment is an OData function call, so the route takes the whole segment and reads it
 * here; any other segment under an action is an unknown route (404).
 */
export const getLiveResponseResultDownloadLink: Operation = {
  name: 'GetLiveResponseResultDownloadLink',
  method: 'GET',
  path: '/machineactions/:id/:function',
  permissions: LIVE_RESPONSE_RESULT,
  doc: {
    tag: TAGS.actions,
    summary: "Get a download link to a live-response command's result",
    description:
      'For a Completed RunScript (its JSON {script_name, exit_code, script_output, script_errors}) or GetFile (the file). ' +
      'The link works without an Authorization header for 30 minutes (liveResponseLinkSeconds) and can be asked for again.',
    path: '/machineactions/{id}/GetLiveResponseResultDownloadLink(index={index})',
    params: ResultIndexParams,
    response: { status: 200, description: 'The signed link.', schema: LinkResponse },
  },
  async handler(request, ctx) {
    const params = request.params as { id: string; function: string };
    const call = FUNCTION_CALL.exec(params.function);
    if (!call) throw ERRORS.NotFound('No HTTP resource was found that matches the request URI.');
    const base = ctx.baseUrl();
    const url = await ctx.artifacts.resultLink(request.caller, actionKey(params.id), Number(call[1]), base);
    return { status: 200, body: linkEntity(base, url) };
  },
};
