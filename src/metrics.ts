import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ACTION_TYPES, type ActionStatus, type ActionType, type MachineAction } from './domain/model.js';

/**
 * This node's Prometheus metrics (docs/observability.md lists every series). Values are counted
 * where the change happens, through this one module: the actions service (created, started,
 * finished), the agent routes (check-ins), the HTTP layer (requests, 429s, 401s), the token
 * service (refusals) and the connection cap. Each server has its own registry; with several
 * nodes each node counts what it did and exposes it itself.
 */

const FINAL_STATUSES = ['Succeeded', 'Failed', 'TimeOut', 'Cancelled'] as const satisfies readonly ActionStatus[];

/** Seconds: a simulated agent starts in milliseconds, an offline machine may take the 3-day delivery window. */
const PICKUP_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 259200];
const FINAL_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 7200, 14400, 86400, 259200];
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** A check-in within this window makes an agent connected (its long poll is 25 s by default). */
const CONNECTED_WINDOW_MS = 90_000;

/** What answered a 429: the API's limits, the agent protocol's, the token endpoints' failed-attempt throttle, or the connection cap. */
export type LimitKind = 'api' | 'agent' | 'token' | 'connections';
/** Where a request went, for the 401 and 429 counts. */
export type Surface = 'api' | 'agent' | 'token' | 'other';

type Labels<K extends string> = Record<K, string>;

/** One route's series, built once when the route is registered, so a request builds no labels. */
export interface RouteSeries {
  observe(method: string, status: number, seconds: number): void;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly actionsCreated: Counter<'type'>;
  private readonly actionsStarted: Counter<'type'>;
  private readonly actionsFinished: Counter<'type' | 'status'>;
  private readonly pickupSeconds: Histogram<'type'>;
  private readonly finalSeconds: Histogram<'type' | 'status'>;
  private readonly checkinsWaiting: Gauge;
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpSeconds: Histogram<'method' | 'route'>;
  private readonly rateLimited: Counter<'limit'>;
  private readonly unauthorized: Counter<'surface'>;
  private readonly tokenFailures: Counter<'error'>;
  /** Last check-in per machine on this node (tenant:machine -> ms). */
  private readonly lastCheckin = new Map<string, number>();
  private readonly typeLabels = new Map<string, Labels<'type'>>();
  private readonly finishLabels = new Map<string, Labels<'type' | 'status'>>();

