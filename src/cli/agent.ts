import { lookup } from 'node:dns/promises';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces, release } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { Agent, AgentRefusal } from '../agent/agent.js';
import { ServerError } from '../agent/client.js';
import type { Executor } from '../agent/executor.js';
import { LinuxExecutor, restoreQuarantined, type LinuxExecutorOptions } from '../agent/executors/linux/index.js';
import { parseSimulation, SimulatedExecutor } from '../agent/executors/simulated.js';
import { checkServerUrl } from '../agent/server-url.js';
import { FileState } from '../agent/state.js';
import { ConfigError } from '../config.js';
import type { IpAddress } from '../domain/model.js';
import { createLogger } from '../logger.js';

/** A JSON value given inline or as @file. */
function jsonOption(value: string): unknown {
  const text = value.startsWith('@') ? readFileSync(resolve(value.slice(1)), 'utf8') : value;
  return JSON.parse(text);
}

function localAddresses(): IpAddress[] {
  const result: IpAddress[] = [];
  for (const [name, entries] of Object.entries(networkInterfaces())) {
    for (const e of entries ?? []) {
      if (e.internal) continue;
      result.push({ ipAddress: e.address, macAddress: e.mac.toUpperCase().replace(/:/g, '-'), type: name, operationalStatus: 'Up' });
    }
  }
  return result;
}

/**
 * The linux executor always lets the server through while isolated: its addresses and port.
 * They are remembered in the state dir, so an agent restarted while isolated (its DNS servers
 * unreachable) still knows them. GetFile never reads the state dir.
 */
async function linuxExecutor(serverUrl: string, configured: LinuxExecutorOptions, stateDir: string): Promise<LinuxExecutor> {
  const url = new URL(serverUrl);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const remembered = join(stateDir, 'server-addresses.json');
  let addresses: string[];
  try {
    addresses = (await lookup(host, { all: true })).map((a) => a.address);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(remembered, JSON.stringify(addresses));
  } catch (error) {
    if (!existsSync(remembered)) throw error;
    addresses = JSON.parse(readFileSync(remembered, 'utf8')) as string[];
  }
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return new LinuxExecutor({
    serverPort: port,
    ...configured,
    serverAddresses: [...new Set([...addresses, ...(configured.serverAddresses ?? [])])],
    // The agent's credential lives there: a live-response GetFile must never hand it out.
    getFileDeniedPaths: [...(configured.getFileDeniedPaths ?? []), resolve(stateDir)],
  });
}

/**
 * What the operator is told when the agent cannot start because of what it was given: a refused
 * enrollment token or an unreachable server (one line); null for anything else (a bug).
 */
function startFailure(server: string, error: unknown): string | null {
  if (error instanceof ServerError && error.status >= 400 && error.status < 500) {
    const hint =
      error.status === 401 || error.status === 403
        ? 'check --enrollment-token (COUNTERMAND_ENROLLMENT_TOKEN); `countermand enrollment create` makes a new one'
        : 'see the server log for the request';
    return `${server} refused the enrollment (${error.status} ${error.code}: ${error.message}); ${hint}`;
  }
  const code = (error as NodeJS.ErrnoException).code;
  if (code && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET'].includes(code)) {
    return `cannot reach ${server} (${code}); check --server (COUNTERMAND_SERVER) and that the server is running`;
  }
  return null;
}

interface AgentFlags {
  server: string;
  insecureHttp?: boolean;
  enrollmentToken?: string;
  reenrollGrant?: string;
  stateDir: string;
  executor: 'simulated' | 'linux';
  name?: string;
  ca?: string;
  simulation?: unknown;
  linuxConfig?: unknown;
  maxWait: string;
  logLevel: string;
  logFormat: 'json' | 'pretty';
}

