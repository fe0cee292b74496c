import { isIPv4, isIPv6 } from 'node:net';

/**
 * Whether a host names this machine's loopback: `localhost`, 127.0.0.0/8 or ::1 (also as an
 * IPv4-mapped IPv6 address). Decided on the name as given, before any lookup: a name that merely
 * resolves to loopback today does not count.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (!isIPv6(h)) return false;
  if (/^(0{0,4}:){2,7}0{0,3}1$|^::1$/.test(h)) return true;
  // ::ffff:127.x.y.z, which URL parsing writes as ::ffff:7fxx:xxxx.
  const mapped = /^(?:0{0,4}:){0,5}:?ffff:(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):[0-9a-f]{1,4})$/.exec(h);
  if (!mapped) return false;
  if (mapped[1]) return mapped[1].startsWith('127.');
  return parseInt(mapped[2]!, 16) >> 8 === 127;
}

/**
 * The agent's rule for its server URL: http only to loopback, unless the operator accepts that
 * the enrollment token and the agent credential travel in clear. Returns a warning to show when
 * it was accepted that way; throws with the reason when it is refused.
 */
export function checkServerUrl(serverUrl: string, insecureHttp: boolean): string | null {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new Error(`the server URL ${serverUrl} is not a URL (e.g. https://countermand.example:8443)`);
  }
  if (url.protocol === 'https:') return null;
  if (url.protocol !== 'http:') throw new Error(`the server URL ${serverUrl} must be https:// (or http:// to a loopback address)`);
  if (isLoopbackHost(url.hostname)) return null;
  const risk = 'the enrollment token and the agent credential would travel in clear';
  if (!insecureHttp) {
    throw new Error(`refusing plain HTTP to ${url.host}, which is not a loopback address: ${risk}. Use https:// (with --ca), or pass --insecure-http to accept that risk`);
  }
  return `plain HTTP to ${url.host} (--insecure-http): ${risk.replace('would travel', 'travel')}`;
}
