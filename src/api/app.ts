import { randomUUID } from 'node:crypto';
import fastifyMultipart from '@fastify/multipart';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Caller } from '../domain/caller.js';
import { ApiError, ERRORS } from '../domain/errors.js';
import { authorize } from '../identity/authorize.js';
import { answerExpectation, capConnectionsPerSource, clientErrorHandler, serverOptions, type ConnectionLimits } from './connections.js';
import { toApiError } from './error-mapping.js';
import { checkRequestText, jsonBodyParser } from './input.js';
import type { Metrics } from '../metrics.js';
import { instrumentRoutes } from './metrics-endpoint.js';
import { operationRouteDoc, registerOpenApi } from './openapi.js';
import type { ApiContext, Operation, Reply } from './operation.js';
import { OPERATIONS } from './routes/index.js';
import { ERROR_JSON, ODATA_JSON, PLAIN_JSON, REQUEST_ID_HEADER, errorEnvelope } from './wire.js';

export { REQUEST_ID_HEADER };

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
  /** Timeouts and the per-source connection cap (docs/architecture.md, "Connections"). */
  connections: ConnectionLimits;
  /** Serve HTTPS with this certificate and key (PEM). */
  https?: { cert: Buffer; key: Buffer };
  /** Counts every request (by route pattern and status) and the connection cap's refusals. */
  metrics?: Metrics;
  /** Registers routes outside /api (token service, agent gateway) on the same instance. */
  extensions?: ((app: FastifyInstance) => void)[];
  /** Request ids (the emulator's seeded stream for a request's URL); default random GUIDs. */
  requestId?: (url: string) => string;
}

/** `/api/v1.0/...` is an alias of `/api/...` (contract §1), in any case and with doubled slashes. */
const V1_ALIAS = /^\/+api\/+v1\.0(?=[/?]|$)/i;
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
/** Routes whose path parameters and query string are client text (the token service checks its own). */
const CLIENT_TEXT_ROUTES = /^\/(api|agent|countermand)\//;
/**
 * Router limit on one path parameter: Fastify's default (100) turned machine keys of 101-256
 * characters into a 400; with this, any URL that fits in Node's header limit is routed and the
 * route says what the key is (route-keys.ts).
 */
const MAX_PARAM_LENGTH = 16 * 1024;
/** Error codes of a body stream whose client hung up. */
const HANG_UP_CODES = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * Every error leaves through here: the contract's envelope, `target` = the request id. The id
 * header is set here too, for the answers Fastify gives before any hook runs (malformed URLs).
 */
export function sendError(reply: FastifyReply, request: FastifyRequest, error: ApiError): FastifyReply {
  return reply
    .code(error.statusCode)
    .headers(error.headers)
    .header('content-type', ERROR_JSON)
    .header(REQUEST_ID_HEADER, request.id)
    .send(errorEnvelope(error, request.id));
}

/** A client that hung up mid-request: nobody is left to answer and nothing went wrong here. */
function clientHungUp(error: unknown, request: FastifyRequest): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && HANG_UP_CODES.has(code) && (request.raw.destroyed || request.raw.socket.destroyed);
}

function sendOData(reply: FastifyReply, result: Reply): FastifyReply {
  if (result.status === 204) return reply.code(204).send();
  reply.code(result.status).header('content-type', result.contentType ?? ODATA_JSON);
  // Countermand's own extensions answer plain JSON, not OData.
  if (result.contentType !== PLAIN_JSON) reply.header('odata-version', '4.0');
  return reply.send(result.payload ?? JSON.stringify(result.body));
}

const JSON_CONTENT_TYPE = /^application\/json\s*(;|$)/i;
const MULTIPART_CONTENT_TYPE = /^multipart\/form-data\s*;/i;

