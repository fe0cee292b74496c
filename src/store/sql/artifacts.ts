import type { ActionArtifact, ArtifactSlot, LibraryFile } from '../../domain/model.js';
import { libraryNameKey } from '../../domain/library.js';
import type { LibraryPutOutcome } from '../../domain/store.js';
import type { Row } from './rows.js';
import { placeholders } from './rows.js';
import type { Operation } from './sql-store.js';

/**
 * The artifacts' SQL (schema version 6), shared by every backend like the rest of store/sql:
 * library files, what machines uploaded for their actions, the blob index, and the key that
 * signs download links.
 */

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export const LIBRARY_COLUMNS = [
  'tenant_id',
  'name_key',
  'file_name',
  'sha256',
  'size',
  'description',
  'parameters_description',
  'has_parameters',
  'created_by',
  'created_at',
  'updated_at',
] as const;

export function libraryParams(f: LibraryFile): unknown[] {
  return [
    f.tenantId,
    libraryNameKey(f.fileName),
    f.fileName,
    f.sha256,
    f.size,
    f.description,
    f.parametersDescription,
    f.hasParameters ? 1 : 0,
    f.createdBy,
    f.creationTime,
    f.lastUpdatedTime,
  ];
}

export function rowToLibraryFile(r: Row): LibraryFile {
  return {
    tenantId: String(r.tenant_id),
    fileName: String(r.file_name),
    sha256: String(r.sha256),
    size: num(r.size),
    description: strOrNull(r.description),
    creationTime: num(r.created_at),
    lastUpdatedTime: num(r.updated_at),
    createdBy: String(r.created_by),
    hasParameters: Boolean(num(r.has_parameters)),
    parametersDescription: strOrNull(r.parameters_description),
  };
}

export const ARTIFACT_COLUMNS = [
  'tenant_id',
  'action_id',
  'slot',
  'sha256',
  'size',
  'file_name',
  'content_type',
  'created_at',
  'action_created_at',
] as const;

export function artifactParams(a: ActionArtifact): unknown[] {
  return [a.tenantId, a.actionId, a.slot, a.sha256, a.size, a.fileName, a.contentType, a.createdAt, a.actionCreatedAt];
}

export function rowToArtifact(r: Row): ActionArtifact {
  return {
    tenantId: String(r.tenant_id),
    actionId: String(r.action_id),
    slot: String(r.slot) as ArtifactSlot,
    sha256: String(r.sha256),
    size: num(r.size),
    fileName: String(r.file_name),
    contentType: String(r.content_type),
    createdAt: num(r.created_at),
    actionCreatedAt: num(r.action_created_at),
  };
}

export const SELECT_LIBRARY_FILE = 'SELECT l.* FROM library_files l WHERE l.tenant_id = ? AND l.name_key = ?';
export const DELETE_LIBRARY_FILE = 'DELETE FROM library_files WHERE tenant_id = ? AND name_key = ?';

const INSERT_LIBRARY_FILE = `INSERT INTO library_files (${LIBRARY_COLUMNS.join(', ')})
  VALUES (${placeholders(LIBRARY_COLUMNS.length)}) ON CONFLICT DO NOTHING`;
const REPLACE_LIBRARY_FILE = `UPDATE library_files SET file_name = ?, sha256 = ?, size = ?, description = ?,
  parameters_description = ?, has_parameters = ?, updated_at = ? WHERE tenant_id = ? AND name_key = ?`;

/**
 * Adds a library file, or replaces the one of the same name (any case) when `replace`: the
 * content, description and parameters change, the creation time and creator stay. Serialised
 * per name, so of two racing uploads of a new name one creates and the other sees it exist.
 */
