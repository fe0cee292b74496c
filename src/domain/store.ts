import type { FilterExpr, OrderByItem } from '../odata/index.js';
import type {
  ActionArtifact,
  ActionEvent,
  ActionEventKind,
  ActionStatus,
  ActionType,
  AgentCredential,
  Alert,
  Application,
  ArtifactSlot,
  EnrollmentSecret,
  Investigation,
  LibraryFile,
  Machine,
  MachineAction,
  ReenrollGrant,
  SigningKey,
  Tenant,
  User,
} from './model.js';

/**
 * The persistence port. Services depend on this; sqlite/ and postgres/ implement it and pass one
 * shared test suite. Every method that writes commits before its promise resolves.
 */
export interface Store {
  readonly backend: 'sqlite' | 'postgres';
  close(): Promise<void>;

  upsertTenant(tenant: Tenant): Promise<void>;
  getTenant(id: string): Promise<Tenant | null>;
  listTenants(): Promise<Tenant[]>;

  upsertApplication(app: Application): Promise<void>;
  getApplication(tenantId: string, clientId: string): Promise<Application | null>;
  listApplications(tenantId: string): Promise<Application[]>;
  deleteApplication(tenantId: string, clientId: string): Promise<boolean>;

  upsertUser(user: User): Promise<void>;
  getUserByObjectId(tenantId: string, objectId: string): Promise<User | null>;
  /** UPNs match case-insensitively. */
  getUserByUpn(tenantId: string, upn: string): Promise<User | null>;
  listUsers(tenantId: string): Promise<User[]>;
  deleteUser(tenantId: string, objectId: string): Promise<boolean>;

  insertSigningKey(key: SigningKey): Promise<void>;
  /** Marks every active key but `kid` retired at `at`. */
  retireSigningKeysExcept(kid: string, at: number): Promise<void>;
  /** Deletes keys retired before `before`. */
  pruneSigningKeys(before: number): Promise<void>;
  listSigningKeys(): Promise<SigningKey[]>;
  /** Replaces a key's stored private PEM if it is still `from` (re-encryption at rest). */
  replaceSigningKeyPem(kid: string, from: string, to: string): Promise<boolean>;

  upsertMachine(machine: Machine): Promise<void>;
  /** By id; also by aadDeviceId and/or computerDnsName when asked (contract §2, machine ids). */
  findMachine(tenantId: string, key: string, also: { aadDeviceId: boolean; computerDnsName: boolean }): Promise<Machine | null>;
  listMachines(tenantId: string, query: ListQuery): Promise<Page<Machine>>;

  /**
   * Inserts the action with its 'created' event; 'offboarded' when its machine is offboarded;
   * 'conflict' when its conflict key is taken; 'limit' when `limit` is given and the tenant
   * already has that many non-final actions of the action's type (all checked in the same
   * transaction).
   */
  insertAction(action: MachineAction, event: EventInput, limit?: number): Promise<InsertOutcome>;
  getAction(tenantId: string, id: string): Promise<MachineAction | null>;
  listActions(tenantId: string, query: ListQuery): Promise<Page<MachineAction>>;
  /**
   * One conditional update: applies only while the action's status is one of `from`, together
   * with its history event, in one transaction. Returns the updated action, or null when the
   * status was not one of `from` (nothing is written then).
   */
  transitionAction(change: Transition): Promise<MachineAction | null>;
  listEvents(tenantId: string, actionId: string): Promise<ActionEvent[]>;
  /**
   * Appends a history event without changing the action (e.g. a report after it was final).
   * Returns false when nothing was appended: no such action, or its reportId is already recorded.
   */
  appendEvent(tenantId: string, actionId: string, kind: ActionEventKind, event: EventInput): Promise<boolean>;

  /** Pending and InProgress actions of one machine, oldest first. */
  listActiveActionsForMachine(tenantId: string, machineId: string): Promise<MachineAction[]>;
  /** The named actions, if they belong to that machine. */
  getActionsOfMachine(tenantId: string, machineId: string, ids: readonly string[]): Promise<MachineAction[]>;
  /** Pending actions created before `before`, or InProgress ones of `types` started before it; oldest first. */
  listOverdueActions(overdue: Overdue, limit: number): Promise<MachineAction[]>;

