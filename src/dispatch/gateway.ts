import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { ApiError, ERRORS } from '../domain/errors.js';
import { ONBOARDED, type Machine, type MachineAction } from '../domain/model.js';
import type { AttachProof, Store } from '../domain/store.js';
import { derivedMachineId } from '../fixtures.js';
import { FailureThrottle } from '../identity/failure-throttle.js';
import { verifySecret } from '../identity/secrets.js';
import type { ActionListener, ActionsService, MachineOutcome, MachineRef } from '../services/actions.js';
import type {
  AgentActionWire,
  CheckinRequest,
  CheckinResponse,
  EnrollRequest,
  EnrollResponse,
  ProgressRequest,
  ReportResponse,
  StartResponse,
} from './protocol.js';
import { AGENT_TOKEN, REENROLL_GRANT, hashOpaqueToken, newOpaqueToken, type DeviceGroup } from './enrollment.js';
import { Waiters, type Notifier } from './waiters.js';

export interface GatewayOptions {
  store: Store;
  actions: ActionsService;
  waiters: Waiters;
  notifier: Notifier;
  /** How long a check-in waits for work before answering empty (jittered by ±10%). */
  pollSeconds: number;
  /**
   * Check-ins one agent credential may make per window (counted in this process's memory; see
   * docs/agent-protocol.md); null for no limit.
   */
  checkinLimit?: { points: number; seconds: number } | null;
  /** Delivered with live-response actions: seconds a RunScript may run on the machine. */
  scriptTimeoutSeconds?: number;
  now?: () => number;
  /** With several server nodes: failed enrollments are counted in PostgreSQL, shared by every node. */
  pool?: pg.Pool;
}

/** What an enrollment request proved, and the refusal if the attach then finds it spent. */
interface Claim {
  tenantId: string;
  /** The machine to re-attach to; null for a new one. */
  machine: Machine | null;
  group: DeviceGroup;
  proof: AttachProof;
  refusal: () => ApiError;
}

/** An enrolled agent, as its credential identifies it. */
export interface AgentIdentity extends MachineRef {
  tokenHash: string;
}

const CREDENTIAL_CACHE_MS = 10_000;

const agentUnauthorized = (message: string) =>
  new ApiError('Unauthorized', 401, message, { 'www-authenticate': 'Bearer realm="countermand-agent"' });
const credentialRefused = () => agentUnauthorized('The agent credential is not valid (revoked or unknown).');
const grantRefused = () => agentUnauthorized('The re-enroll grant is not valid (unknown, already used or expired).');

/**
 * The server's side of the agent protocol (docs/agent-protocol.md): enrollment, agent
 * credentials, long-poll check-ins, and the start/progress/report calls, which it turns into
 * ActionsService calls after checking the action belongs to the agent's machine.
 */
export class AgentGateway implements ActionListener {
  private readonly store: Store;
  private readonly actions: ActionsService;
  private readonly now: () => number;
  private readonly credentials = new Map<string, { identity: AgentIdentity; until: number }>();
  private readonly enrollFailures: FailureThrottle;
  private readonly checkins: RateLimiterMemory | null;
  private closing = false;

  constructor(private readonly options: GatewayOptions) {
    this.enrollFailures = new FailureThrottle('enroll', { ...(options.pool ? { pool: options.pool } : {}), refuse: ERRORS.TooManyRequests });
    this.store = options.store;
    this.actions = options.actions;
    this.now = options.now ?? Date.now;
    const limit = options.checkinLimit;
    this.checkins = limit ? new RateLimiterMemory({ points: limit.points, duration: limit.seconds, keyPrefix: 'agent-checkin' }) : null;
  }

  /** Forgets every cached agent credential (the emulator replaced the world they were checked in). */
  forgetCredentials(): void {
    this.credentials.clear();
  }

  /** Answers every waiting check-in now, so the server can close without waiting out long polls. */
  shutdown(): void {
    this.closing = true;
    this.options.waiters.wakeAll();
  }

  actionCreated(action: MachineAction): void {
    this.options.notifier.notify(action.tenantId, action.machineId);
  }

  actionEnded(action: MachineAction): void {
    this.options.notifier.notify(action.tenantId, action.machineId);
  }

