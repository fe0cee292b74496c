import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentToken } from '../support/agents.js';
import { TEST_SECRET, makeFixtures, startTestServer, type TestServer } from '../support/harness.js';
import { PG_SKIP_REASON, PG_URL, freshDatabase } from '../support/postgres.js';
import { source, type Source, type SourceAnswer } from '../support/sources.js';

/**
 * The token endpoint and agent enrollment under attack, driven over HTTP as the attacker did:
 * parallel guessing bursts, lockout attempts from another address, floods of random client ids,
 * type confusion and NUL bytes in every input. Each source of requests is its own loopback
 * address, so the server tells the attacker from the legitimate client as it would on a network.
 */

const RESOURCE = 'https://api.securitycenter.microsoft.com';
const PASSWORD = 'the-right-password-7';
const LIMIT = 20; // failed attempts a minute per credential and source (docs/identity.md)

let nextAddress = 10;
/** A fresh loopback source address for each actor, so their budgets never mix. */
const fresh = (): Source => source(`127.0.0.${nextAddress++}`);

const count = (answers: SourceAnswer[], predicate: (a: SourceAnswer) => boolean) => answers.filter(predicate).length;

function expectThrottled(answer: SourceAnswer) {
  expect(answer.status).toBe(429);
  expect(answer.body.error).toBe('temporarily_unavailable');
  expect(answer.body.error_description).toEqual(expect.any(String));
  expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0);
  expect(Number(answer.headers['retry-after'])).toBeLessThanOrEqual(60);
}

const backends = [
  { backend: 'sqlite' as const, skip: false, label: 'SQLite' },
  { backend: 'postgres' as const, skip: !PG_URL, label: PG_URL ? 'PostgreSQL' : `PostgreSQL (skipped: ${PG_SKIP_REASON})` },
];

