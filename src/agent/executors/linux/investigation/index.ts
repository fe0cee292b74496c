import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { create as createTar } from 'tar';
import { failed, HRESULT, succeeded, type ExecutionOutcome } from '../../../executor.js';
import { throwIfAborted, type ActionEnv } from '../env.js';
import { Collector, type ManifestSection } from './collector.js';
import { collectSections } from './sections.js';

/**
 * CollectInvestigationPackage: a tar.gz of the machine's state (docs/investigation-package.md),
 * collected into `<stateDir>/packages/<actionId>/`, uploaded, and removed.
 */

export const PACKAGES_DIR = 'packages';
export const MANIFEST = 'manifest.json';
export const PACKAGE_FORMAT = 'countermand-investigation-package';
const ACTION_ID = /^[A-Za-z0-9-]{1,64}$/;

export interface Manifest {
  format: typeof PACKAGE_FORMAT;
  version: 1;
  actionId: string;
  hostname: string;
  startedAt: string;
  finishedAt: string;
  limits: { itemMaxBytes: number; maxBytes: number; commandTimeoutMs: number; timeoutMs: number };
  /** Programs the package would have run that are not installed here. */
  missingPrograms: string[];
  totals: Record<string, number>;
  sections: ManifestSection[];
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function collectInvestigationPackage(env: ActionEnv): Promise<ExecutionOutcome> {
  const { options, context } = env;
  const { action, signal } = context;
  if (!ACTION_ID.test(action.id)) return failed(HRESULT.fail, `Unexpected action id ${JSON.stringify(action.id.slice(0, 80))}`);
  if (!context.uploadPackage) return failed(HRESULT.notImplemented, 'This agent cannot upload an investigation package');
  const base = join(options.stateDir, PACKAGES_DIR);
  const root = join(base, action.id);
  const staging = join(root, 'package');
  const archive = join(root, `investigation-package-${action.id}.tar.gz`);
  await mkdir(base, { recursive: true, mode: 0o700 });
  await chmod(base, 0o700);
  // One package is collected at a time (the executor's lock): anything else here was left by an
  // agent that stopped while collecting.
  for (const name of await readdir(base)) await rm(join(base, name), { recursive: true, force: true });
  await mkdir(staging, { recursive: true, mode: 0o700 });
  await chmod(root, 0o700);

  try {
    const limits = {
      itemMaxBytes: options.packageItemMaxBytes,
      maxBytes: options.packageMaxBytes,
      commandTimeoutMs: options.packageCommandTimeoutMs,
      timeoutMs: options.packageTimeoutMs,
    };
    const startedAt = new Date().toISOString();
    const collector = new Collector(staging, limits, signal);
    await env.note('package.start', { limits });
    await collectSections(collector);
    throwIfAborted(signal, 'while collecting the investigation package');

    const totals: Record<string, number> = { items: 0 };
    for (const section of collector.sections) {
      for (const item of section.items) {
        totals.items! += 1;
        totals[item.status] = (totals[item.status] ?? 0) + 1;
      }
    }
    const manifest: Manifest = {
      format: PACKAGE_FORMAT,
      version: 1,
      actionId: action.id,
      hostname: hostname(),
      startedAt,
      finishedAt: new Date().toISOString(),
      limits,
      missingPrograms: [...collector.missingPrograms].sort(),
      totals: { ...totals, bytes: collector.bytesWritten },
      sections: collector.sections,
    };
    await writeFile(join(staging, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });

    // node-tar (what npm itself uses): no dependency on the machine's tar or gzip, and headers
    // without this machine's owners and devices (portable). Every entry is dated when the
    // package was made: the files are copies; the originals' times are in the listings.
    const entries = (await readdir(staging)).sort((a, b) => (a === MANIFEST ? -1 : b === MANIFEST ? 1 : a.localeCompare(b)));
    await createTar({ gzip: true, file: archive, cwd: staging, portable: true, mode: 0o600, mtime: new Date(manifest.finishedAt) }, entries);
    const archiveBytes = (await stat(archive)).size;
    const sha256 = await sha256File(archive);
    await env.note('package.archived', { archiveBytes, sha256, totals: manifest.totals, missingPrograms: manifest.missingPrograms });
    throwIfAborted(signal, 'before uploading the investigation package');
    try {
      await context.uploadPackage(archive);
    } catch (err) {
      if (signal.aborted) throw err;
      return failed(HRESULT.fail, `The investigation package (${archiveBytes} bytes) could not be uploaded: ${(err as Error).message ?? err}`.slice(0, 1000), {
        archiveBytes,
        sha256,
      });
    }
    return succeeded({ archiveBytes, sha256, totals: manifest.totals, missingPrograms: manifest.missingPrograms });
  } finally {
    // Kept on the server, per action; nothing stays on the machine.
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}
