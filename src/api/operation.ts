import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TSchema } from 'typebox';
import type { Caller } from '../domain/caller.js';
import type { EndpointPermissions } from '../domain/permissions.js';
import type { RateLimitPolicy } from '../domain/rate-limits.js';
import type { ArtifactsService } from '../artifacts/artifacts.js';
import type { LibraryService } from '../artifacts/library.js';
import type { ActionChanges } from '../services/action-changes.js';
import type { ActionsService } from '../services/actions.js';
import type { AlertsService } from '../services/alerts.js';
import type { MachinesService } from '../services/machines.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every /api operation. */
    caller: Caller;
  }
  interface FastifyContextConfig {
    /** The contract operation an /api route serves (Operation.name). */
    operation?: string;
  }
}

/** What every operation handler may use. */
export interface ApiContext {
  actions: ActionsService;
  machines: MachinesService;
  alerts: AlertsService;
  library: LibraryService;
  artifacts: ArtifactsService;
  /** The server's public base URL, without a trailing slash (for @odata.context and links). */
  baseUrl(): string;
  /** Rows per page when the client gives no $top (contract §5: 10000). */
  pageSize: number;
  /** Whether cancel requires the permission matching the action's type (see docs). */
  cancelRequiresMatchingPermission: boolean;
  /** The event stream (docs/action-center.md): this node's streams and their bounds. */
  events: {
    changes: ActionChanges;
    heartbeatMs: number;
    streamsPerCaller: number;
    /** The emulator's clock, when the control API is on: tokens expire by it. */
    clock?: { now(): number; schedule(at: number, fire: () => void): () => void };
  };
}

export interface Reply {
  status: number;
  /** Absent for 204 No Content. */
  body?: unknown;
  /** The body already serialised; `body` is then unused. */
  payload?: string;
  /**
   * Instead of OData JSON: the CSDL of $metadata is XML; Countermand's own extensions answer
   * plain JSON (without OData's headers).
   */
  contentType?: string;
}

/**
 * How the OpenAPI document shows an operation (src/api/openapi.ts). Documentation only: the
 * handler writes the bytes, Fastify never sees these schemas.
 */
export interface OperationDoc {
  tag: string;
  summary: string;
  description?: string;
  /** The path under /api as clients send it, where the route pattern differs (OData function calls). */
  path?: string;
  params?: TSchema;
  query?: TSchema;
  /** A body the operation reads itself (the library's multipart form); JSON bodies come from `body`. */
  body?: { contentType: string; schema: TSchema; description?: string };
  /** The success answer; `contentType` defaults to OData JSON. */
  response: { status: number; description: string; schema?: TSchema; contentType?: string };
}

/** Where Countermand's own routes live, outside MDE's surface (docs/action-center.md). */
export const EXTENSIONS_ROOT = '/countermand/v1';

/**
 * One API operation (a row of contract §2, or one of Countermand's extensions). Registered under
 * /api and /api/v1.0 (extensions under EXTENSIONS_ROOT); paths match case-insensitively. `permissions` null means the handler authorises itself (cancel needs the
 * action's type first).
 */
export interface Operation {
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  /** Mounted under /api (MDE's surface) unless it is one of Countermand's own extensions. */
  root?: typeof EXTENSIONS_ROOT;
  path: string;
  permissions: EndpointPermissions | null;
  /** Contract §8; the default policy (100/min, 1500/h) when absent. */
  rateLimit?: RateLimitPolicy;
  body?: TSchema;
  doc: OperationDoc;
  /** The body is `multipart/form-data`, read by the handler as a stream (only the library upload). */
  multipart?: true;
  /** The answer, or null when the handler wrote it itself (the event stream). */
  handler(request: FastifyRequest, ctx: ApiContext, reply: FastifyReply): Promise<Reply | null>;
}