describe.each(backends)('token endpoint and enrollment on $label', ({ backend, skip }) => {
  const setup = makeFixtures(0);
  const tenant = setup.fixtures.tenants[0]!;
  const users = Array.from({ length: 6 }, (_, i) => `user-${i}@hardening.test`);
  tenant.users = users.map((upn) => ({ upn, password: PASSWORD, scopes: ['Machine.Read'], rolePermissions: ['View data'] }));
  const OWNER_APP = randomUUID();
  tenant.applications!.push({ clientId: OWNER_APP, clientSecret: TEST_SECRET, displayName: 'Owner App', roles: ['Machine.Read.All'] });
  let server: TestServer;
  const v1 = () => `${server.url}/${setup.tenantId}/oauth2/token`;
  const v2 = () => `${server.url}/${setup.tenantId}/oauth2/v2.0/token`;
  const clientCredentials = (clientId: string, secret: string) => ({
    grant_type: 'client_credentials',
    client_id: clientId,
    client_secret: secret,
    scope: `${RESOURCE}/.default`,
  });
  const enroll = (from: Source, token: string, name = 'hardening.test') =>
    from.send('POST', `${server.url}/agent/v1/enroll`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enrollmentToken: token, machine: { computerDnsName: name } }),
    });

  beforeAll(async () => {
    if (skip) return;
    server = await startTestServer({ fixtures: setup.fixtures, backend });
  });
  afterAll(async () => {
    await server?.stop();
  });

  describe.skipIf(skip)('guess throttles count before they check (issue 8 item 3)', () => {
    it('200 parallel password guesses for one user, the right one among them: at most the limit is checked', async () => {
      const attacker = fresh();
      try {
        const guesses = Array.from({ length: 200 }, (_, i) => (i === 150 ? PASSWORD : `guess-${i}-xxxx`));
        const answers = await Promise.all(
          guesses.map((password) => attacker.form(v1(), { grant_type: 'password', username: users[0]!, password, resource: RESOURCE })),
        );
        const checked = count(answers, (a) => a.status !== 429);
        // Each checked guess is a 400 invalid_grant, or the one 200; a success gives its count back.
        expect(count(answers, (a) => a.body?.error === 'invalid_grant')).toBeLessThanOrEqual(LIMIT);
        expect(checked).toBeLessThanOrEqual(LIMIT + count(answers, (a) => a.status === 200));
        expect(count(answers, (a) => a.status === 429)).toBeGreaterThanOrEqual(200 - LIMIT - 1);
        for (const a of answers) {
          if (a.status === 429) expectThrottled(a);
          else expect([200, 400]).toContain(a.status);
        }
      } finally {
        attacker.close();
      }
    });

    it('100 parallel bad enrollment secrets: at most the limit is checked, the rest are 429 in the envelope', async () => {
      const attacker = fresh();
      try {
        const [id] = (await enrollmentToken(server.store, setup.tenantId, `burst-${randomUUID()}`)).split('.');
        const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => enroll(attacker, `${id}.wrong-secret-${i}`)));
        expect(count(answers, (a) => a.status === 401)).toBeLessThanOrEqual(LIMIT);
        const refused = answers.filter((a) => a.status === 429);
        expect(refused.length).toBeGreaterThanOrEqual(100 - LIMIT);
        expect(refused[0]!.body.error.code).toBe('TooManyRequests');
        expect(refused[0]!.body.error.target).toBe(refused[0]!.headers['request-id']);
        expect(Number(refused[0]!.headers['retry-after'])).toBeGreaterThan(0);
      } finally {
        attacker.close();
      }
    });

    it('a success gives its attempt back: the owner signing in repeatedly is never throttled', async () => {
      const owner = fresh();
      try {
        const answers = await Promise.all(
          Array.from({ length: 3 * LIMIT }, () => owner.form(v2(), clientCredentials(OWNER_APP, TEST_SECRET))),
        );
        expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
      } finally {
        owner.close();
      }
    });
  });

  describe.skipIf(skip)('right secrets in a burst all get through', () => {
    it('120 agents enrolling at once from one address with one enrollment token: all enrolled', async () => {
      const site = fresh();
      try {
        const token = await enrollmentToken(server.store, setup.tenantId, `fleet-${randomUUID()}`);
        const answers = await Promise.all(Array.from({ length: 120 }, (_, i) => enroll(site, token, `fleet-${i}.test`)));
        expect(answers.map((a) => a.status)).toEqual(answers.map(() => 201));
      } finally {
        site.close();
      }
    });
  });

  describe.skipIf(skip)('no lockout by a stranger, no exhaustion by a flood (issue 8 item 4)', () => {
    it("a stranger's bad secrets for a known client id do not lock the owner out (v1, v2 and Basic)", async () => {
      const stranger = fresh();
      const owner = fresh();
      try {
        const bad = await Promise.all(
          Array.from({ length: LIMIT + 10 }, (_, i) => stranger.form(v2(), clientCredentials(OWNER_APP, `not-the-secret-${i}`))),
        );
        expect(count(bad, (a) => a.status === 401)).toBeLessThanOrEqual(LIMIT);
        expect(count(bad, (a) => a.status === 429)).toBeGreaterThanOrEqual(10);
        // The stranger's address stays refused, even with the right secret...
        expectThrottled(await stranger.form(v2(), clientCredentials(OWNER_APP, TEST_SECRET)));
        // ...while the owner, from its own address, gets tokens every way it asks.
        const viaV2 = await owner.form(v2(), clientCredentials(OWNER_APP, TEST_SECRET));
        expect(viaV2.status, viaV2.text).toBe(200);
        const viaV1 = await owner.form(v1(), { grant_type: 'client_credentials', client_id: OWNER_APP, client_secret: TEST_SECRET, resource: RESOURCE });
        expect(viaV1.status, viaV1.text).toBe(200);
        const viaBasic = await owner.form(
          v2(),
          { grant_type: 'client_credentials', scope: `${RESOURCE}/.default` },
          { authorization: `Basic ${Buffer.from(`${OWNER_APP}:${TEST_SECRET}`).toString('base64')}` },
        );
        expect(viaBasic.status, viaBasic.text).toBe(200);
      } finally {
        stranger.close();
        owner.close();
      }
    });

    it('one bad agent does not block the agents behind the same address', async () => {
      const site = fresh();
      try {
        const stale = await enrollmentToken(server.store, setup.tenantId, `site-${randomUUID()}`);
        const good = await enrollmentToken(server.store, setup.tenantId, `site-${randomUUID()}`);
        // The bad agent keeps presenting a token with a wrong secret until it is refused.
        const [staleId] = stale.split('.');
        const bad = await Promise.all(Array.from({ length: LIMIT + 5 }, (_, i) => enroll(site, `${staleId}.mistyped-${i}`)));
        expect(count(bad, (a) => a.status === 429)).toBeGreaterThanOrEqual(5);
        // Its neighbours, same address, another token: enrolled.
        const neighbours = await Promise.all(Array.from({ length: 5 }, (_, i) => enroll(site, good, `neighbour-${i}.test`)));
        for (const n of neighbours) expect(n.status, n.text).toBe(201);
      } finally {
        site.close();
      }
    });

    it('a flood of random client ids from one address: the flood gets 429, a legitimate client keeps getting tokens', async () => {
      const flood = fresh();
      const legitimate = fresh();
      try {
        const floodAnswers: SourceAnswer[] = [];
        const legitimateAnswers: SourceAnswer[] = [];
        let flooding = true;
        const deadline = Date.now() + 45_000;
        // 32 parallel streams of guesses with random client ids, until the flood is refused
        // (bounded in count and time).
        const streams = Array.from({ length: 32 }, async () => {
          while (flooding && floodAnswers.length < 600 && Date.now() < deadline) {
            const answer = await flood.form(v2(), clientCredentials(randomUUID(), `random-${randomUUID()}`));
            floodAnswers.push(answer);
            if (answer.status === 429) break;
          }
        });
        const client = (async () => {
          // The legitimate client asks for a token over and over while the flood runs.
          while (flooding) {
            legitimateAnswers.push(await legitimate.form(v2(), clientCredentials(OWNER_APP, TEST_SECRET)));
          }
        })();
        await Promise.all(streams);
        // And once more after the flood has been refused.
        flooding = false;
        await client;
        legitimateAnswers.push(await legitimate.form(v2(), clientCredentials(OWNER_APP, TEST_SECRET)));

        expect(legitimateAnswers.length).toBeGreaterThan(1);
        for (const a of legitimateAnswers) expect(a.status, a.text).toBe(200);
        const refused = floodAnswers.filter((a) => a.status === 429);
        expect(refused.length, `flood statuses: ${[...new Set(floodAnswers.map((a) => a.status))]}`).toBeGreaterThan(0);
        for (const a of refused) expectThrottled(a);
        expect(count(floodAnswers, (a) => a.status === 401)).toBeLessThanOrEqual(100);
      } finally {
        flood.close();
        legitimate.close();
      }
    }, 90_000);

    it('a flood of random enrollment tokens from one address gets 429; an agent elsewhere still enrolls', async () => {
      const flood = fresh();
      const agent = fresh();
      try {
        const good = await enrollmentToken(server.store, setup.tenantId, `flood-${randomUUID()}`);
        const answers = await Promise.all(
          Array.from({ length: 150 }, () => enroll(flood, `${randomUUID().replace(/-/g, '').slice(0, 16)}.${randomUUID()}`)),
        );
        expect(count(answers, (a) => a.status === 401)).toBeLessThanOrEqual(100);
        expect(count(answers, (a) => a.status === 429)).toBeGreaterThanOrEqual(50);
        const enrolled = await enroll(agent, good, 'elsewhere.test');
        expect(enrolled.status, enrolled.text).toBe(201);
      } finally {
        flood.close();
        agent.close();
      }
    });
  });

  describe.skipIf(skip)('every input of the token endpoint is checked at the boundary (issue 8 items 5, 6)', () => {
    const invalidRequest = (a: SourceAnswer) => {
      expect(a.status, a.text).toBe(400);
      expect(a.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(a.body.error).toBe('invalid_request');
      expect(a.body.error_description).toEqual(expect.any(String));
      expect(a.body.trace_id).toBe(a.headers['request-id']);
    };

    it('a NUL in any form field, in the tenant segment or in Basic credentials is 400 invalid_request', async () => {
      const from = fresh();
      try {
        const base = clientCredentials(OWNER_APP, TEST_SECRET);
        for (const field of ['grant_type', 'client_id', 'client_secret', 'scope'] as const) {
          invalidRequest(await from.form(v2(), { ...base, [field]: `${base[field]}\u0000` }));
        }
        invalidRequest(await from.form(v1(), { grant_type: 'password', username: `${users[1]}\u0000`, password: PASSWORD, resource: RESOURCE }));
        invalidRequest(await from.form(v1(), { grant_type: 'password', username: users[1]!, password: `${PASSWORD}\u0000`, resource: RESOURCE }));
        invalidRequest(await from.form(v2(), { ...base, 'x\u0000': 'y' }));
        // As a GET query string, and as a GET body.
        invalidRequest(await from.send('GET', `${v1()}?grant_type=client_credentials&client_id=${OWNER_APP}%00&client_secret=${TEST_SECRET}&resource=${RESOURCE}`));
        invalidRequest(
          await from.send('GET', v1(), {
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: `grant_type=client_credentials&client_id=${OWNER_APP}&client_secret=%00&resource=${RESOURCE}`,
          }),
        );
        // The tenant segment, on every route under /{tenant}.
        for (const path of ['oauth2/token', 'oauth2/v2.0/token']) {
          invalidRequest(await from.form(`${server.url}/${setup.tenantId}%00/${path}`, base));
        }
        for (const path of ['discovery/keys', 'discovery/v2.0/keys', '.well-known/openid-configuration', 'v2.0/.well-known/openid-configuration']) {
          invalidRequest(await from.send('GET', `${server.url}/${setup.tenantId}%00/${path}`));
          invalidRequest(await from.send('GET', `${server.url}/%00/${path}`));
        }
        // Basic credentials whose client id or secret decodes to a NUL.
        for (const pair of [`${OWNER_APP}%00:${TEST_SECRET}`, `${OWNER_APP}:${TEST_SECRET}%00`]) {
          invalidRequest(
            await from.form(v2(), { grant_type: 'client_credentials', scope: `${RESOURCE}/.default` }, { authorization: `Basic ${Buffer.from(pair).toString('base64')}` }),
          );
        }
        // Nothing of the above was a 500, and the owner still gets a token.
        expect((await from.form(v2(), base)).status).toBe(200);
      } finally {
        from.close();
      }
    });

    it('only form-encoded bodies are read: JSON and other types are 400 invalid_request, whatever their fields', async () => {
      const from = fresh();
      try {
        const json = (body: unknown, method = 'POST', url = v2()) =>
          from.send(method, url, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const base = clientCredentials(OWNER_APP, TEST_SECRET);
        // A well-formed JSON body is still not a form: refused, not half-read.
        invalidRequest(await json(base));
        invalidRequest(await json({ ...base, grant_type: 123 }));
        invalidRequest(await json({ ...base, client_id: {} }));
        invalidRequest(await json({ ...base, client_secret: [TEST_SECRET] }));
        invalidRequest(await json({ ...base, resource: RESOURCE }, 'POST', v1()));
        invalidRequest(await json({ ...base, resource: RESOURCE }, 'GET', v1()));
        invalidRequest(await from.send('POST', v2(), { headers: { 'content-type': 'text/plain' }, body: new URLSearchParams(base).toString() }));
        invalidRequest(await from.send('POST', v2(), { headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: '--x--' }));
        invalidRequest(await from.send('POST', v2(), { body: new URLSearchParams(base).toString() }));
        invalidRequest(await from.send('POST', v2()));
        // A form with a charset parameter is a form.
        const charset = await from.send('POST', v2(), {
          headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
          body: new URLSearchParams(base).toString(),
        });
        expect(charset.status, charset.text).toBe(200);
        // A form field named like an Object property is just an unknown field.
        const proto = await from.form(v2(), { ...base, constructor: 'x', toString: 'y', __proto__: 'z' } as Record<string, string>);
        expect(proto.status, proto.text).toBe(200);
      } finally {
        from.close();
      }
    });

    it('bad Basic encoding is 401 invalid_client with WWW-Authenticate: Basic', async () => {
      const from = fresh();
      try {
        const basic = (value: string) =>
          from.form(v2(), { grant_type: 'client_credentials', scope: `${RESOURCE}/.default` }, { authorization: value });
        const encode = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;
        for (const header of [
          encode(`${OWNER_APP}:%zz`), // curl -u "id:%zz"
          encode(`%zz:${TEST_SECRET}`),
          encode(`${OWNER_APP}:%E0%A4%A`), // a cut percent escape
          encode(`${OWNER_APP}:%ED%A0%80`), // an encoded lone surrogate
          encode('no-colon-here'),
          `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0x41]).toString('base64')}`, // not UTF-8
          'Basic !!!not-base64!!!',
          'Basic',
        ]) {
          const a = await basic(header);
          expect(a.status, `${header}: ${a.text}`).toBe(401);
          expect(a.body.error).toBe('invalid_client');
          expect(a.headers['www-authenticate']).toBe('Basic');
        }
        // Form-url-encoded Basic credentials (RFC 6749 §2.3.1) decode.
        const ok = await basic(encode(`${encodeURIComponent(OWNER_APP)}:${encodeURIComponent(TEST_SECRET)}`));
        expect(ok.status, ok.text).toBe(200);
      } finally {
        from.close();
      }
    });
  });

  describe.skipIf(skip)('no client-id oracle on the password grant (issue 8 item 12)', () => {
    it('an unknown and a known client id get the same answer, and an unknown one counts as a failure', async () => {
      const from = fresh();
      try {
        const grant = (clientId: string, username: string, password: string) =>
          from.form(v1(), { grant_type: 'password', client_id: clientId, username, password, resource: RESOURCE });
        const known = await grant(OWNER_APP, users[2]!, 'wrong-password-1');
        const unknown = await grant(randomUUID(), users[2]!, 'wrong-password-2');
        expect(unknown.status).toBe(known.status);
        expect({ ...unknown.body, trace_id: null }).toEqual({ ...known.body, trace_id: null });
        expect(known.body.error).toBe('invalid_grant');
        // Even with the right password, an unknown client id is the same refusal, and counted:
        // after the limit the user's guesses from this address are refused.
        const rightPasswordUnknownClient = await grant(randomUUID(), users[2]!, PASSWORD);
        expect({ ...rightPasswordUnknownClient.body, trace_id: null }).toEqual({ ...known.body, trace_id: null });
        const more = await Promise.all(Array.from({ length: LIMIT }, () => grant(randomUUID(), users[2]!, PASSWORD)));
        expect(count(more, (a) => a.status === 429)).toBeGreaterThanOrEqual(3);
        // The known client id with the right password, from elsewhere, works.
        const elsewhere = fresh();
        try {
          const ok = await elsewhere.form(v1(), { grant_type: 'password', client_id: OWNER_APP, username: users[2]!, password: PASSWORD, resource: RESOURCE });
          expect(ok.status, ok.text).toBe(200);
        } finally {
          elsewhere.close();
        }
      } finally {
        from.close();
      }
    });
  });
});

describe.skipIf(!PG_URL)(`failure counts shared by every node on PostgreSQL${PG_URL ? '' : ` (skipped: ${PG_SKIP_REASON})`}`, () => {
  it('a burst of guesses spread over two nodes gets the limit once, not once per node', async () => {
    const setup = makeFixtures(0);
    const db = await freshDatabase();
    const [a, b] = await Promise.all([
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config: { databaseUrl: db.url } }),
      startTestServer({ fixtures: setup.fixtures, backend: 'postgres', config: { databaseUrl: db.url } }),
    ]);
    const attacker = fresh();
    try {
      const answers = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          attacker.form(`${(i % 2 ? a : b).url}/${setup.tenantId}/oauth2/v2.0/token`, {
            grant_type: 'client_credentials',
            client_id: setup.clientId,
            client_secret: `guess-${i}-xxxxxxxx`,
            scope: `${RESOURCE}/.default`,
          }),
        ),
      );
      expect(count(answers, (x) => x.status === 401)).toBeLessThanOrEqual(LIMIT);
      expect(count(answers, (x) => x.status === 429)).toBeGreaterThanOrEqual(100 - LIMIT);
    } finally {
      attacker.close();
      await a.stop();
      await b.stop();
      await db.drop();
    }
  });
});
