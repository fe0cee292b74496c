import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyReply } from 'fastify';

/**
 * The baseline: a bare Fastify 5 server with no authentication, rate limiting, validation,
 * logging or database. Its routes return a fixed MachineAction (the JSON in BENCH_FIXED_ACTION)
 * with the same response headers as Countermand (OData content type, OData-Version, request-id).
 * For the dispatch figures it also keeps actions in a Map and parks agent check-ins in memory,
 * answering them the moment an action is created or cancelled: the least any long-poll
 * dispatcher can do. The agent names its machine in `x-bench-machine` (Countermand ignores it).
 *
 * Environment: BENCH_PORT (0: any), BENCH_FIXED_ACTION (file), BENCH_POLL_SECONDS.
 */

const ODATA_JSON = 'application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8';
const fixed = JSON.parse(readFileSync(process.env.BENCH_FIXED_ACTION ?? '', 'utf8')) as Record<string, unknown>;
const fixedBody = JSON.stringify(fixed);
const collectionBody = JSON.stringify({
  '@odata.context': String(fixed['@odata.context']).replace('/$entity', ''),
  value: [Object.fromEntries(Object.entries(fixed).filter(([k]) => k !== '@odata.context'))],
});
const pollMs = Number(process.env.BENCH_POLL_SECONDS ?? 120) * 1000;

interface Held {
  id: string;
  machine: string;
  type: string;
  status: 'Pending' | 'InProgress' | 'Cancelled';
}
const actions = new Map<string, Held>();
const byMachine = new Map<string, Set<string>>();
const waiting = new Map<string, () => void>();

function send(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply
    .code(status)
    .header('content-type', ODATA_JSON)
    .header('odata-version', '4.0')
    .header('request-id', randomUUID())
    .send(body);
}

function work(machine: string, running: readonly string[]) {
  const ids = byMachine.get(machine) ?? new Set<string>();
  const runningSet = new Set(running);
  const list = [...ids].map((id) => actions.get(id)!);
  return {
    actions: list
      .filter((a) => a.status !== 'Cancelled' && !runningSet.has(a.id))
      .map((a) => ({ id: a.id, type: a.type, status: a.status, scope: 'Full', sha1: null, comment: 'bench', commands: [], resume: a.status === 'InProgress' })),
    stop: running.filter((id) => actions.get(id)?.status === 'Cancelled').map((id) => ({ id, status: 'Cancelled' })),
  };
}

const app = Fastify({ logger: false });

app.get('/api/machines', async (_request, reply) =>
  reply.code(401).header('content-type', 'application/json; charset=utf-8').send('{"error":{"code":"Unauthorized","message":"no token","target":"x"}}'),
);
app.get('/api/machineactions/:id', async (_request, reply) => send(reply, 200, fixedBody));
app.get('/api/machineactions', async (_request, reply) => send(reply, 200, collectionBody));

app.post('/api/machines/:id/:action', async (request, reply) => {
  const { id: machine, action } = request.params as { id: string; action: string };
  const held: Held = { id: randomUUID(), machine, type: action, status: 'Pending' };
  actions.set(held.id, held);
  let set = byMachine.get(machine);
  if (!set) byMachine.set(machine, (set = new Set()));
  set.add(held.id);
  waiting.get(machine)?.();
  return send(reply, 201, JSON.stringify({ ...fixed, id: held.id, machineId: machine, status: 'Pending' }));
});

app.post('/api/machineactions/:id/cancel', async (request, reply) => {
  const { id } = request.params as { id: string };
  const held = actions.get(id);
  if (held && held.status !== 'Cancelled') {
    held.status = 'Cancelled';
    waiting.get(held.machine)?.();
  }
  return send(reply, 200, JSON.stringify({ ...fixed, id, status: 'Cancelled' }));
});

app.post('/agent/v1/checkin', async (request) => {
  const machine = String(request.headers['x-bench-machine'] ?? '');
  const running = ((request.body as { running?: string[] } | undefined)?.running ?? []).slice();
  const now = work(machine, running);
  if (now.actions.length > 0 || now.stop.length > 0) return now;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, pollMs);
    function done() {
      clearTimeout(timer);
      if (waiting.get(machine) === done) waiting.delete(machine);
      request.raw.socket.off('close', done);
      resolve();
    }
    waiting.set(machine, done);
    request.raw.socket.once('close', done);
  });
  return work(machine, running);
});

app.post('/agent/v1/actions/:id/start', async (request) => {
  const held = actions.get((request.params as { id: string }).id);
  if (held?.status === 'Pending') held.status = 'InProgress';
  return { status: held?.status ?? 'Pending', run: held?.status === 'InProgress' };
});

app.get('/__bench/waiting', async () => ({ waiting: waiting.size }));

const address = await app.listen({ host: '127.0.0.1', port: Number(process.env.BENCH_PORT ?? 0) });
process.stderr.write(`BASELINE LISTENING ${address}\n`);
const stop = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
