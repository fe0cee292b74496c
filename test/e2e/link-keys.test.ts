import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { BACKENDS, sql } from '../support/artifacts.js';
import { ALL_ROLES, Client, TEST_SECRET, appToken, startTestServer, type TestServer } from '../support/harness.js';
import { ensureLibraryFile } from '../support/library.js';

/**
 * The key download links are signed with is kept in the database (`link_keys`), so every node
 * behind it verifies every link. With a key encryption key configured (docs/identity.md, "Keys
 * at rest") a copy of the database must not be enough to forge one: the signing key is bound
 * to the key encryption key too. Without one, the stored secret is the key, which the first
 * case shows, so the forgery below is the one a reader of the database could make.
 */

const tenant = randomUUID();
const app = randomUUID();
const fixtures = {
  tenants: [{ id: tenant, name: 'Links', applications: [{ clientId: app, clientSecret: TEST_SECRET, displayName: 'Links App', roles: ALL_ROLES }] }],
};

/** A result link for `actionId`, signed with `key` as the server signs (docs/artifacts.md). */
function forge(base: string, key: Buffer, actionId: string, index: number): string {
  const expires = Math.ceil(Date.now() / 1000) + 600;
  const message = ['v1', 'result', tenant, '', actionId, String(index), String(expires)].join('\n');
  const sig = createHmac('sha256', key).update(message).digest('base64url');
  return `${base}/artifacts/v1/${tenant}/${actionId}/commands/${index}?expires=${expires}&sig=${sig}`;
}

for (const { backend, skip } of BACKENDS) {
  for (const encrypted of [false, true]) {
    const what = encrypted ? 'with a key encryption key' : 'without a key encryption key';
    describe.skipIf(skip !== null)(`download link keys ${what} (${backend})${skip ? ` (skipped: ${skip})` : ''}`, () => {
      let server: TestServer;
      let api: Client;
      let agent: RunningAgent | undefined;

      beforeAll(async () => {
        server = await startTestServer({
          fixtures,
          backend,
          config: { rateLimitScale: 100, ...(encrypted ? { keyEncryptionKey: randomBytes(32).toString('base64') } : {}) },
        });
        api = new Client(server.url, { authorization: `Bearer ${await appToken(server, tenant, app)}` });
        await ensureLibraryFile(api, 'links.sh');
        agent = await startAgent(server.url, await enrollmentToken(server.store, tenant), `links-${encrypted}.${backend}.test`, { LiveResponse: { durationMs: 50 } });
      });
      afterAll(async () => {
        await agent?.stop();
        await server?.stop();
      });

      it(`the server's own links work; one signed with the stored secret alone ${encrypted ? 'is refused' : 'works too'}`, async () => {
        const created = await api.post(`/api/machines/${agent!.machineId}/runliveresponse`, {
          Comment: 'links',
          Commands: [{ type: 'RunScript', params: [{ key: 'ScriptName', value: 'links.sh' }] }],
        });
        expect(created.status, created.text).toBe(201);
        await waitUntil(async () => (await api.get(`/api/machineactions/${created.body.id}`)).body.status === 'Succeeded', 15_000, 'the action to succeed');
        const link = await api.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink(index=0)`);
        expect(link.status, link.text).toBe(200);
        expect((await fetch(link.body.value)).status).toBe(200);

        const [row] = await sql<{ secret: string }>(server, 'SELECT secret FROM link_keys');
        const forged = await fetch(forge(server.baseUrl, Buffer.from(row!.secret, 'base64url'), created.body.id, 0));
        if (!encrypted) {
          expect(forged.status).toBe(200);
          return;
        }
        expect(forged.status).toBe(403);
        const body = (await forged.json()) as { error: { code: string; message: string } };
        expect(body.error).toMatchObject({ code: 'Forbidden', message: 'The download link is not valid.' });
      });
    });
  }
}
