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

/** Query parameters whose values never reach a log line (some clients send the token form as a GET query). */
const SECRET_QUERY_PARAMS = /([?&](?:client_secret|password|access_token|refresh_token|assertion|code|enrollmentToken)=)[^&#]*/gi;

/** A URL as logged: secrets in its query string replaced. */
export function redactUrl(url: string): string {
  return url.replace(SECRET_QUERY_PARAMS, '$1[redacted]');
}

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { service: 'countermand' },
      serializers: {
        // What Fastify logs of a request, minus secrets in the URL; never headers.
        req: (req: LoggedRequest) => ({
          method: req.method,
          url: req.url === undefined ? undefined : redactUrl(req.url),
          host: req.host,
          remoteAddress: req.ip,
          remotePort: req.socket?.remotePort,
        }),
      },
    },
    destination as pino.DestinationStream | undefined,
  );
}
