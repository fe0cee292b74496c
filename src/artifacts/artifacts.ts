import type { Readable } from 'node:stream';
import type { Caller } from '../domain/caller.js';
import { libraryFileOf } from '../domain/catalog.js';
import { ERRORS } from '../domain/errors.js';
import { libraryNameKey } from '../domain/library.js';
import {
  commandSlot,
  PACKAGE_SLOT,
  type ActionArtifact,
  type ArtifactSlot,
  type LibraryFile,
  type MachineAction,
} from '../domain/model.js';
import type { Store } from '../domain/store.js';
import type { ActionsService, MachineRef } from '../services/actions.js';
import { BlobDigestMismatch, BlobTooLarge, SHA256_HEX, type BlobReader, type BlobStore } from './blob-store.js';
import type { LibraryService } from './library.js';
import type { LinkClaims, LinkSigner } from './links.js';

/** Durations and caps of the artifacts, from the server's configuration (docs/artifacts.md). */
export interface ArtifactSettings {
  /** Live-response result links (contract §2 row 14: 30 minutes). */
  resultLinkSeconds: number;
  /** Investigation package links (contract: "a short time", 10 minutes). */
  packageLinkSeconds: number;
  /** The links an agent gets to fetch a library file. */
  libraryLinkSeconds: number;
  /** Largest command result or package an agent may upload. */
  agentUploadMaxBytes: number;
  /** Artifacts of actions created longer ago than this are removed by the sweeper. */
  retentionSeconds: number;
  /** An unreferenced blob is kept this long after it was last written, so an upload in flight keeps it. */
  blobGraceSeconds: number;
}

/** The package formats an agent may upload, by content type, with the extension a download gets. */
export const PACKAGE_TYPES: Readonly<Record<string, string>> = { 'application/gzip': '.tar.gz', 'application/zip': '.zip' };

/** A file an agent is about to send: what its request says of it. */
export interface Upload {
  source: Readable;
  contentType: string | undefined;
  /** Content-Length, when the request gave one. */
  contentLength: number | undefined;
  /** The SHA-256 the agent computed (hex), when it sent one: the server refuses other bytes. */
  sha256: string | undefined;
}

/**
 * Looking for unreferenced blobs reads the whole blob index, so the sweeper does it only this
 * often, or at its next pass after this node released a reference (library delete or override,
 * retention). A reference released on another node is found by that node's sweeper.
 */
export const FULL_COLLECTION_EVERY_MS = 10 * 60 * 1000;

const ACTION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The last path segment of a GetFile `Path`, Linux or Windows style, for Content-Disposition. */
function baseName(path: string): string {
  const last = path.split(/[/\\]/).filter(Boolean).pop() ?? '';
  return last === '.' || last === '..' || last === '' ? 'file' : last;
}

/**
 * What machines upload for their actions (live-response results, investigation packages), the
 * signed links API clients download them with, the library files agents fetch, and their
 * retention. Checks the contract's rules for each (which action types, which statuses) in one
 * place.
 */