  /**
   * Creates a machine (proof: an enrollment token, whose device group it joins) or re-attaches
   * the agent to an existing one (proof: that machine's current credential, or a re-enroll
   * grant for it), and issues a fresh credential scoped to the machine. The proof is spent in the
   * same transaction as the attach, so one proof attaches one agent.
   */
  async enroll(request: EnrollRequest, source: string, authorization?: string): Promise<EnrollResponse> {
    const claim = await this.claim(request, source, authorization);
    const now = this.now();
    const { tenantId, machine: previous } = claim;
    const m = request.machine;
    const machine: Machine = {
      tenantId,
      id: previous?.id ?? derivedMachineId(tenantId, `${m.computerDnsName}/${randomUUID()}`),
      computerDnsName: m.computerDnsName,
      firstSeen: previous?.firstSeen ?? now,
      lastSeen: now,
      osPlatform: m.osPlatform ?? previous?.osPlatform ?? 'Linux',
      osVersion: m.osVersion ?? previous?.osVersion ?? null,
      osProcessor: m.osProcessor ?? previous?.osProcessor ?? null,
      version: m.version ?? previous?.version ?? null,
      osBuild: m.osBuild ?? previous?.osBuild ?? null,
      lastIpAddress: m.lastIpAddress ?? m.ipAddresses?.[0]?.ipAddress ?? previous?.lastIpAddress ?? null,
      lastExternalIpAddress: previous?.lastExternalIpAddress ?? null,
      agentVersion: m.agentVersion ?? null,
      osArchitecture: m.osArchitecture ?? previous?.osArchitecture ?? null,
      ...ONBOARDED,
      defenderAvStatus: previous?.defenderAvStatus ?? null,
      deviceValue: previous?.deviceValue ?? 'Normal',
      // A machine keeps its device group; only a new one takes the enrollment token's.
      rbacGroupId: previous ? previous.rbacGroupId : claim.group.rbacGroupId,
      rbacGroupName: previous ? previous.rbacGroupName : claim.group.rbacGroupName,
      riskScore: previous?.riskScore ?? 'None',
      exposureLevel: previous?.exposureLevel ?? 'None',
      isAadJoined: previous?.isAadJoined ?? false,
      aadDeviceId: previous?.aadDeviceId ?? null,
      machineTags: previous?.machineTags ?? [],
      ipAddresses: m.ipAddresses ?? previous?.ipAddresses ?? [],
      offboardedAt: null,
    };
    const agentToken = newOpaqueToken('cma_');
    const credential = { tokenHash: hashOpaqueToken(agentToken), tenantId, machineId: machine.id, createdAt: now, revokedAt: null };
    // False when the proof was spent meanwhile (a concurrent enrollment with it won).
    if (!(await this.store.attachAgent(machine, credential, claim.proof))) throw claim.refusal();
    this.forgetMachine(tenantId, machine.id);
    return { tenantId, machineId: machine.id, agentToken };
  }

  /**
   * What the enrollment request proves: a new machine of a tenant, or one existing machine. Each
   * proof is an attempt counted before it is checked, per (proof, source) and per source
   * (failure-throttle.ts).
   */
  private async claim(request: EnrollRequest, source: string, authorization: string | undefined): Promise<Claim> {
    if (request.reenrollGrant !== undefined) {
      const tokenHash = REENROLL_GRANT.test(request.reenrollGrant) ? hashOpaqueToken(request.reenrollGrant) : null;
      // Only an unknown grant is a guess; a used or expired one was real.
      const grant = await this.enrollFailures.attempt('reenroll-grant', source, async () =>
        tokenHash ? this.store.findReenrollGrant(tokenHash) : null,
      );
      if (!tokenHash || !grant || grant.usedAt !== null || grant.expiresAt <= this.now()) throw grantRefused();
      return this.existing(grant.tenantId, grant.machineId, request.machineId, { kind: 'grant', tokenHash }, grantRefused);
    }
    if (authorization !== undefined) {
      const token = /^Bearer +(\S+)$/.exec(authorization.trim())?.[1];
      const tokenHash = token && AGENT_TOKEN.test(token) ? hashOpaqueToken(token) : null;
      const credential = await this.enrollFailures.attempt('agent-credential', source, async () =>
        tokenHash ? this.store.findAgentCredential(tokenHash) : null,
      );
      if (!tokenHash || !credential || credential.revokedAt !== null) throw credentialRefused();
      return this.existing(credential.tenantId, credential.machineId, request.machineId, { kind: 'credential', tokenHash }, credentialRefused);
    }
    if (request.enrollmentToken === undefined) {
      throw agentUnauthorized(
        'Enrolling needs an enrollment token (a new machine), or the current agent credential or a re-enroll grant (a machine enrolled before).',
      );
    }
    const [id, secret] = request.enrollmentToken.split('.', 2);
    const record = await this.enrollFailures.attempt(`token:${id ?? ''}`, source, async (from) => {
      const found = id && secret ? await this.store.getEnrollmentSecret(id) : null;
      return found && (await verifySecret(secret!, found.secretHash, from)) ? found : null;
    });
    if (!record) throw agentUnauthorized('The enrollment token is not valid.');
    if (request.machineId !== undefined) {
      // Whether or not the machine exists: an enrollment token never takes over a machine.
      throw ERRORS.ForbiddenMessage(
        `An enrollment token only enrolls new machines. Re-attaching machine ${request.machineId} needs its current agent ` +
          `credential (Authorization: Bearer cma_...) or a re-enroll grant from an administrator: ` +
          `countermand enrollment reenroll --tenant ${record.tenantId} --machine ${request.machineId.toLowerCase()}`,
      );
    }
    return { tenantId: record.tenantId, machine: null, group: record, proof: { kind: 'new' }, refusal: () => agentUnauthorized('The enrollment failed; try again.') };
  }

