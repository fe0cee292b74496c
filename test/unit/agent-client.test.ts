import { createServer, type Server } from 'node:http';
import type { LookupAddress } from 'node:dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/agent/client.js';

/** The agent's HTTP client: name resolution that survives an isolated machine's lost DNS. */
describe('AgentClient', () => {
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('connection', 'close'); // every call opens a new connection, so it resolves again
      res.end(JSON.stringify({ actions: [], stop: [] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  function resolver(answers: ('ok' | 'fail')[]) {
    const calls: string[] = [];
    const fn = ((hostname: string, _options: unknown, callback: (e: Error | null, a?: LookupAddress[]) => void) => {
      calls.push(hostname);
      const next = answers.shift() ?? 'fail';
      if (next === 'ok') callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
    }) as never;
    return { fn, calls };
  }

  it('reuses the last good resolution when a later lookup fails, and reports its local address', async () => {
    const { fn, calls } = resolver(['ok', 'fail', 'fail']);
    const client = new AgentClient({ serverUrl: `http://countermand.example.invalid:${port}`, resolver: fn });
    try {
      await client.checkin({ running: [], maxWaitSeconds: 0 });
      expect(client.localAddress).toBe('127.0.0.1');
      await client.checkin({ running: [], maxWaitSeconds: 0 });
      await client.checkin({ running: [], maxWaitSeconds: 0 });
      expect(calls).toHaveLength(3);
    } finally {
      client.close();
    }
  });

  it('fails when the name never resolved', async () => {
    const { fn } = resolver(['fail']);
    const client = new AgentClient({ serverUrl: `http://countermand.example.invalid:${port}`, resolver: fn });
    try {
      await expect(client.checkin({ running: [], maxWaitSeconds: 0 })).rejects.toThrow(/ENOTFOUND/);
    } finally {
      client.close();
    }
  });
});
