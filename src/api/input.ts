import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError, ERRORS } from '../domain/errors.js';
import { textProblem } from '../validation.js';
import { rawQueryString } from './collection.js';
import { fieldName } from './error-mapping.js';

/**
 * Client text at the boundary of /api and /agent: JSON bodies (every string and every key, at
 * any depth, and how deep they nest), path parameters and the query string each pass the one
 * check of what a store can keep (textProblem) before a route sees them, so a NUL or a lone
 * surrogate is the same 400 on every backend instead of a 500 on one and a silent U+FFFD on the
 * other. No header reaches storage: credentials are matched against strict patterns or
 * verified as signed tokens, and addresses come from the socket.
 */

/**
 * Deepest nesting of objects and arrays a JSON body may have. No contract body nests beyond
 * five; the bound keeps anything that walks or serialises a body (a report's `detail` is stored
 * as JSON) far from the stack's limit.
 */
export const MAX_JSON_DEPTH = 32;

/** Strict: a body that is not UTF-8 is refused rather than stored with U+FFFD in it. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

type JsonParser = ReturnType<FastifyInstance['getDefaultJsonParser']>;

interface Frame {
  value: unknown;
  depth: number;
  parent: Frame | null;
  key: string | number | null;
}

/** `Commands[0].params[1].value`, in the same words as the schema's errors. */
function pathOf(frame: Frame | null): string {
  const parts: (string | number)[] = [];
  for (let f = frame; f && f.key !== null; f = f.parent) parts.unshift(f.key);
  return fieldName(parts.map((p) => `/${p}`).join(''));
}

/** The first text problem or excess depth in a parsed JSON value, as the answer to give; else null. */
export function jsonProblem(root: unknown, maxDepth = MAX_JSON_DEPTH): ApiError | null {
  // Iterative: a body nested thousands deep must not overflow the stack here either.
  const stack: Frame[] = [{ value: root, depth: 0, parent: null, key: null }];
  for (let frame = stack.pop(); frame; frame = stack.pop()) {
    const { value } = frame;
    if (typeof value === 'string') {
      const problem = textProblem(value);
      if (problem) {
        const field = pathOf(frame);
        return ERRORS.InvalidRequestBody(field ? `Invalid value for '${field}': ${problem}.` : `The request body ${problem}.`);
      }
    } else if (typeof value === 'object' && value !== null) {
      const depth = frame.depth + 1;
      if (depth > maxDepth) return ERRORS.InvalidRequestBody(`The request body nests deeper than ${maxDepth} levels.`);
      if (Array.isArray(value)) {
        for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], depth, parent: frame, key: i });
      } else {
        for (const key of Object.keys(value)) {
          const problem = textProblem(key);
          if (problem) {
            const field = pathOf(frame);
            return ERRORS.InvalidRequestBody(`Invalid property name${field ? ` in '${field}'` : ''}: ${problem}.`);
          }
          stack.push({ value: (value as Record<string, unknown>)[key], depth, parent: frame, key });
        }
      }
    }
  }
  return null;
}

/**
 * The `application/json` parser of every route: Fastify's own (its `__proto__` and
 * `constructor.prototype` refusal and its error codes) behind a strict UTF-8 decode, then one
 * walk for depth and text. Its size bound is the instance's body limit (413).
 */
export function jsonBodyParser(parseJson: JsonParser) {
  return (request: FastifyRequest, body: Buffer, done: (error: Error | null, value?: unknown) => void): void => {
    let text: string;
    try {
      text = UTF8.decode(body);
    } catch {
      done(ERRORS.InvalidRequestBody('The request body is not valid UTF-8.'), undefined);
      return;
    }
    parseJson(request, text, (error: Error | null, value?: unknown) => {
      if (error) return done(error, undefined);
      const problem = jsonProblem(value);
      done(problem, problem ? undefined : value);
    });
  };
}

/** Decodes a query component as a server would; one that cannot be decoded still shows its `%00`. */
function decodeComponent(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw.replace(/%00/g, '\u0000');
  }
}

/** Throws 400 when a path parameter or a query parameter (name or value, decoded) holds text no store can keep. */
export function checkRequestText(request: FastifyRequest): void {
  for (const [name, value] of Object.entries((request.params ?? {}) as Record<string, unknown>)) {
    const problem = typeof value === 'string' ? textProblem(value) : null;
    if (problem) throw ERRORS.BadRequest(`Invalid value for path parameter '${name}': ${problem}.`);
  }
  const query = rawQueryString(request);
  if (query === '') return;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const name = decodeComponent(eq === -1 ? part : part.slice(0, eq));
    const nameProblem = textProblem(name);
    if (nameProblem) throw ERRORS.BadRequest(`Invalid query parameter name: ${nameProblem}.`);
    const problem = eq === -1 ? null : textProblem(decodeComponent(part.slice(eq + 1)));
    if (problem) throw ERRORS.BadRequest(`Invalid value for query parameter '${name.slice(0, 64)}': ${problem}.`);
  }
}
