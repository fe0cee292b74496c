import fastifySwagger from '@fastify/swagger';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Type, type Static, type TSchema } from 'typebox';
import { OPERATIONS } from '../api/routes/index.js';
import { machineActionToWire, machineToWire } from '../api/wire.js';
import { ApiError, ERRORS } from '../domain/errors.js';
import { HEALTH_STATUSES, type Machine } from '../domain/model.js';
import { toWireTime } from '../domain/time.js';
import { fixtureMachine, FixtureMachineSchema, FixturesError, FixturesSchema, parseFixtures, type FixtureMachine, type Fixtures } from '../fixtures.js';
import { DirectoryError } from '../identity/directory.js';
import type { ControlPlane } from './control-plane.js';
import { ClockSettings, DUPLICATE_POLICIES, Fault, FAULT_KINDS, Guid, IsoTime, MachineIdPattern, Rule, Seed } from './schemas.js';

/**
 * The control API (docs/emulator.md), under /_countermand/, behind its own admin token. Every
 * route has a full schema (params, query, body, responses), which validates requests and makes
 * the OpenAPI document at /_countermand/openapi.json. Errors use the API's envelope.
 */
export const CONTROL_PREFIX = '/_countermand';

const Envelope = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), target: Type.String() }),
});
const errors = { 400: Envelope, 401: Envelope, 404: Envelope };

const TenantParams = Type.Object({ tenantId: Guid });
const MachineParams = Type.Object({ tenantId: Guid, machineId: Type.String({ pattern: MachineIdPattern }) });
const ActionParams = Type.Object({ id: Guid });
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

const Counts = Type.Object({ tenants: Type.Integer(), machines: Type.Integer(), actions: Type.Integer() });
const Agent = Type.Enum(['simulated', 'none']);
const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);

const WireMachine = Type.Object(
  {
    id: Type.String(),
    computerDnsName: Type.String(),
    firstSeen: Nullable(Type.String()),
    lastSeen: Nullable(Type.String()),
    healthStatus: Type.String(),
    riskScore: Nullable(Type.String()),
    machineTags: Type.Array(Type.String()),
  },
  { additionalProperties: true, description: 'The machine as GET /api/machines/{id} shows it (contract §9).' },
);
const ServedMachine = Type.Object({ tenantId: Type.String(), agent: Nullable(Agent), machine: WireMachine });

const RuleOut = Type.Intersect([Rule, Type.Object({ id: Type.String(), remaining: Nullable(Type.Integer()) })]);
const FaultOut = Type.Intersect([Fault, Type.Object({ id: Type.String(), remaining: Nullable(Type.Integer()), injected: Type.Integer() })]);

const MachinePatch = Type.Object(
  {
    computerDnsName: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    healthStatus: Type.Optional(Type.Enum(HEALTH_STATUSES)),
    lastSeen: Type.Optional(Nullable(IsoTime)),
    lastIpAddress: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    lastExternalIpAddress: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    ipAddresses: Type.Optional(
      Type.Array(
        Type.Object({
          ipAddress: Type.String({ maxLength: 64 }),
          macAddress: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
          type: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
          operationalStatus: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
        }),
        { maxItems: 64 },
      ),
    ),
    machineTags: Type.Optional(Type.Array(Type.String({ maxLength: 256 }), { maxItems: 256 })),
    riskScore: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    exposureLevel: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    deviceValue: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    onboardingStatus: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    rbacGroupId: Type.Optional(Nullable(Type.Integer())),
    rbacGroupName: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
    osPlatform: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
    osVersion: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
    agent: Type.Optional(Agent),
  },
  { additionalProperties: false },
);

