import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ArtifactsService } from '../../../artifacts/artifacts.js';
import { sendFile } from '../../../artifacts/download.js';
import { errorResponse, TAGS, type RouteDoc } from '../../../route-docs.js';
import { SignedLinkQuery } from '../../wire-schemas.js';
import { Type } from 'typebox';

const LinkParams = {
  tenantId: Type.String({ format: 'uuid', description: 'The tenant the link was made for.' }),
  actionId: Type.String({ format: 'uuid', description: 'The action.' }),
};

function downloadDoc(summary: string, operationId: string, params: Record<string, ReturnType<typeof Type.String>>, content: string): RouteDoc {
  return {
    tags: [TAGS.downloads],
    summary,
    description: 'The URL carries its own credential: download it without an Authorization header. Bytes are checked against their SHA-256 as they stream.',
    operationId,
    params: Type.Object(params),
    querystring: SignedLinkQuery,
    responses: {
      200: {
        description: 'The file, with Content-Disposition, Content-Digest and x-content-sha256.',
        schema: Type.String({ format: 'binary' }),
        contentType: content,
      },
      403: errorResponse('Forbidden: the link is not valid (altered, another tenant\'s, malformed) or has expired.'),
      404: errorResponse('NotFound: what the link names is no longer kept (retention).'),
    },
  };
}

/**
 * The signed download links of contract §2 rows 8 and 14, served to anyone holding one, without
 * an Authorization header: `/artifacts/v1/{tenant}/{action}/package` and
 * `/artifacts/v1/{tenant}/{action}/commands/{index}`, each with `?expires=...&sig=...`. A bad,
 * altered or expired link is refused in the API's envelope (403); any server node behind the
 * same database serves any link.
 */
export function registerDownloadRoutes(app: FastifyInstance, artifacts: ArtifactsService): void {
  const download = async (request: FastifyRequest, reply: FastifyReply, item: string) => {
    const { tenantId, actionId } = request.params as { tenantId: string; actionId: string };
    const { artifact, reader } = await artifacts.download({ tenantId, actionId, item }, request.query as Record<string, unknown>);
    return sendFile(reply, artifact, reader);
  };
  const packageDoc = downloadDoc('Download an investigation package', 'DownloadInvestigationPackage', LinkParams, 'application/gzip');
  app.get('/artifacts/v1/:tenantId/:actionId/package', { config: { openapi: packageDoc } }, (request, reply) => download(request, reply, 'package'));
  const resultDoc = downloadDoc(
    "Download a live-response command's result",
    'DownloadLiveResponseResult',
    { ...LinkParams, index: Type.String({ pattern: '^\\d{1,2}$', description: "The command's index." }) },
    'application/octet-stream',
  );
  app.get('/artifacts/v1/:tenantId/:actionId/commands/:index', { config: { openapi: resultDoc } }, (request, reply) =>
    download(request, reply, (request.params as { index: string }).index),
  );
}
