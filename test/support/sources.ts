import { Agent, request } from 'node:http';

/**
 * HTTP from a chosen loopback source address (all of 127.0.0.0/8 is loopback on Linux), so a
 * test can play an attacker and a legitimate client that the server tells apart by address.
 */
export interface SourceAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

export interface Source {
  address: string;
  send(method: string, url: string, options?: { headers?: Record<string, string>; body?: string }): Promise<SourceAnswer>;
  /** A form POST, as a client of the token endpoint sends it. */
  form(url: string, fields: Record<string, string>, headers?: Record<string, string>): Promise<SourceAnswer>;
  close(): void;
}

export function source(address: string): Source {
  // Kept-alive sockets, bound to the address; enough of them for a burst.
  const agent = new Agent({ keepAlive: true, maxSockets: 256, localAddress: address });
  const send: Source['send'] = (method, url, options = {}) =>
    new Promise((resolve, reject) => {
      const body = options.body;
      const headers: Record<string, string | number> = { ...options.headers };
      if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
      const req = request(url, { method, agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  return {
    address,
    send,
    form: (url, fields, headers = {}) =>
      send('POST', url, {
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(fields).toString(),
      }),
    close: () => agent.destroy(),
  };
}
