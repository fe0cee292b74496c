import type {} from 'fastify';
import { Type, type TSchema } from 'typebox';
import { ERROR_JSON, REQUEST_ID_HEADER } from './api/wire.js';
import { ErrorEnvelope } from './api/wire-schemas.js';

/**
 * How a route appears in the OpenAPI document (src/api/openapi.ts builds it): the RouteDoc each
 * route carries in `config.openapi`, the tags, the security schemes, and the error answers.
 * Documentation only: Fastify never sees these schemas, so they change neither validation nor
 * the bytes a route writes.
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * How the OpenAPI document shows this route; false for routes it leaves out (the generated 405
     * siblings, and the emulator's control API, which has a document of its own).
     */
    openapi?: RouteDoc | false;
  }
}

export interface ResponseDoc {
  description: string;
  /** The body; absent when there is none. */
  schema?: TSchema;
  contentType?: string;
  headers?: Record<string, { description: string; schema: TSchema }>;
}

export interface RouteDoc {
  tags: readonly string[];
  summary: string;
  description?: string;
  operationId?: string;
  /** The path as clients send it, where the route pattern differs (OData function calls). */
  path?: string;
  params?: TSchema;
  querystring?: TSchema;
  /** A body the route does not validate with Fastify's schema (forms, multipart); else the route's schema.body. */
  body?: { contentType: string; schema: TSchema; description?: string };
  responses: Readonly<Record<number, ResponseDoc>>;
  /** Security requirements; none (public) when absent. */
  security?: readonly Record<string, readonly string[]>[];
}

/** The tags, grouped by the surface they belong to (`x-tagGroups`). */
export const TAGS = {
  actions: 'Machine actions',
  machines: 'Machines',
  alerts: 'Alerts',
  investigations: 'Investigations',
  library: 'Library',
  downloads: 'Downloads',
  metadata: 'OData metadata',
  tokens: 'Tokens',
  agent: 'Agent protocol',
  service: 'Service',
  events: 'Events and history',
  actionCenter: 'Action Center',
  docs: 'Documentation',
} as const;

export const TAG_GROUPS = [
  {
    name: 'MDE API',
    description:
      "The Microsoft Defender for Endpoint machine-actions API as Countermand serves it: every path under /api is also served under /api/v1.0, and matches in any case.",
    tags: [TAGS.actions, TAGS.machines, TAGS.alerts, TAGS.investigations, TAGS.library, TAGS.downloads, TAGS.metadata, TAGS.tokens],
  },
  { name: 'Agent protocol', description: 'What the agent on each machine calls (docs/agent-protocol.md).', tags: [TAGS.agent] },
  {
    name: 'Service',
    description: "Countermand's own: metrics, health and readiness, the event stream and action history, the Action Center, and these documents.",
    tags: [TAGS.service, TAGS.events, TAGS.actionCenter, TAGS.docs],
  },
];

export const TAG_DESCRIPTIONS: Record<string, string> = {
  [TAGS.actions]: 'Response actions on machines: create, read, cancel (contract §2-§4).',
  [TAGS.machines]: 'Machines (contract §9).',
  [TAGS.alerts]: "Alerts raised from what agents find (contract §10).",
  [TAGS.investigations]: 'Automated investigations (contract §10).',
  [TAGS.library]: 'The live-response library: the files PutFile and RunScript name (contract §2 rows 17-19).',
  [TAGS.downloads]: 'Signed download links: live-response results and investigation packages, fetched without an Authorization header (docs/artifacts.md).',
  [TAGS.metadata]: 'The CSDL document that every @odata.context points at.',
  [TAGS.tokens]: 'OAuth 2.0 token endpoints at the server root, as MDE clients call them (contract §7).',
  [TAGS.agent]: 'Enrollment and the long-poll check-in of agents, with an agent credential.',
  [TAGS.service]: 'Prometheus metrics (docs/observability.md), /health and /ready (docs/emulator.md).',
  [TAGS.events]: "Every change of the machine actions the caller may see, as server-sent events, and an action's history (docs/action-center.md).",
  [TAGS.actionCenter]: 'The web UI and the files of its bundle (docs/action-center.md).',
  [TAGS.docs]: 'This document and the interactive documentation.',
};

export const SECURITY_SCHEMES = {
  mdeToken: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'An access token from POST /{tenant}/oauth2/v2.0/token (client credentials) or /{tenant}/oauth2/token.',
  },
  agentCredential: { type: 'http', scheme: 'bearer', description: 'The agent credential (cma_...) that enrollment issued.' },
  clientSecretBasic: { type: 'http', scheme: 'basic', description: 'client_secret_basic: the client id and secret, each form-url-encoded.' },
  metricsToken: { type: 'http', scheme: 'bearer', description: 'The configured metrics token (metricsToken, COUNTERMAND_METRICS_TOKEN).' },
} as const;

export const MDE_SECURITY = [{ mdeToken: [] }] as const;

export const requestIdHeader = { [REQUEST_ID_HEADER]: { description: 'The request id; error bodies carry it as error.target.', schema: Type.String({ format: 'uuid' }) } };

/** An answer in the error envelope (contract §6). */
export function errorResponse(description: string, extraHeaders: ResponseDoc['headers'] = {}): ResponseDoc {
  return { description, schema: ErrorEnvelope, contentType: ERROR_JSON, headers: { ...requestIdHeader, ...extraHeaders } };
}

export const retryAfter = { 'retry-after': { description: 'Seconds to wait before a call can succeed.', schema: Type.Integer({ minimum: 1 }) } };

