import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { TAGS, type RouteDoc } from '../route-docs.js';

/**
 * `GET /health` (the process answers) and `GET /ready` (it can serve: the store is open, the
 * fixtures are loaded, the simulated agents are connected), for a CI job or an orchestrator to
 * wait on. Outside /api and the control API, unauthenticated, and cheap: no store round trip.
 */
export interface ReadinessCheck {
  name: string;
  /** Null when ready; else what is still awaited. */
  waiting(): string | null;
}

const Health = Type.Object({ status: Type.Literal('live') });
const Ready = Type.Object({
  status: Type.Enum(['ready', 'not ready']),
  checks: Type.Record(Type.String(), Type.Enum(['ready', 'waiting'])),
  waitingFor: Type.Array(Type.String()),
});

const JSON_TYPE = 'application/json; charset=utf-8';

const healthDoc: RouteDoc = {
  tags: [TAGS.service],
  summary: 'Liveness: the process answers',
  description: 'Unauthenticated and cheap (no store round trip), for a CI job or an orchestrator (docs/emulator.md, "/health and /ready").',
  operationId: 'GetHealth',
  responses: { 200: { description: 'Live.', schema: Health } },
};
const readyDoc: RouteDoc = {
  tags: [TAGS.service],
  summary: 'Readiness: the store is open, the fixtures loaded, the simulated agents connected',
  description: 'Unauthenticated; 503 names what it still waits for (docs/emulator.md, "/health and /ready").',
  operationId: 'GetReady',
  responses: { 200: { description: 'Ready to serve.', schema: Ready }, 503: { description: 'Not ready yet: `waitingFor` says what for.', schema: Ready } },
};

export function registerHealthRoutes(app: FastifyInstance, checks: readonly ReadinessCheck[]): void {
  app.get('/health', { schema: { response: { 200: Health } }, config: { openapi: healthDoc } }, async (_request, reply) =>
    reply.header('content-type', JSON_TYPE).header('cache-control', 'no-store').send(JSON.stringify({ status: 'live' })),
  );
  app.get('/ready', { schema: { response: { 200: Ready, 503: Ready } }, config: { openapi: readyDoc } }, async (_request, reply) => {
    const waitingFor: string[] = [];
    const states: Record<string, 'ready' | 'waiting'> = {};
    for (const check of checks) {
      const waiting = check.waiting();
      states[check.name] = waiting === null ? 'ready' : 'waiting';
      if (waiting !== null) waitingFor.push(waiting);
    }
    const ready = waitingFor.length === 0;
    return reply
      .code(ready ? 200 : 503)
      .header('content-type', JSON_TYPE)
      .header('cache-control', 'no-store')
      .send(JSON.stringify({ status: ready ? 'ready' : 'not ready', checks: states, waitingFor }));
  });
}
