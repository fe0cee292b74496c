import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { alertToWire, investigationToWire, libraryFileToWire, machineActionToWire, machineToWire } from '../../src/api/wire.js';
import type {
  Alert as WireAlert,
  Investigation as WireInvestigation,
  LibraryFile as WireLibraryFile,
  Machine as WireMachine,
  MachineAction as WireMachineAction,
  IsolationType,
  ScanType,
} from '../../src/client/index.js';
import { ACTION_ROUTES } from '../../src/client/index.js';
import { ACTION_CATALOG, IsolationTypes, ScanTypes } from '../../src/domain/catalog.js';
import { HEALTH_STATUSES } from '../../src/domain/model.js';
import { ROOT } from '../support/process.js';

/**
 * The client is a separate consumer of the wire, so it spells out the wire's types and routes:
 * these checks fail when the server's serialisers, catalog or the client drift apart, and when
 * the client starts to pull in server code.
 */
describe('the client and the server agree', () => {
  it('on the wire shapes of MachineAction, Machine, Alert, Investigation and LibraryFile (checked by the compiler)', () => {
    expectTypeOf<ReturnType<typeof machineActionToWire>>().toEqualTypeOf<WireMachineAction>();
    expectTypeOf<ReturnType<typeof machineToWire>>().toEqualTypeOf<WireMachine>();
    expectTypeOf<ReturnType<typeof alertToWire>>().toEqualTypeOf<WireAlert>();
    expectTypeOf<ReturnType<typeof investigationToWire>>().toEqualTypeOf<WireInvestigation>();
    expectTypeOf<ReturnType<typeof libraryFileToWire>>().toEqualTypeOf<WireLibraryFile>();
    expectTypeOf<IsolationType>().toEqualTypeOf<(typeof IsolationTypes)[number]>();
    expectTypeOf<ScanType>().toEqualTypeOf<(typeof ScanTypes)[number]>();
    expectTypeOf<WireMachine['healthStatus']>().toEqualTypeOf<(typeof HEALTH_STATUSES)[number]>();
  });

  it('on the route of every action type', () => {
    expect(ACTION_ROUTES).toEqual(Object.fromEntries(Object.values(ACTION_CATALOG).map((d) => [d.type, d.route])));
  });

  it('the client imports nothing of the server and no Node module (it runs wherever fetch does)', () => {
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      // Type-only imports leave nothing at run time, but the declarations would still need them.
      for (const [, spec] of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)) {
        expect(spec!.startsWith('.'), `${relative(ROOT, file)} imports ${spec}`).toBe(true);
        visit(resolve(dirname(file), spec!.replace(/\.js$/, '.ts')));
      }
    };
    visit(join(ROOT, 'src/client/index.ts'));
    expect([...seen].map((f) => relative(ROOT, f)).sort()).toEqual([
      'src/client/countermand.ts',
      'src/client/errors.ts',
      'src/client/index.ts',
      'src/client/query.ts',
      'src/client/tokens.ts',
      'src/client/types.ts',
      'src/domain/model.ts',
    ]);
  });
});
