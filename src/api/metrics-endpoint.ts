import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { FastifyInstance, onResponseHookHandler } from 'fastify';
import { Type } from 'typebox';
import { ApiError, ERRORS } from '../domain/errors.js';
import type { Metrics } from '../metrics.js';
import { TAGS, errorResponse } from '../route-docs.js';
import { ERROR_JSON, REQUEST_ID_HEADER, errorEnvelope } from './wire.js';

/**
 * Where /metrics is served (docs/observability.md): on the API's listener only with the
 * configured metrics token; on a listener of its own (loopback by default) with the token when
 * one is configured, openly when none is.
 */

export const METRICS_PATH = '/metrics';

/** Counts every request of every route from here on (call before routes are declared). */
export function instrumentRoutes(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onRoute', (route) => {
    const series = metrics.route(route.url);
    const hook: onResponseHookHandler = (request, reply, done) => {
      series.observe(request.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    };
    route.onResponse = route.onResponse ? [...([] as onResponseHookHandler[]).concat(route.onResponse), hook] : [hook];
  });
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** A check of `Authorization: Bearer <token>` in constant time; null when no token is configured. */
function tokenCheck(token: string | null): ((authorization: string | undefined) => boolean) | null {
  if (!token) return null;
  const expected = digest(token);
  return (authorization) => {
    const given = authorization ? /^Bearer +(\S+)$/i.exec(authorization.trim())?.[1] : undefined;
    return given !== undefined && timingSafeEqual(digest(given), expected);
  };
}

const unauthorized = (authorization: string | undefined) =>
  new ApiError(
    'Unauthorized',
    401,
    authorization ? 'This is not the metrics token.' : 'Metrics need the metrics token: Authorization: Bearer <metrics token>.',
    { 'www-authenticate': 'Bearer realm="countermand-metrics"' },
  );

const metricsDoc = {
  tags: [TAGS.service],
  summary: 'Prometheus metrics of this node',
  description:
    'The Prometheus text format: actions created, started and finished, pickup and final-status times, agents, requests by route ' +
    'and status, 429s, 401s and token failures (docs/observability.md). Needs the metrics token (metricsToken); ' +
    'without one configured it is not served here (404), only on the metrics listener (metricsPort).',
  operationId: 'GetMetrics',
  responses: {
    200: { description: 'The metrics.', schema: Type.String(), contentType: 'text/plain; version=0.0.4; charset=utf-8' },
    401: errorResponse('Unauthorized: no metrics token, or a wrong one.'),
    404: errorResponse('No metrics token is configured: metrics are not served on this listener.'),
  },
  security: [{ metricsToken: [] }],
};

/** GET /metrics on the API's listener. */
export function registerMetricsRoute(app: FastifyInstance, metrics: Metrics, token: string | null): void {
  const allowed = tokenCheck(token);
  app.get(
    METRICS_PATH,
    {
      config: { openapi: metricsDoc },
      onRequest: async (request) => {
        if (!allowed) {
          throw ERRORS.NotFound(
            'Metrics are not served on this listener: configure metricsToken (COUNTERMAND_METRICS_TOKEN) to scrape them here, ' +
              'or metricsPort (COUNTERMAND_METRICS_PORT) for a listener of their own.',
          );
        }
        if (!allowed(request.headers.authorization)) throw unauthorized(request.headers.authorization);
      },
    },
    async (_request, reply) => {
      const { contentType, body } = await metrics.expose();
      return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
    },
  );
}

export interface MetricsListener {
  url: string;
  close(): Promise<void>;
}

/** The metrics on a listener of their own: GET /metrics and nothing else. */
export async function startMetricsListener(metrics: Metrics, options: { host: string; port: number; token: string | null }): Promise<MetricsListener> {
  const allowed = tokenCheck(options.token);
  const server: Server = createServer((request, response) => {
    const id = randomUUID();
    const fail = (error: ApiError) => {
      response.writeHead(error.statusCode, { ...error.headers, 'content-type': ERROR_JSON, [REQUEST_ID_HEADER]: id });
      response.end(errorEnvelope(error, id));
    };
    const path = (request.url ?? '/').split('?')[0];
    if (path !== METRICS_PATH) return fail(ERRORS.NotFound('This listener serves only GET /metrics.'));
    if (request.method !== 'GET' && request.method !== 'HEAD') return fail(ERRORS.MethodNotAllowed(request.method ?? '', ['GET', 'HEAD']));
    if (allowed && !allowed(request.headers.authorization)) return fail(unauthorized(request.headers.authorization));
    metrics.expose().then(
      ({ contentType, body }) => {
        response.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store', [REQUEST_ID_HEADER]: id });
        response.end(request.method === 'HEAD' ? undefined : body);
      },
      () => fail(ERRORS.InternalServerError()),
    );
  });
  // Scrapers keep their connection between scrapes; closing must not wait for them.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
