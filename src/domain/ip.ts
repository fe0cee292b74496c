import { isIP, isIPv4 } from 'node:net';

/**
 * Internal IP addresses as the IP history keeps and findbyip compares them (contract §2 row 20):
 * one canonical spelling per address, so `2001:DB8:0::1` and `2001:db8::1` are the same, and an
 * IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is its IPv4 address.
 */

/** How far before and after the asked timestamp findbyip looks (MDE: 15 minutes). */
export const FINDBYIP_WINDOW_MS = 15 * 60_000;
/** How far back findbyip may ask (MDE: the last 30 days); also how long the history is kept. */
export const IP_HISTORY_MS = 30 * 24 * 3_600_000;
/**
 * Check-ins closer than this with the same address extend one range. Twice the window: a time in
 * a shorter gap is within 15 minutes of one of its ends, so merging changes no answer.
 */
export const IP_RANGE_GAP_MS = 2 * FINDBYIP_WINDOW_MS;
/** Ranges kept per machine (the newest); older ones are dropped when a new one opens. */
export const IP_RANGES_PER_MACHINE = 200;

/** The canonical form of an IPv4 or IPv6 address (zone id dropped), or null when it is not one. */
export function canonicalIp(text: string): string | null {
  if (typeof text !== 'string' || text.length > 64) return null;
  const address = text.replace(/%[^%]*$/, '');
  const family = isIP(address);
  if (family === 4) return address;
  if (family !== 6) return null;
  const canonical = new URL(`http://[${address}]`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    const v4 = `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
    if (isIPv4(v4)) return v4;
  }
  return canonical;
}

/** Loopback and unspecified addresses say nothing about a machine: every machine has them. */
function recordable(ip: string): boolean {
  return !(ip.startsWith('127.') || ip === '0.0.0.0' || ip === '::1' || ip === '::');
}

/**
 * The addresses a check-in reports for the history: its lastIpAddress and the addresses of its
 * interfaces, canonical, without loopback, sorted. Undefined when the check-in says nothing
 * about addresses (the history then neither grows nor ends).
 */
export function reportedAddresses(info: {
  lastIpAddress?: string | undefined;
  ipAddresses?: readonly { ipAddress: string }[] | undefined;
}): string[] | undefined {
  if (info.lastIpAddress === undefined && info.ipAddresses === undefined) return undefined;
  const all = [info.lastIpAddress, ...(info.ipAddresses ?? []).map((a) => a.ipAddress)];
  const set = new Set<string>();
  for (const raw of all) {
    const ip = raw === undefined ? null : canonicalIp(raw);
    if (ip !== null && recordable(ip)) set.add(ip);
  }
  return [...set].sort();
}