export class ArtifactsService {
  private lastCollection = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly options: {
      store: Store;
      blobs: BlobStore;
      links: LinkSigner;
      actions: ActionsService;
      library: LibraryService;
      settings: ArtifactSettings;
      now?: () => number;
    },
  ) {}

  private get settings(): ArtifactSettings {
    return this.options.settings;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  // ---- API clients -----------------------------------------------------------------------

  /**
   * GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n}) (contract §2 row
   * 14): a link to the result of a completed RunScript or GetFile command.
   */
  async resultLink(caller: Caller, actionId: string, index: number, base: string): Promise<string> {
    const action = await this.options.actions.get(caller, actionId);
    if (action.type !== 'LiveResponse') {
      throw ERRORS.InvalidInput(`Action ${action.id} is a ${action.type} action: only live-response commands have results.`);
    }
    const command = action.commands[index];
    if (!command) throw ERRORS.InvalidInput(`Action ${action.id} has no command with index ${index} (it has ${action.commands.length}).`);
    if (command.command.type === 'PutFile') throw ERRORS.InvalidInput(`Command ${index} of action ${action.id} is a PutFile, which has no result.`);
    if (command.commandStatus !== 'Completed') {
      throw ERRORS.NotFound(`Command ${index} of action ${action.id} has no result: its status is ${command.commandStatus}.`);
    }
    await this.requireArtifact(action, commandSlot(index), `Command ${index} of action ${action.id} has no result`);
    return this.apiLink(base, { kind: 'result', tenantId: action.tenantId, actionId: action.id, item: String(index) }, this.settings.resultLinkSeconds);
  }

  /** GET /api/machineactions/{id}/getPackageUri (contract §2 row 8). */
  async packageLink(caller: Caller, actionId: string, base: string): Promise<string> {
    const action = await this.options.actions.get(caller, actionId);
    if (action.type !== 'CollectInvestigationPackage') {
      throw ERRORS.InvalidInput(`Action ${action.id} is a ${action.type} action, not a CollectInvestigationPackage action.`);
    }
    if (action.status !== 'Succeeded') {
      throw ERRORS.NotFound(`The investigation package of action ${action.id} is not available: the action is ${action.status}.`);
    }
    await this.requireArtifact(action, PACKAGE_SLOT, `The investigation package of action ${action.id} is not available`);
    return this.apiLink(base, { kind: 'package', tenantId: action.tenantId, actionId: action.id, item: 'package' }, this.settings.packageLinkSeconds);
  }

  private async requireArtifact(action: MachineAction, slot: ArtifactSlot, what: string): Promise<ActionArtifact> {
    const artifact = await this.options.store.getArtifact(action.tenantId, action.id, slot);
    if (!artifact) throw ERRORS.NotFound(`${what}: nothing was uploaded, or it is no longer kept.`);
    return artifact;
  }

  private apiLink(base: string, claims: Omit<LinkClaims, 'expires' | 'machineId'>, lifetimeSeconds: number): string {
    const full: LinkClaims = { ...claims, machineId: '', expires: this.options.links.expiry(lifetimeSeconds) };
    const path = claims.kind === 'package' ? 'package' : `commands/${claims.item}`;
    return `${base}/artifacts/v1/${claims.tenantId}/${claims.actionId}/${path}?${this.options.links.query(full)}`;
  }

  /**
   * A download by signed link (no Authorization header): the link's signature and expiry are
   * the credential. `item` is 'package' or a command index.
   */
  async download(
    params: { tenantId: string; actionId: string; item: string },
    query: { expires?: unknown; sig?: unknown },
  ): Promise<{ artifact: ActionArtifact; reader: BlobReader }> {
    const tenantId = params.tenantId.toLowerCase();
    const actionId = params.actionId.toLowerCase();
    const kind = params.item === 'package' ? 'package' : 'result';
    // A path that no signed link could name is refused like a bad signature: nothing to learn.
    if (!ACTION_ID.test(tenantId) || !ACTION_ID.test(actionId) || (kind === 'result' && !/^\d{1,2}$/.test(params.item))) {
      throw ERRORS.LinkInvalid();
    }
    const item = kind === 'package' ? 'package' : String(Number(params.item));
    this.options.links.verify({ kind, tenantId, actionId, item, machineId: '' }, query);
    const slot = kind === 'package' ? PACKAGE_SLOT : commandSlot(Number(item));
    const artifact = await this.options.store.getArtifact(tenantId, actionId, slot);
    const reader = artifact ? await this.options.blobs.open(artifact.sha256) : null;
    if (!artifact || !reader) throw ERRORS.NotFound('The file this link names is no longer kept.');
    return { artifact, reader };
  }

  // ---- agents ----------------------------------------------------------------------------

  private requireRunning(action: MachineAction): void {
    if (action.status !== 'InProgress') throw ERRORS.ActionNotRunning(action.id, action.status);
  }

  /** The library file `fileName` if one of the action's commands names it and the library has it. */
  private async namedLibraryFile(action: MachineAction, fileName: string): Promise<LibraryFile> {
    if (action.type !== 'LiveResponse') throw ERRORS.InvalidInput(`Action ${action.id} is not a live-response action.`);
    const key = libraryNameKey(fileName);
    const named = action.commands.some((c) => {
      const name = libraryFileOf(c.command);
      return name !== null && libraryNameKey(name) === key;
    });
    if (!named) throw ERRORS.NotFound(`Action ${action.id} names no library file '${fileName}'.`);
    const file = await this.options.library.find(action.tenantId, fileName);
    if (!file) throw ERRORS.LibraryFileNotFound(fileName);
    return file;
  }

  /**
   * Agent protocol: a short-lived link to a library file the agent's running action names,
   * valid only with that agent's credential.
   */
  async libraryLink(agent: MachineRef, action: MachineAction, fileName: string) {
    this.requireRunning(action);
    const file = await this.namedLibraryFile(action, fileName);
    const claims: LinkClaims = {
      kind: 'library',
      tenantId: agent.tenantId,
      machineId: agent.machineId,
      actionId: action.id,
      item: libraryNameKey(file.fileName),
      expires: this.options.links.expiry(this.settings.libraryLinkSeconds),
    };
    return {
      link: `/agent/v1/library/${action.id}/${encodeURIComponent(file.fileName)}?${this.options.links.query(claims)}`,
      fileName: file.fileName,
      sha256: file.sha256,
      size: file.size,
      expiresAt: claims.expires * 1000,
    };
  }

  /** Agent protocol: the bytes behind a library link, for the agent the link was made for. */
  async openLibraryFile(agent: MachineRef, action: MachineAction, fileName: string, query: { expires?: unknown; sig?: unknown }) {
    this.options.links.verify(
      { kind: 'library', tenantId: agent.tenantId, machineId: agent.machineId, actionId: action.id, item: libraryNameKey(fileName) },
      query,
    );
    this.requireRunning(action);
    const file = await this.namedLibraryFile(action, fileName);
    const reader = await this.options.library.open(file);
    if (!reader) throw ERRORS.LibraryFileNotFound(fileName);
    return { file, reader };
  }

  /**
   * Agent protocol: stores a command's result (`index`) or the package (`index` null) that the
   * machine uploads for its running action. Streamed to the blob store with the upload cap; a
   * retry with the same bytes stores the same blob again, so retrying is harmless.
   */
  async receive(agent: MachineRef, action: MachineAction, index: number | null, upload: Upload): Promise<{ sha256: string; size: number }> {
    this.requireRunning(action);
    let slot: ArtifactSlot;
    let fileName: string;
    let contentType: string;
    if (index === null) {
      if (action.type !== 'CollectInvestigationPackage') throw ERRORS.InvalidInput(`Action ${action.id} does not collect an investigation package.`);
      const type = upload.contentType?.split(';')[0]?.trim().toLowerCase() ?? '';
      const extension = PACKAGE_TYPES[type];
      if (!extension) throw ERRORS.UnsupportedMediaType(upload.contentType, Object.keys(PACKAGE_TYPES).join(' or '));
      slot = PACKAGE_SLOT;
      contentType = type;
      const machine = (action.computerDnsName ?? action.machineId).replace(/[^A-Za-z0-9.-]/g, '_');
      fileName = `investigation-package-${machine}-${action.id}${extension}`;
    } else {
      if (action.type !== 'LiveResponse') throw ERRORS.InvalidInput(`Action ${action.id} is not a live-response action.`);
      const command = action.commands[index];
      if (!command) throw ERRORS.InvalidInput(`Action ${action.id} has no command with index ${index}.`);
      if (command.command.type === 'PutFile') throw ERRORS.InvalidInput(`Command ${index} is a PutFile, which has no result.`);
      if (!/^application\/octet-stream\s*(;|$)/i.test(upload.contentType ?? '')) {
        throw ERRORS.UnsupportedMediaType(upload.contentType, 'application/octet-stream');
      }
      slot = commandSlot(index);
      const param = (key: string) => command.command.params.find((p) => p.key === key)?.value ?? '';
      if (command.command.type === 'RunScript') {
        contentType = 'application/json';
        fileName = `${param('ScriptName')}.result.json`;
      } else {
        contentType = 'application/octet-stream';
        fileName = baseName(param('Path'));
      }
    }
    const max = this.settings.agentUploadMaxBytes;
    if (upload.contentLength !== undefined && upload.contentLength > max) throw ERRORS.PayloadTooLarge(max);
    if (upload.sha256 !== undefined && !SHA256_HEX.test(upload.sha256.toLowerCase())) {
      throw ERRORS.InvalidInput('x-content-sha256 must be 64 hexadecimal characters.');
    }
    let staged;
    try {
      staged = await this.options.blobs.stage(upload.source, { maxBytes: max, overflow: 'abort', expectSha256: upload.sha256 });
    } catch (error) {
      if (error instanceof BlobTooLarge) throw ERRORS.PayloadTooLarge(max);
      if (error instanceof BlobDigestMismatch) throw ERRORS.InvalidInput(`The content does not match x-content-sha256: ${error.message}.`);
      throw error;
    }
    try {
      // The upload took its time: the action may have ended meanwhile (cancelled, timed out).
      const current = await this.options.store.getAction(action.tenantId, action.id);
      this.requireRunning(current ?? action);
      await staged.commit();
      await this.options.store.putArtifact({
        tenantId: action.tenantId,
        actionId: action.id,
        slot,
        sha256: staged.sha256,
        size: staged.size,
        fileName,
        contentType,
        createdAt: this.now(),
        actionCreatedAt: action.creationDateTimeUtc,
      });
      return { sha256: staged.sha256, size: staged.size };
    } finally {
      await staged.discard();
    }
  }

  // ---- housekeeping ----------------------------------------------------------------------

  /** One retention pass: artifacts of old actions, then the blobs nothing refers to any more. */
  async sweep(now = this.now()): Promise<{ artifacts: number; blobs: number }> {
    let artifacts = 0;
    for (;;) {
      const removed = await this.options.store.deleteExpiredArtifacts(now - this.settings.retentionSeconds * 1000, 500);
      artifacts += removed;
      if (removed < 500) break;
    }
    const due = now - this.lastCollection >= FULL_COLLECTION_EVERY_MS;
    if (!(this.options.library.takeReleased() || artifacts > 0 || due)) return { artifacts, blobs: 0 };
    this.lastCollection = now;
    const blobs = await this.options.blobs.collect(now - this.settings.blobGraceSeconds * 1000);
    return { artifacts, blobs };
  }
}
