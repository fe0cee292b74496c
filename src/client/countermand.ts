import { ACTION_STATUSES } from '../domain/model.js';
import { CountermandError, WaitTimeoutError, errorFromResponse } from './errors.js';
import { TokenCache, type FetchedToken } from './tokens.js';
import { odataString, queryString } from './query.js';
import type {
  ActionStatus,
  ActionType,
  Alert,
  Collection,
  CommentBody,
  Entity,
  DownloadLink,
  Investigation,
  IsolateBody,
  LibraryFile,
  LibraryFileUpload,
  ListQuery,
  LiveResponseBody,
  Machine,
  MachineAction,
  ScanBody,
  StopAndQuarantineBody,
} from './types.js';

/** The resource MDE clients ask tokens for; Countermand accepts it (contract §7). */
export const DEFAULT_RESOURCE = 'https://api.securitycenter.microsoft.com';

export interface RetryOptions {
  /** How many times one call is repeated after a 429 (default 3). */
  maxRetries?: number;
  /** A Retry-After longer than this is not waited for: the 429 is thrown (default 60 000). */
  maxDelayMs?: number;
}

export interface CountermandOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8080` (a trailing `/api` is dropped). */
  url: string;
  /** The tenant whose token endpoint issues the tokens. */
  tenantId?: string;
  /** Client credentials (an application): `clientId` and `clientSecret`. */
  clientId?: string;
  clientSecret?: string;
  /** Or a user (password grant, delegated permissions): `username` and `password`. */
  username?: string;
  password?: string;
  /** Or a token you already have, or a function that returns one (called for every request). */
  accessToken?: string | (() => string | Promise<string>);
  /** Token endpoint; default `<url>/<tenantId>/oauth2/v2.0/token` (`/oauth2/token` for the password grant). */
  tokenUrl?: string;
  /** The API resource tokens are for (default https://api.securitycenter.microsoft.com). */
  resource?: string;
  /** 429 handling; `false` throws every 429 at once. */
  retry?: RetryOptions | false;
  /** Abandon a request that has not answered in this long (default 60 000 ms). */
  requestTimeoutMs?: number;
  /** Another fetch (a proxy, a test double); default the global one. */
  fetch?: typeof fetch;
}

export interface WaitOptions {
  /** Statuses to wait for, or a test; default the final ones (Succeeded, Failed, TimeOut, Cancelled). */
  until?: readonly ActionStatus[] | ((action: MachineAction) => boolean);
  /** Give up (WaitTimeoutError) after this long; default: wait as long as it takes. */
  timeoutMs?: number;
  /** Between two reads (default 1000 ms). */
  intervalMs?: number;
  /** Called with the first read and with every read that differs from the one before. */
  onProgress?: (action: Entity<MachineAction>, previous: Entity<MachineAction> | null) => void;
  signal?: AbortSignal;
}

export const FINAL_STATUSES: readonly ActionStatus[] = ['Succeeded', 'Failed', 'TimeOut', 'Cancelled'];
export const isFinal = (status: ActionStatus): boolean => FINAL_STATUSES.includes(status);

/** The path segment under /api/machines/{id}/ of each action type (contract §2). */
export const ACTION_ROUTES = {
  Isolate: 'isolate',
  Unisolate: 'unisolate',
  RunAntiVirusScan: 'runAntiVirusScan',
  CollectInvestigationPackage: 'collectInvestigationPackage',
  RestrictCodeExecution: 'restrictCodeExecution',
  UnrestrictCodeExecution: 'unrestrictCodeExecution',
  Offboard: 'offboard',
  StopAndQuarantineFile: 'StopAndQuarantineFile',
  LiveResponse: 'runliveresponse',
} as const satisfies Record<ActionType, string>;

/** The request body each action type takes (contract §2). */
export interface ActionBodies {
  Isolate: IsolateBody;
  Unisolate: CommentBody;
  RunAntiVirusScan: ScanBody;
  CollectInvestigationPackage: CommentBody;
  RestrictCodeExecution: CommentBody;
  UnrestrictCodeExecution: CommentBody;
  Offboard: CommentBody;
  StopAndQuarantineFile: StopAndQuarantineBody;
  LiveResponse: LiveResponseBody;
}

export interface RequestOptions {
  /** A query string without `?`, or OData options. */
  query?: string | ListQuery;
  /** Sent as JSON, or as multipart/form-data when it is a FormData. */
  body?: unknown;
}

const DEFAULT_RETRY: Required<RetryOptions> = { maxRetries: 3, maxDelayMs: 60_000 };

/**
 * A client of Countermand's public API, the MDE machine-actions API (docs/client.md). It speaks
 * HTTP only, as any MDE client does: tokens from the token endpoint, the operations of contract
 * §2, the error envelope as a CountermandError.
 */
export class Countermand {
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  private readonly fetch: typeof fetch;
  private readonly retry: Required<RetryOptions>;
  private readonly requestTimeoutMs: number;
  private readonly token: () => Promise<string>;
  private readonly tokens: TokenCache | null;

  constructor(options: CountermandOptions) {
    this.url = baseUrl(options.url);
    this.fetch = options.fetch ?? globalThis.fetch;
    this.retry = options.retry === false ? { maxRetries: 0, maxDelayMs: 0 } : { ...DEFAULT_RETRY, ...options.retry };
    this.requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    const given = options.accessToken;
    if (given !== undefined) {
      this.tokens = null;
      this.token = typeof given === 'string' ? () => Promise.resolve(given) : async () => given();
    } else {
      this.tokens = new TokenCache(() => this.fetchToken(options));
      this.token = () => this.tokens!.get();
    }
  }

  // --- Machine actions (contract §2 rows 1-3) -------------------------------------------

  /** GET /api/machineactions: one page. */
  listMachineActions(query?: ListQuery): Promise<Collection<MachineAction>> {
    return this.request('GET', '/machineactions', { query });
  }

  /** Every action the query matches, following `@odata.nextLink`. */
  iterateMachineActions(query?: ListQuery): AsyncGenerator<MachineAction> {
    return this.iterate('/machineactions', query);
  }

  getMachineAction(id: string): Promise<Entity<MachineAction>> {
    return this.request('GET', `/machineactions/${encodeURIComponent(id)}`);
  }

  cancelMachineAction(id: string, body: CommentBody): Promise<Entity<MachineAction>> {
    return this.request('POST', `/machineactions/${encodeURIComponent(id)}/cancel`, { body });
  }

  // --- Actions on a machine (rows 4-7, 9-13) ----------------------------------------------

  /** POST /api/machines/{id}/{action} for any action type; the methods below name each one. */
  createMachineAction<T extends ActionType>(machineId: string, type: T, body: ActionBodies[T]): Promise<Entity<MachineAction>> {
    return this.request('POST', `/machines/${encodeURIComponent(machineId)}/${ACTION_ROUTES[type]}`, { body });
  }

  isolateMachine(machineId: string, body: IsolateBody) {
    return this.createMachineAction(machineId, 'Isolate', body);
  }
  unisolateMachine(machineId: string, body: CommentBody) {
    return this.createMachineAction(machineId, 'Unisolate', body);
  }
  runAntiVirusScan(machineId: string, body: ScanBody) {
    return this.createMachineAction(machineId, 'RunAntiVirusScan', body);
  }
  collectInvestigationPackage(machineId: string, body: CommentBody) {
    return this.createMachineAction(machineId, 'CollectInvestigationPackage', body);
  }
  restrictCodeExecution(machineId: string, body: CommentBody) {
    return this.createMachineAction(machineId, 'RestrictCodeExecution', body);
  }
  unrestrictCodeExecution(machineId: string, body: CommentBody) {
    return this.createMachineAction(machineId, 'UnrestrictCodeExecution', body);
  }
  offboardMachine(machineId: string, body: CommentBody) {
    return this.createMachineAction(machineId, 'Offboard', body);
  }
  stopAndQuarantineFile(machineId: string, body: StopAndQuarantineBody) {
    return this.createMachineAction(machineId, 'StopAndQuarantineFile', body);
  }
  runLiveResponse(machineId: string, body: LiveResponseBody) {
    return this.createMachineAction(machineId, 'LiveResponse', body);
  }

  // --- Download links (rows 8, 14) ---------------------------------------------------------

  /**
   * GET /api/machineactions/{id}/getPackageUri: a signed link to the investigation package of a
   * CollectInvestigationPackage action that Succeeded. It lives a short time (10 minutes by
   * default) and is fetched without a token: `download(link)`, or `downloadPackage(id)` at once.
   */
  async getPackageUri(actionId: string): Promise<string> {
    return (await this.request<DownloadLink>('GET', `/machineactions/${encodeURIComponent(actionId)}/getPackageUri`)).value;
  }

  /**
   * GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n}): a signed link
   * (30 minutes; ask again for a fresh one) to the result of the live-response command at
   * `index` (a RunScript's JSON, a GetFile's file).
   */
  async getLiveResponseResultDownloadLink(actionId: string, index: number): Promise<string> {
    if (!Number.isSafeInteger(index) || index < 0) throw new TypeError(`index must be a whole number >= 0, not ${index}`);
    return (await this.request<DownloadLink>('GET', `/machineactions/${encodeURIComponent(actionId)}/GetLiveResponseResultDownloadLink(index=${index})`)).value;
  }

  /**
   * Fetches a download link. The link carries its own credential, so no token goes with it
   * (and none goes to whatever host it names). Resolves with the response to read or stream
   * (`arrayBuffer()`, `body`); a refusal (an expired link) is a CountermandError.
   */
  async download(link: string): Promise<Response> {
    let url: URL;
    try {
      url = new URL(link);
    } catch {
      throw new TypeError(`a download link is an absolute URL, not '${link}'`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`a download link is http or https, not '${link}'`);
    const response = await this.send(url.href, { method: 'GET' });
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  /** The investigation package of a Succeeded CollectInvestigationPackage action: getPackageUri, then download. */
  async downloadPackage(actionId: string): Promise<Response> {
    return this.download(await this.getPackageUri(actionId));
  }

  /** The result of a live-response command: its download link, then the download. */
  async downloadLiveResponseResult(actionId: string, index: number): Promise<Response> {
    return this.download(await this.getLiveResponseResultDownloadLink(actionId, index));
  }

  // --- The live-response library (rows 17-19) ----------------------------------------------

  listLibraryFiles(query?: ListQuery): Promise<Collection<LibraryFile>> {
    return this.request('GET', '/libraryfiles', { query });
  }

  iterateLibraryFiles(query?: ListQuery): AsyncGenerator<LibraryFile> {
    return this.iterate('/libraryfiles', query);
  }

  /** POST /api/libraryfiles as multipart/form-data: `File`, `Description`, `ParametersDescription`, `HasParameters`, `OverrideIfExists`. */
  uploadLibraryFile(upload: LibraryFileUpload): Promise<Entity<LibraryFile>> {
    const form = new FormData();
    const { content: given } = upload;
    // Bytes go in as a view of a plain ArrayBuffer (a Uint8Array is copied): a Blob takes no SharedArrayBuffer.
    const content = given instanceof Blob ? given : new Blob([typeof given === 'string' ? given : new Uint8Array(given)]);
    form.append('File', content, upload.fileName);
    if (upload.description !== undefined) form.append('Description', upload.description);
    if (upload.parametersDescription !== undefined) form.append('ParametersDescription', upload.parametersDescription);
    if (upload.hasParameters !== undefined) form.append('HasParameters', String(upload.hasParameters));
    if (upload.overrideIfExists !== undefined) form.append('OverrideIfExists', String(upload.overrideIfExists));
    return this.request('POST', '/libraryfiles', { body: form });
  }

  /** DELETE /api/libraryfiles/{fileName}: 204; an unknown name is a CountermandError (404). */
  async deleteLibraryFile(fileName: string): Promise<void> {
    await this.request('DELETE', `/libraryfiles/${encodeURIComponent(fileName)}`);
  }

  // --- Machines (rows 15-16) -------------------------------------------------------------

  listMachines(query?: ListQuery): Promise<Collection<Machine>> {
    return this.request('GET', '/machines', { query });
  }

  iterateMachines(query?: ListQuery): AsyncGenerator<Machine> {
    return this.iterate('/machines', query);
  }

  /** By machine id, aadDeviceId or computer DNS name. */
  getMachine(idOrName: string): Promise<Entity<Machine>> {
    return this.request('GET', `/machines/${encodeURIComponent(idOrName)}`);
  }

  /**
   * GET /api/machines/findbyip(ip='...',timestamp=...) (row 20): the machines seen with this
   * internal IP within 15 minutes before or after `timestamp` (within the last 30 days).
   */
  findMachinesByIp(ip: string, timestamp: Date | string): Promise<Collection<Machine>> {
    const at = typeof timestamp === 'string' ? timestamp : timestamp.toISOString();
    return this.request('GET', `/machines/findbyip(ip=${encodeURIComponent(odataString(ip))},timestamp=${encodeURIComponent(at)})`);
  }

  // --- Investigations and alerts (rows 21-25) ----------------------------------------------

  /** POST /api/machines/{id}/startInvestigation: answers the Investigation, not a MachineAction. */
  startInvestigation(machineId: string, body: CommentBody): Promise<Entity<Investigation>> {
    return this.request('POST', `/machines/${encodeURIComponent(machineId)}/startInvestigation`, { body });
  }

  listInvestigations(query?: ListQuery): Promise<Collection<Investigation>> {
    return this.request('GET', '/investigations', { query });
  }

  iterateInvestigations(query?: ListQuery): AsyncGenerator<Investigation> {
    return this.iterate('/investigations', query);
  }

  getInvestigation(id: string): Promise<Entity<Investigation>> {
    return this.request('GET', `/investigations/${encodeURIComponent(id)}`);
  }

  /** GET /api/alerts; `expand: 'evidence'` lists each alert's evidence too. */
  listAlerts(query?: ListQuery): Promise<Collection<Alert>> {
    return this.request('GET', '/alerts', { query });
  }

  iterateAlerts(query?: ListQuery): AsyncGenerator<Alert> {
    return this.iterate('/alerts', query);
  }

  /** One alert, with its evidence. */
  getAlert(id: string): Promise<Entity<Alert>> {
    return this.request('GET', `/alerts/${encodeURIComponent(id)}`);
  }

  // --- Waiting ----------------------------------------------------------------------------

  /**
   * Reads the action until it reaches one of `until` (default: a final status) and returns it.
   * A Failed, TimeOut or Cancelled action is returned, not thrown: what it means is the
   * caller's to say. Throws WaitTimeoutError after `timeoutMs`, and the signal's reason on abort.
   */
  async waitForAction(id: string, options: WaitOptions = {}): Promise<Entity<MachineAction>> {
    const { until = FINAL_STATUSES, timeoutMs, intervalMs = 1000, onProgress, signal } = options;
    const done = typeof until === 'function' ? until : (a: MachineAction) => until.includes(a.status);
    for (const status of typeof until === 'function' ? [] : until) {
      if (!(ACTION_STATUSES as readonly string[]).includes(status)) throw new TypeError(`unknown action status '${status}'`);
    }
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    let previous: Entity<MachineAction> | null = null;
    for (;;) {
      signal?.throwIfAborted();
      const action = await this.getMachineAction(id);
      if (previous === null || changed(previous, action)) onProgress?.(action, previous);
      previous = action;
      if (done(action)) return action;
      const left = deadline - Date.now();
      if (left <= 0) throw new WaitTimeoutError(action, timeoutMs!);
      await sleep(Math.min(intervalMs, left), signal);
    }
  }

  // --- The plumbing -----------------------------------------------------------------------

  /** A token for the API, from the cache when it is still good. */
  accessToken(): Promise<string> {
    return this.token();
  }

  /**
   * Any API call: `path` is under /api (e.g. `/machines`). Returns the parsed JSON body, or
   * undefined for an empty one (204). Throws CountermandError for anything but a 2xx.
   */
  async request<T = unknown>(method: 'GET' | 'POST' | 'DELETE', path: string, options: RequestOptions = {}): Promise<T> {
    const query = typeof options.query === 'string' ? options.query : queryString(options.query);
    const url = `${this.url}/api${path}${query ? `?${query}` : ''}`;
    const hasBody = options.body !== undefined;
    // A FormData goes as multipart/form-data; fetch writes its content type, boundary included.
    const form = options.body instanceof FormData ? options.body : null;
    let renewed = false;
    for (;;) {
      const token = await this.token();
      const response = await this.send(url, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(hasBody && !form ? { 'content-type': 'application/json' } : {}),
        },
        ...(hasBody ? { body: form ?? JSON.stringify(options.body) } : {}),
      });
      // A cached token the server no longer takes (keys replaced, server reset): one fresh try.
      if (response.status === 401 && this.tokens && !renewed) {
        renewed = true;
        await response.body?.cancel();
        this.tokens.invalidate(token);
        continue;
      }
      if (!response.ok) throw await errorFromResponse(response);
      const text = await response.text();
      if (text === '') return undefined as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        // Something other than Countermand answered (a proxy's page, a wrong URL).
        throw new CountermandError(
          response.status,
          'InvalidResponse',
          `${method} ${path} answered ${response.status} with a body that is not JSON (${response.headers.get('content-type') ?? 'no content type'})`,
          response.headers.get('request-id'),
        );
      }
    }
  }

  /**
   * The pages of a collection under /api (e.g. `/machineactions`), following `@odata.nextLink`.
   * The link's query is what moves on; it is always sent to this client's own URL, so a token
   * never goes to a host the link names.
   */
  async *pages<T>(path: string, query?: ListQuery): AsyncGenerator<Collection<T>> {
    let page = await this.request<Collection<T>>('GET', path, { query });
    for (;;) {
      yield page;
      const next = page['@odata.nextLink'];
      if (!next) return;
      page = await this.request<Collection<T>>('GET', path, { query: new URL(next).search.replace(/^\?/, '') });
    }
  }

  private async *iterate<T>(path: string, query?: ListQuery): AsyncGenerator<T> {
    for await (const page of this.pages<T>(path, query)) yield* page.value;
  }

  /** One HTTP exchange, repeated after a 429 as Retry-After says, within the retry bounds. */
  private async send(url: string, init: RequestInit): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetch(url, { ...init, signal: AbortSignal.timeout(this.requestTimeoutMs) });
      } catch (error) {
        throw connectionError(url, error, this.requestTimeoutMs);
      }
      if (response.status !== 429 || attempt >= this.retry.maxRetries) return response;
      const seconds = Number(response.headers.get('retry-after'));
      const delayMs = (Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000;
      if (delayMs > this.retry.maxDelayMs) return response;
      await response.body?.cancel();
      // A little spread, so callers limited together do not all come back in the same instant.
      await sleep(delayMs + Math.random() * Math.min(1000, delayMs / 10));
    }
  }

  private async fetchToken(options: CountermandOptions): Promise<FetchedToken> {
    const resource = options.resource ?? DEFAULT_RESOURCE;
    const tenant = options.tenantId;
    const at = (path: string) => {
      if (options.tokenUrl) return options.tokenUrl;
      if (!tenant) throw new TypeError('tenantId (or tokenUrl) is needed to get a token');
      return `${this.url}/${encodeURIComponent(tenant)}${path}`;
    };
    let url: string;
    let form: Record<string, string>;
    if (options.clientSecret !== undefined) {
      if (!options.clientId) throw new TypeError('clientId is needed with clientSecret');
      url = at('/oauth2/v2.0/token');
      form = { grant_type: 'client_credentials', client_id: options.clientId, client_secret: options.clientSecret, scope: `${resource}/.default` };
    } else if (options.username !== undefined && options.password !== undefined) {
      url = at('/oauth2/token');
      form = { grant_type: 'password', username: options.username, password: options.password, resource };
      if (options.clientId) form.client_id = options.clientId;
    } else {
      throw new TypeError('credentials are needed: clientId and clientSecret, username and password, or accessToken');
    }
    const response = await this.send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(form).toString(),
    });
    if (!response.ok) throw await errorFromResponse(response);
    const body = ((await response.json().catch(() => null)) ?? {}) as { access_token?: unknown; expires_in?: unknown };
    if (typeof body.access_token !== 'string') throw new CountermandError(response.status, 'InvalidTokenResponse', 'the token endpoint answered without an access_token');
    // expires_in is a number in Countermand's replies; some issuers send it as a string.
    const expiresIn = Number(body.expires_in);
    return { accessToken: body.access_token, expiresIn: Number.isFinite(expiresIn) ? expiresIn : 0 };
  }
}

/** `http://host:8080/api/` -> `http://host:8080`. */
function baseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`url must be an absolute http or https URL, not '${url}'`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TypeError(`url must be http or https, not '${url}'`);
  if (parsed.search || parsed.hash) throw new TypeError(`url must not carry a query or fragment: '${url}'`);
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '').replace(/\/api(\/v1\.0)?$/i, '')}`;
}

function connectionError(url: string, error: unknown, timeoutMs: number): CountermandError {
  const origin = new URL(url).origin;
  const e = error as { name?: string; cause?: { code?: string; message?: string }; message?: string };
  if (e.name === 'TimeoutError') {
    return new CountermandError(0, 'Timeout', `${origin} did not answer within ${timeoutMs} ms`, null, null, { cause: error });
  }
  const reason = e.cause?.code ?? e.cause?.message ?? e.message ?? String(error);
  return new CountermandError(0, 'ConnectionFailed', `cannot reach ${origin}: ${reason}`, null, null, { cause: error });
}

/** What a progress listener wants to hear about: the status, or a live-response command's progress. */
function changed(a: MachineAction, b: MachineAction): boolean {
  return a.status !== b.status || a.lastUpdateDateTimeUtc !== b.lastUpdateDateTimeUtc || JSON.stringify(a.commands) !== JSON.stringify(b.commands);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
