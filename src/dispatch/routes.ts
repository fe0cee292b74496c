import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type TSchema } from 'typebox';
import { ACTION_STATUSES, ACTION_TYPES, COMMAND_TYPES, type LiveResponseCommand } from '../domain/model.js';
import { TAGS, errorResponse, retryAfter, type RouteDoc } from '../route-docs.js';
import type { AgentGateway, AgentIdentity } from './gateway.js';
import { AGENT_API, type CheckinRequest, type EnrollRequest, type ProgressRequest, type ReportRequest } from './protocol.js';

/** The agent protocol's routes (docs/agent-protocol.md); errors use the API's envelope. */

const IpAddress = Type.Object({
  ipAddress: Type.String({ maxLength: 64 }),
  macAddress: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
  type: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
  operationalStatus: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
});
const IpAddresses = Type.Array(IpAddress, { maxItems: 64 });
const Short = Type.String({ maxLength: 256 });

const EnrollBody = Type.Object({
  enrollmentToken: Type.Optional(Type.String({ maxLength: 256 })),
  reenrollGrant: Type.Optional(Type.String({ maxLength: 256 })),
  machineId: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{40}$' })),
  machine: Type.Object({
    computerDnsName: Type.String({ minLength: 1, maxLength: 255 }),
    osPlatform: Type.Optional(Short),
    osVersion: Type.Optional(Short),
    osBuild: Type.Optional(Type.Integer()),
    version: Type.Optional(Short),
    osProcessor: Type.Optional(Short),
    osArchitecture: Type.Optional(Short),
    agentVersion: Type.Optional(Short),
    lastIpAddress: Type.Optional(Type.String({ maxLength: 64 })),
    ipAddresses: Type.Optional(IpAddresses),
  }),
});

const CheckinBody = Type.Object({
  running: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 1000 }),
  maxWaitSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 300 })),
  agentVersion: Type.Optional(Short),
  lastIpAddress: Type.Optional(Type.String({ maxLength: 64 })),
  ipAddresses: Type.Optional(IpAddresses),
});

const Time = Type.Union([Type.Number(), Type.Null()]);
const Commands = Type.Array(
  Type.Object({
    index: Type.Integer({ minimum: 0 }),
    startTime: Time,
    endTime: Time,
    commandStatus: Type.Enum(['Created', 'Completed', 'Failed']),
    errors: Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 32 }),
    command: Type.Object({
      type: Type.Enum(COMMAND_TYPES),
      params: Type.Array(Type.Object({ key: Type.String({ maxLength: 64 }), value: Type.String({ maxLength: 4096 }) }), { maxItems: 8 }),
    }),
  }),
  { maxItems: 50 },
);

const ProgressBody = Type.Object({ commands: Commands });
const ReportBody = Type.Object({
  reportId: Type.String({ minLength: 1, maxLength: 64 }),
  status: Type.Enum(['Succeeded', 'Failed']),
  errorHResult: Type.Integer({ minimum: -2147483648, maximum: 4294967295 }),
  troubleshootInfo: Type.Union([Type.String({ maxLength: 4096 }), Type.Null()]),
  commands: Type.Optional(Commands),
  detail: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

const ActionParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

// What the routes answer (protocol.ts), for the OpenAPI document only: handlers' objects are
// serialised as they are.
const Status = Type.Enum(ACTION_STATUSES);
const EnrollResponse = Type.Object(
  {
    tenantId: Type.String(),
    machineId: Type.String({ pattern: '^[0-9a-f]{40}$' }),
    agentToken: Type.String({ description: 'The agent credential: Authorization: Bearer <agentToken> on every other call.' }),
  },
  { title: 'EnrollResponse' },
);
const AgentAction = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    type: Type.Enum(ACTION_TYPES),
    status: Status,
    scope: Type.Union([Type.String(), Type.Null()]),
    sha1: Type.Union([Type.String(), Type.Null()]),
    comment: Type.Union([Type.String(), Type.Null()]),
    commands: Commands,
    resume: Type.Boolean({ description: 'InProgress but not listed as running: started before a restart.' }),
  },
  { title: 'AgentAction' },
);
const CheckinResponse = Type.Object(
  {
    actions: Type.Array(AgentAction, { description: 'To start (Pending) or resume (InProgress); delivered until started.' }),
    stop: Type.Array(Type.Object({ id: Type.String(), status: Status }), { description: 'Running actions that ended on the server: stop them.' }),
  },
  { title: 'CheckinResponse' },
);
const StartResponse = Type.Object(
  { status: Status, run: Type.Boolean({ description: 'Run it (it is InProgress); false when it ended meanwhile.' }) },
  { title: 'StartResponse' },
);
const ReportResponse = Type.Object(
  { status: Status, applied: Type.Boolean({ description: 'False when the action had already ended (the report is kept in its history only).' }) },
  { title: 'ReportResponse' },
);

