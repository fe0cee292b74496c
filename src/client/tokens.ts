/**
 * Access tokens for the client: fetched from the token endpoint (contract §7), cached, renewed
 * before they expire, and shared: callers that need a token while one is being fetched wait
 * for that same request instead of starting their own.
 */

/** Renew this long before `expires_in` runs out, at most (a tenth of the lifetime for short ones). */
const RENEW_MARGIN_MS = 5 * 60_000;


export interface FetchedToken {
  accessToken: string;
  /** Seconds, as the endpoint said. */
  expiresIn: number;
}

interface Cached {
  accessToken: string;
  /** When to fetch a new one (epoch ms). */
  renewAt: number;
}

export class TokenCache {
  private cached: Cached | null = null;
  private inFlight: Promise<string> | null = null;

  constructor(
    private readonly fetchToken: () => Promise<FetchedToken>,
    private readonly now: () => number = Date.now,
  ) {}

  /** A token good for a while yet: the cached one, or the one being fetched, or a new one. */
  get(): Promise<string> {
    if (this.cached && this.now() < this.cached.renewAt) return Promise.resolve(this.cached.accessToken);
    this.inFlight ??= this.fetchToken().then(
      ({ accessToken, expiresIn }) => {
        const lifetimeMs = Math.max(0, expiresIn) * 1000;
        this.cached = { accessToken, renewAt: this.now() + lifetimeMs - Math.min(RENEW_MARGIN_MS, lifetimeMs / 10) };
        this.inFlight = null;
        return accessToken;
      },
      (error: unknown) => {
        this.inFlight = null;
        throw error;
      },
    );
    return this.inFlight;
  }

  /** The server refused `token`: forget it, unless a newer one has replaced it already. */
  invalidate(token: string): void {
    if (this.cached?.accessToken === token) this.cached = null;
  }
}
