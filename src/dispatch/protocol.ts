import type { ActionStatus, ActionType, IpAddress, LiveResponseCommand } from '../domain/model.js';

/**
 * The agent protocol (docs/agent-protocol.md): JSON over HTTP(S) under /agent/v1, between the
 * server and the agent on each machine. The agent imports only these types from the server.
 */

export const AGENT_API = '/agent/v1';

/**
 * POST /agent/v1/enroll. One proof decides what it may do: an enrollment token creates a new
 * machine; re-attaching to an existing machine takes its current credential (sent as
 * `Authorization: Bearer cma_...`) or a re-enroll grant. The proof is spent by the enrollment.
 */
export interface EnrollRequest {
  /** `<id>.<secret>`, from `countermand enrollment create`: enrolls a new machine. */
  enrollmentToken?: string;
  /** `cmr_...`, from `countermand enrollment reenroll`: re-attaches to the machine it was issued for. */
  reenrollGrant?: string;
  /** The machine to re-attach to; must be the one the credential or grant is for. */
  machineId?: string;
  machine: {
    computerDnsName: string;
    osPlatform?: string;
    osVersion?: string;
    osBuild?: number;
    version?: string;
    osProcessor?: string;
    osArchitecture?: string;
    agentVersion?: string;
    lastIpAddress?: string;
    ipAddresses?: IpAddress[];
  };
}

export interface EnrollResponse {
  tenantId: string;
  machineId: string;
  /** The agent credential: `Authorization: Bearer <agentToken>` on every other call. */
  agentToken: string;
}

/** POST /agent/v1/checkin: a long poll. */
export interface CheckinRequest {
  /** Ids of the actions the agent is executing right now. */
  running: string[];
  /** The longest the agent is willing to wait for work, in seconds (the server may wait less). */
  maxWaitSeconds?: number;
  agentVersion?: string;
  lastIpAddress?: string;
  ipAddresses?: IpAddress[];
}

/** An action as the machine needs it. */
export interface AgentActionWire {
  id: string;
  type: ActionType;
  status: ActionStatus;
  scope: string | null;
  sha1: string | null;
  comment: string | null;
  commands: LiveResponseCommand[];
  /** The action is InProgress but the agent did not list it as running: it was started before a restart. */
  resume: boolean;
  /** LiveResponse: seconds a RunScript may run before the machine kills it (server setting). */
  scriptTimeoutSeconds?: number;
}

export interface CheckinResponse {
  /** Actions to start (Pending) or to resume (InProgress, not running). Delivered until started. */
  actions: AgentActionWire[];
  /** Running actions that ended on the server (Cancelled, TimeOut): stop them. */
  stop: { id: string; status: ActionStatus }[];
}

/** POST /agent/v1/actions/{id}/start -> the action's status after the acknowledgement. */
export interface StartResponse {
  status: ActionStatus;
  /** True when the agent should run it (it is InProgress); false when it ended meanwhile. */
  run: boolean;
}

/** POST /agent/v1/actions/{id}/progress (live response). */
export interface ProgressRequest {
  commands: LiveResponseCommand[];
}

/** POST /agent/v1/actions/{id}/report */
export interface ReportRequest {
  /** Chosen by the agent once per outcome and reused on retries, so a repeated report is harmless. */
  reportId: string;
  status: 'Succeeded' | 'Failed';
  errorHResult: number;
  troubleshootInfo: string | null;
  commands?: LiveResponseCommand[];
  detail?: Record<string, unknown>;
}

export interface ReportResponse {
  /** The action's status after the report. */
  status: ActionStatus;
  /** False when the action had already ended (the report is kept in its history only). */
  applied: boolean;
}

/**
 * File transfer (docs/agent-protocol.md, "Files"). The agent sends its credential on every call;
 * library files are fetched through a link the server signs for this machine, action and file.
 */

/** POST /agent/v1/actions/{id}/library-link */
export interface LibraryLinkRequest {
  /** A library file named by one of the action's PutFile or RunScript commands. */
  fileName: string;
}

export interface LibraryLinkResponse {
  /** Relative to the server URL: GET it with the agent credential before `expiresAt`. */
  link: string;
  fileName: string;
  /** The content's SHA-256 (hex): the agent checks what it downloaded against it. */
  sha256: string;
  size: number;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/** The answer to PUT /agent/v1/actions/{id}/commands/{index}/result and PUT .../package. */
export interface UploadResponse {
  sha256: string;
  size: number;
}

/** Request header carrying the SHA-256 (hex) of an upload's bytes; the server refuses other bytes. */
export const CONTENT_SHA256_HEADER = 'x-content-sha256';
