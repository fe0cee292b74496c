import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/process.js';

/** `import { ControlClient } from 'countermand/testing'` resolves through the package's exports (after the build npm ci runs). */
describe.skipIf(!existsSync(join(ROOT, 'dist/testing/index.js')))(
  `the countermand/testing export${existsSync(join(ROOT, 'dist/testing/index.js')) ? '' : ' (skipped: dist/ is not built; npm run build)'}`,
  () => {
    it('gives the ControlClient, with its type declarations', () => {
      const out = execFileSync(
        process.execPath,
        ['--input-type=module', '-e', "const m = await import('countermand/testing'); console.log(typeof m.ControlClient, typeof m.ControlClient.waitUntilReady)"],
        { cwd: ROOT, encoding: 'utf8' },
      );
      expect(out.trim()).toBe('function function');
      expect(existsSync(join(ROOT, 'dist/testing/index.d.ts'))).toBe(true);
    });
  },
);
