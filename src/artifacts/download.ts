import type { FastifyReply } from 'fastify';
import type { BlobReader } from './blob-store.js';

/** `attachment` with an ASCII fallback name and the exact name in RFC 5987 form. */
export function contentDisposition(fileName: string): string {
  const fallback = fileName.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const exact = encodeURIComponent(fileName).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${exact}`;
}

/** Streams a blob as a file download, with its size and digest (RFC 9530 Content-Digest). */
export function sendFile(reply: FastifyReply, file: { fileName: string; contentType: string; sha256: string }, reader: BlobReader): FastifyReply {
  return reply
    .code(200)
    .header('content-type', file.contentType)
    .header('content-length', String(reader.size))
    .header('content-disposition', contentDisposition(file.fileName))
    .header('content-digest', `sha-256=:${Buffer.from(file.sha256, 'hex').toString('base64')}:`)
    .header('x-content-sha256', file.sha256)
    .header('cache-control', 'private, no-store')
    .send(reader.stream);
}