const AGENT_SECURITY = [{ agentCredential: [] }] as const;
const agentErrors = {
  400: errorResponse('InvalidRequestBody, MissingRequiredParameter or InvalidInput.'),
  401: errorResponse('Unauthorized: no agent credential, or a revoked or unknown one.'),
  404: errorResponse("NotFound: no such action of the agent's machine."),
  429: errorResponse('TooManyRequests: the per-credential check-in limit.', retryAfter),
};

function agentDoc(summary: string, operationId: string, status: number, schema: TSchema, description: string, extra: Partial<RouteDoc> = {}): RouteDoc {
  return {
    tags: [TAGS.agent],
    summary,
    description,
    operationId,
    responses: { [status]: { description: summary, schema }, ...agentErrors },
    security: AGENT_SECURITY,
    ...extra,
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set on agent routes by their authentication hook. */
    agent: AgentIdentity;
  }
}

/** Told when a check-in begins (and, through the result, when it is answered): src/metrics.ts. */
export interface CheckinMetrics {
  checkinStarted(tenantId: string, machineId: string): () => void;
}

export function registerAgentRoutes(app: FastifyInstance, gateway: AgentGateway, metrics?: CheckinMetrics): void {
  app.decorateRequest('agent', null as unknown as AgentIdentity);
  // The credential is checked before the body is read, as on /api.
  const onRequest = async (request: FastifyRequest) => {
    request.agent = await gateway.authenticate(request.headers.authorization);
  };
  const agent = (request: FastifyRequest) => request.agent;

  app.post(
    `${AGENT_API}/enroll`,
    {
      schema: { body: EnrollBody },
      config: {
        openapi: agentDoc(
          'Enroll a machine, or re-attach the agent to one',
          'Enroll',
          201,
          EnrollResponse,
          'Proof: an enrollment token (a new machine), the machine\'s current credential (Authorization header) or a re-enroll grant. ' +
            'The proof is spent with the attach (docs/agent-protocol.md).',
          {
            security: [{}, ...AGENT_SECURITY],
            responses: {
              201: { description: 'Enrolled: the credential to use from now on.', schema: EnrollResponse },
              ...agentErrors,
              403: errorResponse('Forbidden: an enrollment token with a machineId, or a credential or grant for another machine.'),
              429: errorResponse('TooManyRequests: too many failed enrollments from this address.', retryAfter),
            },
          },
        ),
      },
    },
    async (request, reply) => {
    // An agent re-attaching with its current credential sends it as on every other call.
    const result = await gateway.enroll(request.body as EnrollRequest, request.ip, request.headers.authorization);
    return reply.code(201).send(result);
  });

  const checkinDoc = agentDoc(
    'Check in: wait for work (a long poll)',
    'Checkin',
    200,
    CheckinResponse,
    'Answers at once when the machine has actions to start or resume, or running actions that ended; otherwise waits until one does or the poll time is up.',
  );
  app.post(`${AGENT_API}/checkin`, { onRequest, schema: { body: CheckinBody }, config: { openapi: checkinDoc } }, async (request) => {
    const identity = agent(request);
    const answered = metrics?.checkinStarted(identity.tenantId, identity.machineId);
    const gone = new AbortController();
    const onClose = () => gone.abort();
    request.raw.socket.once('close', onClose);
    try {
      return await gateway.checkin(identity, request.body as CheckinRequest, gone.signal);
    } finally {
      request.raw.socket.off('close', onClose);
      answered?.();
    }
  });

  const startDoc = agentDoc('Acknowledge the start of an action', 'StartAction', 200, StartResponse, 'Pending -> InProgress; repeating it is harmless.');
  app.post(`${AGENT_API}/actions/:id/start`, { onRequest, schema: { params: ActionParams }, config: { openapi: startDoc } }, async (request) =>
    gateway.start(agent(request), (request.params as { id: string }).id),
  );

  const progressDoc = agentDoc('Report live-response command progress', 'ReportProgress', 200, StartResponse, 'While the action is InProgress.');
  app.post(`${AGENT_API}/actions/:id/progress`, { onRequest, schema: { params: ActionParams, body: ProgressBody }, config: { openapi: progressDoc } }, async (request) =>
    gateway.progress(agent(request), (request.params as { id: string }).id, request.body as ProgressRequest),
  );

  const reportDoc = agentDoc(
    "Report an action's outcome",
    'ReportOutcome',
    200,
    ReportResponse,
    'Ends the action unless it already ended (then the report is kept in its history). The same reportId twice is recorded once.',
  );
  app.post(`${AGENT_API}/actions/:id/report`, { onRequest, schema: { params: ActionParams, body: ReportBody }, config: { openapi: reportDoc } }, async (request) => {
    const body = request.body as ReportRequest;
    return gateway.report(agent(request), (request.params as { id: string }).id, {
      ...body,
      commands: body.commands as LiveResponseCommand[] | undefined,
    });
  });
}
