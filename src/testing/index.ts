/**
 * `countermand/testing`: a small client for the emulator's control API, so a TypeScript test
 * suite can reset the world, set rules and faults, move the clock and read the journal in one
 * line each (docs/emulator.md). It uses fetch only.
 *
 *   const control = new ControlClient('http://127.0.0.1:8080', process.env.COUNTERMAND_CONTROL_TOKEN!);
 *   beforeEach(() => control.reset());
 *   await control.addRule({ match: { actionType: 'Isolate' }, start: { afterReads: 1 }, finish: 'step' });
 *   expect(await control.journal({ method: 'POST' })).toHaveLength(2);
 */

export type Trigger = 'now' | 'never' | 'step' | { afterSeconds: number } | { afterReads: number };
export type ActionType =
  | 'RunAntiVirusScan'
  | 'Offboard'
  | 'LiveResponse'
  | 'CollectInvestigationPackage'
  | 'Isolate'
  | 'Unisolate'
  | 'StopAndQuarantineFile'
  | 'RestrictCodeExecution'
  | 'UnrestrictCodeExecution';

export interface CommandBehaviour {
  outcome: 'Completed' | 'Failed';
  error?: string;
  /** RunScript on a simulated machine: the exit code in its result. */
  exitCode?: number;
}

export interface Rule {
  id?: string;
  match?: { tenantId?: string; machineId?: string; actionType?: ActionType };
  times?: number;
  start?: Trigger;
  finish?: Trigger;
  outcome?: 'Succeeded' | 'Failed' | 'TimeOut';
  errorHResult?: number;
  troubleshootInfo?: string;
  /** What the machine reports finding (a scan's `findings` raise an alert). */
  detail?: Record<string, unknown>;
  commands?: Partial<Record<'PutFile' | 'RunScript' | 'GetFile', CommandBehaviour>>;
}

export interface Fault {
  id?: string;
  kind: 'error' | 'latency' | 'throttle' | 'outage';
  match?: { method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'; path?: string };
  rate?: number;
  times?: number;
  status?: number;
  code?: string;
  message?: string;
  minMs?: number;
  maxMs?: number;
  retryAfterSeconds?: number;
}

export interface JournalEntry {
  seq: number;
  time: string;
  method: string;
  path: string;
  query: string;
  operation: string | null;
  caller: { tenantId: string; kind: 'application' | 'user'; id: string; name: string } | null;
  status: number;
  latencyMs: number;
  requestId: string;
  /** The faults that affected it, in order (a latency with the delay it drew). */
  faults: { id: string; kind: Fault['kind']; delayMs?: number }[];
}

export interface JournalFilter {
  method?: string;
  pathPrefix?: string;
  status?: number;
  caller?: string;
  since?: string;
  afterSeq?: number;
}

export interface ClockState {
  now: string;
  mode: 'real' | 'manual';
  timers: number;
}

export interface MachineChange {
  computerDnsName?: string;
  healthStatus?: 'Active' | 'Inactive' | 'ImpairedCommunication' | 'NoSensorData' | 'NoSensorDataImpairedCommunication' | 'Unknown';
  lastSeen?: string | null;
  lastIpAddress?: string | null;
  lastExternalIpAddress?: string | null;
  ipAddresses?: { ipAddress: string; macAddress?: string | null; type?: string | null; operationalStatus?: string | null }[];
  machineTags?: string[];
  riskScore?: string | null;
  exposureLevel?: string | null;
  deviceValue?: string | null;
  onboardingStatus?: string | null;
  rbacGroupId?: number | null;
  rbacGroupName?: string | null;
  osPlatform?: string | null;
  osVersion?: string | null;
  agent?: 'simulated' | 'none';
}

/** An answer other than the one expected: the control API's envelope, when it gave one. */
export class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | null,
    message: string,
  ) {
    super(message);
    this.name = 'ControlError';
  }
}

export class ControlClient {
  private readonly base: string;

  constructor(
    baseUrl: string,
    private readonly adminToken: string,
  ) {
    this.base = `${baseUrl.replace(/\/+$/, '')}/_countermand`;
  }

