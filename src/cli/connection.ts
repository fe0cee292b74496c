import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { Countermand } from '../client/index.js';

/**
 * Where the client commands find their server and credentials (docs/cli.md): each setting from
 * its flag, else its environment variable, else the profile. The profile file holds secrets,
 * so it must be readable by its owner only.
 */

/** What a connection needs; a profile holds the same names. */
export interface ConnectionSettings {
  url?: string;
  tenant?: string;
  clientId?: string;
  clientSecret?: string;
  username?: string;
  password?: string;
  tokenUrl?: string;
}

type Setting = keyof ConnectionSettings;

/** Each setting's flag (commander's camelCase of it) and environment variable. */
const SETTINGS: readonly { name: Setting; flag: string; env: string; help: string }[] = [
  { name: 'url', flag: '--url <url>', env: 'COUNTERMAND_URL', help: "the server's base URL" },
  { name: 'tenant', flag: '--tenant <id>', env: 'COUNTERMAND_TENANT', help: 'tenant id' },
  { name: 'clientId', flag: '--client-id <id>', env: 'COUNTERMAND_CLIENT_ID', help: "application's client id" },
  { name: 'clientSecret', flag: '--client-secret <secret>', env: 'COUNTERMAND_CLIENT_SECRET', help: "application's secret (prefer the environment or a profile: flags show in ps)" },
  { name: 'username', flag: '--username <upn>', env: 'COUNTERMAND_USERNAME', help: 'a user instead of an application (password grant)' },
  { name: 'password', flag: '--password <password>', env: 'COUNTERMAND_PASSWORD', help: "the user's password (prefer the environment or a profile)" },
  { name: 'tokenUrl', flag: '--token-url <url>', env: 'COUNTERMAND_TOKEN_URL', help: 'token endpoint (default: the server\'s own for the tenant)' },
];

export interface ConnectionFlags extends ConnectionSettings {
  profile?: string;
}

/** A mistake in how the command was called or configured: one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The settings' flags. */
export function withSettingOptions(command: Command): Command {
  for (const s of SETTINGS) command.option(s.flag, `${s.help} (${s.env})`);
  return command;
}

/** The settings' flags and --profile. */
export function withConnectionOptions(command: Command): Command {
  return withSettingOptions(command).option('--profile <name>', 'profile to read settings from (COUNTERMAND_PROFILE, default "default")');
}

/** A setting's value may be written down, printed or logged (everything but secrets). */
export const isSecret = (setting: string): boolean => setting === 'clientSecret' || setting === 'password';

/** $COUNTERMAND_PROFILE_FILE, else $XDG_CONFIG_HOME/countermand/profiles.json (~/.config by default). */
export function profileFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.COUNTERMAND_PROFILE_FILE) return env.COUNTERMAND_PROFILE_FILE;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'countermand', 'profiles.json');
}

type Profiles = Record<string, ConnectionSettings>;

