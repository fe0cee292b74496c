import type { Multipart } from '@fastify/multipart';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FormPart } from '../../../artifacts/library.js';
import { MAX_DESCRIPTION } from '../../../artifacts/library.js';
import { ApiError, ERRORS } from '../../../domain/errors.js';
import { LIBRARY_FILE_MAX_BYTES } from '../../../domain/library.js';
import { MANAGE_LIBRARY } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { libraryFileEntity } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { LibraryFile, LibraryUploadForm, entityOf } from '../../wire-schemas.js';

/** Room for the form's other fields and part headers besides the file itself. */
const FORM_OVERHEAD_BYTES = 1024 * 1024;

/** What the form parser may read: one file (one byte past the cap, so an oversized file is seen as such), a few short fields. */
const PARSE_OPTIONS = {
  limits: {
    fileSize: LIBRARY_FILE_MAX_BYTES + 1,
    files: 1,
    fields: 16,
    parts: 24,
    // Bytes: a character takes up to four in UTF-8; the service counts characters.
    fieldSize: MAX_DESCRIPTION * 4 + 1,
    fieldNameSize: 100,
    headerPairs: 16,
  },
  // The file name is checked as sent: a path is refused, not silently cut to its last segment.
  preservePath: true,
  defParamCharset: 'utf8',
  // The blob store counts the bytes itself and says "too large" in the contract's words.
  throwFileSizeLimit: false,
} as const;

const MULTIPART_LIMITS: Readonly<Record<string, string>> = {
  FST_FILES_LIMIT: "The form may carry one file, 'File'.",
  FST_FIELDS_LIMIT: 'The form has too many fields.',
  FST_PARTS_LIMIT: 'The form has too many parts.',
  FST_PROTO_VIOLATION: 'The form has a field name that is not allowed.',
  FST_INVALID_JSON_FIELD_ERROR: 'A form field declared as JSON is not valid JSON.',
};

/**
 * A failure of the form itself (malformed multipart, a parser limit, the client gone) as the
 * contract's 400; anything else (a full disk, a bug) stays what it is.
 */
function formError(error: unknown): ApiError | null {
  if (error instanceof ApiError) return error;
  const e = error as { code?: unknown; message?: unknown };
  if (typeof e.code === 'string' && MULTIPART_LIMITS[e.code]) return ERRORS.InvalidRequestBody(MULTIPART_LIMITS[e.code]!);
  if (e.code === 'FST_MP_PREMATURE_CLOSE' || (typeof e.message === 'string' && /multipart|terminated early|malformed/i.test(e.message))) {
    return ERRORS.InvalidRequestBody('The multipart/form-data body is malformed or incomplete.');
  }
  return null;
}

async function* formParts(request: FastifyRequest): AsyncGenerator<FormPart> {
  for await (const part of request.parts(PARSE_OPTIONS) as AsyncIterableIterator<Multipart>) {
    if (part.type === 'file') yield { type: 'file', fieldname: part.fieldname, filename: part.filename, file: part.file };
    else yield { type: 'field', fieldname: part.fieldname, value: part.value, valueTruncated: part.valueTruncated };
  }
}

/**
 * POST /api/libraryfiles (contract §2 row 18), multipart/form-data: `File` (at most 20 MB),
 * `Description`, `ParametersDescription`, `HasParameters`, `OverrideIfExists`. The file streams
 * to the blob store; memory stays flat whatever its size.
 */
export const uploadLibraryFile: Operation = {
  name: 'UploadLibraryFile',
  method: 'POST',
  path: '/libraryfiles',
  permissions: MANAGE_LIBRARY,
  multipart: true,
  doc: {
    tag: TAGS.library,
    summary: 'Upload a library file',
    description:
      'multipart/form-data, streamed to storage. An existing name (in any case) needs OverrideIfExists=true, else 400 BadRequest; ' +
      "a File over 20 MB is 400 InvalidInput. Nothing of a refused or interrupted upload is kept.",
    body: { contentType: 'multipart/form-data', schema: LibraryUploadForm },
    response: { status: 200, description: 'The library item.', schema: entityOf('LibraryFiles', LibraryFile) },
  },
  async handler(request: FastifyRequest, ctx, reply: FastifyReply) {
    const length = Number(request.headers['content-length']);
    if (Number.isFinite(length) && length > LIBRARY_FILE_MAX_BYTES + FORM_OVERHEAD_BYTES) {
      // Refused unread: the connection closes after the answer rather than take in the rest.
      reply.header('connection', 'close');
      throw ERRORS.FileTooLarge('File', LIBRARY_FILE_MAX_BYTES);
    }
    try {
      const file = await ctx.library.upload(request.caller, formParts(request));
      return { status: 200, body: libraryFileEntity(ctx.baseUrl(), file) };
    } catch (error) {
      const refusal = formError(error);
      if (!refusal || refusal !== error) {
        // The form could not be read to its end: do not keep a connection whose stream is lost.
        reply.header('connection', 'close');
      }
      throw refusal ?? error;
    }
  },
};
