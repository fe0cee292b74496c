import { Type } from 'typebox';
import { TAGS, retryAfter, type ResponseDoc, type RouteDoc } from '../route-docs.js';

/** How the OpenAPI document shows the token service's routes (token-service.ts). */

const FORM = 'application/x-www-form-urlencoded';
const JSON_UTF8 = 'application/json; charset=utf-8';

const TenantParams = Type.Object({ tenant: Type.String({ description: "The tenant's id (a GUID)." }) });

const fields = {
  grant_type: Type.Enum(['client_credentials', 'password']),
  client_id: Type.Optional(Type.String({ description: 'The application (client) id; or in the Basic Authorization header.' })),
  client_secret: Type.Optional(Type.String({ description: "The application's secret; or in the Basic Authorization header." })),
  username: Type.Optional(Type.String({ description: 'grant_type=password: the user principal name.' })),
  password: Type.Optional(Type.String({ description: "grant_type=password: the user's password." })),
};
const V2Form = Type.Object(
  { ...fields, scope: Type.String({ description: '<resource>/.default', examples: ['https://api.securitycenter.microsoft.com/.default'] }) },
  { title: 'TokenRequestV2' },
);
const V1Form = Type.Object(
  { ...fields, resource: Type.String({ examples: ['https://api.securitycenter.microsoft.com'] }) },
  { title: 'TokenRequestV1' },
);

const TokenResponse = Type.Object(
  {
    token_type: Type.Literal('Bearer'),
    expires_in: Type.Integer({ examples: [3599] }),
    ext_expires_in: Type.Integer({ examples: [3599] }),
    access_token: Type.String({ description: 'A JWT shaped like MDE\'s (contract §7).' }),
  },
  { title: 'TokenResponse' },
);
const OAuthError = Type.Object(
  {
    error: Type.String({ examples: ['invalid_client'] }),
    error_description: Type.String(),
    trace_id: Type.String({ description: 'The request id.' }),
  },
  { title: 'OAuthError', description: 'RFC 6749 §5.2.' },
);
const oauthError = (description: string, headers?: ResponseDoc['headers']): ResponseDoc => ({
  description,
  schema: OAuthError,
  contentType: JSON_UTF8,
  ...(headers ? { headers } : {}),
});

const tokenResponses = {
  200: { description: 'An access token.', schema: TokenResponse, contentType: JSON_UTF8 },
  400: oauthError('invalid_request, invalid_grant (a wrong password), invalid_scope / invalid_resource, unsupported_grant_type, unauthorized_client.'),
  401: oauthError('invalid_client: the client id or secret is not valid for this tenant.'),
  429: oauthError('temporarily_unavailable: too many failed attempts for this client or user.', retryAfter),
};
const security = [{}, { clientSecretBasic: [] }] as const;

function token(version: 'v1' | 'v2', method: 'POST' | 'GET'): RouteDoc {
  const form = version === 'v2' ? V2Form : V1Form;
  return {
    tags: [TAGS.tokens],
    summary: `Get an access token (${version === 'v2' ? 'v2.0' : 'v1'}${method === 'GET' ? ', as a GET' : ''})`,
    description:
      (method === 'GET' ? 'Some clients send the form as a GET, in the body or the query string; both are read. ' : '') +
      'Clients drop any path prefix of the token URL, so this lives at the server root.',
    operationId: `GetToken${version.toUpperCase()}${method === 'GET' ? 'Get' : ''}`,
    params: TenantParams,
    ...(method === 'POST' ? { body: { contentType: FORM, schema: form } } : { querystring: form }),
    responses: tokenResponses,
    security,
  };
}

export const TOKEN_DOCS = {
  v2: token('v2', 'POST'),
  v1: token('v1', 'POST'),
  v2Get: token('v2', 'GET'),
  v1Get: token('v1', 'GET'),
};

const Jwks = Type.Object(
  { keys: Type.Array(Type.Object({ kty: Type.String(), kid: Type.String(), use: Type.Optional(Type.String()), alg: Type.Optional(Type.String()) }, { additionalProperties: true })) },
  { title: 'Jwks' },
);

export function jwksDoc(scope: 'common' | 'tenant', version: 'v1' | 'v2'): RouteDoc {
  return {
    tags: [TAGS.tokens],
    summary: `The token-signing keys (JWKS${version === 'v2' ? ', v2.0 path' : ''}${scope === 'tenant' ? ', per tenant' : ''})`,
    operationId: `GetSigningKeys${scope === 'tenant' ? 'OfTenant' : ''}${version.toUpperCase()}`,
    ...(scope === 'tenant' ? { params: TenantParams } : {}),
    responses: {
      200: { description: 'The public keys, retired ones included until their tokens expire.', schema: Jwks, contentType: JSON_UTF8 },
      ...(scope === 'tenant' ? { 400: oauthError('invalid_request: no such tenant.') } : ({} as Record<number, ResponseDoc>)),
    },
  };
}

const OpenIdConfiguration = Type.Object(
  {
    issuer: Type.String(),
    token_endpoint: Type.String({ format: 'uri' }),
    jwks_uri: Type.String({ format: 'uri' }),
  },
  { title: 'OpenIdConfiguration', additionalProperties: true },
);

export function openIdConfigurationDoc(version: 'v1' | 'v2'): RouteDoc {
  return {
    tags: [TAGS.tokens],
    summary: `OpenID Connect metadata (${version === 'v2' ? 'v2.0' : 'v1'})`,
    operationId: `GetOpenIdConfiguration${version.toUpperCase()}`,
    params: TenantParams,
    responses: {
      200: { description: 'Issuer, token endpoint and JWKS location of this tenant.', schema: OpenIdConfiguration, contentType: JSON_UTF8 },
      400: oauthError('invalid_request: no such tenant.'),
    },
  };
}
