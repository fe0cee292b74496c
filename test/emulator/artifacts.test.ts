import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stored } from '../support/artifacts.js';
import { BACKENDS, startEmulator, type Emulator } from '../support/emulator.js';
import { ensureLibraryFile } from '../support/library.js';

/**
 * The emulator's simulated machines move real files: PutFile and RunScript fetch the library
 * file, RunScript and GetFile upload results, a collection uploads its package, all downloaded by
 * link as a client would. A reset then takes the library and every artifact with the world.
 */
describe.each(BACKENDS)('emulated machines and artifacts (%s)', (backend) => {
  let e: Emulator;
  const SCRIPT = '#!/bin/sh\necho collected\n';
  beforeAll(async () => {
    e = await startEmulator({ backend, emulator: { rules: [{ start: 'now', finish: 'step' }] } });
  });
  afterAll(async () => {
    await e?.server.stop();
  });

  const status = async (id: string) => ((await e.api.get(`/api/machineactions/${id}`)).body as { status: string }).status;
  /** Runs the action to its end on the emulator's simulated machine. */
  const finish = async (id: string) => {
    await expect.poll(() => status(id)).toBe('InProgress');
    await e.control.step(id);
    const got = (await e.api.get(`/api/machineactions/${id}`)).body;
    expect([got.status, got.troubleshootInfo]).toEqual(['Succeeded', null]);
    return got;
  };
  /** A download as a client does it: the link alone, no Authorization header. */
  const download = async (path: string) => {
    const link = await e.api.get(path);
    expect(link.status, link.text).toBe(200);
    const res = await fetch(link.body.value);
    expect(res.status).toBe(200);
    return { url: link.body.value as string, bytes: Buffer.from(await res.arrayBuffer()) };
  };

  it('live response and a collection on a simulated machine, then a reset that takes library and artifacts with it', async () => {
    const [m0, m1] = [e.setup.machines[0]!, e.setup.machines[1]!];
    await ensureLibraryFile(e.api, 'collect.sh', SCRIPT);
    const lr = await e.api.post(`/api/machines/${m0.id}/runliveresponse`, {
      Comment: 'emulated triage',
      Commands: [
        { type: 'PutFile', params: [{ key: 'FileName', value: 'collect.sh' }] },
        { type: 'RunScript', params: [{ key: 'ScriptName', value: 'collect.sh' }, { key: 'Args', value: '--fast' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/var/log/syslog' }] },
      ],
    });
    expect(lr.status, lr.text).toBe(201);
    const done = await finish(lr.body.id);
    expect(done.commands.map((c: { commandStatus: string }) => c.commandStatus)).toEqual(['Completed', 'Completed', 'Completed']);

    const result = JSON.parse((await download(`/api/machineactions/${lr.body.id}/GetLiveResponseResultDownloadLink(index=1)`)).bytes.toString('utf8'));
    expect([result.script_name, result.exit_code]).toEqual(['collect.sh', 0]);
    // The machine ran the bytes it fetched from the library.
    expect(result.script_output).toContain(createHash('sha256').update(SCRIPT).digest('hex'));
    expect(result.script_output).toContain('--fast');
    const file = await download(`/api/machineactions/${lr.body.id}/GetLiveResponseResultDownloadLink(index=2)`);
    expect(file.bytes.toString('utf8')).toContain('/var/log/syslog');

    const pkg = await e.api.post(`/api/machines/${m1.id}/collectInvestigationPackage`, { Comment: 'emulated package' });
    expect(pkg.status, pkg.text).toBe(201);
    await finish(pkg.body.id);
    const archive = await download(`/api/machineactions/${pkg.body.id}/getPackageUri`);
    expect([archive.bytes[0], archive.bytes[1]]).toEqual([0x1f, 0x8b]);

    expect(await stored(e.server)).toMatchObject({ libraryFiles: 1, artifacts: 3 });
    await e.control.reset();
    expect(await stored(e.server)).toMatchObject({ libraryFiles: 0, artifacts: 0 });
    expect((await e.api.get('/api/libraryfiles')).body.value).toEqual([]);
    expect((await e.api.get(`/api/machineactions/${lr.body.id}`)).status).toBe(404);
    expect((await fetch(file.url)).status).toBe(404);
  });

  it("removing a machine takes its actions' artifacts with them", async () => {
    const m = e.setup.machines[2]!;
    const lr = await e.api.post(`/api/machines/${m.id}/runliveresponse`, {
      Comment: 'before removal',
      Commands: [{ type: 'GetFile', params: [{ key: 'Path', value: '/etc/hosts' }] }],
    });
    expect(lr.status, lr.text).toBe(201);
    await finish(lr.body.id);
    expect((await stored(e.server)).artifacts).toBe(1);
    await e.control.removeMachine(e.setup.tenantId, m.id);
    expect((await stored(e.server)).artifacts).toBe(0);
  });

  it("a rule's RunScript exit code is the one in the result", async () => {
    await e.control.setRules([{ match: { actionType: 'LiveResponse' }, start: 'now', finish: 'step', commands: { RunScript: { outcome: 'Completed', exitCode: 3 } } }]);
    await ensureLibraryFile(e.api, 'exit3.sh', SCRIPT);
    const lr = await e.api.post(`/api/machines/${e.setup.machines[0]!.id}/runliveresponse`, {
      Comment: 'exit code',
      Commands: [{ type: 'RunScript', params: [{ key: 'ScriptName', value: 'exit3.sh' }] }],
    });
    expect(lr.status, lr.text).toBe(201);
    await finish(lr.body.id);
    const result = JSON.parse((await download(`/api/machineactions/${lr.body.id}/GetLiveResponseResultDownloadLink(index=0)`)).bytes.toString('utf8'));
    expect([result.exit_code, result.script_errors]).toEqual([3, '[simulated] exit3.sh exited with code 3\n']);
  });
});
