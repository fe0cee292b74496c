import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { parseSimulation, type Simulation } from '../agent/executors/simulated.js';
import { SimulatedFleet } from '../agent/fleet.js';
import { ConfigError, type ServerConfig } from '../config.js';
import { DEMO_TENANT_ID, seedDemo, type DemoCredentials } from '../demo.js';
import type { AgentGateway } from '../dispatch/gateway.js';
import type { Sweeper } from '../dispatch/sweeper.js';
import type { Machine } from '../domain/model.js';
import type { Store, World } from '../domain/store.js';
import { derivedMachineId, FixturesError, type Fixtures } from '../fixtures.js';
import type { TokenAuthenticator } from '../identity/authenticator.js';
import type { Directory } from '../identity/directory.js';
import type { ApiRateLimiter } from '../identity/rate-limiter.js';
import type { ArtifactsService } from '../artifacts/artifacts.js';
import type { ActionChanges } from '../services/action-changes.js';
import type { ActionsService } from '../services/actions.js';
import { Clock, type ClockMode } from './clock.js';
import { Faults } from './faults.js';
import { Journal } from './journal.js';
import { Randomness } from './random.js';
import type { DuplicatePolicy, EmulatorFixtures, Fault, Rule } from './schemas.js';
import { Steering, type AgentKind, type ServedMachine } from './steering.js';
import { fixturesToWorld, machineKey, SecretHashes, worldToFixtures, type WorldMachine } from './world.js';

/**
 * The emulator: everything the control API steers (docs/emulator.md). Built only when the control
 * API is on; then the services take its clock and seeded ids, the actions service reports to its
 * steering, and two hooks (faults before the route, the journal after the answer) join the app.
 */

/** The settings a world carries besides its contents (the fixtures' `emulator` section). */
export interface EmulatorSettings {
  seed: string | null;
  clock: { mode: ClockMode; start: number | null };
  duplicatePolicy: DuplicatePolicy;
  defaultAgent: AgentKind;
  simulation: Simulation;
  rules: Rule[];
  faults: Fault[];
}

/** What a reset goes back to. */
interface Baseline {
  world: World;
  machines: WorldMachine[];
  settings: EmulatorSettings;
}

/** The clock's start when the fixtures give none: a seed makes runs repeat, so it is fixed then. */
const SEEDED_CLOCK_START = Date.parse('2025-01-01T00:00:00.000Z');
/** Distinct (caller, operation) pairs the quota report keeps track of. */
const MAX_QUOTA_KEYS = 10_000;

export function emulatorSettings(section: EmulatorFixtures | undefined, fallbackSimulation: Simulation): EmulatorSettings {
  const seed = section?.seed === undefined ? null : String(section.seed);
  let simulation = fallbackSimulation;
  if (section?.simulation) {
    try {
      simulation = parseSimulation(section.simulation);
    } catch (error) {
      throw new FixturesError(`emulator.simulation: ${(error as Error).message}`);
    }
  }
  const mode: ClockMode = section?.clock?.mode ?? (seed !== null ? 'manual' : 'real');
  const start = section?.clock?.start ? Date.parse(section.clock.start) : seed !== null ? SEEDED_CLOCK_START : null;
  return {
    seed,
    clock: { mode, start },
    duplicatePolicy: section?.duplicatePolicy ?? 'reject',
    defaultAgent: section?.defaultAgent ?? 'simulated',
    simulation,
    rules: section?.rules ?? [],
    faults: section?.faults ?? [],
  };
}

