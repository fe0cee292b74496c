import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobDigestMismatch, BlobTooLarge, type BlobStore } from '../../src/artifacts/blob-store.js';
import { LinkSigner } from '../../src/artifacts/links.js';
import { commandSlot, PACKAGE_SLOT, type LibraryFile, type MachineAction } from '../../src/domain/model.js';
import type { Store } from '../../src/domain/store.js';
import { hexId } from '../support/harness.js';

/**
 * What every backend must do for artifacts: the store's library, artifact, blob-index and
 * link-key operations, and its blob store adapter (files beside SQLite, chunks in PostgreSQL).
 */
export interface ArtifactsBackend {
  store: Store;
  blobs: BlobStore;
  /** Changes the stored bytes of a blob behind the adapter's back. */
  tamper(sha256: string): Promise<void>;
  /** Whatever the adapter keeps besides the index (files, chunks, staging files). */
  residue(): Promise<{ blobs: number; staging: number }>;
  dispose(): Promise<void>;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const stream = (data: Buffer | string) => Readable.from([Buffer.from(data)]);
async function bytes(readable: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of readable) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function artifactsContract(name: string, open: () => Promise<ArtifactsBackend>) {
  describe(`artifacts contract: ${name}`, () => {
    let backend: ArtifactsBackend;
    let store: Store;
    let blobs: BlobStore;
    beforeAll(async () => {
      backend = await open();
      ({ store, blobs } = backend);
    });
    afterAll(async () => {
      await backend?.dispose();
    });

    const tenant = async () => {
      const id = randomUUID();
      await store.upsertTenant({ id, name: 't' });
      return id;
    };
    const file = (tenantId: string, fileName: string, content: string, at = 1000): LibraryFile => ({
      tenantId,
      fileName,
      sha256: sha256(content),
      size: Buffer.byteLength(content),
      description: null,
      creationTime: at,
      lastUpdatedTime: at,
      createdBy: 'creator',
      hasParameters: false,
      parametersDescription: null,
    });
    const put = async (content: string | Buffer) => {
      const staged = await blobs.stage(stream(content), { maxBytes: 1 << 20, overflow: 'abort' });
      await staged.commit();
      return staged.sha256;
    };

    it('library files: created, taken (any case), replaced keeping creation, listed, deleted', async () => {
      const t = await tenant();
      expect((await store.putLibraryFile(file(t, 'Run.sh', 'one'), false)).outcome).toBe('created');
      const taken = await store.putLibraryFile(file(t, 'run.SH', 'two', 2000), false);
      expect(taken.outcome).toBe('exists');
      expect(taken.file.sha256).toBe(sha256('one'));
      const replaced = await store.putLibraryFile({ ...file(t, 'run.sh', 'two', 3000), createdBy: 'other' }, true);
      expect(replaced.outcome).toBe('replaced');
      expect(replaced.file).toMatchObject({ fileName: 'run.sh', sha256: sha256('two'), creationTime: 1000, lastUpdatedTime: 3000, createdBy: 'creator' });
      expect(await store.getLibraryFile(t, 'RUN.SH')).toEqual(replaced.file);
      expect(await store.getLibraryFile(await tenant(), 'run.sh')).toBeNull();
      const page = await store.listLibraryFiles(t, { orderBy: [], top: 10, skip: 0, count: true, deviceGroups: null });
      expect(page.items.map((f) => f.fileName)).toEqual(['run.sh']);
      expect(page.count).toBe(1);
      expect(await store.deleteLibraryFile(t, 'Run.Sh')).toBe(true);
      expect(await store.deleteLibraryFile(t, 'run.sh')).toBe(false);
    });

    it('30 simultaneous creations of one name: exactly one is created', async () => {
      const t = await tenant();
      const outcomes = await Promise.all(Array.from({ length: 30 }, (_, i) => store.putLibraryFile(file(t, 'same.sh', `c${i}`), false)));
      expect(outcomes.filter((o) => o.outcome === 'created')).toHaveLength(1);
      expect(outcomes.filter((o) => o.outcome === 'exists')).toHaveLength(29);
    });

    it('blobs: staged bytes are readable only once committed, identical content is one blob, discarding leaves nothing', async () => {
      const before = await backend.residue();
      const content = `content ${randomUUID()}`;
      const staged = await blobs.stage(stream(content), { maxBytes: 1000, overflow: 'abort' });
      expect(staged).toMatchObject({ sha256: sha256(content), size: Buffer.byteLength(content) });
      expect(await blobs.open(staged.sha256)).toBeNull();
      await staged.commit();
      await staged.discard(); // after a commit: nothing to do
      const reader = (await blobs.open(staged.sha256))!;
      expect(reader.size).toBe(Buffer.byteLength(content));
      expect((await bytes(reader.stream)).toString()).toBe(content);
      expect(await put(content)).toBe(staged.sha256);
      expect((await backend.residue()).blobs).toBe(before.blobs + 1);
      const dropped = await blobs.stage(stream('dropped'), { maxBytes: 1000, overflow: 'abort' });
      await dropped.discard();
      expect(await blobs.open(dropped.sha256)).toBeNull();
      expect(await backend.residue()).toEqual({ blobs: before.blobs + 1, staging: before.staging });
    });

    it('blobs: too large (aborted or drained) and a wrong announced digest are refused and leave no staging file', async () => {
      const before = await backend.residue();
      await expect(blobs.stage(stream(Buffer.alloc(11)), { maxBytes: 10, overflow: 'abort' })).rejects.toBeInstanceOf(BlobTooLarge);
      await expect(blobs.stage(stream(Buffer.alloc(11)), { maxBytes: 10, overflow: 'drain' })).rejects.toBeInstanceOf(BlobTooLarge);
      await expect(blobs.stage(stream('abc'), { maxBytes: 10, overflow: 'abort', expectSha256: sha256('abd') })).rejects.toBeInstanceOf(BlobDigestMismatch);
      const exact = await blobs.stage(stream(Buffer.alloc(10)), { maxBytes: 10, overflow: 'abort', expectSha256: sha256(Buffer.alloc(10)).toUpperCase() });
      await exact.discard();
      expect(await backend.residue()).toEqual(before);
    });

    it('blobs: a large blob streams back whole; an empty one too', async () => {
      const large = Buffer.alloc(3 * 1024 * 1024 + 17);
      for (let i = 0; i < large.length; i++) large[i] = (i * 31) & 0xff;
      const staged = await blobs.stage(stream(large), { maxBytes: 4 * 1024 * 1024, overflow: 'abort' });
      await staged.commit();
      expect(sha256(await bytes((await blobs.open(staged.sha256))!.stream))).toBe(sha256(large));
      const empty = await put('');
      expect((await bytes((await blobs.open(empty))!.stream)).length).toBe(0);
    });

    it('blobs: a damaged blob is never read back whole: the stream errors', async () => {
      const sha = await put(`damaged ${randomUUID()}`);
      await backend.tamper(sha);
      const reader = (await blobs.open(sha))!;
      await expect(bytes(reader.stream)).rejects.toBeInstanceOf(BlobDigestMismatch);
    });

    it('20 simultaneous commits of one new content store one blob', async () => {
      const content = `parallel ${randomUUID()}`;
      const before = await backend.residue();
      const staged = await Promise.all(Array.from({ length: 20 }, () => blobs.stage(stream(content), { maxBytes: 1000, overflow: 'abort' })));
      await Promise.all(staged.map((s) => s.commit()));
      expect(await backend.residue()).toEqual({ blobs: before.blobs + 1, staging: before.staging });
      expect((await bytes((await blobs.open(sha256(content)))!.stream)).toString()).toBe(content);
    });

    it('collection removes only blobs nothing refers to and nothing touched since the cutoff', async () => {
      const t = await tenant();
      const machineId = hexId();
      await store.upsertMachine({
        tenantId: t, id: machineId, computerDnsName: 'm', firstSeen: null, lastSeen: null, osPlatform: null, osVersion: null, osProcessor: null,
        version: null, osBuild: null, lastIpAddress: null, lastExternalIpAddress: null, agentVersion: null, osArchitecture: null,
        healthStatus: 'Active', defenderAvStatus: null, onboardingStatus: null, deviceValue: null, rbacGroupId: null, rbacGroupName: null,
        riskScore: null, exposureLevel: null, isAadJoined: false, aadDeviceId: null, machineTags: [], ipAddresses: [], offboardedAt: null,
      });
      const action: MachineAction = {
        id: randomUUID(), tenantId: t, type: 'LiveResponse', title: null, requestor: 'r', requestorId: 'r', requestorComment: null,
        status: 'InProgress', machineId, computerDnsName: 'm', creationDateTimeUtc: 5000, lastUpdateDateTimeUtc: 5000,
        cancellationRequestor: null, cancellationComment: null, cancellationDateTimeUtc: null, errorHResult: 0, scope: null,
        externalId: null, requestSource: 'PublicApi', relatedFileInfo: null, commands: [], troubleshootInfo: null,
        conflictKey: 'LiveResponse', startedAt: 5000,
      };
      expect(await store.insertAction(action, { at: 5000, actor: 'r', comment: null })).toBe('inserted');
      const library = await put(`library ${randomUUID()}`);
      const result = await put(`result ${randomUUID()}`);
      const orphan = await put(`orphan ${randomUUID()}`);
      await store.putLibraryFile({ ...file(t, 'kept.sh', 'x'), sha256: library }, false);
      await store.putArtifact({ tenantId: t, actionId: action.id, slot: commandSlot(0), sha256: result, size: 1, fileName: 'r.json', contentType: 'application/json', createdAt: 6000, actionCreatedAt: 5000 });
      expect((await store.getArtifact(t, action.id, commandSlot(0)))!.sha256).toBe(result);
      expect(await store.getArtifact(t, action.id, PACKAGE_SLOT)).toBeNull();
      // Touched just now: a cutoff in the past keeps everything.
      await blobs.collect(Date.now() - 60_000);
      for (const sha of [library, result, orphan]) expect(await blobs.open(sha)).not.toBeNull();
      await blobs.collect(Date.now() + 1000);
      expect(await blobs.open(orphan)).toBeNull();
      expect(await blobs.open(library)).not.toBeNull();
      expect(await blobs.open(result)).not.toBeNull();
      // Retention removes the artifact (by its action's age), then its blob can go.
      expect(await store.deleteExpiredArtifacts(5000, 10)).toBe(0);
      expect(await store.deleteExpiredArtifacts(5001, 10)).toBeGreaterThanOrEqual(1);
      await blobs.collect(Date.now() + 1000);
      expect(await blobs.open(result)).toBeNull();
      expect(await store.deleteLibraryFile(t, 'kept.sh')).toBe(true);
      await blobs.collect(Date.now() + 1000);
      expect(await blobs.open(library)).toBeNull();
    });

    it('the link key is created once: every signer loaded from the store signs alike', async () => {
      const signers = await Promise.all(Array.from({ length: 10 }, () => LinkSigner.load(store)));
      const claims = { kind: 'result' as const, tenantId: 't', actionId: 'a', item: '0', machineId: '', expires: 1 };
      expect(new Set(signers.map((s) => s.sign(claims))).size).toBe(1);
    });
  });
}
