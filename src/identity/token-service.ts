import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type pg from 'pg';
import type { Store } from '../domain/store.js';
import { textProblem } from '../validation.js';
import type { Directory } from './directory.js';
import { FailureThrottle } from './failure-throttle.js';
import { TOKEN_LIFETIME_SECONDS, type KeyRing } from './keys.js';
import { TOKEN_DOCS, jwksDoc, openIdConfigurationDoc } from './token-docs.js';
import { issuerFor, normalizeAudience, type TokenIssuer } from './tokens.js';

/**
 * The OAuth 2.0 token endpoints MDE clients call (contract §7), at the server root:
 * `/{tenant}/oauth2/v2.0/token` and `/{tenant}/oauth2/token` (also as GET with a form body or a
 * query string), plus the JWKS and OpenID metadata a verifier needs. Errors follow RFC 6749
 * §5.2. Requests are form-encoded only (RFC 6749 §4.4.2), so every field is a string.
 */

export interface TokenServiceOptions {
  store: Store;
  directory: Directory;
  issuer: TokenIssuer;
  keys: KeyRing;
  issuerBase: string;
  baseUrl: () => string;
  audiences: () => ReadonlySet<string>;
  /** With several server nodes: failed attempts are counted in PostgreSQL, shared by every node. */
  pool?: pg.Pool;
  /** Told of every refused token request, with its OAuth error code (this node's metrics). */
  onRefused?: (error: string) => void;
}

class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
}

const FORM = 'application/x-www-form-urlencoded';
const MAX_FORM_BYTES = 64 * 1024;

/** A parsed form: every field a string, each given once; no prototype, so any name is just a name. */
type Form = Record<string, string>;

const invalid = (description: string) => new OAuthError(400, 'invalid_request', description);
const quoted = (text: string) => JSON.stringify(text.slice(0, 64));

/** Refuses text a store cannot keep (textProblem), naming where it was. */
function checkText(value: string, where: string): string {
  const problem = textProblem(value);
  if (problem) throw invalid(`${where} ${problem}.`);
  return value;
}

function parseForm(text: string): Form {
  const form: Form = Object.create(null);
  for (const [key, value] of new URLSearchParams(text)) {
    checkText(key, 'A parameter name');
    checkText(value, `The parameter ${quoted(key)}`);
    if (key in form) throw invalid(`The parameter ${quoted(key)} is given more than once.`);
    form[key] = value;
  }
  return form;
}

/** Fastify does not read GET bodies; some clients send the form there (contract §7). */
async function readGetBody(request: FastifyRequest): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.raw) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw invalid('The request body is too large.');
    chunks.push(chunk as Buffer);
  }
  if (size > 0 && !isForm(request.headers['content-type'])) throw invalid(`The request body must be ${FORM}.`);
  return Buffer.concat(chunks).toString('utf8');
}

const isForm = (contentType: string | undefined) => contentType?.split(';')[0]?.trim().toLowerCase() === FORM;

const badBasic = () =>
  new OAuthError(
    401,
    'invalid_client',
    'The Authorization header is not valid Basic credentials: base64 of <client id>:<client secret>, each form-url-encoded.',
    { 'www-authenticate': 'Basic' },
  );

/** One form-url-encoded component (RFC 6749 §2.3.1), or null when it does not decode. */
function formDecode(text: string): string | null {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return null;
  }
}

/**
 * client_secret_basic (RFC 6749 §2.3.1): credentials in the Authorization header. Another scheme
 * is not client authentication (null); a Basic header that does not decode is 401 invalid_client.
 */
function basicCredentials(request: FastifyRequest): { clientId: string; secret: string } | null {
  const match = /^Basic(?:\s+(.*))?$/is.exec(request.headers.authorization?.trim() ?? '');
  if (!match) return null;
  const encoded = match[1]?.trim() ?? '';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) throw badBasic();
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(encoded, 'base64'));
  } catch {
    throw badBasic();
  }
  const colon = decoded.indexOf(':');
  const clientId = colon < 0 ? null : formDecode(decoded.slice(0, colon));
  const secret = colon < 0 ? null : formDecode(decoded.slice(colon + 1));
  if (clientId === null || secret === null || !clientId) throw badBasic();
  return { clientId: checkText(clientId, 'The client id'), secret: checkText(secret, 'The client secret') };
}

const required = (form: Form, name: string): string => {
  const value = form[name];
  if (!value) throw invalid(`The request body must contain the parameter '${name}'.`);
  return value;
};