/** The admin token: from the setting or its file, else generated (and shown once by the CLI). */
export function adminToken(config: ServerConfig): { token: string; generated: boolean } {
  if (config.controlToken) return { token: config.controlToken, generated: false };
  if (config.controlTokenFile) {
    let text: string;
    try {
      text = readFileSync(config.controlTokenFile, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read the control API's admin token file ${config.controlTokenFile}: ${(error as Error).message}`);
    }
    const token = text.split(/\r?\n/)[0]!.trim();
    if (token.length < 16) throw new ConfigError(`the admin token in ${config.controlTokenFile} must have at least 16 characters`);
    return { token, generated: false };
  }
  return { token: `cmc_${randomBytes(32).toString('base64url')}`, generated: true };
}

export interface ControlPlaneOptions {
  config: ServerConfig;
  store: Store;
  directory: Directory;
  logger: FastifyBaseLogger;
  fixtures: Fixtures | null;
  demoSimulation: Simulation;
}

export interface ControlServices {
  actions: ActionsService;
  gateway: AgentGateway;
  limiter: ApiRateLimiter;
  authenticator: TokenAuthenticator;
  sweeper: Sweeper;
  /** This node's event streams: ended by a reset or a load (a new world, perhaps without their caller), told to re-read by a removal. */
  changes: Pick<ActionChanges, 'resync' | 'endAll'>;
  artifacts: ArtifactsService;
}

export class ControlPlane {
  readonly clock: Clock;
  readonly random: Randomness;
  readonly faults: Faults;
  readonly journal: Journal;
  readonly hashes = new SecretHashes();
  readonly admin: { token: string; generated: boolean };
  private readonly adminDigest: Buffer;
  private settings: EmulatorSettings;
  private baseline: Baseline | null = null;
  private services: ControlServices | null = null;
  private steeringRef: Steering | null = null;
  /** Set on a first start of an empty store without fixtures (shown once). */
  demo: DemoCredentials | null = null;
  /** What /ready waits for. */
  readonly readiness = { worldLoaded: false };
  /** Who called which operation since the last reset: the callers the quota report covers. */
  readonly callers = new Map<string, { tenantId: string; id: string; name: string; operation: string }>();
  /** Resets run one at a time. */
  private changing: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ControlPlaneOptions) {
    this.settings = emulatorSettings(options.fixtures?.emulator, options.demoSimulation);
    this.clock = new Clock({ mode: this.settings.clock.mode, ...(this.settings.clock.start !== null ? { start: this.settings.clock.start } : {}) });
    this.random = new Randomness(this.settings.seed);
    this.faults = new Faults(this.random);
    this.journal = new Journal(options.fixtures?.emulator?.control?.journalSize ?? options.config.journalSize, this.clock.now);
    this.admin = adminToken(options.config);
    this.adminDigest = createHash('sha256').update(this.admin.token).digest();
  }

  get store(): Store {
    return this.options.store;
  }

  get limiter(): ApiRateLimiter {
    return this.services!.limiter;
  }

  /** What a machine created through the control API gets when it names no agent. */
  get defaultAgent(): AgentKind {
    return this.settings.defaultAgent;
  }

  /** An action by id, in whichever tenant holds it (ids are unique across tenants). */
  async findAction(id: string) {
    for (const tenant of await this.options.store.listTenants()) {
      const action = await this.options.store.getAction(tenant.id, id);
      if (action) return action;
    }
    return null;
  }

  get steering(): Steering {
    if (!this.steeringRef) throw new Error('the control plane is not attached yet');
    return this.steeringRef;
  }

  /** The admin token, compared in constant time (digests of equal length). */
  isAdmin(presented: string): boolean {
    return timingSafeEqual(createHash('sha256').update(presented).digest(), this.adminDigest);
  }

  /** Request ids: seeded for what clients call, random for the agent protocol (its timing is the agents'). */
  requestId = (url: string): string => (/^\/+agent\//i.test(url) ? this.random.uuidUnseeded() : this.random.uuid('requestIds'));

  /** Connects the services built with this plane's clock, then loads the world. */
  async attach(services: ControlServices): Promise<void> {
    this.services = services;
    this.steeringRef = new Steering({
      store: this.options.store,
      actions: services.actions,
      gateway: services.gateway,
      clock: this.clock,
      logger: this.options.logger,
      artifacts: services.artifacts,
    });
    services.actions.setObserver(this.steeringRef);
    this.baseline = await this.initialBaseline();
    await this.apply(this.baseline);
    this.readiness.worldLoaded = true;
  }

  /** What the emulator starts with: the fixtures, or the identities the store has (the demo world on a first start). */
  private async initialBaseline(): Promise<Baseline> {
    const { fixtures, store, directory, config } = this.options;
    if (fixtures) return this.baselineOf(fixtures);
    this.demo = await seedDemo(store, directory);
    const current = await store.exportWorld();
    const machines: WorldMachine[] = current.machines.map((machine) => ({ machine, agent: 'none' }));
    if (current.tenants.some((t) => t.id === DEMO_TENANT_ID)) {
      for (let i = 0; i < config.demoFleetSize; i++) {
        const machine = demoMachine(i, this.clock.now());
        const existing = machines.find((m) => m.machine.id === machine.id);
        if (existing) existing.agent = 'simulated';
        else machines.push({ machine, agent: 'simulated' });
      }
    }
    return {
      world: { ...current, machines: machines.map((m) => m.machine), actions: [] },
      machines,
      settings: this.settings,
    };
  }

  private async baselineOf(fixtures: Fixtures): Promise<Baseline> {
    const settings = emulatorSettings(fixtures.emulator, this.options.demoSimulation);
    const loaded = await fixturesToWorld(fixtures, {
      now: settings.clock.start ?? this.clock.now(),
      hashes: this.hashes,
      defaultAgent: settings.defaultAgent,
    });
    return { ...loaded, settings };
  }

  /** Makes `baseline` the world: store contents, machines, rules, faults, clock, seed; empty journal and counters. */
  private async apply(baseline: Baseline): Promise<void> {
    const services = this.services!;
    const steering = this.steering;
    await steering.clear();
    const { settings } = baseline;
    this.settings = settings;
    this.clock.reset({ mode: settings.clock.mode, ...(settings.clock.start !== null ? { start: settings.clock.start } : {}) });
    this.random.reseed(settings.seed);
    await this.options.store.replaceWorld(baseline.world);
    // The clock and the identities start again too, so a stream ends; its client reconnects and re-reads.
    services.changes.endAll('reset');
    services.authenticator.forget();
    services.gateway.forgetCredentials();
    await services.limiter.reset();
    this.journal.clear();
    this.callers.clear();
    this.faults.set(settings.faults);
    steering.setRules(settings.rules);
    steering.setSimulation(settings.simulation);
    steering.duplicatePolicy = settings.duplicatePolicy;
    const active = new Map<string, World['actions']>();
    for (const a of baseline.world.actions) {
      if (a.status !== 'Pending' && a.status !== 'InProgress') continue;
      const key = machineKey(a.tenantId, a.machineId);
      active.set(key, [...(active.get(key) ?? []), a]);
    }
    for (const m of baseline.machines) {
      await steering.serve(served(m.machine, m.agent), active.get(machineKey(m.machine.tenantId, m.machine.id)) ?? []);
    }
  }

  /** Back to the baseline (the loaded fixtures), or to an empty world. */
  reset(to: 'baseline' | 'empty' = 'baseline'): Promise<void> {
    return this.serially(async () => {
      const empty: Baseline = {
        world: { tenants: [], applications: [], users: [], machines: [], actions: [] },
        machines: [],
        settings: emulatorSettings(undefined, this.options.demoSimulation),
      };
      await this.apply(to === 'empty' ? empty : this.baseline!);
    });
  }

  /** Replaces the world with `fixtures`, which become what a reset goes back to. */
  load(fixtures: Fixtures): Promise<void> {
    return this.serially(async () => {
      const baseline = await this.baselineOf(fixtures);
      this.baseline = baseline;
      await this.apply(baseline);
    });
  }

  /** The world as it is now, as fixtures: loading them gives the same world. */
  async export(): Promise<Fixtures> {
    const world = await this.options.store.exportWorld();
    const agents = new Map(this.steering.listMachines().map((m) => [machineKey(m.tenantId, m.machineId), m.agent]));
    const fixtures = worldToFixtures(world, agents);
    const clock = this.clock.state;
    fixtures.emulator = {
      ...(this.random.seed !== null ? { seed: this.random.seed } : {}),
      clock: { mode: clock.mode, start: new Date(clock.now).toISOString() },
      duplicatePolicy: this.steering.duplicatePolicy,
      defaultAgent: this.settings.defaultAgent,
      ...(Object.keys(this.settings.simulation).length > 0 ? { simulation: this.settings.simulation as Record<string, unknown> } : {}),
      rules: this.steering.listRules().map(({ remaining, ...rule }) => (remaining === null ? rule : { ...rule, times: remaining })).filter((r) => r.times !== 0),
      faults: this.faults.listFaults().map(({ remaining, injected: _, ...fault }) => (remaining === null ? fault : { ...fault, times: remaining })).filter((f) => f.times !== 0),
    };
    return fixtures;
  }

  /** Seed and duplicate policy, changed at run time. */
  updateSettings(change: { seed?: string | null; duplicatePolicy?: DuplicatePolicy }): void {
    if (change.seed !== undefined) {
      this.random.reseed(change.seed);
      this.settings = { ...this.settings, seed: change.seed };
    }
    if (change.duplicatePolicy) this.steering.duplicatePolicy = change.duplicatePolicy;
  }

  get currentSettings(): { seed: string | null; duplicatePolicy: DuplicatePolicy; journalSize: number } {
    return { seed: this.random.seed, duplicatePolicy: this.steering.duplicatePolicy, journalSize: this.journal.size };
  }

  /**
   * Moves the clock on: timers fall due in order (simulated machines' timings), then the sweeper
   * times out what is overdue, and rate-limit windows the jump passes are forgotten.
   */
  async advance(ms: number): Promise<number> {
    const services = this.services!;
    const now = await this.clock.advance(ms, () => services.sweeper.sweep());
    await services.limiter.reset(ms / 1000);
    return now;
  }

  /** A machine created or changed by the control API, served as `agent` says. */
  async putMachine(machine: Machine, agent: AgentKind): Promise<void> {
    await this.options.store.upsertMachine(machine);
    await this.steering.serve(served(machine, agent));
  }

  async setAgent(machine: Machine, agent: AgentKind): Promise<void> {
    await this.steering.serve(served(machine, agent));
  }

  async removeMachine(tenantId: string, machineId: string): Promise<boolean> {
    await this.steering.forget(tenantId, machineId);
    const removed = await this.options.store.deleteMachine(tenantId, machineId);
    // Its actions went with it, without a change each.
    if (removed) this.services!.changes.resync();
    return removed;
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.changing.then(work);
    this.changing = run.catch(() => undefined);
    return run;
  }

  /** Registers the hooks (faults before every route, the journal after every answer) and the routes. */
  register(app: FastifyInstance, routes: (app: FastifyInstance, plane: ControlPlane) => void): void {
    app.addHook('onRequest', this.faults.hook);
    // The Date header from the emulator's clock too: with a seed, responses repeat byte for byte.
    app.addHook('onSend', (_request, reply, payload, done) => {
      reply.header('date', new Date(this.clock.now()).toUTCString());
      done(null, payload);
    });
    app.addHook('onResponse', (request, reply, done) => {
      const operation = operationName(request);
      this.journal.record(request, reply, operation, this.faults.injectedInto(request));
      const caller = request.caller;
      if (operation && caller && this.callers.size < MAX_QUOTA_KEYS) {
        this.callers.set(`${caller.tenantId}:${caller.id}:${operation}`, { tenantId: caller.tenantId, id: caller.id, name: caller.displayName, operation });
      }
      done();
    });
    routes(app, this);
  }
}

function served(machine: Machine, agent: AgentKind): ServedMachine {
  return { tenantId: machine.tenantId, machineId: machine.id, name: machine.computerDnsName, agent };
}

/** The demo fleet's machines, as the emulator serves them (no agent enrolls: in-process). */
function demoMachine(i: number, now: number): Machine {
  const name = SimulatedFleet.machineName(i, 'demo.countermand.local');
  const address = SimulatedFleet.machineAddress(i);
  return {
    tenantId: DEMO_TENANT_ID,
    id: derivedMachineId(DEMO_TENANT_ID, name),
    computerDnsName: name,
    firstSeen: now,
    lastSeen: now,
    osPlatform: 'Linux',
    osVersion: 'Simulated',
    osProcessor: 'x64',
    version: null,
    osBuild: null,
    lastIpAddress: address.ipAddress,
    lastExternalIpAddress: null,
    agentVersion: null,
    osArchitecture: '64-bit',
    healthStatus: 'Active',
    defenderAvStatus: null,
    onboardingStatus: 'Onboarded',
    deviceValue: 'Normal',
    rbacGroupId: 1,
    rbacGroupName: 'Demo fleet',
    riskScore: 'None',
    exposureLevel: 'None',
    isAadJoined: false,
    aadDeviceId: null,
    machineTags: [],
    ipAddresses: [address],
    offboardedAt: null,
  };
}

/** The contract operation a request was routed to (set in the route's config by buildApp). */
function operationName(request: { routeOptions: { config?: unknown } }): string | null {
  const config = request.routeOptions.config as { operation?: string } | undefined;
  return config?.operation ?? null;
}

