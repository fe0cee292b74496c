import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { SimulatedExecutor } from '../../src/agent/executors/simulated.js';
import { MemoryState } from '../../src/agent/state.js';
import { DEFAULT_CONFIG } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer } from '../../src/server.js';
import { createReenrollGrant } from '../../src/dispatch/enrollment.js';
import { cleanup, makeFixtures } from '../support/harness.js';

/** Restarting with the same fixtures keeps what the server learnt about a machine since. */
describe('fixtures reload', () => {
  const dir = mkdtempSync(join(tmpdir(), 'countermand-reload-'));
  afterAll(() => cleanup(dir));

  it('fields the file gives win; what agents reported is kept', async () => {
    const setup = makeFixtures(1);
    const fixtures = join(dir, 'fixtures.json');
    writeFileSync(fixtures, JSON.stringify(setup.fixtures));
    const config = { ...DEFAULT_CONFIG, port: 0, dataDir: dir, fixtures, logLevel: 'silent' as const, demoFleetSize: 0 };
    const machineId = setup.machines[0]!.id;

    const first = await startServer(config, createLogger('silent'));
    // An agent takes over the fixture machine with a re-enroll grant an administrator issued for it.
    const { grant } = await createReenrollGrant(first.store, setup.tenantId, machineId);
    const agent = new Agent({
      serverUrl: first.url,
      reenrollGrant: grant,
      machine: { computerDnsName: 'renamed-by-agent.local', osVersion: '6.1', lastIpAddress: '10.9.9.9' },
      state: new MemoryState(),
      executor: new SimulatedExecutor(),
    });
    await agent.start();
    expect(agent.machineId).toBe(machineId); // re-attached to the fixture machine
    await agent.stop();
    await first.close();

    const second = await startServer(config, createLogger('silent'));
    try {
      const machine = (await second.store.findMachine(setup.tenantId, machineId, { aadDeviceId: false, computerDnsName: false }))!;
      expect(machine.osVersion).toBe('6.1');
      expect(machine.agentVersion).toBe('0.1.0');
      expect(machine.lastIpAddress).toBe('10.1.0.1'); // the file gives lastIpAddress: the file wins
      expect(machine.computerDnsName).toBe(setup.machines[0]!.computerDnsName); // and the name
      expect(machine.rbacGroupId).toBe(setup.machines[0]!.rbacGroupId);
    } finally {
      await second.close();
    }
  });
});
