import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LIBRARY_FILE_MAX_BYTES } from '../../src/domain/library.js';
import { BACKENDS } from '../support/artifacts.js';
import { Client, appToken, cleanup, makeFixtures } from '../support/harness.js';
import { uploadLibraryFile } from '../support/library.js';
import { freshDatabase } from '../support/postgres.js';
import { spawnCli, type Spawned } from '../support/process.js';

/**
 * Uploads stream (issue: "memory stays flat for a 20 MB file"): the server runs as its own
 * process, and its peak resident memory (VmHWM) is read from /proc before and after five
 * 20 MB library uploads sent at once. A server that held files in memory would grow by at least
 * the 100 MB in flight (measured with uploads buffered on purpose: about 200 MB); a streaming one
 * grows by what the garbage collector has not yet reclaimed of the chunks passing through
 * (measured: 35-55 MB). Memory, not time, is asserted.
 */

const PARALLEL = 5;
const dirs: string[] = [];
const running: Spawned[] = [];
const drops: (() => Promise<void>)[] = [];

afterAll(async () => {
  for (const p of running) {
    p.child.kill('SIGTERM');
    await p.exited;
  }
  for (const drop of drops) await drop();
  for (const dir of dirs) cleanup(dir);
});

function peakKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'))!;
  return Number(/(\d+)/.exec(line)![1]);
}

for (const { backend, skip } of BACKENDS) {
  describe.skipIf(skip !== null)(`library uploads stream on ${backend}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    it(`${PARALLEL} simultaneous 20 MB uploads grow the peak memory by less than the ${PARALLEL * 20} MB in flight`, async () => {
      const setup = makeFixtures(1);
      const dir = mkdtempSync(join(tmpdir(), 'countermand-memory-'));
      dirs.push(dir);
      writeFileSync(join(dir, 'fixtures.json'), JSON.stringify(setup.fixtures));
      const database = backend === 'postgres' ? await freshDatabase() : null;
      if (database) drops.push(() => database.drop());
      const server = spawnCli(
        ['serve', '--port', '0', '--data-dir', dir, '--fixtures', join(dir, 'fixtures.json'), '--log-level', 'warn', ...(database ? ['--database-url', database.url] : [])],
        { COUNTERMAND_DEMO_FLEET: '0', COUNTERMAND_RATE_LIMITS_ENABLED: 'false' },
      );
      running.push(server);
      const url = (await server.waitFor(/listening on (http:\/\/[0-9.:]+)/, 30_000))[1]!;
      const api = new Client(url, { authorization: `Bearer ${await appToken({ url }, setup.tenantId, setup.clientId)}` });
      // Warm up every path an upload takes (parser, staging, blob store, database) with small files.
      for (let i = 0; i < 20; i++) expect((await uploadLibraryFile(api, `warm-${i}.sh`, 'w'.repeat(100_000))).status).toBe(200);
      const before = peakKiB(server.child.pid!);

      const file = Buffer.alloc(LIBRARY_FILE_MAX_BYTES, 0x61);
      const results = await Promise.all(
        Array.from({ length: PARALLEL }, (_, i) => {
          const content = Buffer.from(file);
          content[0] = i; // distinct files: nothing is deduplicated away
          return uploadLibraryFile(api, `big-${i}.bin`, content);
        }),
      );
      for (const r of results) expect(r.status, r.text).toBe(200);
      const grownMiB = (peakKiB(server.child.pid!) - before) / 1024;
      console.log(`${backend}: peak resident memory grew ${grownMiB.toFixed(1)} MiB for ${PARALLEL} x 20 MiB uploads in flight`);
      expect(grownMiB).toBeLessThan((PARALLEL * LIBRARY_FILE_MAX_BYTES) / 1024 / 1024);
    }, 120_000);
  });
}