/** Builds the HTTP application without listening, so tests and the CLI start it their own way. */
export function buildApp(options: AppOptions): FastifyInstance {
  const { bodyLimit, connections } = options;
  const nodeServer = serverOptions(connections);
  const app = Fastify({
    // A TLS handshake gets the same time as the headers that follow it.
    ...(options.https
      ? { https: { ...options.https, ...nodeServer, handshakeTimeout: connections.headersTimeoutMs } }
      : { http: nodeServer }),
    requestTimeout: connections.requestTimeoutMs,
    keepAliveTimeout: connections.keepAliveTimeoutMs,
    clientErrorHandler: clientErrorHandler(connections, options.logger),
    // Fastify's 503 while closing has its own body; the onRequest hook below answers in the envelope.
    return503OnClosing: false,
    // Every route exists once, under /api; the alias is rewritten before routing.
    rewriteUrl: (request) => (request.url ?? '/').replace(V1_ALIAS, '/api'),
    loggerInstance: options.logger,
    genReqId: options.requestId ? (request) => options.requestId!(request.url ?? '/') : () => randomUUID(),
    requestIdHeader: false,
    bodyLimit,
    routerOptions: { caseSensitive: false, ignoreDuplicateSlashes: true, ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    frameworkErrors: (error, request, reply) => {
      request.log.info({ err: error }, 'rejected malformed request');
      sendError(reply, request, ERRORS.BadRequest('The request URL or headers are malformed.'));
    },
  });
  capConnectionsPerSource(app.server, connections.maxPerSource, options.logger, () => options.metrics?.rejected('connections'));
  app.server.on('checkExpectation', answerExpectation);
  app.decorateRequest('caller', null as unknown as Caller);
  // Only JSON is a body here; anything else is 415 (contract §1).
  app.removeContentTypeParser('text/plain');
  // Fastify's JSON parser behind a strict UTF-8 decode, with depth and text checked (input.ts).
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBodyParser(parseJson));

  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // Before authentication: a request that arrives during shutdown is told so, in the envelope.
  app.addHook('onRequest', (_request, reply, done) => {
    if (!closing) return done();
    reply.header('connection', 'close');
    done(ERRORS.ServiceUnavailable('The server is shutting down; try again shortly.'));
  });
  // After authentication, before the body is read: path parameters and the query string.
  app.addHook('preParsing', (request, _reply, payload, done) => {
    try {
      if (CLIENT_TEXT_ROUTES.test(request.routeOptions.url ?? '')) checkRequestText(request);
      done(null, payload);
    } catch (error) {
      done(error as Error);
    }
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    done(null, payload);
  });
  app.setErrorHandler((error, request, reply) => {
    if (clientHungUp(error, request)) {
      // Not a failure: the socket is gone, so there is nothing to answer.
      request.log.debug({ reason: (error as { code?: string }).code }, 'client hung up before the request was complete');
      reply.hijack();
      return;
    }
    const apiError = toApiError(error, bodyLimit);
    if (apiError.statusCode >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ code: apiError.code, reason: apiError.message }, 'request rejected');
    return sendError(reply, request, apiError);
  });
  const unmatched = options.metrics?.route('(unmatched)');
  app.setNotFoundHandler((request, reply) => {
    // A 404 of no route: counted here, as no route's hooks run for it.
    unmatched?.observe(request.method, 404, reply.elapsedTime / 1000);
    sendError(reply, request, ERRORS.NotFound('No HTTP resource was found that matches the request URI.'));
  });
  // Both learn of routes as they are declared: in place before the first one.
  if (options.metrics) instrumentRoutes(app, options.metrics);
  registerOpenApi(app, () => declareRoutes(app, options));
  return app;
}

/** Where an operation is mounted: under /api, or under the extensions' root. */
function operationUrl(operation: Operation): string {
  return `${operation.root ?? '/api'}${operation.path}`;
}

/** Every route: the /api operations, their 405 siblings, and the extensions. */
function declareRoutes(app: FastifyInstance, options: AppOptions): void {
  const { ctx, authenticator, limiter } = options;
  const methodsByUrl = new Map<string, Set<string>>();
  const register = (instance: FastifyInstance, operation: Operation, url: string) =>
    instance.route({
      method: operation.method,
      url,
      schema: operation.body ? { body: operation.body } : {},
      // openapi: the route's documentation; operation: read by the emulator's journal and quota report.
      config: { openapi: operationRouteDoc(operation), operation: operation.name },
      onRequest: async (request) => {
        request.caller = await authenticator.authenticate(request);
        if (operation.permissions) authorize(request.caller, operation.permissions);
        await limiter?.check(request.caller, operation);
      },
      ...(operation.body || operation.multipart
        ? {
            preValidation: async (request: FastifyRequest) => {
              const contentType = request.headers['content-type'];
              if (operation.multipart) {
                if (!contentType || !MULTIPART_CONTENT_TYPE.test(contentType)) throw ERRORS.UnsupportedMediaType(contentType, 'multipart/form-data');
              } else if (!contentType || !JSON_CONTENT_TYPE.test(contentType)) throw ERRORS.UnsupportedMediaType(contentType);
            },
          }
        : {}),
      handler: async (request, reply) => {
        const result = await operation.handler(request, ctx, reply);
        return result ? sendOData(reply, result) : reply;
      },
    });
  // Multipart bodies exist only where an operation reads one (the library upload): the parser
  // is registered in a scope of its own, so every other route stays JSON-only (contract §1).
  const multipart = OPERATIONS.filter((o) => o.multipart);
  app.register(async (scope) => {
    await scope.register(fastifyMultipart);
    for (const operation of multipart) register(scope, operation, operationUrl(operation));
  });
  for (const operation of OPERATIONS) {
    const url = operationUrl(operation);
    if (!operation.multipart) register(app, operation, url);
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
      config: { openapi: false },
      onRequest: async (request) => {
        throw ERRORS.MethodNotAllowed(request.method, allow);
      },
      handler: async () => undefined,
    });
  }
  for (const extend of options.extensions ?? []) extend(app);
}
