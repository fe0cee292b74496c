import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { enrollmentToken } from './agents.js';
import { Client, type TestServer } from './harness.js';
import { PG_SKIP_REASON, PG_URL } from './postgres.js';

/** Every artifacts test runs on both backends; PostgreSQL is skipped (with the reason printed) when there is none. */
export const BACKENDS: { backend: 'sqlite' | 'postgres'; skip: string | null }[] = [
  { backend: 'sqlite', skip: null },
  { backend: 'postgres', skip: PG_URL ? null : PG_SKIP_REASON },
];

/** Runs SQL against the server's own database, as an operator would look at it. */
export async function sql<T = Record<string, unknown>>(server: TestServer, text: string, params: unknown[] = []): Promise<T[]> {
  if (server.config.databaseUrl) {
    const client = new pg.Client({ connectionString: server.config.databaseUrl });
    await client.connect();
    try {
      let n = 0;
      return (await client.query(text.replace(/\?/g, () => `$${++n}`), params)).rows as T[];
    } finally {
      await client.end();
    }
  }
  const db = new Database(join(server.dataDir, 'countermand.db'), { fileMustExist: true });
  try {
    const statement = db.prepare(text);
    return (statement.reader ? statement.all(...params) : (statement.run(...params), [])) as T[];
  } finally {
    db.close();
  }
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

/** What the server keeps of artifacts, everywhere it could keep it: rows, chunks, files, staging leftovers. */
export async function stored(server: TestServer) {
  const count = async (table: string) => Number((await sql<{ n: number }>(server, `SELECT COUNT(*) AS n FROM ${table}`))[0]!.n);
  const files = filesUnder(join(server.dataDir, 'blobs'));
  return {
    libraryFiles: await count('library_files'),
    artifacts: await count('action_artifacts'),
    blobs: await count('blobs'),
    chunks: server.config.databaseUrl ? await count('blob_chunks') : 0,
    blobFiles: files.filter((f) => !f.endsWith('.part')).length,
    stagingFiles: files.filter((f) => f.endsWith('.part')).length,
  };
}

/** Changes one byte of a stored blob behind the server's back (a damaged disk, a meddler). */
export async function tamperBlob(server: TestServer, sha256: string): Promise<void> {
  if (server.config.databaseUrl) {
    await sql(server, "UPDATE blob_chunks SET data = set_byte(data, 0, (get_byte(data, 0) + 1) % 256) WHERE sha256 = ? AND n = 0", [sha256]);
    return;
  }
  const path = join(server.dataDir, 'blobs', 'sha256', sha256.slice(0, 2), sha256);
  const size = statSync(path).size;
  writeFileSync(path, Buffer.alloc(size, 0x41));
}

export interface RawPart {
  name: string;
  filename?: string;
  content: string | Buffer;
}

/** A multipart/form-data body with a fixed boundary, byte for byte as the test says. */
export function multipartBody(parts: RawPart[], boundary = '----countermand-test'): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n${p.filename !== undefined ? 'Content-Type: application/octet-stream\r\n' : ''}\r\n`));
    chunks.push(Buffer.isBuffer(p.content) ? p.content : Buffer.from(p.content));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * Sends the head of a request and the first `sendBytes` of its body over a raw socket, waits
 * for `beforeHangUp`, then hangs up: a client that goes away mid-upload.
 */
export async function hangUpMidUpload(
  url: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  sendBytes: number,
  beforeHangUp: () => Promise<void>,
): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  const head = [`POST ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, `Content-Length: ${body.length}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  socket.write(`${head.join('\r\n')}\r\n\r\n`);
  socket.write(body.subarray(0, sendBytes));
  await beforeHangUp();
  socket.destroy();
}

/** An agent spoken by hand, with its credential: for what a real agent would never send. */
export async function rawAgent(server: { url: string; store: TestServer['store'] }, tenantId: string, name: string) {
  const token = await enrollmentToken(server.store, tenantId, `raw-${name}`);
  const enrolled = await new Client(server.url).post('/agent/v1/enroll', { enrollmentToken: token, machine: { computerDnsName: name } });
  if (enrolled.status !== 201) throw new Error(`enrollment failed: ${enrolled.status} ${enrolled.text}`);
  const credential = enrolled.body.agentToken as string;
  const client = new Client(server.url, { authorization: `Bearer ${credential}` });
  /** A PUT of raw bytes to an upload route. */
  const put = async (path: string, body: Buffer | string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${server.url}${path}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/octet-stream', ...headers },
      body,
    });
    const text = await res.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, text };
  };
  const get = (path: string) => fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${credential}` } });
  return { machineId: enrolled.body.machineId as string, credential, client, put, get };
}
