import { readFileSync } from 'node:fs';
import fastifySwagger, { formatParamUrl, type FastifyDynamicSwaggerOptions } from '@fastify/swagger';
import fastifySwaggerUi, { type FastifySwaggerUiOptions } from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import { Type, type TSchema } from 'typebox';
import { RATE_LIMITS, type RateLimitPolicy } from '../domain/rate-limits.js';
import {
  MDE_SECURITY,
  SECURITY_SCHEMES,
  TAG_DESCRIPTIONS,
  TAG_GROUPS,
  TAGS,
  errorResponse,
  requestIdHeader,
  retryAfter,
  type ResponseDoc,
  type RouteDoc,
} from '../route-docs.js';
import type { Operation } from './operation.js';
import { ODATA_JSON } from './wire.js';

/**
 * The OpenAPI 3.1 document of every route (GET /openapi.json) and its interactive docs (/docs,
 * swagger-ui served from the package, nothing fetched from elsewhere).
 *
 * Each route says how the document shows it in its `config.openapi` (a RouteDoc), or in Fastify's
 * own schema keys (`summary`, `tags`, `response`), or, for routes a plugin registers without
 * taking route options (swagger-ui, static files), through describeRoutes() on the plugin's
 * scope (docs/openapi.md says which to use). The RouteDoc is
 * documentation only: its response, params and query schemas are never given to Fastify, so
 * they change neither validation nor how a response is serialised (handlers write their own
 * bytes). @fastify/swagger builds the document from the routes it sees registered, so a route
 * without documentation still appears in it, without a summary, and
 * test/api/openapi.test.ts fails on it.
 */

/** The errors every /api operation can answer with. */
const API_ERRORS: Readonly<Record<number, ResponseDoc>> = {
  400: errorResponse('A malformed key, query or body: BadRequest, ODataError, InvalidInput, InvalidRequestBody, MissingRequiredParameter, ActiveRequestAlreadyExists.'),
  401: errorResponse('Unauthorized: no token, or one that is malformed, expired or untrusted.'),
  403: errorResponse('Forbidden: the token lacks every permission the operation accepts.'),
  404: errorResponse('NotFound (an action, alert, investigation or route) or ResourceNotFound (a machine).'),
  429: errorResponse('TooManyRequests: a rate limit (contract §8).', retryAfter),
};
const BODY_ERRORS: Readonly<Record<number, ResponseDoc>> = {
  413: errorResponse('The JSON body is larger than the limit (1 MiB by default).'),
  415: errorResponse('The body is not application/json.'),
};

function limits(policy: RateLimitPolicy): string {
  return policy.map((w) => `${w.points} per ${w.seconds === 60 ? 'minute' : w.seconds === 3600 ? 'hour' : `${w.seconds} s`}`).join(', ');
}

/** The RouteDoc of an /api operation: its own doc, the permissions and limits it has, and the errors. */
export function operationRouteDoc(operation: Operation): RouteDoc {
  const { doc } = operation;
  const permissions = operation.permissions
    ? `Application permissions (any one): ${operation.permissions.app.join(', ')}. Delegated scopes (any one): ` +
      `${operation.permissions.delegated.join(', ')}, with the user's role permission "${operation.permissions.role}".`
    : '';
  const description = [doc.description, permissions, `Rate limit per caller: ${limits(operation.rateLimit ?? RATE_LIMITS.default)}.`]
    .filter(Boolean)
    .join('\n\n');
  return {
    tags: [doc.tag],
    summary: doc.summary,
    description,
    operationId: operation.name,
    ...(doc.path ? { path: `${operation.root ?? '/api'}${doc.path}` } : {}),
    ...(doc.params ? { params: doc.params } : {}),
    ...(doc.query ? { querystring: doc.query } : {}),
    ...(doc.body ? { body: doc.body } : {}),
    responses: {
      [doc.response.status]: {
        description: doc.response.description,
        ...(doc.response.schema ? { schema: doc.response.schema, contentType: doc.response.contentType ?? ODATA_JSON } : {}),
        // Countermand's own extensions are not OData.
        headers: operation.root
          ? requestIdHeader
          : { ...requestIdHeader, 'odata-version': { description: 'The OData version: 4.0.', schema: Type.Literal('4.0') } },
      },
      ...API_ERRORS,
      ...(operation.body ? BODY_ERRORS : {}),
    },
    security: MDE_SECURITY,
  };
}

