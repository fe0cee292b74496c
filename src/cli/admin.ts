import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig, type ServerConfig } from '../config.js';
import { prepareDataDir, restrictUmask } from '../data-dir.js';
import type { Store } from '../domain/store.js';
import { Directory, DirectoryError } from '../identity/directory.js';
import { KeyEncryption, sealedUnder } from '../identity/key-encryption.js';
import { KeyRing, reencryptSigningKeys } from '../identity/keys.js';
import { DEFAULT_GRANT_HOURS, createEnrollmentToken, createReenrollGrant } from '../dispatch/enrollment.js';
import { openStore, storeLocation } from '../server.js';

/**
 * `countermand tenants|apps|users|keys ...`: manage identities directly in the store (the
 * embedded file under --data-dir, or PostgreSQL), with or without a running server. Secrets and
 * passwords are printed once, at creation; only their hashes are kept. Each says on stderr which
 * store it opened; on a data dir without a database they refuse (only `serve` and `init` create
 * one), so a relative --data-dir given from the wrong directory cannot start a second store.
 */

interface StoreFlags {
  config?: string;
  dataDir?: string;
  databaseUrl?: string;
  json?: boolean;
}

const list = (value: string): string[] =>
  value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);

function withStoreOptions(command: Command): Command {
  return command
    .option('--config <file>', 'JSON configuration file (COUNTERMAND_CONFIG)')
    .option('--data-dir <dir>', 'the embedded store (COUNTERMAND_DATA_DIR, default ./data)')
    .option('--database-url <url>', 'PostgreSQL instead of the embedded store (COUNTERMAND_DATABASE_URL)')
    .option('--json', 'print JSON');
}

async function withStore<T>(
  flags: StoreFlags,
  work: (store: Store, directory: Directory, config: ServerConfig) => Promise<T>,
  options: { create: boolean } = { create: false },
): Promise<T> {
  restrictUmask();
  const config = loadConfig({ config: flags.config, dataDir: flags.dataDir, databaseUrl: flags.databaseUrl });
  const dataDir = config.databaseUrl
    ? resolve(config.dataDir)
    : prepareDataDir(config.dataDir, {
        create: options.create,
        database: true,
        allowOpen: config.allowOpenDataDir,
        warn: (message) => process.stderr.write(`countermand: warning: ${message}\n`),
      });
  const store = await openStore(config, dataDir);
  process.stderr.write(`countermand: using ${storeLocation(config, dataDir)}\n`);
  try {
    return await work(store, new Directory(store), config);
  } finally {
    await store.close();
  }
}

function print(flags: StoreFlags, value: unknown, human: () => string): void {
  process.stdout.write(`${flags.json ? JSON.stringify(value, null, 2) : human()}\n`);
}

