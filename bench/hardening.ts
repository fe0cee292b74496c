/**
 * What the guessing throttles and the hashing queue do under attack, as counts and as a latency
 * ratio measured in one run (never asserted: the tests assert the counts, this prints them).
 *
 *   npx tsx bench/hardening.ts [sqlite|postgres]
 *
 * 1. 200 parallel password guesses for one user, the right password among them.
 * 2. 100 parallel bad enrollment secrets for one enrollment token.
 * 3. A legitimate client's token request, alone and while 32 parallel streams of random client
 *    ids flood the token endpoint from another address (median of each, and their ratio).
 * Each actor is its own loopback address, as on a network.
 */
import { randomUUID } from 'node:crypto';
import { enrollmentToken } from '../test/support/agents.js';
import { TEST_SECRET, makeFixtures, startTestServer } from '../test/support/harness.js';
import { source } from '../test/support/sources.js';

const backend = (process.argv[2] ?? 'sqlite') as 'sqlite' | 'postgres';
const RESOURCE = 'https://api.securitycenter.microsoft.com';
const PASSWORD = 'the-right-password-7';

const setup = makeFixtures(0);
const tenant = setup.fixtures.tenants[0]!;
tenant.users = [{ upn: 'victim@bench.test', password: PASSWORD, scopes: ['Machine.Read'], rolePermissions: ['View data'] }];
const OWNER = randomUUID();
tenant.applications!.push({ clientId: OWNER, clientSecret: TEST_SECRET, displayName: 'Owner', roles: ['Machine.Read.All'] });

const server = await startTestServer({ fixtures: setup.fixtures, backend, config: { logLevel: 'warn' } });
const v1 = `${server.url}/${setup.tenantId}/oauth2/token`;
const v2 = `${server.url}/${setup.tenantId}/oauth2/v2.0/token`;
const tally = (statuses: number[]) =>
  Object.entries(statuses.reduce<Record<number, number>>((m, s) => ((m[s] = (m[s] ?? 0) + 1), m), {}))
    .map(([s, n]) => `${n} x ${s}`)
    .join(', ');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const owner = (from: ReturnType<typeof source>) =>
  from.form(v2, { grant_type: 'client_credentials', client_id: OWNER, client_secret: TEST_SECRET, scope: `${RESOURCE}/.default` });

try {
  const attacker = source('127.0.0.21');
  const guesses = Array.from({ length: 200 }, (_, i) => (i === 150 ? PASSWORD : `guess-${i}`));
  const answers = await Promise.all(
    guesses.map((password) => attacker.form(v1, { grant_type: 'password', username: 'victim@bench.test', password, resource: RESOURCE })),
  );
  console.log(`200 parallel password guesses: ${tally(answers.map((a) => a.status))}`);

  const [id] = (await enrollmentToken(server.store, setup.tenantId, 'bench')).split('.');
  const enrolls = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      attacker.send('POST', `${server.url}/agent/v1/enroll`, {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ enrollmentToken: `${id}.wrong-${i}`, machine: { computerDnsName: 'bench.test' } }),
      }),
    ),
  );
  console.log(`100 parallel bad enrollment secrets: ${tally(enrolls.map((a) => a.status))}`);
  attacker.close();

  const legitimate = source('127.0.0.22');
  const alone: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    if ((await owner(legitimate)).status !== 200) throw new Error('the owner was refused');
    alone.push(performance.now() - t0);
  }
  const flood = source('127.0.0.23');
  const floodStatuses: number[] = [];
  let flooding = true;
  const streams = Array.from({ length: 32 }, async () => {
    while (flooding) {
      const a = await flood.form(v2, { grant_type: 'client_credentials', client_id: randomUUID(), client_secret: randomUUID(), scope: `${RESOURCE}/.default` });
      floodStatuses.push(a.status);
    }
  });
  const during: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    const a = await owner(legitimate);
    during.push(performance.now() - t0);
    if (a.status !== 200) throw new Error(`the owner was refused during the flood: ${a.status}`);
  }
  flooding = false;
  await Promise.all(streams);
  flood.close();
  legitimate.close();
  console.log(`flood of random client ids (32 streams): ${tally(floodStatuses)}`);
  console.log(
    `legitimate token request, median of 30: alone ${median(alone).toFixed(1)} ms, during the flood ${median(during).toFixed(1)} ms ` +
      `(${(median(during) / median(alone)).toFixed(2)}x)`,
  );
} finally {
  await server.stop();
}
