import { describe, expectTypeOf, it } from 'vitest';
import type { JournalEntry as ServerJournalEntry } from '../../src/control/journal.js';
import type { JournalEntry } from '../../src/testing/index.js';

/**
 * `countermand/testing` speaks HTTP only and imports no server code, so it declares the control
 * API's wire types again; this keeps them from drifting apart from what the server sends.
 */
describe('countermand/testing wire types', () => {
  it("the journal entry is exactly the server's", () => {
    expectTypeOf<JournalEntry>().toEqualTypeOf<ServerJournalEntry>();
  });
});
