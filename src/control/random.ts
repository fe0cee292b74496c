import { createHmac, randomBytes, randomUUID } from 'node:crypto';

/**
 * Where the emulator's generated values come from. With a seed, each kind of value (action ids,
 * request ids, token ids, fault sampling) has a stream of its own: HMAC-SHA256(seed, name:n) for
 * n = 0, 1, 2, ... So the same seed and the same requests give the same values, whatever else
 * (an agent's check-ins, another stream) draws meanwhile. Without a seed, they are random.
 */
export type StreamName = 'actionIds' | 'alertIds' | 'requestIds' | 'tokenIds' | 'faults';

export class Randomness {
  private key: Buffer | null = null;
  private readonly counters = new Map<StreamName, number>();
  private seedValue: string | null = null;

  constructor(seed: string | null = null) {
    this.reseed(seed);
  }

  get seed(): string | null {
    return this.seedValue;
  }

  /** A new seed (or none), with every stream back at its start. */
  reseed(seed: string | null): void {
    this.seedValue = seed;
    this.key = seed === null ? null : Buffer.from(`countermand-seed:${seed}`, 'utf8');
    this.counters.clear();
  }

  /** 32 bytes, the stream's next. */
  private bytes(stream: StreamName): Buffer {
    if (!this.key) return randomBytes(32);
    const n = this.counters.get(stream) ?? 0;
    this.counters.set(stream, n + 1);
    return createHmac('sha256', this.key).update(`${stream}:${n}`).digest();
  }

  /** A version-4 shaped GUID. */
  uuid(stream: StreamName): string {
    if (!this.key) return randomUUID();
    const b = this.bytes(stream);
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    const hex = b.subarray(0, 16).toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /** An integer in [0, below). */
  int(stream: StreamName, below: number): number {
    return Math.floor(this.fraction(stream) * below);
  }

  /** A random GUID whatever the seed (for what the seed does not cover). */
  uuidUnseeded(): string {
    return randomUUID();
  }

  /** A number in [0, 1). */
  fraction(stream: StreamName): number {
    return this.bytes(stream).readUIntBE(0, 6) / 2 ** 48;
  }
}
