import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken, startAgent, waitUntil, type RunningAgent } from '../support/agents.js';
import { Client, appClient, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { ensureLibraryFile } from '../support/library.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';

/**
 * Artifacts across server nodes on one PostgreSQL database (issue: "both the server and any node
 * behind the same database can serve any link"): the two nodes start at the same moment and
 * agree on one link key; a library file uploaded through one node is what an agent of the other
 * fetches; a link one node signs downloads from the other, byte for byte, with nothing shared but
 * the database.
 */
describe.skipIf(!PG_URL)(`artifacts on several server nodes${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, () => {
  const setup = makeFixtures(1);
  let db: { url: string; drop(): Promise<void> };
  let nodeA: TestServer;
  let nodeB: TestServer;
  let viaA: Client;
  let viaB: Client;
  let agent: RunningAgent;

  beforeAll(async () => {
    db = await freshDatabase();
    const config = { databaseUrl: db.url, rateLimitScale: 100 };
    [nodeA, nodeB] = await Promise.all([
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config }),
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config }),
    ]);
    viaA = await appClient(nodeA, setup);
    viaB = await appClient(nodeB, setup);
    agent = await startAgent(nodeA.url, await enrollmentToken(nodeA.store, setup.tenantId), 'artifacts-node-a.test', { '*': { durationMs: 100 } });
  });
  afterAll(async () => {
    await agent?.stop();
    await nodeA?.stop();
    await nodeB?.stop();
    await db?.drop();
  });

  const succeeded = (c: Client, id: string) => waitUntil(async () => (await c.get(`/api/machineactions/${id}`)).body.status === 'Succeeded', 15_000);

  it('a file uploaded through node B runs on an agent of node A; its result link from either node downloads from the other', async () => {
    await ensureLibraryFile(viaB, 'across.sh', '#!/bin/sh\necho across nodes\n');
    const created = await viaB.post(`/api/machines/${agent.machineId}/runliveresponse`, {
      Comment: 'x',
      Commands: [
        { type: 'PutFile', params: [{ key: 'FileName', value: 'across.sh' }] },
        { type: 'RunScript', params: [{ key: 'ScriptName', value: 'across.sh' }] },
        { type: 'GetFile', params: [{ key: 'Path', value: '/var/log/auth.log' }] },
      ],
    });
    expect(created.status, created.text).toBe(201);
    await succeeded(viaA, created.body.id);
    for (const [signer, server] of [[viaA, nodeB], [viaB, nodeA]] as const) {
      const link = (await signer.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink(index=2)`)).body.value as string;
      expect(link.startsWith(signer.baseUrl)).toBe(true);
      const direct = await fetch(link);
      const other = await fetch(link.replace(signer.baseUrl, server.url));
      expect(other.status).toBe(200);
      expect(Buffer.from(await other.arrayBuffer())).toEqual(Buffer.from(await direct.arrayBuffer()));
    }
    const result = await fetch((await viaA.get(`/api/machineactions/${created.body.id}/GetLiveResponseResultDownloadLink(index=1)`)).body.value.replace(nodeA.url, nodeB.url));
    expect(((await result.json()) as { script_name: string }).script_name).toBe('across.sh');
  });

  it('a package collected through node A downloads through node B', async () => {
    const created = await viaA.post(`/api/machines/${agent.machineId}/collectInvestigationPackage`, { Comment: 'x' });
    await succeeded(viaB, created.body.id);
    const link = (await viaA.get(`/api/machineactions/${created.body.id}/getPackageUri`)).body.value as string;
    const res = await fetch(link.replace(nodeA.url, nodeB.url));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/gzip');
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
  });
});
