import { pino, type Logger } from 'pino';

/**
 * Paths never logged. Fastify's request serializer logs no headers, but anything that logs a
 * request or a body by hand must not leak credentials either.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  '*.client_secret',
  '*.clientSecret',
  '*.password',
  '*.access_token',
  '*.secret',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, base: { service: 'countermand' } },
    destination as pino.DestinationStream | undefined,
  );
}
