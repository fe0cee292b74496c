import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type pg from 'pg';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

/** Failed attempts a minute for one credential (client id, user name, enrollment token) from one source. */
export const FAILURES_PER_CREDENTIAL = 20;
/** Failed attempts a minute from one source, whatever the credentials (random client ids). */
export const FAILURES_PER_SOURCE = 100;
const WINDOW_SECONDS = 60;

export interface FailureThrottleOptions {
  /** With several server nodes: count in PostgreSQL (table rate_limits), so guesses spread over nodes add up. */
  pool?: pg.Pool;
  /** The refusal in the protocol's own words (OAuth's temporarily_unavailable, the API's envelope). */
  refuse: (retryAfterSeconds: number) => Error;
}

/**
 * Who a request comes from, for throttling: its IPv4 address, or the /64 of an IPv6 address
 * (one host can use a whole /64, so one address per guess must not mean a fresh budget).
 */
export function sourceOf(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (isIPv4(ip) || !isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = ip.includes('::') && tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/**
 * Throttles guessing of secrets by callers that have not proved one yet (token requests, agent
 * enrollment). An attempt is counted before its secret is checked, atomically, and given back
 * when the secret was right, so only failures count and a burst of any size gets at most the
 * limit's worth of checks. Counted per (credential, source), so a stranger cannot lock the owner
 * out from elsewhere, and per source, so guessing with a fresh credential each time (random
 * client ids) does not scale either.
 */
export class FailureThrottle {
  private readonly perCredential: RateLimiterAbstract;
  private readonly perSource: RateLimiterAbstract;
  /**
   * By counter key: how many attempts on this node hold one of its points, and the attempts
   * waiting for one (woken one at a time, as a holder lets go).
   */
  private readonly queues = new Map<string, { holders: number; waiting: (() => void)[] }>();

  constructor(
    name: string,
    private readonly options: FailureThrottleOptions,
  ) {
    const limiter = (points: number, keyPrefix: string) =>
      options.pool
        ? new RateLimiterPostgres({ points, duration: WINDOW_SECONDS, keyPrefix, storeClient: options.pool, tableName: 'rate_limits', tableCreated: true })
        : new RateLimiterMemory({ points, duration: WINDOW_SECONDS, keyPrefix });
    this.perCredential = limiter(FAILURES_PER_CREDENTIAL, `${name}:credential`);
    this.perSource = limiter(FAILURES_PER_SOURCE, `${name}:source`);
  }

  /**
   * Runs `check` as one attempt to prove `credential` from address `ip`; `check` gets the source
   * (to wait its turn for hashing, see secrets.ts) and returns what it proved, or null. Throws the
   * refusal when the credential or the source has used up its failures for now.
   */
  async attempt<T>(credential: string, ip: string, check: (source: string) => Promise<T | null>): Promise<T | null> {
    const source = sourceOf(ip);
    // Always the source first: an attempt waiting for a credential's point may hold its source's,
    // never the other way round, so waits cannot go in a circle.
    const counters: Counter[] = [
      [this.perSource, keyOf(source)],
      [this.perCredential, keyOf(`${credential.toLowerCase()}@${source}`)],
    ];
    const held: Counter[] = [];
    try {
      for (const counter of counters) {
        await this.take(counter);
        held.push(counter);
        this.queue(counter[1]).holders++;
      }
      const proved = await check(source);
      if (proved !== null) await Promise.all(held.map(give));
      return proved;
    } catch (error) {
      // Refused (or failed) before any check: this attempt counts nowhere. A check that failed
      // keeps its count.
      if (held.length < counters.length) await Promise.all(held.map(give));
      throw error;
    } finally {
      for (const [, key] of held) this.letGo(key);
    }
  }

  private async take([limiter, key]: Counter): Promise<void> {
    for (;;) {
      try {
        await limiter.consume(key);
        return;
      } catch (rejection) {
        if (!(rejection instanceof RateLimiterRes)) throw rejection;
        // A refused attempt is not counted, so the count is failures plus attempts under way.
        await limiter.reward(key, 1);
        const queue = this.queue(key);
        if (queue.holders === 0) {
          // Nothing here will give a point back: refused, and so is the next waiting attempt.
          this.wakeNext(key);
          throw this.options.refuse(Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)));
        }
        // The budget is held by attempts still under way here, and each right secret gives its
        // point back: a burst of right secrets (many agents enrolling at once) waits, not fails.
        await new Promise<void>((wake) => queue.waiting.push(wake));
      }
    }
  }

  private queue(key: string) {
    let queue = this.queues.get(key);
    if (!queue) this.queues.set(key, (queue = { holders: 0, waiting: [] }));
    return queue;
  }

  /** A holder is done (its point given back or kept as a failure): the next waiting attempt tries again. */
  private letGo(key: string): void {
    this.queue(key).holders--;
    this.wakeNext(key);
  }

  private wakeNext(key: string): void {
    const queue = this.queues.get(key);
    queue?.waiting.shift()?.();
    if (queue && queue.holders === 0 && queue.waiting.length === 0) this.queues.delete(key);
  }
}

type Counter = readonly [RateLimiterAbstract, string];

const give = ([limiter, key]: Counter) => limiter.reward(key, 1);

/** Keys fit the rate_limits table (VARCHAR(255)) and hold no byte PostgreSQL refuses. */
const keyOf = (key: string) => (key.length <= 160 && /^[\x20-\x7e]*$/.test(key) ? key : createHash('sha256').update(key).digest('hex'));