export function registerTokenService(app: FastifyInstance, options: TokenServiceOptions): void {
  const failures = new FailureThrottle('token', {
    ...(options.pool ? { pool: options.pool } : {}),
    refuse: (seconds) =>
      new OAuthError(429, 'temporarily_unavailable', `Too many failed attempts; retry in ${seconds} seconds.`, { 'retry-after': String(seconds) }),
  });

  const refuse = (reply: FastifyReply, request: FastifyRequest, error: OAuthError) => {
    options.onRefused?.(error.error);
    return sendOAuthError(reply, request, error);
  };

  app.register(async (scope) => {
    // Only forms are read here: a JSON body (the server's default elsewhere) is refused, not
    // taken for a form with fields of any type.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(FORM, { parseAs: 'string', bodyLimit: MAX_FORM_BYTES }, (_request, body, done) => {
      try {
        done(null, parseForm(body as string));
      } catch (error) {
        done(error as Error, undefined);
      }
    });
    scope.setErrorHandler((error, request, reply) => {
      if (error instanceof OAuthError) return refuse(reply, request, error);
      const status = (error as { statusCode?: number }).statusCode;
      if (status === 415) return refuse(reply, request, invalid(`The request body must be ${FORM}.`));
      if (status === 413) return refuse(reply, request, invalid('The request body is too large.'));
      if (status && status < 500) return refuse(reply, request, invalid('The request is malformed.'));
      request.log.error({ err: error }, 'token request failed');
      return refuse(reply, request, new OAuthError(500, 'server_error', 'An unexpected error occurred.'));
    });

    const tenantOf = async (request: FastifyRequest) => {
      const raw = checkText((request.params as { tenant: string }).tenant, 'The tenant in the path').toLowerCase();
      const tenant = await options.store.getTenant(raw);
      if (!tenant) throw invalid(`Tenant ${quoted(raw)} not found.`);
      return tenant.id;
    };

    const token = (version: 'v1' | 'v2') => async (request: FastifyRequest, reply: FastifyReply) => {
      const tenantId = await tenantOf(request);
      let form: Form;
      if (request.method === 'GET') {
        const text = await readGetBody(request);
        const url = request.raw.url ?? '';
        form = parseForm(text || (url.includes('?') ? url.slice(url.indexOf('?') + 1) : ''));
      } else {
        if (typeof request.body !== 'object' || request.body === null) throw invalid(`The request body must be ${FORM}.`);
        form = request.body as Form;
      }
      const grant = required(form, 'grant_type');
      const audience = resourceOf(form, version, options.audiences());
      const basic = basicCredentials(request);
      const clientId = basic?.clientId ?? form.client_id;

      // Each secret check is an attempt counted before it runs (failure-throttle.ts).
      let accessToken: string;
      if (grant === 'client_credentials') {
        if (!clientId) throw invalid("The request body must contain the parameter 'client_id'.");
        const secret = basic?.secret ?? form.client_secret;
        if (!secret) throw new OAuthError(401, 'invalid_client', 'The client secret is missing.');
        const application = await failures.attempt(`${tenantId}:app:${clientId}`, request.ip, (source) =>
          options.directory.authenticateApplication(tenantId, clientId, secret, source),
        );
        if (!application) {
          throw new OAuthError(401, 'invalid_client', 'The client id or client secret is not valid for this tenant.', basic ? { 'www-authenticate': 'Basic' } : {});
        }
        accessToken = await options.issuer.forApplication(application, audience);
      } else if (grant === 'password') {
        const username = required(form, 'username');
        const password = required(form, 'password');
        const proved = await failures.attempt(`${tenantId}:user:${username}`, request.ip, async (source) => {
          // The client id is looked up and the password hashed either way, and an unknown client
          // id is the same failure: neither the answer nor its time tells which client ids exist.
          const [client, user] = await Promise.all([
            clientId ? options.store.getApplication(tenantId, clientId.toLowerCase()) : null,
            options.directory.authenticateUser(tenantId, username, password, source),
          ]);
          return user && (client || !clientId) ? { user, client } : null;
        });
        if (!proved) throw new OAuthError(400, 'invalid_grant', 'The user name, password or client id is not valid for this tenant.');
        accessToken = await options.issuer.forUser(proved.user, audience, proved.client);
      } else {
        throw new OAuthError(400, 'unsupported_grant_type', `The grant type ${quoted(grant)} is not supported; use client_credentials or password.`);
      }
      return reply
        .header('content-type', 'application/json; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('pragma', 'no-cache')
        .send(
          JSON.stringify({
            token_type: 'Bearer',
            expires_in: TOKEN_LIFETIME_SECONDS,
            ext_expires_in: TOKEN_LIFETIME_SECONDS,
            access_token: accessToken,
          }),
        );
    };

    scope.post('/:tenant/oauth2/v2.0/token', { config: { openapi: TOKEN_DOCS.v2 } }, token('v2'));
    scope.post('/:tenant/oauth2/token', { config: { openapi: TOKEN_DOCS.v1 } }, token('v1'));
    scope.get('/:tenant/oauth2/token', { config: { openapi: TOKEN_DOCS.v1Get } }, token('v1'));
    scope.get('/:tenant/oauth2/v2.0/token', { config: { openapi: TOKEN_DOCS.v2Get } }, token('v2'));

    const jwks = async (_request: FastifyRequest, reply: FastifyReply) =>
      reply.header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(options.keys.jwks()));
    scope.get('/common/discovery/keys', { config: { openapi: jwksDoc('common', 'v1') } }, jwks);
    scope.get('/common/discovery/v2.0/keys', { config: { openapi: jwksDoc('common', 'v2') } }, jwks);
    scope.get('/:tenant/discovery/keys', { config: { openapi: jwksDoc('tenant', 'v1') } }, async (request, reply) => {
      await tenantOf(request);
      return jwks(request, reply);
    });
    scope.get('/:tenant/discovery/v2.0/keys', { config: { openapi: jwksDoc('tenant', 'v2') } }, async (request, reply) => {
      await tenantOf(request);
      return jwks(request, reply);
    });

    const metadata = (version: 'v1' | 'v2') => async (request: FastifyRequest, reply: FastifyReply) => {
      const tenantId = await tenantOf(request);
      const base = options.baseUrl();
      const body = {
        issuer: issuerFor(options.issuerBase, tenantId),
        token_endpoint: `${base}/${tenantId}/oauth2/${version === 'v2' ? 'v2.0/' : ''}token`,
        jwks_uri: `${base}/${tenantId}/discovery/${version === 'v2' ? 'v2.0/' : ''}keys`,
        token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
        grant_types_supported: ['client_credentials', 'password'],
        response_types_supported: ['token'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        claims_supported: ['aud', 'iss', 'iat', 'nbf', 'exp', 'tid', 'appid', 'app_displayname', 'oid', 'roles', 'scp', 'upn'],
      };
      return reply.header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(body));
    };
    scope.get('/:tenant/v2.0/.well-known/openid-configuration', { config: { openapi: openIdConfigurationDoc('v2') } }, metadata('v2'));
    scope.get('/:tenant/.well-known/openid-configuration', { config: { openapi: openIdConfigurationDoc('v1') } }, metadata('v1'));
  });
}

