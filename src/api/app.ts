import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Caller } from '../domain/caller.js';
import { ApiError, ERRORS } from '../domain/errors.js';
import { authorize } from '../identity/authorize.js';
import { toApiError } from './error-mapping.js';
import type { ApiContext, Operation, Reply } from './operation.js';
import { OPERATIONS } from './routes/index.js';
import { ERROR_JSON, ODATA_JSON } from './wire.js';

/** Establishes the caller of an /api request, or throws 401 (identity/ implements it). */
export interface Authenticator {
  authenticate(request: FastifyRequest): Promise<Caller>;
}

/** Checked after authorisation, before the body is read (identity/ implements it). */
export interface RequestLimiter {
  check(caller: Caller, operation: Operation): Promise<void>;
}

export interface AppOptions {
  ctx: ApiContext;
  authenticator: Authenticator;
  limiter?: RequestLimiter;
  logger: FastifyBaseLogger;
  /** Largest accepted JSON body in bytes (contract §1: 1 MiB). */
  bodyLimit: number;
  /** Serve HTTPS with this certificate and key (PEM). */
  https?: { cert: Buffer; key: Buffer };
  /** Registers routes outside /api (token service, agent gateway) on the same instance. */
  extensions?: ((app: FastifyInstance) => void)[];
}

/** `/api/v1.0/...` is an alias of `/api/...` (contract §1), in any case and with doubled slashes. */
const V1_ALIAS = /^\/+api\/+v1\.0(?=[/?]|$)/i;
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export const REQUEST_ID_HEADER = 'request-id';

/** Every error leaves through here: the contract's envelope, `target` = the request id. */
export function sendError(reply: FastifyReply, request: FastifyRequest, error: ApiError): FastifyReply {
  return reply
    .code(error.statusCode)
    .headers(error.headers)
    .header('content-type', ERROR_JSON)
    .send(JSON.stringify({ error: { code: error.code, message: error.message, target: request.id } }));
}

function sendOData(reply: FastifyReply, result: Reply): FastifyReply {
  return reply
    .code(result.status)
    .header('content-type', ODATA_JSON)
    .header('odata-version', '4.0')
    .send(JSON.stringify(result.body));
}

const JSON_CONTENT_TYPE = /^application\/json\s*(;|$)/i;

/** Builds the HTTP application without listening, so tests and the CLI start it their own way. */
export function buildApp(options: AppOptions): FastifyInstance {
  const { ctx, authenticator, limiter, bodyLimit } = options;
  const app = Fastify({
    ...(options.https ? { https: options.https } : {}),
    // Every route exists once, under /api; the alias is rewritten before routing.
    rewriteUrl: (request) => (request.url ?? '/').replace(V1_ALIAS, '/api'),
    loggerInstance: options.logger,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    bodyLimit,
    routerOptions: { caseSensitive: false, ignoreDuplicateSlashes: true, ignoreTrailingSlash: true },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    frameworkErrors: (error, request, reply) => {
      request.log.info({ err: error }, 'rejected malformed request');
      sendError(reply, request, ERRORS.BadRequest('The request URL or headers are malformed.'));
    },
  });
  app.decorateRequest('caller', null as unknown as Caller);
  // Only JSON is a body here; anything else is 415 (contract §1).
  app.removeContentTypeParser('text/plain');

  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    done(null, payload);
  });
  app.setErrorHandler((error, request, reply) => {
    const apiError = toApiError(error, bodyLimit);
    if (apiError.statusCode >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ code: apiError.code, reason: apiError.message }, 'request rejected');
    return sendError(reply, request, apiError);
  });
  app.setNotFoundHandler((request, reply) => {
    sendError(reply, request, ERRORS.NotFound('No HTTP resource was found that matches the request URI.'));
  });

  const methodsByUrl = new Map<string, Set<string>>();
  for (const operation of OPERATIONS) {
    const url = `/api${operation.path}`;
    app.route({
      method: operation.method,
      url,
      schema: operation.body ? { body: operation.body } : {},
      onRequest: async (request) => {
        request.caller = await authenticator.authenticate(request);
        if (operation.permissions) authorize(request.caller, operation.permissions);
        await limiter?.check(request.caller, operation);
      },
      ...(operation.body
        ? {
            preValidation: async (request: FastifyRequest) => {
              const contentType = request.headers['content-type'];
              if (!contentType || !JSON_CONTENT_TYPE.test(contentType)) throw ERRORS.UnsupportedMediaType(contentType);
            },
          }
        : {}),
      handler: async (request, reply) => sendOData(reply, await operation.handler(request, ctx, reply)),
    });
    const methods = methodsByUrl.get(url) ?? new Set<string>();
    methods.add(operation.method);
    if (operation.method === 'GET') methods.add('HEAD');
    methodsByUrl.set(url, methods);
  }
  // A known path with another method: 405 with Allow (contract §1).
  for (const [url, methods] of methodsByUrl) {
    const allow = [...methods];
    app.route({
      method: HTTP_METHODS.filter((m) => !methods.has(m)),
      url,
      onRequest: async (request) => {
        throw ERRORS.MethodNotAllowed(request.method, allow);
      },
      handler: async () => undefined,
    });
  }
  for (const extend of options.extensions ?? []) extend(app);
  return app;
}
