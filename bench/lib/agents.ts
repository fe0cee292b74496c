import http from 'node:http';
import { sleep } from './stats.js';

/**
 * Minimal agents speaking the long-poll protocol (docs/agent-protocol.md) over node:http, many
 * per process: each holds one check-in open at a time, over its own keep-alive socket. They do
 * not run anything: the dispatch scenario drives them step by step and timestamps what they
 * receive.
 */

export interface AgentCredentials {
  index: number;
  machineId: string;
  token: string;
}

export interface CheckinAnswer {
  actions: { id: string; status: string }[];
  stop: { id: string; status: string }[];
}

export interface Timed<T> {
  body: T;
  /** performance.now() when the whole response had arrived. */
  at: number;
}

export interface HttpAnswer {
  status: number;
  body: unknown;
  at: number;
}

/** The keep-alive pool all agents of one fleet share: a socket per outstanding check-in. */
function agentPool(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1 << 16, scheduling: 'lifo' });
}

export function request(
  pool: http.Agent,
  url: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: unknown,
  onRequest?: (req: http.ClientRequest) => void,
): Promise<HttpAnswer> {
  const payload = body === undefined ? '' : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        agent: pool,
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }), 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const at = performance.now();
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // keep the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, at });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    onRequest?.(req);
    req.end(payload);
  });
}

export class BenchAgent {
  /** What the agent tells the server it is handling. */
  running: string[] = [];
  polls = 0;
  emptyAnswers = 0;
  errors = 0;
  private current: http.ClientRequest | null = null;
  private active = false;
  private waiter: ((answer: Timed<CheckinAnswer>) => void) | null = null;
  private buffered: Timed<CheckinAnswer> | null = null;

  constructor(
    private readonly fleet: AgentFleet,
    readonly credentials: AgentCredentials,
  ) {}

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.credentials.token}`, 'x-bench-machine': this.credentials.machineId };
  }

  /**
   * Opens a check-in with `running`. An empty answer (the poll time is up) is followed by the
   * next check-in at once; an answer with actions or stops is handed to `nextAnswer()` and the
   * agent stays quiet until `poll()` is called again. Resolves when the request is written.
   */
  poll(running: string[] = this.running): Promise<void> {
    this.running = running;
    this.active = true;
    this.polls++;
    return new Promise<void>((written) => {
      request(
        this.fleet.pool,
        this.fleet.url,
        'POST',
        '/agent/v1/checkin',
        this.headers(),
        { running: this.running, maxWaitSeconds: 300, agentVersion: 'bench' },
        (req) => {
          this.current = req;
          req.once('finish', () => written());
          req.once('error', () => written());
        },
      ).then(
        (answer) => {
          this.current = null;
          if (!this.active) return;
          if (answer.status !== 200) {
            this.errors++;
            this.fleet.problem(`check-in of agent ${this.credentials.index} answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 300)}`);
            this.active = false;
            return;
          }
          const body = answer.body as CheckinAnswer;
          if (body.actions.length === 0 && body.stop.length === 0) {
            this.emptyAnswers++;
            void this.poll();
            return;
          }
          this.active = false;
          const timed = { body, at: answer.at };
          if (this.waiter) {
            const w = this.waiter;
            this.waiter = null;
            w(timed);
          } else this.buffered = timed;
        },
        (error: unknown) => {
          this.current = null;
          if (!this.active) return; // disconnected on purpose
          this.errors++;
          this.fleet.problem(`check-in of agent ${this.credentials.index} failed: ${(error as Error).message}`);
          void sleep(200).then(() => {
            if (this.active) void this.poll();
          });
        },
      );
    });
  }

  /** The next answer that carries work (actions or stop). */
  nextAnswer(timeoutMs = 30_000): Promise<Timed<CheckinAnswer>> {
    if (this.buffered) {
      const b = this.buffered;
      this.buffered = null;
      return Promise.resolve(b);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`agent ${this.credentials.index}: no answer with work within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (answer) => {
        clearTimeout(timer);
        resolve(answer);
      };
    });
  }

  /** Another protocol call (start, report) on a pooled socket. */
  call(method: string, path: string, body?: unknown): Promise<HttpAnswer> {
    return request(this.fleet.pool, this.fleet.url, method, path, this.headers(), body);
  }

  /** Drops the open check-in's connection (the server sees the socket close). */
  disconnect(): void {
    this.active = false;
    this.buffered = null;
    this.current?.destroy();
    this.current = null;
  }
}

export class AgentFleet {
  readonly pool = agentPool();
  readonly url: URL;
  readonly agents: BenchAgent[];
  readonly problems: string[] = [];

  constructor(baseUrl: string, credentials: AgentCredentials[]) {
    this.url = new URL(baseUrl);
    this.agents = credentials.map((c) => new BenchAgent(this, c));
  }

  problem(message: string): void {
    if (this.problems.length < 20) this.problems.push(message);
  }

  /** Opens the check-ins of agents [from, to), `batch` at a time, each batch written before the next. */
  async connect(from: number, to: number, batch = 200): Promise<void> {
    for (let i = from; i < to; i += batch) {
      await Promise.all(this.agents.slice(i, Math.min(to, i + batch)).map((a) => a.poll([])));
    }
  }

  disconnect(from: number, to: number): void {
    for (const agent of this.agents.slice(from, to)) agent.disconnect();
  }

  close(): void {
    for (const agent of this.agents) agent.disconnect();
    this.pool.destroy();
  }
}