const JournalEntry = Type.Object({
  seq: Type.Integer(),
  time: Type.String(),
  method: Type.String(),
  path: Type.String(),
  query: Type.String(),
  operation: Nullable(Type.String()),
  caller: Nullable(Type.Object({ tenantId: Type.String(), kind: Type.Enum(['application', 'user']), id: Type.String(), name: Type.String() })),
  status: Type.Integer(),
  latencyMs: Type.Number(),
  requestId: Type.String(),
  faults: Type.Array(
    Type.Object({ id: Type.String(), kind: Type.Enum(FAULT_KINDS), delayMs: Type.Optional(Type.Integer()) }),
    { description: 'The faults that affected the request, in order (a latency with the delay it drew).' },
  ),
});
const JournalQuery = Type.Object({
  method: Type.Optional(Type.String({ maxLength: 16 })),
  pathPrefix: Type.Optional(Type.String({ maxLength: 1024 })),
  status: Type.Optional(Type.String({ pattern: '^[1-5][0-9][0-9]$' })),
  caller: Type.Optional(Type.String({ maxLength: 256 })),
  since: Type.Optional(IsoTime),
  afterSeq: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
});

const Quota = Type.Object({
  tenantId: Type.String(),
  callerId: Type.String(),
  caller: Type.String(),
  operation: Type.String(),
  windows: Type.Array(
    Type.Object({ limit: Type.Integer(), windowSeconds: Type.Integer(), used: Type.Integer(), remaining: Type.Integer(), resetsInSeconds: Type.Integer() }),
  ),
});

const ClockState = Type.Object({ now: Type.String(), mode: Type.Enum(['real', 'manual']), timers: Type.Integer() });
const Settings = Type.Object({ seed: Nullable(Type.String()), duplicatePolicy: Type.Enum(DUPLICATE_POLICIES), journalSize: Type.Integer() });

const Plan = Type.Object({}, { additionalProperties: true, description: "The action's plan: rule, start and finish triggers, outcome." });
const StepResult = Type.Object({
  action: Type.Object({}, { additionalProperties: true, description: 'The MachineAction as the API shows it (contract §3).' }),
  plan: Nullable(Plan),
});

function send(reply: FastifyReply, status: number, body?: unknown): FastifyReply {
  if (body === undefined) return reply.code(status).send();
  return reply.code(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(body));
}

const counts = (f: Fixtures) => ({
  tenants: f.tenants.length,
  machines: f.tenants.reduce((n, t) => n + (t.machines?.length ?? 0), 0),
  actions: f.tenants.reduce((n, t) => n + (t.actions?.length ?? 0), 0),
});

/** A fixtures or directory problem is the client's: 400 InvalidInput with its message. */
async function asClientError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof FixturesError || error instanceof DirectoryError) throw ERRORS.InvalidInput(error.message);
    throw error;
  }
}

export function registerControlRoutes(app: FastifyInstance, plane: ControlPlane): void {
  app.register(
    async (scope) => {
      await scope.register(fastifySwagger, {
        decorator: 'controlOpenApi',
        openapi: {
          openapi: '3.0.3',
          info: {
            title: 'Countermand control API',
            version: '1',
            description:
              "The emulator's control API: reset, fixtures, machines, lifecycle rules, faults, clock, journal and quotas. " +
              'Every call needs the admin token (Authorization: Bearer <token>); MDE access tokens are not accepted. See docs/emulator.md.',
          },
          servers: [{ url: CONTROL_PREFIX }],
          components: { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } } },
          security: [{ adminToken: [] }],
        },
      });
      // Not in the MDE surface's document (/openapi.json): the control API has its own, above.
      scope.addHook('onRoute', (route) => {
        route.config = { ...route.config, openapi: false };
      });
      // Everything here but the OpenAPI document needs the admin token, compared in constant time.
      scope.addHook('onRequest', async (request) => {
        if (request.routeOptions.url === `${CONTROL_PREFIX}/openapi.json`) return;
        const header = request.headers.authorization;
        const token = header ? /^Bearer +(\S+)$/i.exec(header.trim())?.[1] : undefined;
        if (!token || !plane.isAdmin(token)) {
          throw new ApiError(
            'Unauthorized',
            401,
            header
              ? 'This is not the control API admin token (MDE access tokens are not accepted here).'
              : 'The control API needs its admin token: Authorization: Bearer <admin token>.',
            { 'www-authenticate': 'Bearer realm="countermand-control"' },
          );
        }
        if (!plane.readiness.worldLoaded) throw ERRORS.ServiceUnavailable('The emulator is still loading its world; wait for GET /ready.');
      });
      routes(scope, plane);
    },
    { prefix: CONTROL_PREFIX },
  );
}

