import { appendFileSync, mkdirSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ActionType, LiveResponseCommand } from '../domain/model.js';
import type { ExecutionOutcome } from './executor.js';

/** What an enrolled agent keeps: who it is and how to prove it. */
export interface AgentCredentials {
  serverUrl: string;
  tenantId: string;
  machineId: string;
  agentToken: string;
  /** When the machine was offboarded (its credential revoked): a restart does not enroll it again on its own. */
  offboardedAt?: number;
}

/**
 * The journal entry of one action, written before it starts and again when it has an outcome, so
 * an agent restarted mid-action knows whether to run it again (no outcome yet) or only to report
 * (it finished but the report did not get through): an action is never run twice to completion.
 */
export interface JournalEntry {
  actionId: string;
  type: ActionType;
  phase: 'started' | 'finished';
  reportId?: string;
  outcome?: ExecutionOutcome;
  commands?: LiveResponseCommand[];
  at: number;
}

export interface AgentState {
  /** Where the state lives, for messages to the operator (a directory), if anywhere. */
  readonly location?: string;
  loadCredentials(): Promise<AgentCredentials | null>;
  saveCredentials(credentials: AgentCredentials): Promise<void>;
  journal(actionId: string): Promise<JournalEntry | null>;
  writeJournal(entry: JournalEntry): Promise<void>;
  removeJournal(actionId: string): Promise<void>;
  /** The machine-local record of every action: one JSON line per step. */
  log(entry: Record<string, unknown>): void;
}

/** Writes a file so that a crash leaves either the old or the new content, never a torn one. */
async function writeAtomic(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const handle = await open(tmp, 'w', mode);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

const SAFE_ID = /^[0-9a-f-]{36}$/;

/** An agent's state in a directory (credentials readable by its owner only). */
export class FileState implements AgentState {
  private readonly journalDir: string;
  readonly location: string;

  constructor(private readonly dir: string) {
    this.location = dir;
    this.journalDir = join(dir, 'journal');
    mkdirSync(this.journalDir, { recursive: true, mode: 0o700 });
  }

  loadCredentials() {
    return readJson<AgentCredentials>(join(this.dir, 'credentials.json'));
  }

  saveCredentials(credentials: AgentCredentials) {
    return writeAtomic(join(this.dir, 'credentials.json'), JSON.stringify(credentials, null, 2), 0o600);
  }

  private journalPath(actionId: string): string {
    if (!SAFE_ID.test(actionId)) throw new Error(`not an action id: ${actionId}`);
    return join(this.journalDir, `${actionId}.json`);
  }

  journal(actionId: string) {
    return readJson<JournalEntry>(this.journalPath(actionId));
  }

  writeJournal(entry: JournalEntry) {
    return writeAtomic(this.journalPath(entry.actionId), JSON.stringify(entry), 0o600);
  }

  async removeJournal(actionId: string) {
    await rm(this.journalPath(actionId), { force: true });
  }

  log(entry: Record<string, unknown>) {
    appendFileSync(join(this.dir, 'actions.log'), `${JSON.stringify({ at: new Date().toISOString(), ...entry })}\n`, { mode: 0o600 });
  }
}

/** State kept in memory: for the simulated fleet inside the server. */
export class MemoryState implements AgentState {
  private credentials: AgentCredentials | null = null;
  private readonly entries = new Map<string, JournalEntry>();
  readonly lines: Record<string, unknown>[] = [];

  async loadCredentials() {
    return this.credentials;
  }
  async saveCredentials(credentials: AgentCredentials) {
    this.credentials = credentials;
  }
  async journal(actionId: string) {
    return this.entries.get(actionId) ?? null;
  }
  async writeJournal(entry: JournalEntry) {
    this.entries.set(entry.actionId, entry);
  }
  async removeJournal(actionId: string) {
    this.entries.delete(actionId);
  }
  log(entry: Record<string, unknown>) {
    this.lines.push({ at: new Date().toISOString(), ...entry });
    if (this.lines.length > 1000) this.lines.shift();
  }
}
