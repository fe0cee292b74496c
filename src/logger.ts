import { pino, stdSerializers, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

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

/**
 * Query parameters whose values never reach a log line (some clients send the token form as a
 * GET query; `sig` is what makes a download link a credential), by name once decoded and with
 * case, `_` and `-` ignored: `client%5Fsecret`, `pass%77ord` and `Client-Secret` are the same
 * parameter to anyone who decodes them.
 */
const SECRET_QUERY_PARAMS = new Set(['clientsecret', 'password', 'accesstoken', 'refreshtoken', 'idtoken', 'assertion', 'clientassertion', 'code', 'enrollmenttoken', 'agenttoken', 'secret', 'sig']);
const isSecretParam = (name: string) => SECRET_QUERY_PARAMS.has(name.toLowerCase().replace(/[\s_-]/g, ''));

/** A query component as a form decoder reads it; as given when it does not decode. */
function decodeComponent(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

/**
 * A URL as logged: the values of secret query parameters replaced. `;` and `#` are taken as
 * separators too, so no parser's reading of the query leaves a secret in the line.
 */
export function redactUrl(url: string): string {
  const question = url.indexOf('?');
  if (question < 0) return url;
  const query = url
    .slice(question + 1)
    .replace(/(^|[&;#])([^&;#=]*)=([^&;#]*)/g, (pair, separator: string, name: string) =>
      isSecretParam(decodeComponent(name)) ? `${separator}${name}=[redacted]` : pair,
    );
  return `${url.slice(0, question + 1)}${query}`;
}

const redactLines = (text: string) => text.split('\n').map(redactUrl).join('\n');

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

export type LogFormat = 'json' | 'pretty';

/**
 * Lines for a terminal (pino-pretty, in this thread): time, level, message, then the fields.
 * The fields are what the JSON line holds, after the same redaction.
 */
function prettyStream(destination: NodeJS.WritableStream | undefined): pino.DestinationStream {
  return pinoPretty({
    destination: destination ?? 1,
    sync: true,
    colorize: destination === undefined && process.stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,service',
  });
}

export function createLogger(level: string, destination?: NodeJS.WritableStream, format: LogFormat = 'json'): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { service: 'countermand' },
      serializers: {
        // An error can quote the URL it is about (Fastify's bad-URL error does, query and all).
        err: (error: Error) => {
          const logged = stdSerializers.err(error);
          logged.message = redactLines(logged.message);
          if (logged.stack) logged.stack = redactLines(logged.stack);
          return logged;
        },
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
    format === 'pretty' ? prettyStream(destination) : (destination as pino.DestinationStream | undefined),
  );
}
