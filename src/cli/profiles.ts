import type { Command } from 'commander';
import { UsageError, clientFor, isSecret, profileFile, mergeSettings, readProfiles, saveProfile, withSettingOptions, type ConnectionSettings } from './connection.js';
import { note, printJson, printText, table } from './output.js';
import { EXIT, run, usageExit } from './remote.js';

/**
 * `countermand profile save|list`: named connection settings in the profile file (0600), so the
 * secret is neither typed on every command line nor left in the environment.
 */

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

export function registerProfileCommands(program: Command): void {
  const profile = program.command('profile').description(`connection profiles (${profileFile()})`);

  usageExit(
    withSettingOptions(
      profile
        .command('save [name]')
        .description('save settings from the flags and COUNTERMAND_* variables as a profile (default "default"), after checking that they get a token'),
    ),
  )
    .option('--no-verify', 'save without asking the server for a token first')
    .action(
      run(async (name: string | undefined, flags: ConnectionSettings & { verify: boolean }) => {
        const profileName = name ?? 'default';
        if (!NAME.test(profileName)) throw new UsageError(`a profile name is 1-64 letters, digits, '.', '_' or '-', not '${profileName}'`);
        // The profile as it is, then the environment, then the flags: a save updates what it is given.
        const settings = mergeSettings(flags, process.env, readProfiles()[profileName]);
        const client = clientFor(settings);
        if (flags.verify) await client.accessToken();
        saveProfile(profileName, settings);
        note(`saved profile "${profileName}" in ${profileFile()}${flags.verify ? ' (its credentials got a token)' : ''}`);
        return EXIT.ok;
      }),
    );

  usageExit(profile.command('list').description('list the profiles (never their secrets)'))
    .option('--json', 'print JSON')
    .action(
      run(async (flags: { json?: boolean }) => {
        const shown = Object.entries(readProfiles()).map(([name, settings]) => ({
          name,
          ...Object.fromEntries(Object.entries(settings).filter(([key]) => !isSecret(key))),
        })) as ({ name: string } & ConnectionSettings)[];
        if (flags.json) printJson(shown);
        else if (shown.length === 0) note(`no profiles in ${profileFile()}`);
        else
          printText(
            table(shown, [
              { header: 'NAME', value: (p) => p.name },
              { header: 'URL', value: (p) => p.url ?? '-', shrink: true },
              { header: 'TENANT', value: (p) => p.tenant ?? '-' },
              { header: 'CALLER', value: (p) => p.clientId ?? p.username ?? '-', shrink: true },
            ]),
          );
        return EXIT.ok;
      }),
    );
}