/**
 * What the document makes of one registered route. `path` is set where the document's path is
 * not the route pattern's: @fastify/swagger reads parentheses in a pattern as a regular
 * expression, so such paths are put in place after it has built the document.
 */
type Described =
  | { kind: 'documented'; path: string | null; schema: FastifySchema }
  | { kind: 'hidden' }
  | { kind: 'undocumented' };

const PATH_KEY = 'x-countermand-path';

const DOCS_PREFIX = '/docs';

/** The interactive docs' own routes (registered by @fastify/swagger-ui, which hides them), by URL. */
const DOCS_ROUTES: Readonly<Record<string, RouteDoc>> = {
  [DOCS_PREFIX]: page('The interactive API documentation (swagger-ui), served from the package.'),
  [`${DOCS_PREFIX}/static/index.html`]: {
    tags: [TAGS.docs],
    summary: 'Redirects to the documentation page',
    responses: { 302: { description: 'To /docs/.' } },
  },
  [`${DOCS_PREFIX}/static/swagger-initializer.js`]: asset('The script that starts swagger-ui on this document.'),
  [`${DOCS_PREFIX}/static/*`]: {
    tags: [TAGS.docs],
    summary: "swagger-ui's files (scripts, styles, icons)",
    params: Type.Object({ file: Type.String({ description: 'The file name, e.g. swagger-ui-bundle.js.' }) }),
    path: `${DOCS_PREFIX}/static/{file}`,
    responses: { 200: { description: 'The file.' }, 404: { description: 'No such file.' } },
  },
  [`${DOCS_PREFIX}/json`]: {
    tags: [TAGS.docs],
    summary: 'This OpenAPI document (the one swagger-ui loads)',
    responses: { 200: { description: 'The same document as /openapi.json.', schema: Type.Object({}), contentType: 'application/json; charset=utf-8' } },
  },
  [`${DOCS_PREFIX}/yaml`]: {
    tags: [TAGS.docs],
    summary: 'This OpenAPI document as YAML',
    responses: { 200: { description: 'The same document as /openapi.json, in YAML.', schema: Type.String(), contentType: 'application/x-yaml' } },
  },
};

function page(summary: string): RouteDoc {
  return { tags: [TAGS.docs], summary, responses: { 200: { description: 'An HTML page.', schema: Type.String(), contentType: 'text/html; charset=utf-8' } } };
}
function asset(summary: string): RouteDoc {
  return { tags: [TAGS.docs], summary, responses: { 200: { description: 'A script.', schema: Type.String(), contentType: 'application/javascript; charset=utf-8' } } };
}

function toSwaggerSchema(route: RouteOptions, doc: RouteDoc): FastifySchema {
  const response: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(doc.responses)) {
    response[status] = {
      description: r.description,
      // Fastify's content type for an object a handler returns, unless the route says another.
      ...(r.schema ? { content: { [r.contentType ?? 'application/json; charset=utf-8']: { schema: r.schema } } } : { type: 'null' }),
      ...(r.headers ? { headers: Object.fromEntries(Object.entries(r.headers).map(([k, h]) => [k, { ...h.schema, description: h.description }])) } : {}),
    };
  }
  const body = doc.body?.schema ?? route.schema?.body;
  return {
    tags: doc.tags,
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    ...(doc.operationId ? { operationId: doc.operationId } : {}),
    ...((doc.params ?? route.schema?.params) ? { params: doc.params ?? route.schema?.params } : {}),
    ...((doc.querystring ?? route.schema?.querystring) ? { querystring: doc.querystring ?? route.schema?.querystring } : {}),
    ...(body ? { body: doc.body?.description ? { ...body, description: doc.body.description } : body } : {}),
    ...(doc.body ? { consumes: [doc.body.contentType] } : {}),
    response,
    ...(doc.security ? { security: doc.security } : {}),
  } as FastifySchema;
}

/** Schema keys that make a route documented by its own Fastify schema (the control API). */
const isSelfDocumented = (schema: FastifySchema | undefined): schema is FastifySchema =>
  !!schema && !schema.hide && typeof schema.summary === 'string' && !!schema.tags?.length && !!schema.response;

