import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { appToken } from '../support/harness.js';
import { BACKENDS, startEmulator, type Emulator } from '../support/emulator.js';
import { changesOf, openEventStream, type EventStream } from '../support/events.js';

/**
 * What the control API does to actions (a step, the clock firing a phase or a timeout, a rule's
 * failure) goes through the actions service, so the event stream, and the Action Center on it,
 * hears each change as it does an agent's.
 */
describe.each(BACKENDS)('the control API and the event stream (%s)', (backend) => {
  let e: Emulator;
  let stream: EventStream;
  let machineId: string;
  const open = async () => {
    const s = await openEventStream(e.server.url, await appToken(e.server, e.setup.tenantId, e.setup.clientId));
    expect(s.status).toBe(200);
    await s.next((ev) => ev.event === 'ready');
    return s;
  };
  beforeAll(async () => {
    e = await startEmulator({ backend, emulator: { seed: 'stream', clock: { mode: 'manual' } }, config: { eventHeartbeatSeconds: 1 } });
    machineId = e.setup.machines[0]!.id;
  });
  afterAll(async () => {
    await e?.server.stop();
  });
  beforeEach(async () => {
    await e.control.reset();
    stream = await open();
  });
  afterEach(() => {
    stream?.close();
  });

  const isolate = async () => {
    const res = await e.api.post(`/api/machines/${machineId}/isolate`, { Comment: 'stream test' });
    expect(res.status, res.text).toBe(201);
    return (res.body as { id: string }).id;
  };
  const change = (id: string, kind: string) =>
    stream.next((ev) => ev.event === 'action' && ev.data.action.id === id && ev.data.change === kind, 15_000, `${kind} of ${id}`);

  it('steps: created, started, ended with the rule outcome', async () => {
    await e.control.addRule({ start: 'step', finish: 'step', outcome: 'Failed', errorHResult: -2147024891, troubleshootInfo: 'denied (emulated)' });
    const id = await isolate();
    await change(id, 'created');
    await e.control.step(id);
    await change(id, 'started');
    await e.control.step(id);
    const ended = await change(id, 'ended');
    expect([ended.data.action.status, ended.data.action.errorHResult, ended.data.action.troubleshootInfo]).toEqual(['Failed', -2147024891, 'denied (emulated)']);
    expect(changesOf(stream, id)).toEqual([
      ['created', 'Pending'],
      ['started', 'InProgress'],
      ['ended', 'Failed'],
    ]);
  });

  it('the clock: a phase after N seconds, and a timeout', async () => {
    await e.control.setRules([{ start: { afterSeconds: 5 }, finish: { afterSeconds: 10 }, outcome: 'TimeOut' }]);
    const id = await isolate();
    await change(id, 'created');
    await e.control.advance(5);
    await change(id, 'started');
    await e.control.advance(10);
    expect((await change(id, 'ended')).data.action.status).toBe('TimeOut');
  });

  it('after N reads of the action', async () => {
    await e.control.addRule({ start: { afterReads: 1 }, finish: { afterReads: 1 } });
    const id = await isolate();
    const seen: string[] = [];
    for (let i = 0; i < 6 && seen.at(-1) !== 'Succeeded'; i++) seen.push((await e.api.get(`/api/machineactions/${id}`)).body.status);
    expect(seen.at(-1)).toBe('Succeeded');
    expect((await change(id, 'ended')).data.action.status).toBe('Succeeded');
    expect(changesOf(stream, id).map(([kind]) => kind)).toEqual(['created', 'started', 'ended']);
  });

  it('a reset ends the stream (its world is gone), removing a machine asks for a re-read', async () => {
    const other = await open();
    await e.control.removeMachine(e.setup.tenantId, e.setup.machines[1]!.id);
    await stream.next((ev) => ev.event === 'resync', 15_000, 'resync');
    await e.control.reset();
    expect((await stream.next((ev) => ev.event === 'end', 15_000, 'end')).data).toEqual({ reason: 'reset' });
    await stream.closed;
    await other.closed;
    expect(other.events.at(-1)).toEqual({ event: 'end', data: { reason: 'reset' } });
  });

  it("ends at the token's expiry by the emulator's clock, when an advance passes it", async () => {
    const ready = await stream.next((ev) => ev.event === 'ready');
    const expires = Date.parse(String(ready.data.tokenExpiresDateTimeUtc).replace(/\.(\d{3})\d*Z$/, '.$1Z'));
    const now = Date.parse((await e.control.clock()).now);
    expect(expires - now).toBeGreaterThan(0);
    await e.control.advance((expires - now) / 1000 - 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(stream.events.some((ev) => ev.event === 'end')).toBe(false);
    await e.control.advance(1);
    expect((await stream.next((ev) => ev.event === 'end', 15_000, 'end')).data).toEqual({ reason: 'token-expired' });
  });
});