  upsertEnrollmentSecret(secret: EnrollmentSecret): Promise<void>;
  getEnrollmentSecret(id: string): Promise<EnrollmentSecret | null>;
  listEnrollmentSecrets(tenantId: string): Promise<EnrollmentSecret[]>;
  /** Removes the tenant's secrets with that label (a new one replaces them). */
  deleteEnrollmentSecrets(tenantId: string, label: string): Promise<void>;
  /** Revokes one enrollment secret; false when the tenant has none with that id. */
  deleteEnrollmentSecret(tenantId: string, id: string): Promise<boolean>;

  insertReenrollGrant(grant: ReenrollGrant): Promise<void>;
  findReenrollGrant(tokenHash: string): Promise<ReenrollGrant | null>;

  /**
   * Enrollment, in one transaction: the proof is checked and spent, the machine is created or
   * updated, its earlier credentials are revoked and the new one is stored. False (nothing
   * written) when the proof does not hold: a new machine's id exists, the credential is revoked
   * or not the machine's, the grant is used, expired or not the machine's.
   */
  attachAgent(machine: Machine, credential: AgentCredential, proof: AttachProof): Promise<boolean>;
  findAgentCredential(tokenHash: string): Promise<AgentCredential | null>;
  /**
   * A check-in: lastSeen, Active, and what the agent says of itself. The addresses it reports
   * extend the machine's IP history: a range per address, from when it was first seen to when
   * it was last confirmed (check-ins closer than IP_RANGE_GAP_MS apart extend one range).
   */
  recordCheckin(tenantId: string, machineId: string, at: number, info: CheckinInfo): Promise<void>;
  /** Active machines not seen since `seenBefore` become Inactive; returns how many. */
  markInactiveMachines(seenBefore: number): Promise<number>;

  /**
   * Machines whose IP history has `ip` (canonical) at some time in [from, to], in the given
   * device groups (null for all); by computerDnsName, at most `limit`.
   */
  findMachinesByIp(tenantId: string, ip: string, from: number, to: number, deviceGroups: readonly number[] | null, limit: number): Promise<Machine[]>;
  /** Drops IP history that ended before `before`; returns how many ranges. */
  pruneIpHistory(before: number): Promise<number>;

  /**
   * Starts an investigation, in one transaction: its CollectInvestigationPackage action (with
   * the action's 'created' event) and the investigation, triggered by the machine's newest
   * alert that is not Resolved (which is linked back to it). 'conflict' when the action's
   * conflict group is taken (a package collection already runs on the machine); 'offboarded'
   * when the machine is. Nothing is written then.
   */
  insertInvestigation(action: MachineAction, event: EventInput): Promise<Investigation | 'conflict' | 'offboarded'>;
  getInvestigation(tenantId: string, id: string): Promise<Investigation | null>;
  listInvestigations(tenantId: string, query: ListQuery): Promise<Page<Investigation>>;

  getAlert(tenantId: string, id: string): Promise<Alert | null>;
  listAlerts(tenantId: string, query: ListQuery): Promise<Page<Alert>>;

  /** The tenant's library (contract §2 row 17); ordered by name unless the query says otherwise. */
  listLibraryFiles(tenantId: string, query: ListQuery): Promise<Page<LibraryFile>>;
  /** By name, matched case-insensitively. */
  getLibraryFile(tenantId: string, fileName: string): Promise<LibraryFile | null>;
  /**
   * Adds the file, or with `replace` replaces the one of the same name (keeping its creation
   * time and creator); 'exists' without `replace` when the name is taken. One transaction.
   */
  putLibraryFile(file: LibraryFile, replace: boolean): Promise<LibraryPutOutcome>;
  deleteLibraryFile(tenantId: string, fileName: string): Promise<boolean>;

  /** Records what a machine uploaded for an action; a second upload to the same slot replaces it. */
  putArtifact(artifact: ActionArtifact): Promise<void>;
  getArtifact(tenantId: string, actionId: string, slot: ArtifactSlot): Promise<ActionArtifact | null>;
  /** Removes up to `limit` artifacts of actions created before `before`; returns how many. */
  deleteExpiredArtifacts(before: number, limit: number): Promise<number>;

