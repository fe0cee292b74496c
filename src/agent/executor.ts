import type { ActionType, LiveResponseCommand } from '../domain/model.js';

/**
 * What an agent hands to an executor: the action as the machine needs it, a signal that aborts
 * when the action is cancelled (or the agent stops), and a local log. Executors carry out the
 * action and say how it ended; they never talk to the server themselves.
 */
export interface AgentAction {
  id: string;
  type: ActionType;
  /** Isolate: Full | Selective | UnManagedDevice. RunAntiVirusScan: Quick | Full. Else null. */
  scope: string | null;
  /** StopAndQuarantineFile: the file's SHA-1, lower-case hex. Else null. */
  sha1: string | null;
  /** LiveResponse only. */
  commands: LiveResponseCommand[];
  comment: string | null;
  /**
   * LiveResponse: seconds a RunScript may run before the executor kills it and fails the
   * command (server setting liveResponseScriptTimeoutSeconds, default 600). Absent: 600.
   */
  scriptTimeoutSeconds?: number;
}

/** The RunScript timeout when the server did not send one (contract §2: 10 minutes). */
export const DEFAULT_SCRIPT_TIMEOUT_SECONDS = 600;

export interface ExecutionContext {
  action: AgentAction;
  /** Aborted when the action is cancelled or the agent shuts down: stop cooperatively. */
  signal: AbortSignal;
  /** The machine-local record of what was done (every real action leaves one). */
  log(message: string, detail?: Record<string, unknown>): void;
  /** LiveResponse: tell the server a command started or ended. */
  progress?(commands: LiveResponseCommand[]): Promise<void>;
  /**
   * LiveResponse PutFile / RunScript: downloads the library file `fileName` named by this
   * action's commands to `destination` (a path the executor chose, in its working folder),
   * checking its SHA-256 against the library's. Rejects when the server refuses or the
   * transfer fails; the destination then does not exist.
   */
  fetchLibraryFile?(fileName: string, destination: string): Promise<void>;
  /**
   * LiveResponse: uploads the result of command `index` from the file at `source` (RunScript:
   * its JSON result `{script_name, exit_code, script_output, script_errors}`; GetFile: the
   * file's bytes). Rejects when the server refuses it (e.g. larger than the cap).
   */
  uploadCommandResult?(index: number, source: string): Promise<void>;
  /** CollectInvestigationPackage: uploads the archive at `source` as this action's package. */
  uploadPackage?(source: string): Promise<void>;
}

export interface ExecutionOutcome {
  status: 'Succeeded' | 'Failed';
  /** 0 on success; an HRESULT-style failure code otherwise (see HRESULT below). */
  errorHResult: number;
  /** Shown to API clients as troubleshootInfo: a short human reason, or null. */
  troubleshootInfo: string | null;
  /** Kept in the action's history (scan findings, quarantine record, ...). */
  detail?: Record<string, unknown>;
}

export interface Executor {
  readonly name: string;
  /**
   * Before the start: resolves when the machine takes the action up (a simulated machine may
   * leave it Pending a while), false when `signal` aborts first (it was cancelled). Absent: at once.
   */
  admit?(action: AgentAction, signal: AbortSignal): Promise<boolean>;
  execute(context: ExecutionContext): Promise<ExecutionOutcome>;
}

/** The failure codes Countermand's executors report (HRESULTs as signed 32-bit integers). */
export const HRESULT = {
  /** E_FAIL */
  fail: -2147467259,
  /** E_NOTIMPL: this executor cannot carry out the action type. */
  notImplemented: -2147467263,
  /** E_ABORT: stopped because the action was cancelled. */
  aborted: -2147467260,
  /** E_ACCESSDENIED: the agent lacks the privileges (e.g. not root). */
  accessDenied: -2147024891,
  /** ERROR_FILE_NOT_FOUND as HRESULT. */
  fileNotFound: -2147024894,
  /** ERROR_TIMEOUT as HRESULT. */
  timeout: -2147023436,
} as const;

export const succeeded = (detail?: Record<string, unknown>): ExecutionOutcome => ({
  status: 'Succeeded',
  errorHResult: 0,
  troubleshootInfo: null,
  ...(detail ? { detail } : {}),
});

export const failed = (errorHResult: number, troubleshootInfo: string, detail?: Record<string, unknown>): ExecutionOutcome => ({
  status: 'Failed',
  errorHResult,
  troubleshootInfo,
  ...(detail ? { detail } : {}),
});