  constructor(private readonly now: () => number = Date.now) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.actionsCreated = new Counter({
      name: 'countermand_actions_created_total',
      help: 'Machine actions created on this node, by type.',
      labelNames: ['type'],
      registers,
    });
    this.actionsStarted = new Counter({
      name: 'countermand_actions_started_total',
      help: 'Machine actions a machine started (Pending to InProgress), by type.',
      labelNames: ['type'],
      registers,
    });
    this.actionsFinished = new Counter({
      name: 'countermand_actions_finished_total',
      help: 'Machine actions that reached a final status on this node, by type and status.',
      labelNames: ['type', 'status'],
      registers,
    });
    this.pickupSeconds = new Histogram({
      name: 'countermand_action_pickup_seconds',
      help: 'Time from creation to the machine starting the action (Pending to InProgress), by type.',
      labelNames: ['type'],
      buckets: PICKUP_BUCKETS,
      registers,
    });
    this.finalSeconds = new Histogram({
      name: 'countermand_action_final_seconds',
      help: 'Time from creation to the final status, by type and status.',
      labelNames: ['type', 'status'],
      buckets: FINAL_BUCKETS,
      registers,
    });
    // Every type and final status shows from the start, at 0, so rates and alerts need no "absent" case.
    for (const type of ACTION_TYPES) {
      this.actionsCreated.inc(this.typeLabel(type), 0);
      this.actionsStarted.inc(this.typeLabel(type), 0);
      for (const status of FINAL_STATUSES) this.actionsFinished.inc(this.finishLabel(type, status), 0);
    }
    this.checkinsWaiting = new Gauge({
      name: 'countermand_agent_checkins_waiting',
      help: 'Agent check-ins (long polls) open on this node now.',
      registers,
    });
    const lastCheckin = this.lastCheckin;
    const connectedSince = () => this.now() - CONNECTED_WINDOW_MS;
    new Gauge({
      name: 'countermand_agents_connected',
      help: `Machines whose agent checked in with this node within the last ${CONNECTED_WINDOW_MS / 1000} s.`,
      registers,
      collect() {
        const since = connectedSince();
        for (const [key, at] of lastCheckin) if (at < since) lastCheckin.delete(key);
        this.set(lastCheckin.size);
      },
    });
    this.httpRequests = new Counter({
      name: 'countermand_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpSeconds = new Histogram({
      name: 'countermand_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by method and route pattern (a check-in includes its long poll).',
      labelNames: ['method', 'route'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.rateLimited = new Counter({
      name: 'countermand_rate_limited_total',
      help: 'Requests answered 429, by the limit that refused them (api, agent, token, connections).',
      labelNames: ['limit'],
      registers,
    });
    this.unauthorized = new Counter({
      name: 'countermand_unauthorized_total',
      help: 'Requests answered 401 (a missing, invalid or expired token or credential), by surface (api, agent).',
      labelNames: ['surface'],
      registers,
    });
    this.tokenFailures = new Counter({
      name: 'countermand_token_failures_total',
      help: 'Token requests refused, by OAuth error (invalid_client, invalid_grant, temporarily_unavailable, ...).',
      labelNames: ['error'],
      registers,
    });
    for (const limit of ['api', 'agent', 'token', 'connections'] satisfies LimitKind[]) this.rateLimited.inc({ limit }, 0);
    for (const surface of ['api', 'agent'] satisfies Surface[]) this.unauthorized.inc({ surface }, 0);
    for (const error of ['invalid_client', 'invalid_grant', 'invalid_request']) this.tokenFailures.inc({ error }, 0);
  }

  private typeLabel(type: ActionType): Labels<'type'> {
    let labels = this.typeLabels.get(type);
    if (!labels) this.typeLabels.set(type, (labels = { type }));
    return labels;
  }

  private finishLabel(type: ActionType, status: string): Labels<'type' | 'status'> {
    const key = `${type}/${status}`;
    let labels = this.finishLabels.get(key);
    if (!labels) this.finishLabels.set(key, (labels = { type, status }));
    return labels;
  }

  actionCreated(action: MachineAction): void {
    this.actionsCreated.inc(this.typeLabel(action.type));
  }

  /** Pending -> InProgress: the time the machine took to pick the action up. */
  actionStarted(action: MachineAction): void {
    const labels = this.typeLabel(action.type);
    this.actionsStarted.inc(labels);
    const at = action.startedAt ?? action.lastUpdateDateTimeUtc;
    this.pickupSeconds.observe(labels, Math.max(0, at - action.creationDateTimeUtc) / 1000);
  }

  /** Succeeded, Failed, TimeOut or Cancelled: counted once, by the change that made it final. */
  actionFinished(action: MachineAction): void {
    const labels = this.finishLabel(action.type, action.status);
    this.actionsFinished.inc(labels);
    this.finalSeconds.observe(labels, Math.max(0, action.lastUpdateDateTimeUtc - action.creationDateTimeUtc) / 1000);
  }

  /** An agent's check-in began; call the result when it is answered. */
  checkinStarted(tenantId: string, machineId: string): () => void {
    this.lastCheckin.set(`${tenantId}:${machineId}`, this.now());
    this.checkinsWaiting.inc();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.checkinsWaiting.dec();
    };
  }

  rejected(limit: LimitKind): void {
    this.rateLimited.inc({ limit });
  }

  tokenRefused(error: string): void {
    this.tokenFailures.inc({ error });
  }

  /**
   * The series of one route pattern. Its label objects are built here, once per method and
   * status seen, so answering a request only looks two of them up.
   */
  route(route: string): RouteSeries {
    const surface = surfaceOf(route);
    const byMethod = new Map<string, { duration: Labels<'method' | 'route'>; byStatus: Map<number, Labels<'method' | 'route' | 'status'>> }>();
    return {
      observe: (method, status, seconds) => {
        let entry = byMethod.get(method);
        if (!entry) byMethod.set(method, (entry = { duration: { method, route }, byStatus: new Map() }));
        let labels = entry.byStatus.get(status);
        if (!labels) entry.byStatus.set(status, (labels = { method, route, status: String(status) }));
        this.httpRequests.inc(labels);
        this.httpSeconds.observe(entry.duration, seconds);
        if (status === 429 && surface !== 'other') this.rateLimited.inc({ limit: surface });
        else if (status === 401 && (surface === 'api' || surface === 'agent')) this.unauthorized.inc({ surface });
      },
    };
  }

  /** The exposition text and its content type. */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

function surfaceOf(route: string): Surface {
  if (/^\/api(\/|$)/i.test(route)) return 'api';
  if (route.startsWith('/agent/')) return 'agent';
  if (route.includes('/oauth2/')) return 'token';
  return 'other';
}
