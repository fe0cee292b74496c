import autocannon from 'autocannon';
import { Samples, round, summarize, type Summary } from './stats.js';

/**
 * One autocannon run from this process against a server in another process. Latencies are
 * recorded from autocannon's per-response event (float milliseconds from request write to the
 * end of the response, 2xx only, like autocannon's own histogram, which rounds to whole ms).
 */
export interface LoadSpec {
  url: string;
  connections: number;
  /** Seconds (ignored when `amount` is set). */
  duration?: number;
  /** Exactly this many requests, then stop. */
  amount?: number;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  /** The path of each request (called once per request). */
  path: () => string;
  /** Gives each request its own body (called after `path`). */
  bodyFor?: () => string;
}

export interface LoadResult {
  /** Rounds pooled into this result (their own figures are in `rounds`). */
  rounds?: { seconds: number; okPerSecond: number; p50: number; p99: number }[];
  connections: number;
  requests: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  seconds: number;
  /** 2xx responses per second of wall time. */
  okPerSecond: number;
  latencyMs: Summary;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return (await runLoadRaw(spec)).result;
}

export interface RawLoad {
  result: LoadResult;
  /** Every 2xx latency, ms. */
  latencies: Float64Array;
}

/** Pools rounds of one workload: counts add up, throughput is total 2xx over total time, percentiles over all samples. */
export function pool(runs: RawLoad[]): LoadResult {
  const statusCodes: Record<string, number> = {};
  for (const r of runs) for (const [code, n] of Object.entries(r.result.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n;
  const sum = (f: (l: LoadResult) => number) => runs.reduce((n, r) => n + f(r.result), 0);
  const all = new Float64Array(runs.reduce((n, r) => n + r.latencies.length, 0));
  let at = 0;
  for (const r of runs) {
    all.set(r.latencies, at);
    at += r.latencies.length;
  }
  const seconds = sum((l) => l.seconds);
  const ok = sum((l) => l.ok);
  return {
    rounds: runs.map((r) => ({ seconds: r.result.seconds, okPerSecond: r.result.okPerSecond, p50: r.result.latencyMs.p50, p99: r.result.latencyMs.p99 })),
    connections: runs[0]?.result.connections ?? 0,
    requests: sum((l) => l.requests),
    ok,
    non2xx: sum((l) => l.non2xx),
    errors: sum((l) => l.errors),
    timeouts: sum((l) => l.timeouts),
    statusCodes,
    seconds: round(seconds, 3),
    okPerSecond: round(ok / seconds, 1),
    latencyMs: roundSummary(summarize(all)),
  };
}

export async function runLoadRaw(spec: LoadSpec): Promise<RawLoad> {
  const latencies = new Samples();
  const started = performance.now();
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.duration ?? 10 }),
    method: spec.method,
    headers: spec.headers,
    ...(spec.body !== undefined ? { body: spec.body } : {}),
    timeout: 30,
    requests: [
      {
        setupRequest: (request) => {
          request.path = spec.path();
          if (spec.bodyFor) request.body = spec.bodyFor();
          return request;
        },
      },
    ],
  });
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
  });
  const result = await instance;
  const seconds = (performance.now() - started) / 1000;
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, Number(s.count)]));
  const ok = result['2xx'];
  const values = Float64Array.from(latencies.values());
  const loadResult: LoadResult = {
    connections: spec.connections,
    requests: Object.values(statusCodes).reduce((a, b) => a + b, 0),
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    seconds: round(seconds, 3),
    okPerSecond: round(ok / seconds, 1),
    latencyMs: roundSummary(summarize(values)),
  };
  return { result: loadResult, latencies: values };
}

export function roundSummary(s: Summary): Summary {
  return {
    count: s.count,
    mean: round(s.mean, 3),
    min: round(s.min, 3),
    p50: round(s.p50, 3),
    p90: round(s.p90, 3),
    p99: round(s.p99, 3),
    p999: round(s.p999, 3),
    max: round(s.max, 3),
  };
}

/**
 * Waits until the server answers a trivial request (GET /api/machines without a token: 401
 * before any database work) within 20 ms twice in a row, so work a duration-bound run left
 * queued on the server does not spill into the next measurement. Gives up after 180 s.
 */
export async function settle(url: string): Promise<number> {
  const started = performance.now();
  let fast = 0;
  while (fast < 2 && performance.now() - started < 180_000) {
    const t = performance.now();
    await fetch(`${url}/api/machines`).then((r) => r.arrayBuffer()).catch(() => undefined);
    fast = performance.now() - t < 20 ? fast + 1 : 0;
    if (fast < 2) await new Promise((r) => setTimeout(r, 50));
  }
  return (performance.now() - started) / 1000;
}

/** A small HTTP helper for setup calls (token, probes): fetch with a JSON body. */
export async function httpJson(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown; text: string }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, body: parsed, text };
}
