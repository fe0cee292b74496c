import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { TSchema } from 'typebox';

/**
 * Validation of the server's own inputs (configuration, fixtures) with the same validator
 * Fastify uses for request bodies, so one JSON Schema engine serves every TypeBox schema.
 */
const ajv = addFormats.default(new Ajv({ allErrors: false, strict: false }));
const compiled = new WeakMap<TSchema, ValidateFunction>();

/** Null when `value` matches; else the first error, e.g. `/port must be integer`. */
export function firstError(schema: TSchema, value: unknown): { path: string; message: string } | null {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return null;
  const error = (validate.errors as ErrorObject[] | null | undefined)?.[0];
  const path = error?.instancePath ?? '';
  const missing = error?.keyword === 'required' ? `/${String(error.params.missingProperty)}` : '';
  return { path: `${path}${missing}`, message: error?.message ?? 'is invalid' };
}

/**
 * Why a client's text cannot be kept as given, or null. PostgreSQL refuses a NUL in text (a 500
 * if it reached the database) and a lone UTF-16 surrogate has no UTF-8 form (SQLite silently
 * stores U+FFFD instead), so both are refused at the boundary, identically on every backend.
 * Every text input goes through this one check: bodies, path segments, query strings, forms.
 */
export function textProblem(value: string): string | null {
  if (value.includes('\u0000')) return 'contains a NUL character';
  if (!value.isWellFormed()) return 'contains an unpaired UTF-16 surrogate';
  return null;
}
