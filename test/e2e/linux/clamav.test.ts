import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HRESULT, type ExecutionContext } from '../../../src/agent/executor.js';
import { LinuxExecutor, type LinuxExecutorOptions } from '../../../src/agent/executors/linux/index.js';
import { announce, isDead, skipReason, waitUntil } from './support.js';

/**
 * RunAntiVirusScan with the real clamscan against a signature database the test writes itself
 * (an .hdb line: md5:size:name), so no freshclam/network is needed. Scans only read the test's
 * temporary directory, so the executor runs in the test process.
 */

const reason = skipReason(['clamscan']);
const title = announce('RunAntiVirusScan with clamscan', reason);

// The EICAR test file (https://www.eicar.org): harmless, detected by every scanner.
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
const SIGNATURE = 'Countermand.Test.EICAR';

function context(scope: string, signal = new AbortController().signal): ExecutionContext {
  return {
    action: { id: randomUUID(), type: 'RunAntiVirusScan', scope, sha1: null, commands: [], comment: 'test' },
    signal,
    log: () => undefined,
  };
}

describe.skipIf(reason !== null)(title, () => {
  let T = '';
  let base: LinuxExecutorOptions;

  beforeAll(() => {
    T = mkdtempSync(join(tmpdir(), 'cm-clamav-'));
    for (const d of ['db', 'infected/sub dir', 'clean', 'root/quarantine', 'root/data']) mkdirSync(join(T, d), { recursive: true });
    const md5 = createHash('md5').update(EICAR).digest('hex');
    writeFileSync(join(T, 'db', 'countermand-test.hdb'), `${md5}:${Buffer.byteLength(EICAR)}:${SIGNATURE}\n`);
    writeFileSync(join(T, 'infected', 'sub dir', 'eicar: test.com'), EICAR);
    writeFileSync(join(T, 'infected', 'readme.txt'), 'nothing to see\n');
    writeFileSync(join(T, 'clean', 'a.txt'), 'hello\n');
    writeFileSync(join(T, 'root', 'quarantine', 'old.com'), EICAR); // must be excluded
    writeFileSync(join(T, 'root', 'data', 'new.com'), EICAR);
    base = {
      clamDatabaseDir: join(T, 'db'),
      stateDir: join(T, 'state'),
      logFile: join(T, 'log', 'actions.log'),
      quarantineDir: join(T, 'root', 'quarantine'),
    };
  });

  afterAll(() => {
    if (T) rmSync(T, { recursive: true, force: true });
  });

  it('a Quick scan finds EICAR: Succeeded with the finding and a troubleshootInfo summary', async () => {
    const path = join(T, 'infected', 'sub dir', 'eicar: test.com');
    const out = await new LinuxExecutor({ ...base, quickScanPaths: [join(T, 'infected'), join(T, 'does-not-exist')] }).execute(context('Quick'));
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded', errorHResult: 0 });
    const findings = out.detail?.findings as { path: string; signature: string }[];
    expect(findings).toHaveLength(1);
    expect(findings[0]!.path).toBe(path);
    // Hashed, so the server's alert evidence can name the file's content.
    expect(findings[0]).toMatchObject({
      sha1: createHash('sha1').update(EICAR).digest('hex'),
      sha256: createHash('sha256').update(EICAR).digest('hex'),
    });
    // clamscan marks signatures from a non-official database with ".UNOFFICIAL".
    expect(findings[0]!.signature).toMatch(new RegExp(`^${SIGNATURE.replace(/\./g, '\\.')}(\\.UNOFFICIAL)?$`));
    expect(out.troubleshootInfo).toBe(`1 threat found: ${path}: ${findings[0]!.signature}`);
    expect(out.detail).toMatchObject({ findingsTotal: 1, skippedPaths: [join(T, 'does-not-exist')] });
    const log = readFileSync(join(T, 'log', 'actions.log'), 'utf8');
    expect(log).toContain('"event":"scan.end"');
  }, 30_000);

  it('a clean directory: Succeeded, no findings, no troubleshootInfo', async () => {
    const out = await new LinuxExecutor({ ...base, quickScanPaths: [join(T, 'clean')] }).execute(context('Quick'));
    expect(out).toMatchObject({ status: 'Succeeded', errorHResult: 0, troubleshootInfo: null });
    expect(out.detail).toMatchObject({ findings: [], findingsTotal: 0 });
  }, 30_000);

  it('a Full scan covers the root but not the quarantine directory', async () => {
    const out = await new LinuxExecutor({ ...base, fullScanRoot: join(T, 'root') }).execute(context('Full'));
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'Succeeded' });
    expect((out.detail?.findings as { path: string }[]).map((f) => f.path)).toEqual([join(T, 'root', 'data', 'new.com')]);
  }, 30_000);

  it('an already-aborted signal: Failed, aborted, clamscan never started', async () => {
    const controller = new AbortController();
    controller.abort();
    const out = await new LinuxExecutor({ ...base, quickScanPaths: [join(T, 'infected')] }).execute(context('Quick', controller.signal));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.aborted });
  });

  it('cancelling a running scan kills clamscan: Failed, aborted', async () => {
    // A stand-in that runs until killed, and says which pid to watch.
    const fake = join(T, 'slow-clamscan');
    const pidFile = join(T, 'slow.pid');
    writeFileSync(fake, `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 30\n`, { mode: 0o755 });
    const controller = new AbortController();
    const started = Date.now();
    const pending = new LinuxExecutor({ ...base, clamscanPath: fake, quickScanPaths: [join(T, 'clean')] }).execute(context('Quick', controller.signal));
    const pid = await waitUntil('the fake scanner', () => {
      try {
        return Number(readFileSync(pidFile, 'utf8').trim()) || null;
      } catch {
        return null;
      }
    });
    controller.abort();
    const out = await pending;
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.aborted });
    expect(Date.now() - started).toBeLessThan(10_000);
    await waitUntil('the scanner to be gone', () => isDead(pid), 5000);
  }, 20_000);

  it('clamscan missing: Failed, fileNotFound, with a clear reason', async () => {
    const out = await new LinuxExecutor({ ...base, clamscanPath: join(T, 'no-such-clamscan'), quickScanPaths: [join(T, 'clean')] }).execute(context('Quick'));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fileNotFound });
    expect(out.troubleshootInfo).toMatch(/no-such-clamscan was not found: install it \(Debian\/Ubuntu package clamav\)|no-such-clamscan was not found/);
  });

  it('a clamscan error (no usable database): Failed with its stderr', async () => {
    mkdirSync(join(T, 'empty-db'));
    const out = await new LinuxExecutor({ ...base, clamDatabaseDir: join(T, 'empty-db'), quickScanPaths: [join(T, 'clean')] }).execute(context('Quick'));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(out.troubleshootInfo).toMatch(/^clamscan exited with 2: .*(database|No supported)/s);
  }, 30_000);

  it('an unknown scan type fails without scanning', async () => {
    const out = await new LinuxExecutor({ ...base, quickScanPaths: [join(T, 'clean')] }).execute(context('Deep'));
    expect(out).toMatchObject({ status: 'Failed', errorHResult: HRESULT.fail });
    expect(out.troubleshootInfo).toMatch(/Unsupported scan type/);
  });
});