  /** The blob index: records a blob or marks it used now (collection then leaves it alone). */
  touchBlob(sha256: string, size: number, at: number): Promise<void>;
  /** Blobs nothing refers to and nothing touched since `before`, oldest first. */
  listCollectableBlobs(before: number, limit: number): Promise<string[]>;
  /** Removes the blob's index row if it is still collectable; true when it did. */
  forgetBlob(sha256: string, before: number): Promise<boolean>;

  /** The secret of the key `id`, creating it as `candidate` if there is none (the first node wins). */
  linkKey(id: string, candidate: string, at: number): Promise<string>;

  /** Removes a machine with its actions, their history and artifacts, its agent credentials and grants. */
  deleteMachine(tenantId: string, machineId: string): Promise<boolean>;
  /** Everything a world holds (docs/emulator.md): identities, machines, actions with history. */
  exportWorld(): Promise<World>;
  /**
   * Replaces the whole world in one transaction: every tenant, application, user, machine, action
   * and event, library file and action artifact, agent credential, grant and enrollment secret
   * goes, and `world` takes their place (a world holds no library files yet).
   * Signing keys stay (tokens keep verifying).
   */
  replaceWorld(world: World): Promise<void>;
}

export interface LibraryPutOutcome {
  outcome: 'created' | 'replaced' | 'exists';
  /** As stored (for 'exists': the file already there). */
  file: LibraryFile;
}

/** One history event as a world keeps it (its action is the one it belongs to). */
export interface WorldEvent {
  at: number;
  actor: string;
  kind: ActionEventKind;
  fromStatus: ActionStatus | null;
  toStatus: ActionStatus | null;
  comment: string | null;
  detail: Record<string, unknown> | null;
  reportId: string | null;
}

/** The contents of a store that make up what clients see (the emulator's reset and export). */
export interface World {
  tenants: Tenant[];
  applications: Application[];
  users: User[];
  machines: Machine[];
  /** Oldest first; each with its history in order. */
  actions: (MachineAction & { events: WorldEvent[] })[];
}

export type Overdue =
  | { status: 'Pending'; before: number }
  | { status: 'InProgress'; types: readonly ActionType[]; before: number };

export interface CheckinInfo {
  agentVersion?: string | undefined;
  lastIpAddress?: string | undefined;
  ipAddresses?: Machine['ipAddresses'] | undefined;
}

export type InsertOutcome = 'inserted' | 'offboarded' | 'conflict' | 'limit';

/** What entitles an agent to a machine (docs/agent-protocol.md, Enroll). */
export type AttachProof =
  /** An enrollment token: the machine must be new. */
  | { kind: 'new' }
  /** The machine's current agent credential, revoked by the attach it proves. */
  | { kind: 'credential'; tokenHash: string }
  /** A re-enroll grant for the machine, used up by the attach (valid until its expiry). */
  | { kind: 'grant'; tokenHash: string };

export interface ListQuery {
  filter?: FilterExpr | undefined;
  orderBy: readonly OrderByItem[];
  top: number;
  skip: number;
  count: boolean;
  /** Only machines (and their actions) in these device groups; null for all. */
  deviceGroups: readonly number[] | null;
}

export interface Page<T> {
  items: T[];
  /** All matches, when the query asked for a count. */
  count: number | null;
  /** Whether more rows match beyond this page. */
  hasMore: boolean;
}

export interface EventInput {
  at: number;
  actor: string;
  comment: string | null;
  detail?: Record<string, unknown> | null;
  /** The machine's id for a report: an event with the same id for the action is not recorded twice. */
  reportId?: string;
}

/** Fields a transition may set besides status and lastUpdateDateTimeUtc. */
export type TransitionPatch = Partial<
  Pick<
    MachineAction,
    | 'cancellationRequestor'
    | 'cancellationComment'
    | 'cancellationDateTimeUtc'
    | 'errorHResult'
    | 'troubleshootInfo'
    | 'startedAt'
    | 'commands'
  >
>;

export interface Transition {
  tenantId: string;
  actionId: string;
  from: readonly ActionStatus[];
  to: ActionStatus;
  patch: TransitionPatch;
  event: EventInput & { kind?: ActionEventKind };
  /**
   * Also offboard the action's machine in the same transaction: it reads as offboarded, its
   * agent credentials are revoked and its unused re-enroll grants deleted.
   */
  offboardsMachine?: boolean;
  /** Alerts the machine's report raised: inserted in the same transaction, only if it applies. */
  alerts?: readonly Alert[];
}
