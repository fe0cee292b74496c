#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { ConfigError, loadConfig } from '../config.js';
import { restrictUmask } from '../data-dir.js';
import { FixturesError } from '../fixtures.js';
import { tokenCurl } from '../demo.js';
import { DirectoryError } from '../identity/directory.js';
import { OperatorError } from '../operator-error.js';
import { registerAdminCommands } from './admin.js';
import { registerAgentCommand } from './agent.js';
import { registerClientCommands } from './client-commands.js';
import { startServer } from '../server.js';

/** The package's version, read at run time (the same path from src/cli and dist/cli). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

const program = new Command()
  .name('countermand')
  .description('Endpoint response actions that speak the Microsoft Defender for Endpoint machine-actions API.')
  .version(packageVersion(), '-V, --version', 'print the version')
  .showHelpAfterError();

program
  .command('serve')
  .description('start the API server (embedded SQLite under --data-dir unless a database URL is set)')
  .option('--config <file>', 'JSON configuration file (COUNTERMAND_CONFIG)')
  .option('--host <host>', 'address to listen on (COUNTERMAND_HOST, default 127.0.0.1)')
  .option('-p, --port <port>', 'port to listen on, 0 for any free one (COUNTERMAND_PORT, default 8080)')
  .option('--data-dir <dir>', 'where the embedded database lives (COUNTERMAND_DATA_DIR, default ./data)')
  .option('--database-url <url>', 'PostgreSQL URL instead of the embedded store (COUNTERMAND_DATABASE_URL)')
  .option('--fixtures <file>', 'tenants, machines and callers to load at start (COUNTERMAND_FIXTURES)')
  .option('--public-url <url>', 'base URL clients use to reach this server (COUNTERMAND_PUBLIC_URL)')
  .option('--demo-fleet <n>', 'simulated agents to start with the server, 0 for none (COUNTERMAND_DEMO_FLEET, default 3)')
  .option('--control', 'turn on the emulator and its control API under /_countermand/ (COUNTERMAND_CONTROL)')
  .option('--control-token-file <file>', "the control API's admin token, first line of the file (COUNTERMAND_CONTROL_TOKEN_FILE; or COUNTERMAND_CONTROL_TOKEN)")
  .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (COUNTERMAND_TLS_CERT)')
  .option('--tls-key <file>', 'and this PEM key (COUNTERMAND_TLS_KEY)')
  .option('--key-encryption-key-file <file>', 'encrypt the signing keys at rest with the key in this file (COUNTERMAND_KEY_ENCRYPTION_KEY_FILE)')
  .option('--allow-open-data-dir', 'start even if the data dir stays readable by other users (COUNTERMAND_ALLOW_OPEN_DATA_DIR)')
  .option('--metrics-port <port>', 'serve /metrics on a listener of its own, 0 for any free port (COUNTERMAND_METRICS_PORT; the token: COUNTERMAND_METRICS_TOKEN)')
  .option('--metrics-host <host>', 'address of the metrics listener (COUNTERMAND_METRICS_HOST, default 127.0.0.1)')
  .addOption(new Option('--log-format <format>', 'json lines, or pretty lines for a terminal (COUNTERMAND_LOG_FORMAT, default json)').choices(['json', 'pretty']))
  .addOption(
    new Option('--log-level <level>', 'log level (COUNTERMAND_LOG_LEVEL, default info)').choices([
      'fatal',
      'error',
      'warn',
      'info',
      'debug',
      'trace',
      'silent',
    ]),
  )
  .action(async (flags: Record<string, string | boolean | undefined>) => {
    // Whatever the server writes from now on (database, WAL, fleet state, blobs) is its owner's only.
    restrictUmask();
    const flag = (name: string) => flags[name] as string | undefined;
    const config = loadConfig({
      config: flag('config'),
      host: flag('host'),
      port: flag('port'),
      dataDir: flag('dataDir'),
      databaseUrl: flag('databaseUrl'),
      fixtures: flag('fixtures'),
      publicBaseUrl: flag('publicUrl'),
      logLevel: flag('logLevel'),
      logFormat: flag('logFormat'),
      metricsPort: flag('metricsPort'),
      metricsHost: flag('metricsHost'),
      demoFleetSize: flag('demoFleet'),
      controlEnabled: flags.control === true ? true : undefined,
      controlTokenFile: flag('controlTokenFile'),
      tlsCertFile: flag('tlsCert'),
      tlsKeyFile: flag('tlsKey'),
      keyEncryptionKeyFile: flag('keyEncryptionKeyFile'),
      ...(flags.allowOpenDataDir ? { allowOpenDataDir: true } : {}),
    });
    const server = await startServer(config);
    process.stderr.write(`countermand: using ${server.location} (data dir ${server.dataDir})\n`);
    process.stderr.write(`Countermand is listening on ${server.url} (API at ${server.url}/api, documentation at ${server.url}/docs)\n`);
    if (server.metricsUrl) process.stderr.write(`Metrics at ${server.metricsUrl}/metrics\n`);
    if (server.control) {
      process.stderr.write(`The emulator's control API is at ${server.url}/_countermand/ (docs/emulator.md).\n`);
      if (server.control.admin.generated) {
        process.stderr.write(
          `Its admin token (generated, shown only now; set COUNTERMAND_CONTROL_TOKEN to choose one):\n\n  ${server.control.admin.token}\n\n`,
        );
      }
    }
    if (server.demo) {
      process.stderr.write(
        `\nCreated the demo tenant ${server.demo.tenantId} and its application. Get a token (the secret is shown only now):\n\n` +
          `${tokenCurl(server.baseUrl, server.demo)}\n\n` +
          'then call the API with  -H "Authorization: Bearer <access_token>"\n\n',
      );
    }
    let closing = false;
    const shutdown = (signal: string) => {
      if (closing) return;
      closing = true;
      process.stderr.write(`${signal}: shutting down\n`);
      server.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });

registerAdminCommands(program);
registerAgentCommand(program);
registerClientCommands(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  // Expected failures are one line with what to do; anything else is a bug and keeps its stack.
  if (error instanceof OperatorError || error instanceof ConfigError || error instanceof FixturesError || error instanceof DirectoryError) {
    process.stderr.write(`countermand: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`countermand: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