  /** One call; resolves with the parsed body (undefined for 204). */
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.adminToken}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    const parsed = text ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ControlError(response.status, error?.code ?? null, `${method} ${path}: ${response.status} ${error?.message ?? text}`);
    }
    return parsed as T;
  }

  /** Back to the loaded fixtures (or an empty world). */
  reset(to: 'baseline' | 'empty' = 'baseline'): Promise<{ to: string; elapsedMs: number }> {
    return this.call('POST', '/reset', { to });
  }

  exportFixtures<T = Record<string, unknown>>(): Promise<T> {
    return this.call('GET', '/fixtures');
  }

  /** Replaces the world; the fixtures become what reset() goes back to. */
  loadFixtures(fixtures: unknown): Promise<{ loaded: { tenants: number; machines: number; actions: number } }> {
    return this.call('PUT', '/fixtures', fixtures);
  }

  setRules(rules: Rule[]): Promise<{ value: (Rule & { id: string; remaining: number | null })[] }> {
    return this.call('PUT', '/rules', rules);
  }

  addRule(rule: Rule, position?: number): Promise<Rule & { id: string; remaining: number | null }> {
    return this.call('POST', `/rules${position === undefined ? '' : `?position=${position}`}`, rule);
  }

  async rules(): Promise<(Rule & { id: string; remaining: number | null })[]> {
    return (await this.call<{ value: (Rule & { id: string; remaining: number | null })[] }>('GET', '/rules')).value;
  }

  removeRule(id: string): Promise<void> {
    return this.call('DELETE', `/rules/${encodeURIComponent(id)}`);
  }

  setFaults(faults: Fault[]): Promise<{ value: (Fault & { id: string; remaining: number | null; injected: number })[] }> {
    return this.call('PUT', '/faults', faults);
  }

  addFault(fault: Fault): Promise<Fault & { id: string; remaining: number | null; injected: number }> {
    return this.call('POST', '/faults', fault);
  }

  async faults(): Promise<(Fault & { id: string; remaining: number | null; injected: number })[]> {
    return (await this.call<{ value: (Fault & { id: string; remaining: number | null; injected: number })[] }>('GET', '/faults')).value;
  }

  removeFault(id: string): Promise<void> {
    return this.call('DELETE', `/faults/${encodeURIComponent(id)}`);
  }

  settings(change?: { seed?: string | number | null; duplicatePolicy?: 'reject' | 'returnExisting'; journalSize?: number }) {
    return change
      ? this.call<{ seed: string | null; duplicatePolicy: string; journalSize: number }>('PATCH', '/settings', change)
      : this.call<{ seed: string | null; duplicatePolicy: string; journalSize: number }>('GET', '/settings');
  }

  clock(): Promise<ClockState> {
    return this.call('GET', '/clock');
  }

  /** Moves the clock on; what falls due (timings, timeouts, expiries) has happened when it resolves. */
  advance(seconds: number): Promise<ClockState> {
    return this.call('POST', '/clock/advance', { seconds });
  }

  setClock(change: { mode?: 'real' | 'manual'; now?: string }): Promise<ClockState> {
    return this.call('PUT', '/clock', change);
  }

  /** Ends the action's current phase now; resolves with the action as it then is. */
  step(actionId: string): Promise<{ action: { id: string; status: string } & Record<string, unknown>; plan: unknown }> {
    return this.call('POST', `/actions/${encodeURIComponent(actionId)}/step`);
  }

  async journal(filter: JournalFilter = {}): Promise<JournalEntry[]> {
    const query = new URLSearchParams(Object.entries(filter).map(([k, v]) => [k, String(v)] as [string, string])).toString();
    return (await this.call<{ value: JournalEntry[] }>('GET', `/journal${query ? `?${query}` : ''}`)).value;
  }

  clearJournal(): Promise<void> {
    return this.call('DELETE', '/journal');
  }

  async quota(caller?: string) {
    const query = caller ? `?caller=${encodeURIComponent(caller)}` : '';
    return (
      await this.call<{
        value: {
          tenantId: string;
          callerId: string;
          caller: string;
          operation: string;
          windows: { limit: number; windowSeconds: number; used: number; remaining: number; resetsInSeconds: number }[];
        }[];
      }>('GET', `/quota${query}`)
    ).value;
  }

  async machines(tenantId?: string) {
    const query = tenantId ? `?tenantId=${tenantId}` : '';
    return (await this.call<{ value: { tenantId: string; agent: 'simulated' | 'none' | null; machine: Record<string, unknown> & { id: string } }[] }>('GET', `/machines${query}`)).value;
  }

  createMachine(tenantId: string, machine: { computerDnsName: string; id?: string; agent?: 'simulated' | 'none' } & Record<string, unknown>) {
    return this.call<{ tenantId: string; agent: string; machine: Record<string, unknown> & { id: string } }>('POST', `/tenants/${tenantId}/machines`, machine);
  }

  changeMachine(tenantId: string, machineId: string, change: MachineChange) {
    return this.call<{ tenantId: string; agent: string; machine: Record<string, unknown> & { id: string } }>('PATCH', `/tenants/${tenantId}/machines/${machineId}`, change);
  }

  removeMachine(tenantId: string, machineId: string): Promise<void> {
    return this.call('DELETE', `/tenants/${tenantId}/machines/${machineId}`);
  }

  /** Resolves when GET /ready says ready (polling), or rejects after `timeoutMs`. */
  static async waitUntilReady(baseUrl: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const response = await fetch(`${baseUrl.replace(/\/+$/, '')}/ready`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${baseUrl} was not ready within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
