import { Type } from 'typebox';
import { ERRORS } from '../../../domain/errors.js';
import { canonicalIp, FINDBYIP_WINDOW_MS, IP_HISTORY_MS } from '../../../domain/ip.js';
import { READ_MACHINES } from '../../../domain/permissions.js';
import { MACHINE_SET } from '../../../domain/query-sets.js';
import { parseDateTime } from '../../../odata/index.js';
import type { Operation } from '../../operation.js';
import { machineKey } from '../../route-keys.js';
import { collectionContext, machineEntity, machineToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { Machine, collectionOf } from '../../wire-schemas.js';

/**
 * A timestamp may be this far ahead of the server's clock: a client that sends its local time
 * labelled `Z` is ahead by its UTC offset, at most 14 hours (docs/api-decisions.md).
 */
const MAX_AHEAD_MS = 14 * 3_600_000;
const MAX_VALUE = 256;

export interface FindByIpCall {
  ip: string;
  timestamp: number;
}

/**
 * The parameter list of `findbyip(ip='10.1.2.3',timestamp=2024-05-01T10:00:00Z)` (everything
 * after `findbyip`, percent-decoded): names in any case, values quoted (`''` escapes a quote) or
 * bare. Throws InvalidInput naming what is wrong.
 */
export function parseFindByIp(text: string): FindByIpCall {
  const usage = "findbyip takes (ip='<IPv4 or IPv6 address>',timestamp=<ISO 8601 datetime>)";
  if (!text.startsWith('(') || !text.endsWith(')')) throw ERRORS.InvalidInput(`${usage}.`);
  const values = new Map<string, string>();
  let i = 1;
  const end = text.length - 1;
  while (i < end) {
    const eq = text.indexOf('=', i);
    if (eq < 0 || eq >= end) throw ERRORS.InvalidInput(`${usage}: a parameter has no value.`);
    const name = text.slice(i, eq).trim().toLowerCase();
    let value: string;
    let j = eq + 1;
    while (text[j] === ' ') j++;
    if (text[j] === "'") {
      let out = '';
      j++;
      for (;;) {
        if (j >= end) throw ERRORS.InvalidInput(`${usage}: a quoted value is not closed.`);
        if (text[j] === "'") {
          if (text[j + 1] === "'") {
            out += "'";
            j += 2;
            continue;
          }
          j++;
          break;
        }
        out += text[j];
        j++;
      }
      value = out;
      while (text[j] === ' ') j++;
    } else {
      const comma = text.indexOf(',', j);
      const stop = comma < 0 || comma > end ? end : comma;
      value = text.slice(j, stop).trim();
      j = stop;
    }
    if (j < end && text[j] !== ',') throw ERRORS.InvalidInput(`${usage}: unexpected text after the value of '${name}'.`);
    if (name !== 'ip' && name !== 'timestamp') throw ERRORS.InvalidInput(`${usage}: unknown parameter '${name.slice(0, MAX_VALUE)}'.`);
    if (values.has(name)) throw ERRORS.InvalidInput(`${usage}: '${name}' is given twice.`);
    values.set(name, value.slice(0, MAX_VALUE));
    i = j + 1;
  }
  const rawIp = values.get('ip');
  const rawTimestamp = values.get('timestamp');
  if (rawIp === undefined || rawTimestamp === undefined) throw ERRORS.InvalidInput(`${usage}: '${rawIp === undefined ? 'ip' : 'timestamp'}' is missing.`);
  const ip = canonicalIp(rawIp);
  if (ip === null) throw ERRORS.InvalidInput(`Invalid value for 'ip': '${rawIp}' is not an IPv4 or IPv6 address.`);
  const timestamp = parseDateTime(rawTimestamp);
  if (timestamp === undefined) {
    throw ERRORS.InvalidInput(`Invalid value for 'timestamp': '${rawTimestamp}' is not a datetime such as 2024-05-01T10:00:00Z.`);
  }
  return { ip, timestamp };
}

/**
 * GET /api/machines/findbyip(ip='{ip}',timestamp={datetime}) (contract §2 row 20): the machines
 * seen with that internal IP within 15 minutes before or after the timestamp (UTC, as the
 * client labels it), which must be within the last 30 days. The route also receives
 * `/api/machines/findbyip...` paths that are not a call: those are machine names.
 */
export const findMachinesByIp: Operation = {
  name: 'FindMachinesByIp',
  method: 'GET',
  path: '/machines/findbyip*',
  permissions: READ_MACHINES,
  doc: {
    tag: TAGS.machines,
    summary: 'Find machines by internal IP address',
    description:
      'The machines seen with that IP address within 15 minutes before or after the timestamp, which must be within the last 30 days. ' +
      "An OData function call: parameters in the path, the address quoted (`''` escapes a quote), the timestamp bare.",
    path: "/machines/findbyip(ip='{ip}',timestamp={timestamp})",
    params: Type.Object({
      ip: Type.String({ description: 'An IPv4 or IPv6 address.', examples: ['10.1.2.3'] }),
      timestamp: Type.String({ format: 'date-time', description: 'ISO 8601, UTC as the client labels it.', examples: ['2024-05-01T10:00:00Z'] }),
    }),
    response: { status: 200, description: 'The machines seen with it (no paging).', schema: collectionOf('Machines', Machine) },
  },
  async handler(request, ctx) {
    const rest = (request.params as { '*': string })['*'];
    if (!rest.startsWith('(')) {
      // GET /api/machines/{name} for a machine whose name starts with "findbyip".
      if (rest.includes('/')) throw ERRORS.NotFound('No HTTP resource was found that matches the request URI.');
      const machine = await ctx.machines.get(request.caller, machineKey(`findbyip${rest}`));
      return { status: 200, body: machineEntity(ctx.baseUrl(), machine) };
    }
    const { ip, timestamp } = parseFindByIp(rest);
    const now = Date.now();
    if (timestamp < now - IP_HISTORY_MS || timestamp > now + MAX_AHEAD_MS) {
      throw ERRORS.InvalidInput(
        `Invalid value for 'timestamp': ${new Date(timestamp).toISOString()} is not within the last 30 days.`,
      );
    }
    const machines = await ctx.machines.findByIp(request.caller, ip, timestamp - FINDBYIP_WINDOW_MS, timestamp + FINDBYIP_WINDOW_MS, MACHINE_SET.maxTop);
    return {
      status: 200,
      body: { '@odata.context': collectionContext(ctx.baseUrl(), 'Machines'), value: machines.map(machineToWire) },
    };
  },
};
