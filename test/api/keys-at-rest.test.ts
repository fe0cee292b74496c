import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { decodeProtectedHeader } from 'jose';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { appToken, cleanup, makeFixtures, TEST_SECRET } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';
import { runCli, spawnCli, type Spawned } from '../support/process.js';

/**
 * The private signing keys encrypted at rest (docs/identity.md, "Keys at rest"), driven through
 * the CLI as an operator would, on both stores: sealed from the first start, a missing or wrong
 * key refused in one line, keys stored in the clear sealed when encryption is turned on, and a
 * move to another key encryption key with `countermand keys reencrypt`.
 */

const kek = () => randomBytes(32).toString('base64');

describe.each(['sqlite', 'postgres'] as const)('signing keys at rest (%s)', (backend) => {
  const skip = backend === 'postgres' && !PG_URL;
  if (skip) console.warn(`[keys at rest] skipping the postgres backend: ${PG_SKIP_REASON}`);
  const dir = mkdtempSync(join(tmpdir(), 'countermand-keys-'));
  const procs: Spawned[] = [];
  const drops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    }
  });
  afterAll(async () => {
    for (const drop of drops) await drop();
    cleanup(dir);
  });

  /** A store of its own: a data dir, plus a PostgreSQL database for that backend. */
  async function newStore(name: string): Promise<{ args: string[]; privatePems(): Promise<string[]>; files: string[] }> {
    const dataDir = join(dir, name);
    if (backend === 'sqlite') {
      const db = join(dataDir, 'countermand.db');
      return {
        args: ['--data-dir', dataDir],
        files: [db, `${db}-wal`],
        async privatePems() {
          const store = SqliteStore.open(db);
          try {
            return (await store.listSigningKeys()).map((k) => k.privatePem);
          } finally {
            await store.close();
          }
        },
      };
    }
    const database = await freshDatabase();
    drops.push(() => database.drop());
    return {
      args: ['--data-dir', dataDir, '--database-url', database.url],
      files: [],
      async privatePems() {
        const client = new pg.Client({ connectionString: database.url });
        await client.connect();
        try {
          return (await client.query('SELECT private_pem FROM signing_keys')).rows.map((r) => String(r.private_pem));
        } finally {
          await client.end();
        }
      },
    };
  }

  const setup = makeFixtures(1);
  const fixtures = join(dir, 'fixtures.json');
  writeFileSync(fixtures, JSON.stringify(setup.fixtures));

  async function serve(store: { args: string[] }, env: NodeJS.ProcessEnv = {}, extra: string[] = []) {
    const p = spawnCli(['serve', '--port', '0', '--log-level', 'warn', '--fixtures', fixtures, ...store.args, ...extra], { COUNTERMAND_DEMO_FLEET: '0', ...env });
    procs.push(p);
    const [, url] = await p.waitFor(/listening on (http:\/\/[^\s]+)/);
    return { p, url: url! };
  }
  async function stop(p: Spawned) {
    p.child.kill('SIGTERM');
    expect((await p.exited).code).toBe(0);
  }
  /** A start that must fail: exit 2 and one line, no stack trace. */
  async function refused(store: { args: string[] }, env: NodeJS.ProcessEnv = {}): Promise<string> {
    // Tracked, so a start that wrongly succeeds is stopped by afterEach.
    const p = spawnCli(['serve', '--port', '0', '--log-level', 'warn', '--fixtures', fixtures, ...store.args], { COUNTERMAND_DEMO_FLEET: '0', ...env });
    procs.push(p);
    const r = { code: (await p.exited).code, output: p.output() };
    expect(r.code, r.output).toBe(2);
    expect(r.output).not.toMatch(/^\s+at /m);
    const lines = r.output.trim().split('\n');
    expect(lines, r.output).toHaveLength(1);
    return lines[0]!;
  }
  const authorized = async (url: string, token: string) =>
    (await fetch(`${url}/api/machines`, { headers: { authorization: `Bearer ${token}` } })).status;

  it.skipIf(skip)('with a key encryption key the private keys are sealed from the first start; a missing, wrong or malformed key is one line', async () => {
    const store = await newStore('sealed');
    const key = kek();
    const { p, url } = await serve(store, { COUNTERMAND_KEY_ENCRYPTION_KEY: key });
    const token = await appToken({ url }, setup.tenantId, setup.clientId, TEST_SECRET);
    expect(await authorized(url, token)).toBe(200);
    // The PEM never reaches the disk in the clear (SQLite: neither the database nor its WAL,
    // looked at while the server runs and after it stopped).
    const onDisk = () => store.files.filter(existsSync).map((file) => [file, readFileSync(file).includes('PRIVATE KEY')]);
    if (backend === 'sqlite') expect(onDisk()).toEqual(store.files.map((file) => [file, false]));
    await stop(p);
    expect(onDisk().every(([, clear]) => !clear)).toBe(true);

    const pems = await store.privatePems();
    expect(pems).toHaveLength(1);
    expect(pems[0]).toMatch(/^countermand-sealed:v1:[0-9a-f]{16}:/);

    const missing = await refused(store);
    expect(missing).toMatch(/^countermand: the signing key \S+ is encrypted at rest \(key encryption key [0-9a-f]{16}\) and no key is configured: set COUNTERMAND_KEY_ENCRYPTION_KEY or COUNTERMAND_KEY_ENCRYPTION_KEY_FILE$/);
    const other = kek();
    const wrong = await refused(store, { COUNTERMAND_KEY_ENCRYPTION_KEY: other });
    expect(wrong).toMatch(/^countermand: the signing key \S+ is encrypted under key encryption key [0-9a-f]{16}, but the configured one is [0-9a-f]{16}: configure that key/);
    expect(wrong).not.toContain(other);
    const malformed = await refused(store, { COUNTERMAND_KEY_ENCRYPTION_KEY: 'correct horse battery staple' });
    expect(malformed).toBe(
      'countermand: COUNTERMAND_KEY_ENCRYPTION_KEY (keyEncryptionKey) must hold 32 random bytes as base64 or hex (make one with: openssl rand -base64 32)',
    );
    // The same key again: it serves, and the token it issued before is still good.
    const again = await serve(store, { COUNTERMAND_KEY_ENCRYPTION_KEY: key });
    expect(await authorized(again.url, token)).toBe(200);
  }, 120_000);

  it.skipIf(skip)('turning encryption on seals the keys kept in the clear (their tokens stay valid); `keys reencrypt` moves them to another key and back to the clear', async () => {
    const store = await newStore('migrate');
    const first = await serve(store);
    const token = await appToken({ url: first.url }, setup.tenantId, setup.clientId, TEST_SECRET);
    await stop(first.p);
    expect((await store.privatePems())[0]).toContain('-----BEGIN PRIVATE KEY-----');

    // Turned on with a key file: the key in the clear is sealed at start, same kid.
    const oldKey = join(dir, `${backend}-old.key`);
    writeFileSync(oldKey, `${kek()}\n`, { mode: 0o600 });
    const sealed = await serve(store, {}, ['--key-encryption-key-file', oldKey]);
    expect(await authorized(sealed.url, token)).toBe(200);
    expect(sealed.p.output()).not.toMatch(/error/i);
    await stop(sealed.p);
    const listed = await runCli(['keys', 'list', '--json', ...store.args]);
    expect(listed.code, listed.output).toBe(0);
    const keys = JSON.parse(listed.stdout) as { kid: string; encryptedUnder: string | null }[];
    expect(keys.map((k) => k.kid)).toEqual([decodeProtectedHeader(token).kid]);
    expect(keys[0]!.encryptedUnder).toMatch(/^[0-9a-f]{16}$/);
    expect((await store.privatePems()).some((pem) => pem.includes('PRIVATE KEY'))).toBe(false);

    // Rotation of the key encryption key: the new one configured, the old one named once.
    const newKey = kek();
    const moved = await runCli(['keys', 'reencrypt', '--previous-key-file', oldKey, '--json', ...store.args], { COUNTERMAND_KEY_ENCRYPTION_KEY: newKey });
    expect(moved.code, moved.output).toBe(0);
    expect(JSON.parse(moved.stdout)).toMatchObject({ rewritten: 1, unchanged: 0 });
    expect(await refused(store, { COUNTERMAND_KEY_ENCRYPTION_KEY_FILE: oldKey })).toMatch(/is encrypted under key encryption key [0-9a-f]{16}, but the configured one is/);
    const rotated = await serve(store, { COUNTERMAND_KEY_ENCRYPTION_KEY: newKey });
    expect(await authorized(rotated.url, token)).toBe(200);
    // Keys made while encryption is on are sealed too.
    const rotatedKeys = await runCli(['keys', 'rotate', '--json', ...store.args], { COUNTERMAND_KEY_ENCRYPTION_KEY: newKey });
    expect(rotatedKeys.code, rotatedKeys.output).toBe(0);
    await stop(rotated.p);
    expect((await store.privatePems()).every((pem) => pem.startsWith('countermand-sealed:v1:'))).toBe(true);

    // And back to the clear: no key configured, the current one named as the previous.
    const newKeyFile = join(dir, `${backend}-new.key`);
    writeFileSync(newKeyFile, newKey, { mode: 0o600 });
    const clear = await runCli(['keys', 'reencrypt', '--previous-key-file', newKeyFile, '--json', ...store.args]);
    expect(clear.code, clear.output).toBe(0);
    expect(JSON.parse(clear.stdout)).toMatchObject({ rewritten: 2, encryptedUnder: null });
    const plain = await serve(store);
    expect(await authorized(plain.url, token)).toBe(200);
  }, 180_000);
});
