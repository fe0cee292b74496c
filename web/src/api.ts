/**
 * The Action Center's data layer: Countermand's token endpoint, the MDE API and Countermand's
 * extensions, called exactly as any client calls them. The token lives in memory only.
 */

export const MDE_RESOURCE = 'https://api.securitycenter.microsoft.com';
export const EXTENSIONS = '/countermand/v1';

export interface Session {
  token: string;
  tenantId: string;
  kind: 'application' | 'user';
  /** The application's display name or the user's UPN: what `requestor` will show. */
  who: string;
  /** App roles (`roles`) or delegated scopes (`scp`): what the UI offers; the server decides. */
  permissions: ReadonlySet<string>;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/** An answer in the contract's error envelope (or an OAuth error from the token endpoint). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

/** The claims the UI reads from its own token (the server has issued and will verify it). */
function claimsOf(token: string): Record<string, unknown> {
  const part = token.split('.')[1] ?? '';
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
}

export function sessionFromToken(token: string, tenantId: string): Session {
  const claims = claimsOf(token);
  const roles = Array.isArray(claims.roles) ? (claims.roles as string[]) : null;
  const scopes = typeof claims.scp === 'string' ? claims.scp.split(' ').filter(Boolean) : [];
  return {
    token,
    tenantId,
    kind: roles ? 'application' : 'user',
    who: String((roles ? claims.app_displayname : claims.upn) ?? claims.appid ?? ''),
    permissions: new Set(roles ?? scopes),
    expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : Date.now() + 3600_000,
  };
}

export type Credentials =
  | { kind: 'application'; tenantId: string; clientId: string; clientSecret: string }
  | { kind: 'user'; tenantId: string; username: string; password: string };

/** Signs in through Countermand's own token endpoint, as an MDE client does. */
export async function signIn(credentials: Credentials): Promise<Session> {
  const tenant = encodeURIComponent(credentials.tenantId.trim());
  const [path, form] =
    credentials.kind === 'application'
      ? [
          `/${tenant}/oauth2/v2.0/token`,
          {
            grant_type: 'client_credentials',
            client_id: credentials.clientId.trim(),
            client_secret: credentials.clientSecret,
            scope: `${MDE_RESOURCE}/.default`,
          },
        ]
      : [`/${tenant}/oauth2/token`, { grant_type: 'password', username: credentials.username.trim(), password: credentials.password, resource: MDE_RESOURCE }];
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
    credentials: 'omit',
  });
  const body = (await response.json().catch(() => null)) as Record<string, unknown> | null;
  if (!response.ok || typeof body?.access_token !== 'string') {
    const envelope = body?.error as { code?: string; message?: string; target?: string } | string | undefined;
    if (typeof envelope === 'object' && envelope) {
      throw new ApiError(response.status, envelope.code ?? 'Error', envelope.message ?? '', envelope.target ?? null, retryAfter(response));
    }
    throw new ApiError(response.status, String(envelope ?? 'invalid_request'), String(body?.error_description ?? response.statusText), response.headers.get('request-id'), retryAfter(response));
  }
  return sessionFromToken(body.access_token, credentials.tenantId.trim().toLowerCase());
}

function retryAfter(response: Response): number | null {
  const value = Number(response.headers.get('retry-after'));
  return Number.isFinite(value) && value > 0 ? value : null;
}

/** One authenticated call. A 401 ends the session (the token expired or was refused). */
export class Api {
  constructor(
    readonly session: Session,
    private readonly onUnauthorized: () => void,
  ) {}

  async request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.session.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      credentials: 'omit',
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    if (!response.ok) {
      const parsed = (await response.json().catch(() => null)) as { error?: { code?: string; message?: string; target?: string } } | null;
      if (response.status === 401) this.onUnauthorized();
      throw new ApiError(
        response.status,
        parsed?.error?.code ?? `Http${response.status}`,
        parsed?.error?.message ?? response.statusText,
        parsed?.error?.target ?? response.headers.get('request-id'),
        retryAfter(response),
      );
    }
    return (await response.json()) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }
}

/** A quoted OData string literal ('' escapes a quote). */
export const odataString = (value: string) => `'${value.replace(/'/g, "''")}'`;

export interface ODataOptions {
  filter?: readonly string[];
  orderBy?: string;
  top?: number;
  skip?: number;
  count?: boolean;
}

/** `$filter` clauses joined with `and`, each option encoded for the query string. */
export function odataQuery(options: ODataOptions): string {
  const parts: string[] = [];
  if (options.filter && options.filter.length > 0) parts.push(`$filter=${encodeURIComponent(options.filter.join(' and '))}`);
  if (options.orderBy) parts.push(`$orderby=${encodeURIComponent(options.orderBy)}`);
  if (options.top !== undefined) parts.push(`$top=${options.top}`);
  if (options.skip) parts.push(`$skip=${options.skip}`);
  if (options.count) parts.push('$count=true');
  return parts.length > 0 ? `?${parts.join('&')}` : '';
}

export interface Collection<T> {
  '@odata.count'?: number;
  value: T[];
}
