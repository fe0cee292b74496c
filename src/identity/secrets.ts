import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { availableParallelism } from 'node:os';

/**
 * Client secrets, user passwords and enrollment secrets are stored only as scrypt hashes:
 * `scrypt$<N>$<r>$<p>$<salt b64url>$<hash b64url>`. The parameters travel with the hash, so they
 * can be raised later without breaking stored ones.
 */
const PARAMS = { N: 16384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

/**
 * Runs at most `slots` tasks at once; waiting tasks are served one source at a time, in turn
 * (round robin), so a source with a thousand waiting tasks delays another source's task by about
 * one task, not a thousand.
 */
export class FairQueue {
  private running = 0;
  /** Waiting tasks by source; the Map's order is the order of turns. */
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(readonly slots: number) {}

  async run<T>(source: string, task: () => Promise<T>): Promise<T> {
    if (this.running < this.slots) this.running++;
    else {
      await new Promise<void>((start) => {
        const queue = this.waiting.get(source);
        if (queue) queue.push(start);
        else this.waiting.set(source, [start]);
      });
    }
    try {
      return await task();
    } finally {
      this.handOver();
    }
  }

  /** A finished task's slot goes to the next source in turn, which then goes to the back. */
  private handOver(): void {
    const next = this.waiting.entries().next();
    if (next.done) {
      this.running--;
      return;
    }
    const [source, queue] = next.value;
    this.waiting.delete(source);
    const start = queue.shift()!;
    if (queue.length > 0) this.waiting.set(source, queue);
    start();
  }
}

/**
 * Every scrypt derivation (token requests, enrollment, the CLI, fixtures) goes through this one
 * queue, sized to the cores: a flood of secrets to check cannot take every core (nor the whole
 * libuv thread pool, which file and DNS work share), and each source waits its turn.
 */
const hashing = new FairQueue(availableParallelism());

/** Work of the server itself (fixtures, the CLI, creating secrets) rather than of a caller. */
const LOCAL = '';

function derive(secret: string, salt: Buffer, options: ScryptOptions, source: string): Promise<Buffer> {
  return hashing.run(
    source,
    () =>
      new Promise((resolve, reject) =>
        scrypt(secret, salt, KEY_LENGTH, { ...options, maxmem: 64 * 1024 * 1024 }, (error, key) =>
          error ? reject(error) : resolve(key),
        ),
      ),
  );
}

export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await derive(secret, salt, PARAMS, LOCAL);
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

/** `source` is who asks (see sourceOf): requests from one source wait behind each other only. */
export async function verifySecret(secret: string, stored: string, source = LOCAL): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await derive(secret, Buffer.from(salt, 'base64url'), { N: Number(n), r: Number(r), p: Number(p) }, source);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A new client secret: 40 URL-safe characters (240 bits). */
export function generateSecret(): string {
  return randomBytes(30).toString('base64url');
}