declare module 'fastify' {
  interface FastifyInstance {
    controlOpenApi(): Record<string, unknown>;
  }
}

function routes(app: FastifyInstance, plane: ControlPlane): void {
  const tag = (name: string) => [name];

  app.get('/openapi.json', { schema: { hide: true } as object }, async (_request, reply) => send(reply, 200, app.controlOpenApi()));

  // ---- world -----------------------------------------------------------------------------------

  app.post(
    '/reset',
    {
      // `curl -X POST .../reset` sends no body: that is the default reset, not a bad body.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
      schema: {
        tags: tag('world'),
        summary: 'Reset the world to the loaded fixtures (or to empty); the body is optional',
        body: Type.Object({ to: Type.Optional(Type.Enum(['baseline', 'empty'])) }, { additionalProperties: false }),
        response: { 200: Type.Object({ to: Type.String(), elapsedMs: Type.Number() }), ...errors },
      },
    },
    async (request, reply) => {
      const to = (request.body as { to?: 'baseline' | 'empty' }).to ?? 'baseline';
      const began = performance.now();
      await plane.reset(to);
      return send(reply, 200, { to, elapsedMs: Math.round((performance.now() - began) * 1000) / 1000 });
    },
  );

  app.get(
    '/fixtures',
    { schema: { tags: tag('world'), summary: 'Export the world as fixtures', response: { 200: FixturesSchema, ...errors } } },
    async (_request, reply) => send(reply, 200, await plane.export()),
  );

  app.put(
    '/fixtures',
    {
      bodyLimit: 64 * 1024 * 1024,
      schema: {
        tags: tag('world'),
        summary: 'Replace the world with fixtures, which become what a reset goes back to',
        body: FixturesSchema,
        response: { 200: Type.Object({ loaded: Counts }), ...errors },
      },
    },
    async (request, reply) => {
      const fixtures = await asClientError(async () => parseFixtures(request.body, 'fixtures'));
      await asClientError(() => plane.load(fixtures));
      return send(reply, 200, { loaded: counts(fixtures) });
    },
  );

  // ---- machines --------------------------------------------------------------------------------

  const servedMachine = (m: Machine) => ({ tenantId: m.tenantId, agent: plane.steering.agentOf(m.tenantId, m.id), machine: machineToWire(m) });
  const findMachine = async (tenantId: string, machineId: string) => {
    const machine = await plane.store.findMachine(tenantId.toLowerCase(), machineId.toLowerCase(), { aadDeviceId: false, computerDnsName: false });
    if (!machine) throw ERRORS.ResourceNotFound(machineId);
    return machine;
  };

  app.get(
    '/machines',
    {
      schema: {
        tags: tag('machines'),
        summary: 'Every machine, with how the emulator serves it',
        querystring: Type.Object({ tenantId: Type.Optional(Guid) }),
        response: { 200: Type.Object({ value: Type.Array(ServedMachine) }), ...errors },
      },
    },
    async (request, reply) => {
      const { tenantId } = request.query as { tenantId?: string };
      const world = await plane.store.exportWorld();
      const machines = world.machines.filter((m) => !tenantId || m.tenantId === tenantId.toLowerCase());
      return send(reply, 200, { value: machines.map(servedMachine) });
    },
  );

  app.post(
    '/tenants/:tenantId/machines',
    {
      schema: {
        tags: tag('machines'),
        summary: 'Create a machine (simulated unless agent says none)',
        params: TenantParams,
        body: FixtureMachineSchema,
        response: { 201: ServedMachine, ...errors },
      },
    },
    async (request, reply) => {
      const { tenantId } = request.params as Static<typeof TenantParams>;
      const tenant = await plane.store.getTenant(tenantId.toLowerCase());
      if (!tenant) throw ERRORS.NotFound(`Tenant ${tenantId} was not found.`);
      const body = request.body as FixtureMachine;
      const machine = fixtureMachine(tenant.id, body, plane.clock.now());
      if (await plane.store.findMachine(tenant.id, machine.id, { aadDeviceId: false, computerDnsName: false })) {
        throw ERRORS.InvalidInput(`Machine ${machine.id} exists already; change it with PATCH.`);
      }
      await plane.putMachine(machine, body.agent ?? plane.defaultAgent);
      return send(reply, 201, servedMachine(machine));
    },
  );

  app.patch(
    '/tenants/:tenantId/machines/:machineId',
    {
      schema: {
        tags: tag('machines'),
        summary: "Change a machine's fields (health, lastSeen, IPs, tags, risk...) or its agent",
        params: MachineParams,
        body: MachinePatch,
        response: { 200: ServedMachine, ...errors },
      },
    },
    async (request, reply) => {
      const { tenantId, machineId } = request.params as Static<typeof MachineParams>;
      const machine = await findMachine(tenantId, machineId);
      const { agent, lastSeen, ...fields } = request.body as Static<typeof MachinePatch>;
      const changed: Machine = { ...machine, ...(fields as Partial<Machine>) };
      if (lastSeen !== undefined) changed.lastSeen = lastSeen === null ? null : Date.parse(lastSeen);
      if (fields.ipAddresses) {
        changed.ipAddresses = fields.ipAddresses.map((ip) => ({
          ipAddress: ip.ipAddress,
          macAddress: ip.macAddress ?? null,
          type: ip.type ?? null,
          operationalStatus: ip.operationalStatus ?? null,
        }));
      }
      await plane.store.upsertMachine(changed);
      if (agent && agent !== plane.steering.agentOf(machine.tenantId, machine.id)) await plane.setAgent(changed, agent);
      return send(reply, 200, servedMachine(changed));
    },
  );

  app.delete(
    '/tenants/:tenantId/machines/:machineId',
    {
      schema: {
        tags: tag('machines'),
        summary: 'Remove a machine with its actions',
        params: MachineParams,
        response: { 204: Type.Null({ description: 'Removed' }), ...errors },
      },
    },
    async (request, reply) => {
      const { tenantId, machineId } = request.params as Static<typeof MachineParams>;
      if (!(await plane.removeMachine(tenantId.toLowerCase(), machineId.toLowerCase()))) throw ERRORS.ResourceNotFound(machineId);
      return send(reply, 204);
    },
  );

  // ---- rules and faults ------------------------------------------------------------------------

  app.get('/rules', { schema: { tags: tag('rules'), summary: 'The lifecycle rules, in the order they are tried', response: { 200: Type.Object({ value: Type.Array(RuleOut) }), ...errors } } }, async (_r, reply) =>
    send(reply, 200, { value: plane.steering.listRules() }),
  );
  app.put(
    '/rules',
    {
      schema: {
        tags: tag('rules'),
        summary: 'Replace every rule',
        body: Type.Array(Rule, { maxItems: 1000 }),
        response: { 200: Type.Object({ value: Type.Array(RuleOut) }), ...errors },
      },
    },
    async (request, reply) => {
      plane.steering.setRules(request.body as Rule[]);
      return send(reply, 200, { value: plane.steering.listRules() });
    },
  );
  app.post(
    '/rules',
    {
      schema: {
        tags: tag('rules'),
        summary: 'Add a rule (at the end, or at ?position=N; 0 is tried first)',
        querystring: Type.Object({ position: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' })) }),
        body: Rule,
        response: { 201: RuleOut, ...errors },
      },
    },
    async (request, reply) => {
      const { position } = request.query as { position?: string };
      return send(reply, 201, plane.steering.addRule(request.body as Rule, position === undefined ? undefined : Number(position)));
    },
  );
  app.delete('/rules', { schema: { tags: tag('rules'), summary: 'Remove every rule', response: { 204: Type.Null(), ...errors } } }, async (_r, reply) => {
    plane.steering.setRules([]);
    return send(reply, 204);
  });
  app.delete(
    '/rules/:id',
    { schema: { tags: tag('rules'), summary: 'Remove one rule', params: IdParams, response: { 204: Type.Null(), ...errors } } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      if (!plane.steering.removeRule(id)) throw ERRORS.NotFound(`Rule ${id} was not found.`);
      return send(reply, 204);
    },
  );

  app.get('/faults', { schema: { tags: tag('faults'), summary: 'The faults, in the order they are tried', response: { 200: Type.Object({ value: Type.Array(FaultOut) }), ...errors } } }, async (_r, reply) =>
    send(reply, 200, { value: plane.faults.listFaults() }),
  );
  app.put(
    '/faults',
    {
      schema: {
        tags: tag('faults'),
        summary: 'Replace every fault',
        body: Type.Array(Fault, { maxItems: 1000 }),
        response: { 200: Type.Object({ value: Type.Array(FaultOut) }), ...errors },
      },
    },
    async (request, reply) => {
      plane.faults.set(request.body as Fault[]);
      return send(reply, 200, { value: plane.faults.listFaults() });
    },
  );
  app.post(
    '/faults',
    { schema: { tags: tag('faults'), summary: 'Add a fault', body: Fault, response: { 201: FaultOut, ...errors } } },
    async (request, reply) => send(reply, 201, plane.faults.add(request.body as Fault)),
  );
  app.delete('/faults', { schema: { tags: tag('faults'), summary: 'Remove every fault', response: { 204: Type.Null(), ...errors } } }, async (_r, reply) => {
    plane.faults.set([]);
    return send(reply, 204);
  });
  app.delete(
    '/faults/:id',
    { schema: { tags: tag('faults'), summary: 'Remove one fault', params: IdParams, response: { 204: Type.Null(), ...errors } } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      if (!plane.faults.remove(id)) throw ERRORS.NotFound(`Fault ${id} was not found.`);
      return send(reply, 204);
    },
  );

  // ---- settings, clock, steps ------------------------------------------------------------------

  app.get('/settings', { schema: { tags: tag('settings'), summary: 'Seed, duplicate policy, journal size', response: { 200: Settings, ...errors } } }, async (_r, reply) =>
    send(reply, 200, plane.currentSettings),
  );
  app.patch(
    '/settings',
    {
      schema: {
        tags: tag('settings'),
        summary: 'Change the seed (every stream starts again) or the duplicate policy',
        body: Type.Object(
          { seed: Type.Optional(Nullable(Seed)), duplicatePolicy: Type.Optional(Type.Enum(DUPLICATE_POLICIES)), journalSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })) },
          { additionalProperties: false },
        ),
        response: { 200: Settings, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body as { seed?: string | number | null; duplicatePolicy?: 'reject' | 'returnExisting'; journalSize?: number };
      plane.updateSettings({
        ...(body.seed !== undefined ? { seed: body.seed === null ? null : String(body.seed) } : {}),
        ...(body.duplicatePolicy ? { duplicatePolicy: body.duplicatePolicy } : {}),
      });
      if (body.journalSize) plane.journal.resize(body.journalSize);
      return send(reply, 200, plane.currentSettings);
    },
  );

  const clockState = () => {
    const s = plane.clock.state;
    return { now: toWireTime(s.now), mode: s.mode, timers: s.timers };
  };
  app.get('/clock', { schema: { tags: tag('clock'), summary: "The emulator's clock", response: { 200: ClockState, ...errors } } }, async (_r, reply) =>
    send(reply, 200, clockState()),
  );
  app.put(
    '/clock',
    {
      schema: {
        tags: tag('clock'),
        summary: 'Switch the mode (real or manual), or move the clock forward to a time',
        body: Type.Object({ mode: Type.Optional(ClockSettings.properties.mode), now: Type.Optional(IsoTime) }, { additionalProperties: false }),
        response: { 200: ClockState, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body as { mode?: 'real' | 'manual'; now?: string };
      if (body.now !== undefined) {
        const target = Date.parse(body.now);
        if (target < plane.clock.now()) throw ERRORS.InvalidInput('The clock only moves forward: give a later time, or reset.');
        await plane.advance(target - plane.clock.now());
      }
      if (body.mode) plane.clock.setMode(body.mode);
      return send(reply, 200, clockState());
    },
  );
  app.post(
    '/clock/advance',
    {
      schema: {
        tags: tag('clock'),
        summary: 'Move the clock forward: simulated timings, timeouts and expiries that fall due happen before it answers',
        body: Type.Object({ seconds: Type.Number({ minimum: 0, maximum: 31_536_000 }) }, { additionalProperties: false }),
        response: { 200: ClockState, ...errors },
      },
    },
    async (request, reply) => {
      await plane.advance((request.body as { seconds: number }).seconds * 1000);
      return send(reply, 200, clockState());
    },
  );

  app.post(
    '/actions/:id/step',
    {
      schema: {
        tags: tag('actions'),
        summary: "End the action's current phase now (Pending -> InProgress, InProgress -> its outcome)",
        params: ActionParams,
        response: { 200: StepResult, ...errors },
      },
    },
    async (request, reply) => {
      const id = (request.params as { id: string }).id.toLowerCase();
      const action = await plane.findAction(id);
      if (!action) throw ERRORS.ActionNotFound(id);
      await plane.steering.step(action.tenantId, id);
      const now = (await plane.store.getAction(action.tenantId, id)) ?? action;
      return send(reply, 200, { action: machineActionToWire(now), plan: plane.steering.planOf(id) });
    },
  );

  // ---- journal and quotas ----------------------------------------------------------------------

  app.get(
    '/journal',
    {
      schema: {
        tags: tag('journal'),
        summary: 'Requests clients made, oldest first (no headers, bodies or secrets are kept)',
        querystring: JournalQuery,
        response: { 200: Type.Object({ value: Type.Array(JournalEntry) }), ...errors },
      },
    },
    async (request, reply) => {
      const q = request.query as Static<typeof JournalQuery>;
      const value = plane.journal.list({
        method: q.method,
        pathPrefix: q.pathPrefix,
        status: q.status === undefined ? undefined : Number(q.status),
        caller: q.caller,
        since: q.since === undefined ? undefined : Date.parse(q.since),
        afterSeq: q.afterSeq === undefined ? undefined : Number(q.afterSeq),
      });
      return send(reply, 200, { value });
    },
  );
  app.delete('/journal', { schema: { tags: tag('journal'), summary: 'Empty the journal', response: { 204: Type.Null(), ...errors } } }, async (_r, reply) => {
    plane.journal.clear();
    return send(reply, 204);
  });

  app.get(
    '/quota',
    {
      schema: {
        tags: tag('journal'),
        summary: "Rate-limit usage per caller and operation, for the callers seen since the last reset",
        querystring: Type.Object({ caller: Type.Optional(Type.String({ maxLength: 256 })) }),
        response: { 200: Type.Object({ value: Type.Array(Quota) }), ...errors },
      },
    },
    async (request, reply) => {
      const { caller } = request.query as { caller?: string };
      const wanted = caller?.toLowerCase();
      const value = [];
      for (const c of plane.callers.values()) {
        if (wanted && c.id.toLowerCase() !== wanted && c.name.toLowerCase() !== wanted) continue;
        const operation = OPERATIONS.find((o) => o.name === c.operation);
        if (!operation) continue;
        value.push({ tenantId: c.tenantId, callerId: c.id, caller: c.name, operation: c.operation, windows: await plane.limiter.usage(c, operation) });
      }
      return send(reply, 200, { value });
    },
  );
}

