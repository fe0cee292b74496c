import type { Readable } from 'node:stream';
import type { Caller } from '../domain/caller.js';
import { ApiError, ERRORS } from '../domain/errors.js';
import { LIBRARY_FILE_MAX_BYTES, libraryFileNameProblem } from '../domain/library.js';
import type { LibraryFile } from '../domain/model.js';
import type { ListQuery, Page, Store } from '../domain/store.js';
import { textProblem } from '../validation.js';
import { BlobTooLarge, type BlobReader, type BlobStore, type StagedBlob } from './blob-store.js';

/** One part of a multipart form, as the form parser hands it over. */
export type FormPart =
  | { type: 'field'; fieldname: string; value: unknown; valueTruncated: boolean }
  | { type: 'file'; fieldname: string; filename: string; file: Readable };

/** The form's fields (contract §2 row 18). Names match case-insensitively, as form binding does. */
const FIELDS = ['File', 'Description', 'ParametersDescription', 'HasParameters', 'OverrideIfExists'] as const;
type Field = (typeof FIELDS)[number];
const canonical = (name: string): Field | undefined => FIELDS.find((f) => f.toLowerCase() === name.toLowerCase());

/** Longest Description / ParametersDescription, in characters. */
export const MAX_DESCRIPTION = 4096;

function parseBoolean(field: Field, value: string): boolean {
  if (/^true$/i.test(value)) return true;
  if (/^false$/i.test(value)) return false;
  throw ERRORS.InvalidInput(`'${field}' must be true or false.`);
}

function checkText(field: string, value: string): string {
  const problem = textProblem(value);
  if (problem) throw ERRORS.InvalidInput(`'${field}' ${problem}.`);
  return value;
}

/** The name of the library file a form's File part carries, checked. */
function checkFileName(filename: string): string {
  const problem = textProblem(filename) ?? libraryFileNameProblem(filename);
  if (problem) throw ERRORS.InvalidInput(`The file name of 'File' ${problem}.`);
  return filename;
}

async function drain(stream: Readable): Promise<void> {
  for await (const _ of stream) {
    // dropped
  }
}

/**
 * The tenant's live-response library (contract §2 rows 17-19). Uploads stream into the blob
 * store and are committed only once the whole form is read and valid, so a refused or
 * interrupted upload leaves nothing; files are kept until deleted.
 */
export class LibraryService {
  /** A blob may have lost its last reference here (deleted, replaced, a lost race) since the sweeper last asked. */
  private released = false;

  constructor(
    private readonly store: Store,
    private readonly blobs: BlobStore,
    private readonly now: () => number = Date.now,
  ) {}

  list(caller: Caller, query: Omit<ListQuery, 'deviceGroups'>): Promise<Page<LibraryFile>> {
    return this.store.listLibraryFiles(caller.tenantId, { ...query, deviceGroups: null });
  }

  /** By name (any case), or null; a name that cannot be a library file's is simply not there. */
  async find(tenantId: string, fileName: string): Promise<LibraryFile | null> {
    if (textProblem(fileName) ?? libraryFileNameProblem(fileName)) return null;
    return this.store.getLibraryFile(tenantId, fileName);
  }

  /** The file's bytes, checked against its SHA-256 while they stream; null if its blob is gone. */
  open(file: LibraryFile): Promise<BlobReader | null> {
    return this.blobs.open(file.sha256);
  }

  /**
   * POST /api/libraryfiles: reads the whole form (the File part streamed to staging, the rest
   * remembered), then checks it and stores the file. The form is always read to its end, even
   * after a problem is found, so the client can send its body and read the answer.
   */
  async upload(caller: Caller, parts: AsyncIterable<FormPart>): Promise<LibraryFile> {
    let staged: StagedBlob | null = null;
    let fileName: string | null = null;
    let problem: ApiError | null = null;
    const fields = new Map<Field, string>();
    const refuse = (error: unknown) => {
      if (!(error instanceof ApiError)) throw error;
      problem ??= error;
    };
    try {
      for await (const part of parts) {
        const field = canonical(part.fieldname);
        if (part.type === 'file') {
          if (field !== 'File' || staged || problem) {
            if (field === 'File' && staged) refuse(ERRORS.InvalidInput("'File' is given more than once."));
            await drain(part.file);
            continue;
          }
          try {
            fileName = checkFileName(part.filename);
          } catch (error) {
            refuse(error);
            await drain(part.file);
            continue;
          }
          try {
            staged = await this.blobs.stage(part.file, { maxBytes: LIBRARY_FILE_MAX_BYTES, overflow: 'drain' });
          } catch (error) {
            if (!(error instanceof BlobTooLarge)) throw error;
            refuse(ERRORS.FileTooLarge('File', LIBRARY_FILE_MAX_BYTES));
          }
          continue;
        }
        if (!field) continue; // unknown fields are ignored, as in JSON bodies
        try {
          if (field === 'File') throw ERRORS.InvalidInput("'File' must be a file part (with a file name).");
          if (fields.has(field)) throw ERRORS.InvalidInput(`'${field}' is given more than once.`);
          if (typeof part.value !== 'string') throw ERRORS.InvalidInput(`'${field}' must be text.`);
          if (part.valueTruncated || part.value.length > MAX_DESCRIPTION) {
            throw ERRORS.InvalidInput(`'${field}' is longer than ${MAX_DESCRIPTION} characters.`);
          }
          fields.set(field, checkText(field, part.value));
        } catch (error) {
          refuse(error);
        }
      }
      if (problem) throw problem;
      if (!staged || fileName === null) throw ERRORS.MissingRequiredParameter('File');
      const hasParameters = fields.has('HasParameters') ? parseBoolean('HasParameters', fields.get('HasParameters')!) : false;
      const override = fields.has('OverrideIfExists') ? parseBoolean('OverrideIfExists', fields.get('OverrideIfExists')!) : false;
      if (!override && (await this.store.getLibraryFile(caller.tenantId, fileName))) throw ERRORS.LibraryFileExists(fileName);
      await staged.commit();
      const now = this.now();
      const file: LibraryFile = {
        tenantId: caller.tenantId,
        fileName,
        sha256: staged.sha256,
        size: staged.size,
        description: fields.get('Description') || null,
        creationTime: now,
        lastUpdatedTime: now,
        createdBy: caller.displayName,
        hasParameters,
        parametersDescription: fields.get('ParametersDescription') || null,
      };
      // A name taken by a racing upload since the check above: that upload won. The blob just
      // committed is then unreferenced and the sweeper removes it.
      const result = await this.store.putLibraryFile(file, override);
      if (result.outcome !== 'created') this.released = true;
      if (result.outcome === 'exists') throw ERRORS.LibraryFileExists(fileName);
      return result.file;
    } finally {
      // Nothing stays staged: committed (then this does nothing) or refused.
      await (staged as StagedBlob | null)?.discard();
    }
  }

  /** DELETE /api/libraryfiles/{fileName}: the blob goes once nothing refers to it (sweeper). */
  async delete(caller: Caller, fileName: string): Promise<void> {
    const file = await this.find(caller.tenantId, fileName);
    if (!file || !(await this.store.deleteLibraryFile(caller.tenantId, file.fileName))) throw ERRORS.LibraryFileNotFound(fileName);
    this.released = true;
  }

  /** Whether a blob may have lost its last reference since the last call (for the sweeper). */
  takeReleased(): boolean {
    const released = this.released;
    this.released = false;
    return released;
  }
}
