import { RateLimiterMemory } from 'rate-limiter-flexible';

/** Failed attempts per key and minute before the key is refused until the minute is over. */
const FAILURES_PER_MINUTE = 20;

/**
 * Refuses a key (a client, a user, an address) that keeps failing to prove a secret, so that
 * guessing secrets does not scale. Only failures count. Used by the token service and by agent
 * enrollment; each answers in its own protocol's words.
 */
export class FailureThrottle {
  private readonly failures: RateLimiterMemory;

  constructor(name: string) {
    this.failures = new RateLimiterMemory({ points: FAILURES_PER_MINUTE, duration: 60, keyPrefix: name });
  }

  /** Whole seconds until the key may try again; 0 when it may now. */
  async blockedFor(key: string): Promise<number> {
    const state = await this.failures.get(key);
    if (!state || state.consumedPoints < FAILURES_PER_MINUTE) return 0;
    return Math.max(1, Math.ceil(state.msBeforeNext / 1000));
  }

  async failed(key: string): Promise<void> {
    await this.failures.penalty(key, 1);
  }
}
