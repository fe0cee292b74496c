import { describe, expect, it } from 'vitest';
import { sourceOf } from '../../src/identity/failure-throttle.js';
import { FairQueue } from '../../src/identity/secrets.js';

/**
 * The queue every scrypt derivation waits in (src/identity/secrets.ts), and the source a request
 * is counted and queued under. The HTTP side (a legitimate client keeps getting tokens while one
 * address floods) is test/api/token-hardening.test.ts.
 */

/** A task that runs until released, recording how many ran at once. */
function gate() {
  let running = 0;
  let peak = 0;
  const order: string[] = [];
  const waiting: (() => void)[] = [];
  return {
    task: (name: string) => async () => {
      running++;
      peak = Math.max(peak, running);
      order.push(name);
      await new Promise<void>((release) => waiting.push(release));
      running--;
      return name;
    },
    /** Releases the oldest running task. */
    release: async () => {
      waiting.shift()?.();
      await new Promise((r) => setImmediate(r));
    },
    get peak() {
      return peak;
    },
    order,
    get waiting() {
      return waiting.length;
    },
  };
}

describe('FairQueue', () => {
  it('never runs more tasks at once than it has slots, however many are queued', async () => {
    const queue = new FairQueue(2);
    const g = gate();
    const all = Promise.all(Array.from({ length: 50 }, (_, i) => queue.run(`s${i % 3}`, g.task(`t${i}`))));
    await new Promise((r) => setImmediate(r));
    expect(g.waiting).toBe(2);
    while (g.order.length < 50 || g.waiting > 0) await g.release();
    expect(await all).toHaveLength(50);
    expect(g.peak).toBe(2);
  });

  it("serves waiting sources in turn: a flood's backlog delays another source by one task, not by the backlog", async () => {
    const queue = new FairQueue(1);
    const g = gate();
    const flood = Array.from({ length: 20 }, (_, i) => queue.run('flood', g.task(`flood-${i}`)));
    await new Promise((r) => setImmediate(r));
    const legitimate = queue.run('legitimate', g.task('legitimate'));
    // flood-0 is running and the flood's turn comes first (it was waiting already); then it is
    // the other source's turn, however long the flood's backlog.
    await g.release();
    await g.release();
    await g.release();
    expect(await legitimate).toBe('legitimate');
    expect(g.order.slice(0, 4)).toEqual(['flood-0', 'flood-1', 'legitimate', 'flood-2']);
    while (g.waiting > 0) await g.release();
    await Promise.all(flood);
    expect(g.order).toHaveLength(21);
  });

  it('a task that fails hands its slot on', async () => {
    const queue = new FairQueue(1);
    const failed = queue.run('a', async () => {
      throw new Error('boom');
    });
    const next = queue.run('b', async () => 'ran');
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe('ran');
  });
});

describe('sourceOf', () => {
  it.each([
    ['127.0.0.2', '127.0.0.2'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
  ])('%s counts as %s', (ip, source) => {
    expect(sourceOf(ip)).toBe(source);
  });
});
