import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type TSchema } from 'typebox';
import type { ArtifactsService } from '../artifacts/artifacts.js';
import { sendFile } from '../artifacts/download.js';
import type { AgentGateway, AgentIdentity } from './gateway.js';
import { errorResponse, TAGS, type RouteDoc } from '../route-docs.js';
import { AGENT_API, CONTENT_SHA256_HEADER, type LibraryLinkRequest, type LibraryLinkResponse, type UploadResponse } from './protocol.js';

/**
 * The agent protocol's file transfer (docs/agent-protocol.md, "Files"): library files down, command
 * results and investigation packages up. Every call carries the agent credential and concerns
 * one of its machine's InProgress actions. Uploads are raw bytes streamed to the blob store;
 * they are never parsed, so this scope takes any content type and the handlers check it.
 */

const ActionParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const ResultParams = Type.Object({ id: Type.String({ maxLength: 64 }), index: Type.String({ pattern: '^\\d{1,2}$' }) });
const LibraryParams = Type.Object({ actionId: Type.String({ maxLength: 64 }), fileName: Type.String({ maxLength: 1024 }) });
const LinkBody = Type.Object({ fileName: Type.String({ minLength: 1, maxLength: 1024 }) });

const LinkResponse = Type.Object(
  {
    link: Type.String({ description: 'A path on this server, valid for five minutes, with this agent\'s credential only.' }),
    fileName: Type.String(),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    size: Type.Integer({ minimum: 0 }),
    expiresAt: Type.Integer({ description: 'Epoch milliseconds.' }),
  },
  { title: 'LibraryLinkResponse' },
);
const UploadResponseSchema = Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }), size: Type.Integer({ minimum: 0 }) }, { title: 'UploadResponse' });
const Bytes = Type.String({ format: 'binary' });

const transferErrors = {
  400: errorResponse('InvalidInput: not a command with a result, not a live-response or collection action, or a digest that does not match.'),
  401: errorResponse('Unauthorized: no agent credential, or a revoked or unknown one.'),
  404: errorResponse("NotFound: no such action of the agent's machine, or a file its commands do not name."),
  409: errorResponse('Conflict: the action is not InProgress.'),
};

function transferDoc(summary: string, operationId: string, status: 200, schema: TSchema, extra: Partial<RouteDoc> = {}): RouteDoc {
  return {
    tags: [TAGS.agent],
    summary,
    operationId,
    responses: { [status]: { description: summary, schema }, ...transferErrors, ...(extra.responses ?? {}) },
    security: [{ agentCredential: [] }],
    ...(extra.description ? { description: extra.description } : {}),
    ...(extra.body ? { body: extra.body } : {}),
  };
}
const uploadDoc = (summary: string, operationId: string, contentType: string) =>
  transferDoc(summary, operationId, 200, UploadResponseSchema, {
    description: 'Raw bytes, streamed to storage; x-content-sha256 (optional) is checked. Sending the same bytes again is harmless.',
    body: { contentType, schema: Bytes },
    responses: {
      200: { description: 'Stored.', schema: UploadResponseSchema },
      413: errorResponse('RequestEntityTooLarge: over agentUploadMaxBytes.'),
      415: errorResponse('UnsupportedMediaType.'),
    },
  });

declare module 'fastify' {
  interface FastifyRequest {
    /** Set on file-transfer routes by their authentication hook. */
    transferAgent: AgentIdentity;
  }
}

export function registerTransferRoutes(app: FastifyInstance, gateway: AgentGateway, artifacts: ArtifactsService): void {
  app.register(async (scope) => {
    scope.decorateRequest('transferAgent', null as unknown as AgentIdentity);
    // Raw bodies pass through untouched (the handler streams them); JSON is still parsed as JSON.
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    const onRequest = async (request: FastifyRequest) => {
      request.transferAgent = await gateway.authenticate(request.headers.authorization);
    };
    const action = (request: FastifyRequest, id: string) => gateway.ownAction(request.transferAgent, id);

    scope.post(`${AGENT_API}/actions/:id/library-link`, {
        onRequest,
        schema: { params: ActionParams, body: LinkBody },
        config: { openapi: transferDoc('Get a link to a library file its running action names', 'GetLibraryLink', 200, LinkResponse) },
      }, async (request) => {
      const { id } = request.params as { id: string };
      const { fileName } = request.body as LibraryLinkRequest;
      return (await artifacts.libraryLink(request.transferAgent, await action(request, id), fileName)) satisfies LibraryLinkResponse;
    });

    scope.get(`${AGENT_API}/library/:actionId/:fileName`, {
        onRequest,
        schema: { params: LibraryParams },
        config: {
          openapi: {
            ...transferDoc('Fetch a library file by its link', 'GetLibraryFile', 200, Bytes),
            querystring: Type.Object({ expires: Type.Integer(), sig: Type.String() }),
            responses: { 200: { description: 'The file.', schema: Bytes, contentType: 'application/octet-stream' }, ...transferErrors, 403: errorResponse('Forbidden: the link is not valid or has expired.') },
          },
        },
      }, async (request, reply) => {
      const { actionId, fileName } = request.params as { actionId: string; fileName: string };
      const found = await artifacts.openLibraryFile(request.transferAgent, await action(request, actionId), fileName, request.query as Record<string, unknown>);
      return sendFile(reply, { fileName: found.file.fileName, contentType: 'application/octet-stream', sha256: found.file.sha256 }, found.reader);
    });

    const upload = async (request: FastifyRequest, reply: FastifyReply, id: string, index: number | null) => {
      const length = request.headers['content-length'];
      const digest = request.headers[CONTENT_SHA256_HEADER];
      const stored = await artifacts.receive(request.transferAgent, await action(request, id), index, {
        source: request.raw,
        contentType: request.headers['content-type'],
        contentLength: length === undefined ? undefined : Number(length),
        sha256: typeof digest === 'string' ? digest : undefined,
      });
      return reply.code(200).send(stored satisfies UploadResponse);
    };
    scope.put(
      `${AGENT_API}/actions/:id/commands/:index/result`,
      { onRequest, schema: { params: ResultParams }, config: { openapi: uploadDoc("Upload a command's result", 'UploadCommandResult', 'application/octet-stream') } }, (request, reply) => {
      const { id, index } = request.params as { id: string; index: string };
      return upload(request, reply, id, Number(index));
    });
    scope.put(
      `${AGENT_API}/actions/:id/package`,
      { onRequest, schema: { params: ActionParams }, config: { openapi: uploadDoc('Upload the investigation package', 'UploadPackage', 'application/gzip') } },
      (request, reply) => upload(request, reply, (request.params as { id: string }).id, null),
    );
  });
}
