import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { appClient } from '../support/harness.js';
import { ensureLibraryFile } from '../support/library.js';
import { BACKENDS, startEmulator, type Emulator } from '../support/emulator.js';

/** Each lifecycle rule, driven as a test suite would: rules through the ControlClient, actions over the MDE API. */
describe.each(BACKENDS)('lifecycle rules (%s)', (backend) => {
  let e: Emulator;
  let machineId: string;
  beforeAll(async () => {
    e = await startEmulator({ backend, emulator: { seed: 'rules', clock: { mode: 'manual' } } });
    machineId = e.setup.machines[0]!.id;
  });
  afterAll(async () => {
    await e?.server.stop();
  });
  beforeEach(async () => {
    await e.control.reset();
  });

  const isolate = async () => {
    const res = await e.api.post(`/api/machines/${machineId}/isolate`, { Comment: 'rule test' });
    expect(res.status, res.text).toBe(201);
    return res.body as { id: string; status: string };
  };
  const status = async (id: string) => ((await e.api.get(`/api/machineactions/${id}`)).body as { status: string }).status;

  it('stays Pending, then a step starts it and another ends it', async () => {
    await e.control.addRule({ match: { actionType: 'Isolate' }, start: 'never', finish: 'step' });
    const a = await isolate();
    await e.control.advance(3600);
    expect(await status(a.id)).toBe('Pending');
    expect((await e.control.step(a.id)).action.status).toBe('InProgress');
    expect(await status(a.id)).toBe('InProgress');
    expect((await e.control.step(a.id)).action.status).toBe('Succeeded');
  });

  it('starts after N reads and completes after N reads', async () => {
    await e.control.addRule({ start: { afterReads: 2 }, finish: { afterReads: 1 } });
    const a = await isolate();
    expect([await status(a.id), await status(a.id), await status(a.id), await status(a.id), await status(a.id)]).toEqual([
      'Pending',
      'Pending',
      'InProgress',
      'InProgress',
      'Succeeded',
    ]);
  });

  it('completes after N seconds of the clock', async () => {
    await e.control.addRule({ start: 'now', finish: { afterSeconds: 30 } });
    const a = await isolate();
    await e.control.advance(0);
    await expect.poll(() => status(a.id)).toBe('InProgress');
    await e.control.advance(29);
    expect(await status(a.id)).toBe('InProgress');
    await e.control.advance(1);
    expect(await status(a.id)).toBe('Succeeded');
  });

  it('stays InProgress', async () => {
    await e.control.addRule({ start: { afterReads: 0 }, finish: 'never' });
    const a = await isolate();
    await expect.poll(() => status(a.id)).toBe('InProgress');
    await e.control.advance(50 * 60);
    expect(await status(a.id)).toBe('InProgress');
  });

  it('fails with the given errorHResult and troubleshootInfo', async () => {
    await e.control.addRule({ finish: 'step', outcome: 'Failed', errorHResult: -2147024891, troubleshootInfo: 'access denied (emulated)' });
    const a = await isolate();
    await expect.poll(() => status(a.id)).toBe('InProgress');
    await e.control.step(a.id);
    const got = (await e.api.get(`/api/machineactions/${a.id}`)).body;
    expect([got.status, got.errorHResult, got.troubleshootInfo]).toEqual(['Failed', -2147024891, 'access denied (emulated)']);
  });

  it('times out (from InProgress, and from Pending when it never starts)', async () => {
    await e.control.setRules([
      { id: 'running', match: { actionType: 'Isolate' }, finish: { afterSeconds: 10 }, outcome: 'TimeOut' },
      { id: 'never-picked-up', match: { actionType: 'RunAntiVirusScan' }, start: 'never', finish: { afterSeconds: 10 }, outcome: 'TimeOut' },
    ]);
    const a = await isolate();
    const scan = (await e.api.post(`/api/machines/${machineId}/runAntiVirusScan`, { Comment: 'x', ScanType: 'Quick' })).body;
    await expect.poll(() => status(a.id)).toBe('InProgress');
    await e.control.advance(10);
    expect(await status(a.id)).toBe('TimeOut');
    expect(await status(scan.id)).toBe('TimeOut');
    const events = await e.server.store.listEvents(e.setup.tenantId, scan.id);
    expect(events.map((ev) => ev.toStatus)).toEqual(['Pending', 'TimeOut']);
  });

  it('live response per command: a failed command stops the ones after it', async () => {
    await e.control.addRule({ match: { actionType: 'LiveResponse' }, finish: 'step', commands: { RunScript: { outcome: 'Failed', error: 'script not found (emulated)' } } });
    await ensureLibraryFile(e.api, 'a.sh');
    const lr = await e.api.post(`/api/machines/${machineId}/runliveresponse`, {
      Comment: 'lr',
      Commands: [
        { type: 'PutFile', params: [{ key: 'FileName', value: 'a.sh' }] },
        { type: 'RunScript', params: [{ key: 'ScriptName', value: 'a.sh' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] },
      ],
    });
    expect(lr.status, lr.text).toBe(201);
    await expect.poll(() => status(lr.body.id)).toBe('InProgress');
    await e.control.step(lr.body.id);
    const got = (await e.api.get(`/api/machineactions/${lr.body.id}`)).body;
    expect(got.status).toBe('Failed');
    expect(got.commands.map((c: { commandStatus: string }) => c.commandStatus)).toEqual(['Completed', 'Failed', 'Created']);
    expect(got.commands[1].errors).toEqual(['script not found (emulated)']);
  });

  it('live response per command on an agent-less machine: the failed command fails the action with its error', async () => {
    const m = e.setup.machines[2]!;
    await e.control.changeMachine(e.setup.tenantId, m.id, { agent: 'none' });
    await e.control.addRule({ match: { actionType: 'LiveResponse' }, start: 'step', finish: 'step', commands: { GetFile: { outcome: 'Failed', error: 'file not found (emulated)' } } });
    const lr = await e.api.post(`/api/machines/${m.id}/runliveresponse`, {
      Comment: 'lr',
      Commands: [
        { type: 'GetFile', params: [{ key: 'Path', value: '/var/log/missing' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] },
      ],
    });
    expect(lr.status, lr.text).toBe(201);
    await e.control.step(lr.body.id);
    await e.control.step(lr.body.id);
    const got = (await e.api.get(`/api/machineactions/${lr.body.id}`)).body;
    expect([got.status, got.troubleshootInfo]).toEqual(['Failed', 'file not found (emulated)']);
    expect(got.commands.map((c: { commandStatus: string }) => c.commandStatus)).toEqual(['Failed', 'Created']);
  });

  it('the next N actions only, then the machine default; first match wins', async () => {
    await e.control.setRules([
      { id: 'twice', match: { actionType: 'Isolate' }, times: 2, start: 'never' },
      { id: 'fallback', start: 'now', finish: 'never' },
    ]);
    const ids: string[] = [];
    for (const m of e.setup.machines) ids.push((await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'n' })).body.id);
    await expect.poll(() => status(ids[2]!)).toBe('InProgress');
    await e.control.advance(600);
    expect([await status(ids[0]!), await status(ids[1]!), await status(ids[2]!)]).toEqual(['Pending', 'Pending', 'InProgress']);
    expect((await e.control.rules()).map((r) => [r.id, r.remaining])).toEqual([
      ['twice', 0],
      ['fallback', null],
    ]);
  });

  it('a rule for the next N actions holds under concurrent creates', async () => {
    const many = await startEmulator({ backend, machines: 30, emulator: { seed: 'burst', clock: { mode: 'manual' } } });
    try {
      await many.control.addRule({ id: 'three', times: 3, start: 'never' });
      const created = await Promise.all(many.setup.machines.map((m) => many.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'burst' })));
      expect(created.every((r) => r.status === 201)).toBe(true);
      const plans = await Promise.all(created.map((r) => many.control.step(r.body.id)));
      expect(plans.filter((p) => (p.plan as { ruleId: string | null } | null)?.ruleId === 'three')).toHaveLength(3);
      expect((await many.control.rules())[0]!.remaining).toBe(0);
    } finally {
      await many.server.stop();
    }
  });

  it("a rule's detail is what the machine reports finding: a scan's findings raise an alert", async () => {
    await e.control.addRule({
      match: { actionType: 'RunAntiVirusScan' },
      finish: 'step',
      detail: { findings: [{ path: '/tmp/eicar.com', signature: 'Eicar-Signature' }] },
    });
    const scan = (await e.api.post(`/api/machines/${machineId}/runAntiVirusScan`, { Comment: 'scan', ScanType: 'Quick' })).body;
    await expect.poll(() => status(scan.id)).toBe('InProgress');
    await e.control.step(scan.id);
    const alerts = (await e.api.get('/api/alerts')).body.value as { machineId: string; threatName: string | null }[];
    expect(alerts.map((a) => a.machineId)).toEqual([machineId]);
  });

  it('rules by position and by id: position 0 is tried first; a removed rule no longer matches', async () => {
    await e.control.setRules([{ id: 'later', start: 'never' }]);
    await e.control.addRule({ id: 'first', match: { actionType: 'Isolate' }, start: 'now', finish: 'never' }, 0);
    expect((await e.control.rules()).map((r) => r.id)).toEqual(['first', 'later']);
    const a = await isolate();
    await expect.poll(() => status(a.id)).toBe('InProgress');
    await e.control.removeRule('first');
    await expect(e.control.removeRule('first')).rejects.toMatchObject({ status: 404 });
    const b = (await e.api.post(`/api/machines/${e.setup.machines[1]!.id}/isolate`, { Comment: 'b' })).body;
    await e.control.advance(600);
    expect(await status(b.id)).toBe('Pending');
  });

  it('the clock set to a time, then switched to real mode, where timers fire by themselves', async () => {
    await e.control.addRule({ start: 'now', finish: { afterSeconds: 1 } });
    const set = await e.control.setClock({ now: '2025-06-01T12:00:00Z' });
    expect([set.mode, set.now]).toEqual(['manual', '2025-06-01T12:00:00.0000000Z']);
    await expect(e.control.setClock({ now: '2025-01-01T00:00:00Z' })).rejects.toMatchObject({ status: 400 });
    // Months later, the first token has expired: a fresh one, as a client would get.
    const api = await appClient(e.server, e.setup);
    const a = (await api.post(`/api/machines/${machineId}/isolate`, { Comment: 'real time' })).body;
    const now = async () => ((await api.get(`/api/machineactions/${a.id}`)).body as { status: string }).status;
    await expect.poll(now).toBe('InProgress');
    expect(await now()).toBe('InProgress'); // manual: the second passes only when told
    expect((await e.control.setClock({ mode: 'real' })).mode).toBe('real');
    await expect.poll(now, { timeout: 15_000 }).toBe('Succeeded');
    expect(Date.parse((await e.control.clock()).now)).toBeGreaterThan(Date.parse('2025-06-01T12:00:01Z'));
  });

  it('agent-less machines keep actions Pending until a rule or a step moves them', async () => {
    const m = e.setup.machines[1]!;
    await e.control.changeMachine(e.setup.tenantId, m.id, { agent: 'none' });
    const a = (await e.api.post(`/api/machines/${m.id}/isolate`, { Comment: 'x' })).body;
    await e.control.advance(3600);
    expect(await status(a.id)).toBe('Pending');
    await e.control.step(a.id);
    expect(await status(a.id)).toBe('InProgress');
    await e.control.step(a.id);
    expect(await status(a.id)).toBe('Succeeded');
  });
});
