/**
 * Rate limits of contract §8: per tenant, per caller, per endpoint. A policy lists fixed
 * windows; a call must fit in every one of them.
 */
export interface RateWindow {
  points: number;
  seconds: number;
}
export type RateLimitPolicy = readonly RateWindow[];

const MINUTE = 60;
const HOUR = 3600;

export const RATE_LIMITS = {
  default: [
    { points: 100, seconds: MINUTE },
    { points: 1500, seconds: HOUR },
  ],
  liveResponse: [{ points: 10, seconds: MINUTE }],
  packageUri: [
    { points: 2, seconds: MINUTE },
    { points: 120, seconds: HOUR },
  ],
  startInvestigation: [{ points: 50, seconds: HOUR }],
} as const satisfies Record<string, RateLimitPolicy>;

/** Non-final live-response actions a tenant may have at once (then 429). */
export const LIVE_RESPONSE_CONCURRENCY = 25;