export function* putLibraryFile(file: LibraryFile, replace: boolean): Operation<LibraryPutOutcome> {
  const key = libraryNameKey(file.fileName);
  const { rows } = yield {
    sql: SELECT_LIBRARY_FILE,
    params: [file.tenantId, key],
    forUpdate: true,
    lock: `library:${file.tenantId}:${key}`,
  };
  const existing = rows[0] ? rowToLibraryFile(rows[0]) : null;
  if (existing && !replace) return { outcome: 'exists', file: existing };
  if (existing) {
    yield {
      sql: REPLACE_LIBRARY_FILE,
      params: [
        file.fileName,
        file.sha256,
        file.size,
        file.description,
        file.parametersDescription,
        file.hasParameters ? 1 : 0,
        file.lastUpdatedTime,
        file.tenantId,
        key,
      ],
    };
    return { outcome: 'replaced', file: { ...file, creationTime: existing.creationTime, createdBy: existing.createdBy } };
  }
  const { changes } = yield { sql: INSERT_LIBRARY_FILE, params: libraryParams(file) };
  return changes > 0 ? { outcome: 'created', file } : { outcome: 'exists', file };
}

/** Library rows are few per tenant; the list is ordered by name unless the client asks otherwise. */
export const LIBRARY_LIST = {
  from: 'library_files l',
  deviceGroupClause: '1 = 1',
  tiebreak: 'l.seq ASC',
};

export const UPSERT_ARTIFACT = `INSERT INTO action_artifacts (${ARTIFACT_COLUMNS.join(', ')})
  VALUES (${placeholders(ARTIFACT_COLUMNS.length)})
  ON CONFLICT (action_id, slot) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size,
  file_name = excluded.file_name, content_type = excluded.content_type, created_at = excluded.created_at`;
export const SELECT_ARTIFACT = 'SELECT * FROM action_artifacts WHERE tenant_id = ? AND action_id = ? AND slot = ?';

/** The oldest artifacts past retention; deleted by key so a batch stays bounded on both backends. */
export const SELECT_EXPIRED_ARTIFACTS = 'SELECT action_id, slot FROM action_artifacts WHERE action_created_at < ? ORDER BY action_created_at LIMIT ?';
export const DELETE_ARTIFACT = 'DELETE FROM action_artifacts WHERE action_id = ? AND slot = ?';

export function* deleteExpiredArtifacts(before: number, limit: number): Operation<number> {
  const { rows } = yield { sql: SELECT_EXPIRED_ARTIFACTS, params: [before, limit] };
  let removed = 0;
  for (const row of rows) removed += (yield { sql: DELETE_ARTIFACT, params: [row.action_id, row.slot] }).changes;
  return removed;
}

/** A blob nothing refers to: neither a library file nor an action artifact. */
const UNREFERENCED = `NOT EXISTS (SELECT 1 FROM library_files l WHERE l.sha256 = b.sha256)
  AND NOT EXISTS (SELECT 1 FROM action_artifacts r WHERE r.sha256 = b.sha256)`;

/** Records a blob, or marks an existing one as just used (so collection leaves it alone for a while). */
export const TOUCH_BLOB = `INSERT INTO blobs (sha256, size, touched_at) VALUES (?, ?, ?)
  ON CONFLICT (sha256) DO UPDATE SET touched_at = excluded.touched_at`;
export const INSERT_BLOB = 'INSERT INTO blobs (sha256, size, touched_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING';
export const RETOUCH_BLOB = 'UPDATE blobs SET touched_at = ? WHERE sha256 = ?';
export const SELECT_BLOB_SIZE = 'SELECT size FROM blobs WHERE sha256 = ?';
export const SELECT_COLLECTABLE_BLOBS = `SELECT b.sha256 FROM blobs b WHERE b.touched_at < ? AND ${UNREFERENCED}
  ORDER BY b.touched_at LIMIT ?`;
/** Removes the blob's row only if it is still unreferenced and untouched: the database decides. */
export const FORGET_BLOB = `DELETE FROM blobs WHERE sha256 = ? AND touched_at < ? AND sha256 IN (
  SELECT b.sha256 FROM blobs b WHERE b.sha256 = ? AND ${UNREFERENCED})`;

export const INSERT_LINK_KEY = 'INSERT INTO link_keys (id, secret, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING';
export const SELECT_LINK_KEY = 'SELECT secret FROM link_keys WHERE id = ?';