  private async existing(tenantId: string, machineId: string, asked: string | undefined, proof: AttachProof, refusal: () => ApiError): Promise<Claim> {
    if (asked !== undefined && asked.toLowerCase() !== machineId) {
      throw ERRORS.ForbiddenMessage(`The credential or grant given is not for machine ${asked}.`);
    }
    const machine = await this.store.findMachine(tenantId, machineId, { aadDeviceId: false, computerDnsName: false });
    if (!machine) throw refusal();
    return { tenantId, machine, group: machine, proof, refusal };
  }

  /** Takes one check-in from the credential's allowance, or answers 429 with an honest Retry-After. */
  private async countCheckin(agent: AgentIdentity): Promise<void> {
    if (!this.checkins) return;
    try {
      await this.checkins.consume(agent.tokenHash);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      throw ERRORS.TooManyRequests(Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)));
    }
  }

  /** The agent behind `Authorization: Bearer cma_...`, or 401. API tokens are not agent credentials. */
  async authenticate(authorization: string | undefined): Promise<AgentIdentity> {
    const token = authorization ? /^Bearer +(\S+)$/.exec(authorization.trim())?.[1] : undefined;
    if (!token || !AGENT_TOKEN.test(token)) throw agentUnauthorized('An agent credential is required: Authorization: Bearer cma_...');
    const tokenHash = hashOpaqueToken(token);
    const now = this.now();
    const cached = this.credentials.get(tokenHash);
    if (cached && cached.until > now) return cached.identity;
    const credential = await this.store.findAgentCredential(tokenHash);
    if (!credential || credential.revokedAt !== null) throw credentialRefused();
    const machine = await this.store.findMachine(credential.tenantId, credential.machineId, { aadDeviceId: false, computerDnsName: false });
    if (!machine) throw agentUnauthorized('The agent credential names no machine.');
    const identity = { tokenHash, tenantId: credential.tenantId, machineId: credential.machineId, name: machine.computerDnsName };
    this.credentials.set(tokenHash, { identity, until: now + CREDENTIAL_CACHE_MS });
    return identity;
  }

  private forgetMachine(tenantId: string, machineId: string): void {
    for (const [hash, entry] of this.credentials) {
      if (entry.identity.tenantId === tenantId && entry.identity.machineId === machineId) this.credentials.delete(hash);
    }
  }

  /**
   * The long poll: answers at once when the machine has actions to start or resume, or running
   * actions that ended; otherwise waits (woken by any change for this machine) until the poll
   * time is up or the agent goes away.
   */
  async checkin(agent: AgentIdentity, request: CheckinRequest, gone: AbortSignal): Promise<CheckinResponse> {
    await this.countCheckin(agent);
    await this.store.recordCheckin(agent.tenantId, agent.machineId, this.now(), {
      agentVersion: request.agentVersion,
      lastIpAddress: request.lastIpAddress,
      ipAddresses: request.ipAddresses,
    });
    const jitter = 0.9 + Math.random() * 0.2;
    const waitMs = Math.min(this.options.pollSeconds * jitter, request.maxWaitSeconds ?? Infinity) * 1000;
    // The wait is real time, whatever clock stamps the check-in (the emulator's may stand still).
    const deadline = performance.now() + Math.max(0, waitMs);
    const key = Waiters.key(agent.tenantId, agent.machineId);
    for (;;) {
      const subscription = this.options.waiters.subscribe(key);
      try {
        const work = await this.work(agent, request.running);
        const remaining = deadline - performance.now();
        if (work.actions.length > 0 || work.stop.length > 0 || remaining <= 0 || gone.aborted || this.closing) return work;
        const onGone = () => this.options.waiters.wake(key);
        gone.addEventListener('abort', onGone, { once: true });
        await subscription.wait(remaining);
        gone.removeEventListener('abort', onGone);
      } finally {
        subscription.close();
      }
    }
  }

  private async work(agent: AgentIdentity, running: readonly string[]): Promise<CheckinResponse> {
    const runningSet = new Set(running);
    const active = await this.store.listActiveActionsForMachine(agent.tenantId, agent.machineId);
    // What the agent lists as running it is handling (started or about to be); the rest is
    // delivered again on every check-in until started: delivery is at-least-once.
    const actions = active
      .filter((a) => !runningSet.has(a.id))
      .map((a) => toWire(a, a.status === 'InProgress', this.options.scriptTimeoutSeconds));
    const activeIds = new Set(active.map((a) => a.id));
    const ended = await this.store.getActionsOfMachine(
      agent.tenantId,
      agent.machineId,
      running.filter((id) => !activeIds.has(id)),
    );
    return { actions, stop: ended.map((a) => ({ id: a.id, status: a.status })) };
  }

  /** The action if it belongs to the agent's machine, else 404 (another machine's actions do not exist for it). */
  async ownAction(agent: AgentIdentity, actionId: string): Promise<MachineAction> {
    const action = await this.store.getAction(agent.tenantId, actionId.toLowerCase());
    if (!action || action.machineId !== agent.machineId) throw ERRORS.ActionNotFound(actionId);
    return action;
  }

  async start(agent: AgentIdentity, actionId: string): Promise<StartResponse> {
    const action = await this.ownAction(agent, actionId);
    const now = (await this.actions.start(agent, action.id)) ?? action;
    return { status: now.status, run: now.status === 'InProgress' };
  }

  async progress(agent: AgentIdentity, actionId: string, request: ProgressRequest): Promise<StartResponse> {
    const action = await this.ownAction(agent, actionId);
    if (action.type !== 'LiveResponse') throw ERRORS.InvalidInput('Only live-response actions report command progress.');
    checkCommands(action, request.commands);
    const now = (await this.actions.progress(agent, action.id, request.commands)) ?? action;
    return { status: now.status, run: now.status === 'InProgress' };
  }

  async report(agent: AgentIdentity, actionId: string, outcome: MachineOutcome): Promise<ReportResponse> {
    const action = await this.ownAction(agent, actionId);
    if (outcome.commands) checkCommands(action, outcome.commands);
    const result = await this.actions.report(agent, action, outcome);
    if (!result) throw ERRORS.ActionNotFound(actionId);
    if (action.type === 'Offboard' && result.action.status === 'Succeeded') {
      // The success revoked the credential in its own transaction; forget the cached one now.
      this.forgetMachine(agent.tenantId, agent.machineId);
    }
    return { status: result.action.status, applied: result.applied };
  }
}

/** The agent reports the state of the commands it was given, not other commands. */
function checkCommands(action: MachineAction, commands: MachineAction['commands']): void {
  const same =
    commands.length === action.commands.length &&
    commands.every(
      (c, i) =>
        c.index === i &&
        c.command.type === action.commands[i]!.command.type &&
        JSON.stringify(c.command.params) === JSON.stringify(action.commands[i]!.command.params),
    );
  if (!same) throw ERRORS.InvalidInput("The commands do not match the action's commands.");
}

function toWire(a: MachineAction, resume: boolean, scriptTimeoutSeconds: number | undefined): AgentActionWire {
  return {
    id: a.id,
    type: a.type,
    status: a.status,
    scope: a.scope,
    sha1: a.relatedFileInfo?.fileIdentifier ?? null,
    comment: a.requestorComment,
    commands: a.commands,
    resume,
    ...(a.type === 'LiveResponse' && scriptTimeoutSeconds !== undefined ? { scriptTimeoutSeconds } : {}),
  };
}