/** All profiles in the file; {} when there is none. Refuses a file other users can read. */
export function readProfiles(path = profileFile()): Profiles {
  if (!existsSync(path)) return {};
  const mode = fileOp(path, 'read', () => statSync(path).mode & 0o777);
  if (mode & 0o077) {
    throw new UsageError(
      `the profile file ${path} holds secrets but other users can access it (mode ${mode.toString(8).padStart(4, '0')}): run chmod 600 ${path}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fileOp(path, 'read', () => readFileSync(path, 'utf8')));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`the profile file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(parsed)) throw new UsageError(`the profile file ${path} must hold a JSON object of profiles by name`);
  const known = new Set<string>(SETTINGS.map((s) => s.name));
  for (const [name, profile] of Object.entries(parsed)) {
    if (!isObject(profile)) throw new UsageError(`profile "${name}" in ${path} must be a JSON object`);
    for (const [key, value] of Object.entries(profile)) {
      if (!known.has(key)) throw new UsageError(`profile "${name}" in ${path}: unknown setting "${key}" (known: ${[...known].join(', ')})`);
      if (typeof value !== 'string') throw new UsageError(`profile "${name}" in ${path}: "${key}" must be a string`);
    }
  }
  return parsed as Profiles;
}

/** Adds or replaces one profile, keeping the others; the file is written 0600 in a 0700 directory. */
export function saveProfile(name: string, settings: ConnectionSettings, path = profileFile()): void {
  const profiles = readProfiles(path);
  profiles[name] = settings;
  const temporary = `${path}.${process.pid}.tmp`;
  fileOp(path, 'write', () => {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // Written aside and renamed: a reader never sees half a file, and the secret is never in a file others may read.
    writeFileSync(temporary, `${JSON.stringify(profiles, null, 2)}\n`, { mode: 0o600 });
    chmodSync(temporary, 0o600);
    renameSync(temporary, path);
  });
}

/** A file system failure on the profile file, as one line saying which file and why. */
function fileOp<T>(path: string, what: 'read' | 'write', work: () => T): T {
  try {
    return work();
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (!e.code) throw error;
    throw new UsageError(`cannot ${what} the profile file ${path}: ${e.code}${e.syscall ? ` (${e.syscall})` : ''}`);
  }
}

/** Flags, then the environment, then the profile (--profile, COUNTERMAND_PROFILE or "default"): setting by setting. */
export function resolveSettings(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const named = flags.profile ?? (env.COUNTERMAND_PROFILE || undefined);
  const path = profileFile(env);
  const profiles = readProfiles(path);
  const profile = profiles[named ?? 'default'];
  if (named !== undefined && !profile) {
    const names = Object.keys(profiles);
    throw new UsageError(`no profile "${named}" in ${path}${names.length ? ` (there are: ${names.join(', ')})` : ''}`);
  }
  return mergeSettings(flags, env, profile);
}

export function mergeSettings(flags: ConnectionSettings, env: NodeJS.ProcessEnv, profile: ConnectionSettings | undefined): ConnectionSettings {
  const settings: ConnectionSettings = {};
  for (const s of SETTINGS) {
    const value = flags[s.name] ?? (env[s.env] || undefined) ?? profile?.[s.name];
    if (value !== undefined) settings[s.name] = value;
  }
  return settings;
}

/** The typed client for the settings these flags resolve to. */
export function connect(flags: ConnectionFlags): Countermand {
  return clientFor(resolveSettings(flags));
}

/** The typed client for these settings; says which setting is missing, never what a secret is. */
export function clientFor(s: ConnectionSettings): Countermand {
  if (!s.url) throw new UsageError('no server given: use --url, COUNTERMAND_URL or a profile (countermand profile save)');
  const app = s.clientId !== undefined && s.clientSecret !== undefined;
  const user = s.username !== undefined && s.password !== undefined;
  if (!app && !user) {
    throw new UsageError(
      s.username !== undefined
        ? `no password for ${s.username}: use --password, COUNTERMAND_PASSWORD or a profile`
        : s.clientId !== undefined
          ? 'no client secret: use COUNTERMAND_CLIENT_SECRET, --client-secret or a profile'
          : 'no credentials: give a client id and secret (--client-id, COUNTERMAND_CLIENT_ID, COUNTERMAND_CLIENT_SECRET), a username and password, or a profile',
    );
  }
  if (!s.tenant && !s.tokenUrl) throw new UsageError('no tenant given: use --tenant, COUNTERMAND_TENANT or a profile');
  try {
    return new Countermand({
      url: s.url,
      ...(s.tenant ? { tenantId: s.tenant } : {}),
      ...(s.tokenUrl ? { tokenUrl: s.tokenUrl } : {}),
      ...(app ? { clientId: s.clientId!, clientSecret: s.clientSecret! } : { username: s.username!, password: s.password!, ...(s.clientId ? { clientId: s.clientId } : {}) }),
    });
  } catch (error) {
    // The client's own checks (a URL that is not one): a setting to fix.
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
