import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The Action Center bundle: static files in dist/web that the server serves at `/`. Everything
 * is bundled (no CDN), with no inline script or style, so the server's Content-Security-Policy
 * can allow only its own origin.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // Assets stay files (no data: URLs to allow) and the preload helper stays out of the HTML.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
});
