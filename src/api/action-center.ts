import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { TAGS } from '../route-docs.js';
import { describeRoutes } from './openapi.js';

/** Where `npm run build` writes the UI bundle: dist/web at the package root (from src/ or dist/). */
export const BUNDLED_ACTION_CENTER_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

/**
 * The UI's security headers. The bundle has no inline script or style and talks only to this
 * origin, so the policy allows nothing else; forms never submit by themselves (sign-in posts
 * through script, so credentials can never land in a URL).
 */
export const ACTION_CENTER_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
};

/**
 * Serves the Action Center's files at `/`: one route per file of the bundle (found when the
 * server starts), so every other path still gets the contract's 404 envelope; the UI routes with
 * the URL's hash, never with a catch-all. Hashed assets are cached for good, index.html never.
 * Returns false (and says why) when there is no bundle to serve.
 */
export function registerActionCenter(app: FastifyInstance, dir: string, logger: FastifyBaseLogger): boolean {
  if (!existsSync(join(dir, 'index.html'))) {
    logger.warn({ dir }, 'the Action Center is not built (npm run build); / answers 404');
    return false;
  }
  app.register(async (scope) => {
    // The bundle's files are public (the UI signs in through the token endpoint).
    describeRoutes(scope, (route) =>
      route.url === '/'
        ? { tags: [TAGS.actionCenter], summary: 'The Action Center (web UI)', responses: { 200: { description: 'index.html.', contentType: 'text/html; charset=utf-8' } } }
        : { tags: [TAGS.actionCenter], summary: "A file of the Action Center's bundle", responses: { 200: { description: 'The file.' } } },
    );
    await scope.register(fastifyStatic, {
      root: dir,
      wildcard: false,
      index: 'index.html',
      decorateReply: false,
      cacheControl: false,
      etag: true,
      lastModified: false,
      setHeaders(res, path) {
        for (const [name, value] of Object.entries(ACTION_CENTER_HEADERS)) res.setHeader(name, value);
        res.setHeader('cache-control', /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache');
      },
    });
  });
  return true;
}