/**
 * Documents the routes a plugin registers in `scope` (and its children) from here on, for
 * plugins that take no route options: `describe` gives each one its RouteDoc (a `path` with a
 * parameter lets many routes share one operation, e.g. every file of a bundle), or false for a
 * generated 405 sibling. A route that already carries `config.openapi` keeps it; one that
 * `describe` returns undefined for stays undocumented, and the completeness test names it.
 * Register the plugin inside a scope of its own so that nothing else is described by accident.
 */
export function describeRoutes(scope: FastifyInstance, describe: (route: RouteOptions) => RouteDoc | false | undefined): void {
  scope.addHook('onRoute', (route) => {
    if (route.config?.openapi !== undefined) return;
    const doc = describe(route);
    // The document and the inventory read the route's options when they are asked, after this.
    if (doc !== undefined) route.config = { ...route.config, openapi: doc };
  });
}

function describe(route: RouteOptions): Described {
  const doc = route.config?.openapi;
  if (doc === false) return { kind: 'hidden' };
  if (doc) return { kind: 'documented', path: doc.path ?? null, schema: toSwaggerSchema(route, doc) };
  if (isSelfDocumented(route.schema)) return { kind: 'documented', path: null, schema: route.schema };
  return { kind: 'undocumented' };
}

/**
 * Gives the undocumented route a place in the document all the same (so it is listed), marked
 * so that the completeness test names it.
 */
function transform({ route }: { route: RouteOptions }): { schema: FastifySchema; url: string } {
  const described = describe(route);
  if (described.kind === 'hidden') return { schema: { hide: true }, url: route.url };
  if (described.kind === 'undocumented') return { schema: { ...(route.schema ?? {}), hide: false, 'x-undocumented': true } as FastifySchema, url: route.url };
  const schema = described.path ? ({ ...described.schema, [PATH_KEY]: described.path } as FastifySchema) : described.schema;
  return { schema, url: route.url };
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/**
 * Moves the operations whose path the route pattern could not say to that path, and drops the
 * HEAD twins of GET operations (HTTP gives every GET one; @fastify/swagger lists them where a
 * route declares both methods).
 */
function relocate(document: Record<string, unknown>): void {
  const paths = document.paths as Record<string, Record<string, Record<string, unknown> | undefined>>;
  const moved = new Set<Record<string, unknown>>();
  for (const [pattern, item] of Object.entries(paths)) {
    if (item.get && item.head) delete item.head;
    for (const method of METHODS) {
      const operation = item[method];
      const path = operation?.[PATH_KEY];
      if (typeof path !== 'string') continue;
      moved.add(operation!);
      delete item[method];
      (paths[path] ??= {})[method] = operation;
    }
    if (!METHODS.some((m) => item[m])) delete paths[pattern];
  }
  // One operation object may serve several methods: the marker goes once all are moved.
  for (const operation of moved) delete operation[PATH_KEY];
}

/** A route as the server registered it, and where the document shows it. */
export interface RouteInventoryEntry {
  methods: string[];
  url: string;
  /** `GET /api/machines/{id}`; null for generated routes the document leaves out. */
  documentedAs: string[] | null;
  /** The route has documentation (not only a place in the document). */
  documented: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered, and its place in the OpenAPI document (for the completeness test). */
    routeInventory(): RouteInventoryEntry[];
  }
}


/**
 * Schemas with a `title` (wire-schemas.ts and the others) become named components: clients
 * generated from the document get a MachineAction type, not an inline one per operation. A title
 * two different schemas share stays inline.
 */
function hoistNamedSchemas(document: Record<string, unknown>): Record<string, unknown> {
  const found = new Map<string, { schema: unknown; text: string } | null>();
  const visit = (node: unknown, inSchema: boolean, act: (schema: Record<string, unknown>, title: string) => unknown): unknown => {
    if (Array.isArray(node)) return node.map((n) => visit(n, inSchema, act));
    if (typeof node !== 'object' || node === null) return node;
    const copy: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) copy[key] = visit(value, inSchema || key === 'schema', act);
    const title = (node as { title?: unknown }).title;
    return inSchema && typeof title === 'string' ? act(copy, title) : copy;
  };
  // First pass: which titles name one schema only.
  visit(document, false, (schema, title) => {
    const text = JSON.stringify(schema);
    const seen = found.get(title);
    if (seen === undefined) found.set(title, { schema, text });
    else if (seen !== null && seen.text !== text) found.set(title, null);
    return schema;
  });
  const components: Record<string, unknown> = {};
  const out = visit(document, false, (schema, title) => {
    if (!found.get(title)) return schema;
    components[title] ??= schema;
    return { $ref: `#/components/schemas/${title}` };
  }) as Record<string, unknown>;
  const existing = (out.components as { schemas?: Record<string, unknown> } | undefined) ?? {};
  out.components = { ...existing, schemas: { ...(existing.schemas ?? {}), ...components } };
  return out;
}

