/**
 * The live-response library's rules (contract §2 rows 17-19), shared by the library routes and
 * by the validation of live-response commands that name library files.
 */

/** Largest library file: the contract's 20 MB, as MiB (20 × 1024 × 1024 bytes). */
export const LIBRARY_FILE_MAX_BYTES = 20 * 1024 * 1024;

const MAX_NAME_LENGTH = 255;
/** Path separators and control characters (C0, DEL, C1) never belong in a plain file name. */
const NOT_IN_A_NAME = /[/\\\u0000-\u001f\u007f-\u009f]/;

/**
 * Why `name` is not a plain library file name, or null. A name is never a path: no separators,
 * no `.` or `..`, no control characters, no surrounding spaces, at most 255 characters. NUL and
 * lone surrogates are also refused by the boundary's text check (src/validation.ts).
 */
export function libraryFileNameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`;
  if (NOT_IN_A_NAME.test(name)) return 'must be a plain file name (no path separators or control characters)';
  if (name === '.' || name === '..') return 'must be a plain file name';
  if (name.trim() !== name) return 'must not begin or end with spaces';
  return null;
}

/** Names match case-insensitively within a tenant (`Collect.sh` and `collect.sh` are one file). */
export const libraryNameKey = (name: string): string => name.toLowerCase();
