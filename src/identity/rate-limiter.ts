import type pg from 'pg';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { RequestLimiter } from '../api/app.js';
import type { Operation } from '../api/operation.js';
import type { Caller } from '../domain/caller.js';
import { ERRORS } from '../domain/errors.js';
import { RATE_LIMITS, type RateWindow } from '../domain/rate-limits.js';

export interface RateLimiterOptions {
  enabled: boolean;
  /** Multiplies every window's points (raise limits for load tests). */
  pointsScale: number;
  /** Multiplies every window's length (shorten windows in tests). */
  windowScale: number;
  /** With several server nodes: count in PostgreSQL (table rate_limits) instead of memory. */
  pool?: pg.Pool;
}

export interface QuotaWindow {
  limit: number;
  windowSeconds: number;
  used: number;
  remaining: number;
  resetsInSeconds: number;
}

/**
 * Enforces contract §8 with rate-limiter-flexible fixed windows. Windows are consumed one after
 * another and a rejected call gives back what it took from the windows before, so a rejected call
 * never eats budget: the Retry-After of a 429 is then honest — once it has passed, a call
 * succeeds unless other calls used the window meanwhile.
 */
export class ApiRateLimiter implements RequestLimiter {
  private readonly limiters = new Map<string, RateLimiterAbstract>();

  constructor(private readonly options: RateLimiterOptions) {}

  private limiter(window: RateWindow): RateLimiterAbstract {
    const points = Math.max(1, Math.round(window.points * this.options.pointsScale));
    const duration = Math.max(1, Math.round(window.seconds * this.options.windowScale));
    const name = `${points}/${duration}s`;
    let limiter = this.limiters.get(name);
    if (!limiter) {
      const common = { points, duration, keyPrefix: `api:${name}` };
      limiter = this.options.pool
        ? new RateLimiterPostgres({ ...common, storeClient: this.options.pool, tableName: 'rate_limits', tableCreated: true })
        : new RateLimiterMemory(common);
      this.limiters.set(name, limiter);
    }
    return limiter;
  }

  /** What one caller has used of one operation's windows (the emulator's quota report). */
  async usage(caller: Pick<Caller, 'tenantId' | 'id'>, operation: Pick<Operation, 'name' | 'rateLimit'>): Promise<QuotaWindow[]> {
    const key = `${caller.tenantId}:${caller.id}:${operation.name}`;
    const windows: QuotaWindow[] = [];
    for (const window of operation.rateLimit ?? RATE_LIMITS.default) {
      const limiter = this.limiter(window);
      const res = this.options.enabled ? await limiter.get(key) : null;
      const used = Math.min(res?.consumedPoints ?? 0, limiter.points);
      windows.push({
        limit: limiter.points,
        windowSeconds: limiter.duration,
        used,
        remaining: limiter.points - used,
        resetsInSeconds: res ? Math.max(0, Math.ceil(res.msBeforeNext / 1000)) : 0,
      });
    }
    return windows;
  }

  /**
   * Forgets every count in windows of at most `seconds` (all when absent): the emulator's reset,
   * and a clock advance that passes a whole window.
   */
  async reset(seconds = Infinity): Promise<void> {
    for (const [name, limiter] of this.limiters) {
      if (limiter.duration > seconds) continue;
      this.limiters.delete(name);
      if (this.options.pool) await this.options.pool.query('DELETE FROM rate_limits WHERE key LIKE $1', [`api:${name}%`]);
    }
  }

  async check(caller: Caller, operation: Operation): Promise<void> {
    if (!this.options.enabled) return;
    const key = `${caller.tenantId}:${caller.id}:${operation.name}`;
    const taken: RateLimiterAbstract[] = [];
    for (const window of operation.rateLimit ?? RATE_LIMITS.default) {
      const limiter = this.limiter(window);
      try {
        await limiter.consume(key);
        taken.push(limiter);
      } catch (rejection) {
        if (!(rejection instanceof RateLimiterRes)) throw rejection;
        await Promise.all(taken.map((l) => l.reward(key, 1)));
        // The rejected call itself must not count either.
        await limiter.reward(key, 1);
        throw ERRORS.TooManyRequests(Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)));
      }
    }
  }
}