function packageVersion(): string {
  // src/api and dist/api are both two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * Strict for the docs page: only this server's own scripts, styles and images. swagger-ui sets
 * styles through the DOM (allowed) and needs data: images for its icons.
 */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self' data:; " +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const swaggerUiOptions: FastifySwaggerUiOptions = {
  routePrefix: DOCS_PREFIX,
  // The page's own assets only; swagger-ui's online validator stays off. No top bar: it
  // would load other documents by URL, and its logo is an inline style the CSP refuses.
  uiConfig: { validatorUrl: null, deepLinking: true, tryItOutEnabled: false, layout: 'BaseLayout' },
  staticCSP: DOCS_CSP,
  theme: { title: 'Countermand API' },
};

function swaggerOptions(): FastifyDynamicSwaggerOptions {
  return {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Countermand',
        version: packageVersion(),
        description:
          'Endpoint response actions that speak the Microsoft Defender for Endpoint machine-actions API. ' +
          'Every path under /api is also served under /api/v1.0, and paths match in any case. ' +
          'Success bodies of /api are OData JSON (odata.metadata=minimal); every error is the envelope ' +
          '{"error":{"code","message","target"}}, with target the request id.',
      },
      tags: Object.values(TAGS).map((name) => ({ name, description: TAG_DESCRIPTIONS[name] ?? name })),
      'x-tagGroups': TAG_GROUPS,
      components: { securitySchemes: SECURITY_SCHEMES },
    } as FastifyDynamicSwaggerOptions['openapi'],
    transform: transform as FastifyDynamicSwaggerOptions['transform'],
    transformObject: ({ openapiObject }: { openapiObject: Record<string, unknown> }) => {
      relocate(openapiObject);
      return hoistNamedSchemas(openapiObject);
    },
  } as FastifyDynamicSwaggerOptions;
}

/**
 * Registers the document's generator, /openapi.json and /docs. Call it before any route is
 * declared: the generator learns of routes as they are registered. `declareRoutes` runs once
 * the generator is in place.
 */
export function registerOpenApi(app: FastifyInstance, declareRoutes: () => void): void {
  const inventory: RouteOptions[] = [];
  // Synchronous, so it sees every route declared from here on, in whatever scope.
  app.addHook('onRoute', (route) => {
    inventory.push(route);
  });
  app.decorate('routeInventory', () =>
    inventory.map((route) => {
      const methods = ([] as string[]).concat(route.method);
      const described = describe(route);
      // The path @fastify/swagger gives a route pattern, unless the documentation names one.
      const path = (described.kind === 'documented' && described.path) || formatParamUrl(route.url);
      return {
        methods,
        url: route.url,
        documentedAs: described.kind === 'hidden' ? null : methods.map((m) => `${m} ${path}`),
        documented: described.kind === 'documented',
      };
    }),
  );
  app.register(fastifySwagger, swaggerOptions());
  app.register(async (scope) => {
    describeRoutes(scope, (route) => DOCS_ROUTES[route.url]);
    await scope.register(fastifySwaggerUi, swaggerUiOptions);
  });
  app.after(() => {
    app.get(
      '/openapi.json',
      {
        config: {
          openapi: {
            tags: [TAGS.docs],
            summary: 'This OpenAPI 3.1 document',
            description: 'Every route the server serves: the MDE API, the token endpoints, the agent protocol and the service routes.',
            operationId: 'GetOpenApiDocument',
            responses: { 200: { description: 'The document.', schema: Type.Object({}, { description: 'OpenAPI 3.1' }), contentType: 'application/json; charset=utf-8' } },
          },
        },
      },
      async (_request, reply) => reply.header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(app.swagger())),
    );
    declareRoutes();
  });
}