export function registerAgentCommand(program: Command): void {
  program
    .command('agent')
    .description('run the agent on this machine: enroll, then carry out its actions')
    .requiredOption('--server <url>', 'the Countermand server, e.g. https://countermand.example:8443 (COUNTERMAND_SERVER)', process.env.COUNTERMAND_SERVER)
    .option('--insecure-http', 'allow plain http:// to a server that is not on loopback (the credentials travel in clear)')
    .option('--enrollment-token <token>', 'from `countermand enrollment create` (COUNTERMAND_ENROLLMENT_TOKEN); needed on first start', process.env.COUNTERMAND_ENROLLMENT_TOKEN)
    .option(
      '--reenroll-grant <grant>',
      'from `countermand enrollment reenroll` (COUNTERMAND_REENROLL_GRANT): re-attach to that existing machine',
      process.env.COUNTERMAND_REENROLL_GRANT,
    )
    .option('--state-dir <dir>', 'where the agent keeps its credential, journal and actions.log', process.env.COUNTERMAND_AGENT_STATE_DIR ?? '/var/lib/countermand/agent')
    .addOption(new Option('--executor <kind>', 'who carries the actions out').choices(['simulated', 'linux']).default('linux'))
    .option('--name <dns>', 'the machine name to enroll with (default: the hostname)')
    .option('--ca <file>', 'PEM CA that must have signed the server certificate (pinning)')
    .option('--simulation <json>', 'simulated executor: behaviour per action type, inline JSON or @file', jsonOption)
    .option('--linux-config <json>', 'linux executor options, inline JSON or @file (docs/linux-executor.md)', jsonOption)
    .option('--max-wait <seconds>', 'longest check-in wait', '60')
    .addOption(new Option('--log-level <level>').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
    .addOption(new Option('--log-format <format>', 'json lines, or pretty lines for a terminal').choices(['json', 'pretty']).default('json'))
    .action(async (flags: AgentFlags) => {
      // Before anything reaches the network (the linux executor resolves the server's name).
      let warning: string | null;
      try {
        warning = checkServerUrl(flags.server, flags.insecureHttp ?? false);
      } catch (error) {
        throw new ConfigError((error as Error).message);
      }
      if (warning) process.stderr.write(`countermand agent: warning: ${warning}\n`);
      const logger = createLogger(flags.logLevel, undefined, flags.logFormat);
      const executor: Executor =
        flags.executor === 'simulated'
          ? new SimulatedExecutor(parseSimulation(flags.simulation ?? {}), { workDir: join(flags.stateDir, 'work'), machineName: flags.name ?? hostname() })
          : await linuxExecutor(flags.server, (flags.linuxConfig ?? {}) as LinuxExecutorOptions, flags.stateDir);
      const addresses = localAddresses();
      const instance = new Agent({
        serverUrl: flags.server,
        ...(flags.ca ? { ca: readFileSync(flags.ca) } : {}),
        ...(flags.insecureHttp ? { insecureHttp: true } : {}),
        ...(flags.enrollmentToken ? { enrollmentToken: flags.enrollmentToken } : {}),
        ...(flags.reenrollGrant ? { reenrollGrant: flags.reenrollGrant } : {}),
        machine: {
          computerDnsName: flags.name ?? hostname(),
          osPlatform: 'Linux',
          osVersion: release(),
          osProcessor: process.arch,
          osArchitecture: process.arch.includes('64') ? '64-bit' : '32-bit',
          ...(addresses.find((a) => !a.ipAddress.includes(':')) ? { lastIpAddress: addresses.find((a) => !a.ipAddress.includes(':'))!.ipAddress } : {}),
          ipAddresses: addresses,
        },
        state: new FileState(flags.stateDir),
        executor,
        maxWaitSeconds: Number(flags.maxWait),
        addresses: localAddresses,
        log: (message, detail, level = 'info') => logger[level]({ ...detail }, message),
      });
      try {
        await instance.start();
      } catch (error) {
        const refusal = error instanceof AgentRefusal ? error.message : startFailure(flags.server, error);
        if (refusal === null) throw error;
        process.stderr.write(`countermand agent: ${refusal}\n`);
        process.exit(1);
      }
      const shutdown = (signal: string) => {
        process.stderr.write(`${signal}: stopping the agent\n`);
        instance.stop().then(() => process.exit(0), () => process.exit(1));
      };
      // Before saying it runs: a SIGTERM sent on seeing that line must find the handler.
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.stderr.write(`Countermand agent for machine ${instance.machineId} is running (${executor.name} executor)\n`);
      await instance.finished;
      if (instance.stoppedBecause) {
        process.stderr.write(`agent stopped: ${instance.stoppedBecause}\n`);
        process.exit(instance.stoppedBecause === 'offboarded' ? 0 : 1);
      }
    });

  program
    .command('restore-quarantine')
    .description('put the files quarantined for a SHA-1 back where they were (linux executor)')
    .requiredOption('--sha1 <sha1>', 'the SHA-1 given to StopAndQuarantineFile')
    .option('--quarantine-dir <dir>', 'the linux executor quarantine directory', '/var/lib/countermand/quarantine')
    .action(async (flags: { sha1: string; quarantineDir: string }) => {
      const result = await restoreQuarantined(flags.quarantineDir, flags.sha1.toLowerCase());
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    });
}