export function registerAdminCommands(program: Command): void {
  withStoreOptions(program.command('init').description('create the data dir and an empty database (no demo tenant), to set up identities before the first start')).action(
    (flags: StoreFlags) =>
      withStore(
        flags,
        async (store, _directory, config) => {
          const tenants = (await store.listTenants()).length;
          const location = storeLocation(config, resolve(config.dataDir));
          print(flags, { database: location, tenants }, () => `ready: ${location} (${tenants} tenants)`);
        },
        { create: true },
      ),
  );

  const tenants = program.command('tenants').description('manage tenants');
  withStoreOptions(tenants.command('add').description('create a tenant'))
    .requiredOption('--name <name>', 'display name')
    .option('--id <guid>', 'tenant id (default: a new GUID)')
    .action((flags: StoreFlags & { name: string; id?: string }) =>
      withStore(flags, async (_store, directory) => {
        const tenant = await directory.createTenant(flags.name, flags.id);
        print(flags, tenant, () => `tenant ${tenant.id} (${tenant.name})`);
      }),
    );
  withStoreOptions(tenants.command('list').description('list tenants')).action((flags: StoreFlags) =>
    withStore(flags, async (store) => {
      const all = await store.listTenants();
      print(flags, all, () => all.map((t) => `${t.id}  ${t.name}`).join('\n') || '(no tenants)');
    }),
  );

  const apps = program.command('apps').description('manage applications (client credentials)');
  withStoreOptions(apps.command('add').description('register an application; prints its client secret once'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--name <name>', 'display name (shown as requestor)')
    .requiredOption('--roles <roles>', 'comma-separated app roles, e.g. Machine.Read.All,Machine.Isolate', list)
    .option('--client-id <guid>', 'client id (default: a new GUID)')
    .action((flags: StoreFlags & { tenant: string; name: string; roles: string[]; clientId?: string }) =>
      withStore(flags, async (_store, directory) => {
        const { application, secret } = await directory.addApplication(flags.tenant, {
          displayName: flags.name,
          roles: flags.roles,
          ...(flags.clientId ? { clientId: flags.clientId } : {}),
        });
        print(
          flags,
          { tenantId: application.tenantId, clientId: application.clientId, clientSecret: secret, roles: application.roles },
          () => `client_id=${application.clientId}\nclient_secret=${secret}\n(the secret is shown only now)`,
        );
      }),
    );
  withStoreOptions(apps.command('list').description("list a tenant's applications"))
    .requiredOption('--tenant <id>', 'tenant id')
    .action((flags: StoreFlags & { tenant: string }) =>
      withStore(flags, async (store) => {
        const all = (await store.listApplications(flags.tenant.toLowerCase())).map(({ secretHash: _hidden, ...app }) => app);
        print(flags, all, () => all.map((a) => `${a.clientId}  ${a.displayName}  [${a.roles.join(', ')}]`).join('\n') || '(none)');
      }),
    );
  withStoreOptions(apps.command('remove').description('delete an application (its tokens stop working)'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--client-id <guid>', 'client id')
    .action((flags: StoreFlags & { tenant: string; clientId: string }) =>
      withStore(flags, async (store) => {
        const removed = await store.deleteApplication(flags.tenant.toLowerCase(), flags.clientId.toLowerCase());
        if (!removed) throw new DirectoryError(`no application ${flags.clientId} in tenant ${flags.tenant}`);
        print(flags, { removed: flags.clientId }, () => `removed ${flags.clientId}`);
      }),
    );
  withStoreOptions(apps.command('reset-secret').description('replace the client secret; prints the new one once'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--client-id <guid>', 'client id')
    .action((flags: StoreFlags & { tenant: string; clientId: string }) =>
      withStore(flags, async (_store, directory) => {
        const secret = await directory.resetSecret(flags.tenant, flags.clientId);
        print(flags, { clientId: flags.clientId, clientSecret: secret }, () => `client_secret=${secret}\n(the secret is shown only now)`);
      }),
    );

  const users = program.command('users').description('manage users (delegated tokens, password grant)');
  withStoreOptions(users.command('add').description('add or update a user; prints a generated password once'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--upn <upn>', 'user principal name, e.g. analyst@contoso.com')
    .requiredOption('--scopes <scopes>', 'comma-separated delegated scopes, e.g. Machine.Read,Machine.Isolate', list)
    .requiredOption('--role-permissions <roles>', "comma-separated role permissions, e.g. 'View data,Active remediation actions'", list)
    .option('--device-groups <ids>', 'comma-separated rbacGroupIds the user may see (default: all)', (v) => list(v).map(Number))
    .option('--password <password>', 'password (default: generated and printed)')
    .action(
      (flags: StoreFlags & { tenant: string; upn: string; scopes: string[]; rolePermissions: string[]; deviceGroups?: number[]; password?: string }) =>
        withStore(flags, async (_store, directory) => {
          if (flags.deviceGroups?.some((g) => !Number.isInteger(g))) throw new DirectoryError('--device-groups takes whole numbers');
          const { user, password } = await directory.addUser(flags.tenant, {
            upn: flags.upn,
            scopes: flags.scopes,
            rolePermissions: flags.rolePermissions,
            deviceGroups: flags.deviceGroups ?? null,
            ...(flags.password ? { password: flags.password } : {}),
          });
          print(
            flags,
            { tenantId: user.tenantId, objectId: user.objectId, upn: user.upn, ...(flags.password ? {} : { password }) },
            () => `user ${user.upn} (${user.objectId})${flags.password ? '' : `\npassword=${password}\n(the password is shown only now)`}`,
          );
        }),
    );
  withStoreOptions(users.command('list').description("list a tenant's users"))
    .requiredOption('--tenant <id>', 'tenant id')
    .action((flags: StoreFlags & { tenant: string }) =>
      withStore(flags, async (store) => {
        const all = (await store.listUsers(flags.tenant.toLowerCase())).map(({ passwordHash: _hidden, ...u }) => u);
        print(flags, all, () => all.map((u) => `${u.objectId}  ${u.upn}  [${u.scopes.join(', ')}]`).join('\n') || '(none)');
      }),
    );
  withStoreOptions(users.command('remove').description('delete a user'))
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--upn <upn>', 'user principal name')
    .action((flags: StoreFlags & { tenant: string; upn: string }) =>
      withStore(flags, async (store) => {
        const user = await store.getUserByUpn(flags.tenant.toLowerCase(), flags.upn);
        if (!user || !(await store.deleteUser(user.tenantId, user.objectId))) throw new DirectoryError(`no user ${flags.upn}`);
        print(flags, { removed: flags.upn }, () => `removed ${flags.upn}`);
      }),
    );

  const enrollment = program.command('enrollment').description("agents' enrollment tokens");
  withStoreOptions(enrollment.command('create').description('create (or replace) an enrollment token; prints it once'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--label <label>', 'which token (one per label; a new one replaces the old)', 'default')
    .option('--device-group <id>', 'rbacGroupId of the machines that enroll with it', (v) => Number(v))
    .option('--device-group-name <name>', 'rbacGroupName of those machines')
    .action((flags: StoreFlags & { tenant: string; label: string; deviceGroup?: number; deviceGroupName?: string }) =>
      withStore(flags, async (store, directory) => {
        const tenant = await directory.requireTenant(flags.tenant);
        if (flags.deviceGroup !== undefined && !Number.isInteger(flags.deviceGroup)) throw new DirectoryError('--device-group takes a whole number');
        const token = await createEnrollmentToken(store, tenant.id, flags.label, {
          rbacGroupId: flags.deviceGroup ?? null,
          rbacGroupName: flags.deviceGroupName ?? null,
        });
        print(flags, { tenantId: tenant.id, label: flags.label, enrollmentToken: token }, () => `enrollment_token=${token}\n(shown only now)`);
      }),
    );
  withStoreOptions(enrollment.command('list').description("list a tenant's enrollment tokens (not their secrets)"))
    .requiredOption('--tenant <id>', 'tenant id')
    .action((flags: StoreFlags & { tenant: string }) =>
      withStore(flags, async (store) => {
        const all = (await store.listEnrollmentSecrets(flags.tenant.toLowerCase())).map(({ secretHash: _hidden, ...e }) => e);
        print(
          flags,
          all,
          () => all.map((e) => `${e.id}  ${e.label}  group ${e.rbacGroupId ?? '-'}  created ${new Date(e.createdAt).toISOString()}`).join('\n') || '(none)',
        );
      }),
    );
  withStoreOptions(enrollment.command('revoke').description('revoke an enrollment token: no agent enrolls with it any more'))
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--id <id>', 'the token id (the part before the dot; `enrollment list` shows it)')
    .option('--label <label>', 'or the token label')
    .action((flags: StoreFlags & { tenant: string; id?: string; label?: string }) =>
      withStore(flags, async (store) => {
        const tenantId = flags.tenant.toLowerCase();
        if ((flags.id === undefined) === (flags.label === undefined)) throw new DirectoryError('give --id or --label (one of them)');
        const match = (await store.listEnrollmentSecrets(tenantId)).find((e) => (flags.id !== undefined ? e.id === flags.id : e.label === flags.label));
        if (!match || !(await store.deleteEnrollmentSecret(tenantId, match.id))) {
          throw new DirectoryError(`no enrollment token ${flags.id ?? `labelled ${flags.label}`} in tenant ${flags.tenant}`);
        }
        print(
          flags,
          { revoked: match.id, label: match.label },
          () => `revoked enrollment token ${match.id} (${match.label}); machines enrolled with it keep their credentials`,
        );
      }),
    );
  withStoreOptions(
    enrollment.command('reenroll').description('issue a one-time grant for an agent to re-attach to an existing machine; prints it once'),
  )
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--machine <id>', 'the machine id')
    .option('--valid-hours <hours>', `how long the grant can be used (default ${DEFAULT_GRANT_HOURS})`, (v) => Number(v), DEFAULT_GRANT_HOURS)
    .action((flags: StoreFlags & { tenant: string; machine: string; validHours: number }) =>
      withStore(flags, async (store, directory) => {
        const tenant = await directory.requireTenant(flags.tenant);
        if (!(flags.validHours > 0 && flags.validHours <= 24 * 30)) throw new DirectoryError('--valid-hours takes a number of hours, at most 720');
        const machine = await store.findMachine(tenant.id, flags.machine.toLowerCase(), { aadDeviceId: false, computerDnsName: false });
        if (!machine) throw new DirectoryError(`no machine ${flags.machine} in tenant ${tenant.id}`);
        const { grant, expiresAt } = await createReenrollGrant(store, tenant.id, machine.id, flags.validHours);
        const until = new Date(expiresAt).toISOString();
        const offboarded = machine.offboardedAt !== null;
        print(
          flags,
          { tenantId: tenant.id, machineId: machine.id, reenrollGrant: grant, expiresAt: until, offboarded },
          () =>
            [
              `reenroll_grant=${grant}`,
              `(shown only now; one use, until ${until})`,
              ...(offboarded ? [`machine ${machine.id} is offboarded: the agent that uses this grant onboards it again`] : []),
              `on the machine: countermand agent --server <url> --reenroll-grant ${grant} ...`,
            ].join('\n'),
        );
      }),
    );

  const keys = program.command('keys').description('token-signing keys');
  withStoreOptions(keys.command('rotate').description('start signing with a new key; the old one stays valid until its tokens expire'))
    .action((flags: StoreFlags) =>
      withStore(flags, async (store, _directory, config) => {
        const ring = new KeyRing(store, { encryption: KeyEncryption.fromConfig(config) });
        await ring.init();
        const key = await ring.rotate();
        print(flags, { kid: key.kid }, () => `signing with ${key.kid}; earlier keys stay published for their tokens' lifetime`);
      }),
    );
  withStoreOptions(keys.command('list').description('list the published keys')).action((flags: StoreFlags) =>
    withStore(flags, async (store) => {
      const all = (await store.listSigningKeys()).map((k) => ({
        kid: k.kid,
        alg: k.alg,
        createdAt: new Date(k.createdAt).toISOString(),
        retiredAt: k.retiredAt && new Date(k.retiredAt).toISOString(),
        encryptedUnder: sealedUnder(k.privatePem),
      }));
      print(
        flags,
        all,
        () =>
          all
            .map((k) => `${k.kid}  ${k.alg}  created ${k.createdAt}${k.retiredAt ? `  retired ${k.retiredAt}` : '  (signing)'}  ${k.encryptedUnder ? `encrypted under ${k.encryptedUnder}` : 'in the clear'}`)
            .join('\n') || '(none)',
      );
    }),
  );
  withStoreOptions(
    keys
      .command('reencrypt')
      .description('rewrite every private signing key under the configured key encryption key (in the clear when none is configured)'),
  )
    .option('--previous-key-file <file>', 'the key encryption key they are sealed under now, when it is not the configured one')
    .action((flags: StoreFlags & { previousKeyFile?: string }) =>
      withStore(flags, async (store, _directory, config) => {
        const to = KeyEncryption.fromConfig(config);
        const from = flags.previousKeyFile ? KeyEncryption.fromFile(flags.previousKeyFile) : null;
        const { rewritten, unchanged } = await reencryptSigningKeys(store, { to, from });
        print(
          flags,
          { rewritten, unchanged, encryptedUnder: to?.id ?? null },
          () => `${rewritten} keys rewritten ${to ? `encrypted under ${to.id}` : 'in the clear'}; ${unchanged} already were`,
        );
      }),
    );
}
