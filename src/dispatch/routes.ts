import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { COMMAND_TYPES, type LiveResponseCommand } from '../domain/model.js';
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

declare module 'fastify' {
  interface FastifyRequest {
    /** Set on agent routes by their authentication hook. */
    agent: AgentIdentity;
  }
}

export function registerAgentRoutes(app: FastifyInstance, gateway: AgentGateway): void {
  app.decorateRequest('agent', null as unknown as AgentIdentity);
  // The credential is checked before the body is read, as on /api.
  const onRequest = async (request: FastifyRequest) => {
    request.agent = await gateway.authenticate(request.headers.authorization);
  };
  const agent = (request: FastifyRequest) => request.agent;

  app.post(`${AGENT_API}/enroll`, { schema: { body: EnrollBody } }, async (request, reply) => {
    // An agent re-attaching with its current credential sends it as on every other call.
    const result = await gateway.enroll(request.body as EnrollRequest, request.ip, request.headers.authorization);
    return reply.code(201).send(result);
  });

  app.post(`${AGENT_API}/checkin`, { onRequest, schema: { body: CheckinBody } }, async (request) => {
    const identity = agent(request);
    const gone = new AbortController();
    const onClose = () => gone.abort();
    request.raw.socket.once('close', onClose);
    try {
      return await gateway.checkin(identity, request.body as CheckinRequest, gone.signal);
    } finally {
      request.raw.socket.off('close', onClose);
    }
  });

  app.post(`${AGENT_API}/actions/:id/start`, { onRequest, schema: { params: ActionParams } }, async (request) =>
    gateway.start(agent(request), (request.params as { id: string }).id),
  );

  app.post(`${AGENT_API}/actions/:id/progress`, { onRequest, schema: { params: ActionParams, body: ProgressBody } }, async (request) =>
    gateway.progress(agent(request), (request.params as { id: string }).id, request.body as ProgressRequest),
  );

  app.post(`${AGENT_API}/actions/:id/report`, { onRequest, schema: { params: ActionParams, body: ReportBody } }, async (request) => {
    const body = request.body as ReportRequest;
    return gateway.report(agent(request), (request.params as { id: string }).id, {
      ...body,
      commands: body.commands as LiveResponseCommand[] | undefined,
    });
  });
}