/** The audience asked for: v1 `resource`, v2 `scope=<resource>/.default`; it must be accepted. */
function resourceOf(form: Form, version: 'v1' | 'v2', accepted: ReadonlySet<string>): string {
  let resource: string | undefined;
  if (version === 'v1' || (form.resource && !form.scope)) {
    resource = form.resource;
    if (!resource) throw new OAuthError(400, 'invalid_request', "The request body must contain the parameter 'resource'.");
  } else {
    // `<resource>/.default`, or for a user `<resource>/<Scope.Name>`: the resource is before the last '/'.
    const scope = required(form, 'scope');
    const item = scope.split(' ').find((s) => s.includes('/'));
    resource = item?.slice(0, item.lastIndexOf('/'));
    if (!resource) throw new OAuthError(400, 'invalid_scope', `The scope '${scope.slice(0, 128)}' names no resource; use '<resource>/.default'.`);
  }
  const normalized = normalizeAudience(resource);
  if (!accepted.has(normalized)) {
    throw new OAuthError(
      400,
      version === 'v1' ? 'invalid_resource' : 'invalid_scope',
      `The resource '${resource.slice(0, 128)}' is not served here; ask for ${[...accepted][0]}.`,
    );
  }
  return resource.replace(/\/+$/, '');
}

function sendOAuthError(reply: FastifyReply, request: FastifyRequest, error: OAuthError): FastifyReply {
  request.log.info({ oauthError: error.error }, 'token request refused');
  return reply
    .code(error.status)
    .headers(error.headers)
    .header('content-type', 'application/json; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(JSON.stringify({ error: error.error, error_description: error.message, trace_id: request.id }));
}

