/**
 * The emulator's clock. Every timestamp the server writes or checks in emulator mode comes from
 * here (actions, events, machines' lastSeen, token iat/exp and their verification, the
 * sweeper's timeouts, the simulated machines' timings), injected through the `now` options the
 * services already take.
 *
 * - `real`: wall-clock time plus an offset; `advance` moves the offset forward.
 * - `manual`: time stands still until `advance` (or `set`) moves it: what a deterministic test
 *   wants, since then the same requests give the same timestamps.
 *
 * Timers scheduled on it fire when their time comes: in real mode after the real delay, in both
 * modes at once when an `advance` passes them. `advance` fires them one at a time, in time order,
 * with the clock standing at each one's due time, and waits for what each sets off, so when it
 * returns everything it made due has happened.
 */
export type ClockMode = 'real' | 'manual';

interface Timer {
  id: number;
  at: number;
  fire: () => Promise<void> | void;
  handle: NodeJS.Timeout | undefined;
}

/** The longest setTimeout Node accepts; later timers are re-armed when it passes. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class Clock {
  private mode: ClockMode;
  /** Real mode: added to Date.now(). Manual mode: unused. */
  private offset = 0;
  /** Manual mode: the current time. */
  private current: number;
  private readonly timers = new Map<number, Timer>();
  private nextId = 1;
  /** Advances run one at a time, so timers fire in order even when two calls overlap. */
  private advancing: Promise<unknown> = Promise.resolve();

  constructor(options: { mode: ClockMode; start?: number }) {
    this.mode = options.mode;
    this.current = options.start ?? Date.now();
    if (options.mode === 'real' && options.start !== undefined) this.offset = options.start - Date.now();
  }

  /** Usable wherever a `now: () => number` option is taken. */
  readonly now = (): number => (this.mode === 'manual' ? this.current : Date.now() + this.offset);

  get state(): { mode: ClockMode; now: number; timers: number } {
    return { mode: this.mode, now: this.now(), timers: this.timers.size };
  }

  /** Switches mode; the time goes on from where it is. */
  setMode(mode: ClockMode): void {
    if (mode === this.mode) return;
    const now = this.now();
    this.mode = mode;
    if (mode === 'manual') this.current = now;
    else this.offset = now - Date.now();
    for (const timer of this.timers.values()) this.arm(timer);
  }

  /**
   * Calls `fire` when the clock reaches `at` (at once, asynchronously, if it has). Returns a
   * function that cancels it.
   */
  schedule(at: number, fire: () => Promise<void> | void): () => void {
    const timer: Timer = { id: this.nextId++, at, fire, handle: undefined };
    this.timers.set(timer.id, timer);
    this.arm(timer);
    return () => this.cancel(timer);
  }

  /** Resolves true when the clock reaches `at`, false as soon as `signal` aborts. */
  until(at: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = () => {
        cancel();
        resolve(false);
      };
      const cancel = this.schedule(at, () => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way (each awaited, the
   * clock standing at its due time), then `after` (the sweeper's pass). Time never goes back.
   */
  advance(ms: number, after?: () => Promise<unknown>): Promise<number> {
    if (!(ms >= 0)) return Promise.reject(new RangeError('the clock only moves forward'));
    const run = this.advancing.then(async () => {
      const target = this.now() + ms;
      for (;;) {
        const due = [...this.timers.values()].filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
        if (!due) break;
        this.moveTo(Math.max(this.now(), due.at));
        this.cancel(due);
        await due.fire();
      }
      this.moveTo(Math.max(this.now(), target));
      await after?.();
      return this.now();
    });
    this.advancing = run.catch(() => undefined);
    return run;
  }

  /** Back to a fresh start (the emulator's reset): no timers, the given mode and time. */
  reset(options: { mode: ClockMode; start?: number }): void {
    for (const timer of [...this.timers.values()]) this.cancel(timer);
    this.mode = options.mode;
    this.current = options.start ?? Date.now();
    this.offset = options.mode === 'real' && options.start !== undefined ? options.start - Date.now() : 0;
  }

  private moveTo(time: number): void {
    if (this.mode === 'manual') this.current = time;
    else this.offset = time - Date.now();
    // Real-mode timers count down in real time: re-arm them for the new offset.
    if (this.mode === 'real') for (const timer of this.timers.values()) this.arm(timer);
  }

  private cancel(timer: Timer): void {
    clearTimeout(timer.handle);
    this.timers.delete(timer.id);
  }

  /** Real mode counts down with setTimeout; manual mode only fires on advance (or when due now). */
  private arm(timer: Timer): void {
    clearTimeout(timer.handle);
    timer.handle = undefined;
    const delay = timer.at - this.now();
    if (this.mode === 'manual' && delay > 0) return;
    const ms = Math.min(Math.max(0, delay), MAX_DELAY_MS);
    timer.handle = setTimeout(() => {
      if (!this.timers.has(timer.id)) return;
      if (timer.at > this.now()) return this.arm(timer);
      this.cancel(timer);
      void Promise.resolve()
        .then(timer.fire)
        .catch(() => undefined);
    }, ms);
    timer.handle.unref();
  }
}
