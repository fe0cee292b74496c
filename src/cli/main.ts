#!/usr/bin/env node
import { Command, Option } from 'commander';
import { ConfigError, loadConfig } from '../config.js';
import { FixturesError } from '../fixtures.js';
import { tokenCurl } from '../demo.js';
import { DirectoryError } from '../identity/directory.js';
import { registerAdminCommands } from './admin.js';
import { registerAgentCommand } from './agent.js';
import { startServer } from '../server.js';

const program = new Command()
  .name('countermand')
  .description('Endpoint response actions that speak the Microsoft Defender for Endpoint machine-actions API.')
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
  .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (COUNTERMAND_TLS_CERT)')
  .option('--tls-key <file>', 'and this PEM key (COUNTERMAND_TLS_KEY)')
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
  .action(async (flags: Record<string, string | undefined>) => {
    const config = loadConfig({
      config: flags.config,
      host: flags.host,
      port: flags.port,
      dataDir: flags.dataDir,
      databaseUrl: flags.databaseUrl,
      fixtures: flags.fixtures,
      publicBaseUrl: flags.publicUrl,
      logLevel: flags.logLevel,
      demoFleetSize: flags.demoFleet,
      tlsCertFile: flags.tlsCert,
      tlsKeyFile: flags.tlsKey,
    });
    const server = await startServer(config);
    process.stderr.write(`Countermand is listening on ${server.url} (API at ${server.url}/api)\n`);
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

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof ConfigError || error instanceof FixturesError || error instanceof DirectoryError) {
    process.stderr.write(`countermand: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`countermand: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
