import { join } from 'node:path';
import type { IpAddress } from '../domain/model.js';
import { Agent, AgentRefusal } from './agent.js';
import { SimulatedExecutor, type Simulation } from './executors/simulated.js';
import { FileState } from './state.js';

export interface FleetOptions {
  serverUrl: string;
  ca?: string | Buffer;
  /** Plain HTTP to a non-loopback address: only for a fleet inside the server it talks to. */
  insecureHttp?: boolean;
  enrollmentToken: string;
  size: number;
  /** Where each agent keeps its state (so restarts re-attach to the same machines). */
  stateDir: string;
  simulation: Simulation;
  domain?: string;
  maxWaitSeconds?: number;
  log?: (message: string, detail?: Record<string, unknown>) => void;
}

/**
 * Many simulated agents in one process, each speaking the same HTTP protocol as a real one.
 * `countermand serve` runs one as the demo fleet; benchmarks run large ones.
 */
export class SimulatedFleet {
  readonly agents: Agent[] = [];

  constructor(private readonly options: FleetOptions) {}

  static machineName(i: number, domain: string): string {
    return `sim-${String(i + 1).padStart(2, '0')}.${domain}`;
  }

  /**
   * Simulated machine i's own address, distinct and plausible (10.200.0.2, 10.200.0.3, ...),
   * with a locally administered MAC address derived from it: what its check-ins report, so
   * findbyip and lastIpAddress tell the fleet's machines apart.
   */
  static machineAddress(i: number): IpAddress {
    const [a, b, c, d] = [10, 200, Math.floor((i + 1) / 250), ((i + 1) % 250) + 1];
    const mac = ['02', '00', a, b, c, d].map((x) => (typeof x === 'string' ? x : x.toString(16).padStart(2, '0').toUpperCase())).join('-');
    return { ipAddress: `${a}.${b}.${c}.${d}`, macAddress: mac, type: 'eth0', operationalStatus: 'Up' };
  }

  async start(): Promise<void> {
    const { options } = this;
    const domain = options.domain ?? 'demo.countermand.local';
    const starting: Promise<void>[] = [];
    for (let i = 0; i < options.size; i++) {
      const name = SimulatedFleet.machineName(i, domain);
      const executor = new SimulatedExecutor(options.simulation, { workDir: join(options.stateDir, name, 'work'), machineName: name });
      const agent = new Agent({
        serverUrl: options.serverUrl,
        ...(options.ca ? { ca: options.ca } : {}),
        ...(options.insecureHttp ? { insecureHttp: true } : {}),
        enrollmentToken: options.enrollmentToken,
        machine: {
          computerDnsName: name,
          osPlatform: 'Linux',
          osVersion: 'Simulated',
          osProcessor: 'x64',
          osArchitecture: '64-bit',
          lastIpAddress: SimulatedFleet.machineAddress(i).ipAddress,
          ipAddresses: [SimulatedFleet.machineAddress(i)],
        },
        state: new FileState(join(options.stateDir, name)),
        executor,
        ...(options.maxWaitSeconds !== undefined ? { maxWaitSeconds: options.maxWaitSeconds } : {}),
        ...(options.log ? { log: (m, d) => options.log!(m, { machine: name, ...d }) } : {}),
      });
      this.agents.push(agent);
      starting.push(agent.start().catch((error: unknown) => {
        // One machine that cannot go on (e.g. it was offboarded) does not stop the others.
        if (!(error instanceof AgentRefusal)) throw error;
        options.log?.(`${name} does not start: ${error.message}`);
      }));
    }
    // Enrollments verify a hashed secret each (in the thread pool): in parallel, not one by one.
    await Promise.all(starting);
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop()));
  }
}
