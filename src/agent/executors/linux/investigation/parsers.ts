import { endianness } from 'node:os';

/** Parsers for what the kernel and glibc write: /proc/net sockets, utmp/wtmp records, /etc/passwd. */

// ---------------------------------------------------------------------------------------------
// /proc/net/{tcp,tcp6,udp,udp6}

export const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN-SENT',
  '03': 'SYN-RECV',
  '04': 'FIN-WAIT-1',
  '05': 'FIN-WAIT-2',
  '06': 'TIME-WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE-WAIT',
  '09': 'LAST-ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
  '0C': 'NEW-SYN-RECV',
};

export interface NetSocket {
  protocol: 'tcp' | 'tcp6' | 'udp' | 'udp6';
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** ss's names: LISTEN, ESTABLISHED, ...; UDP: UNCONN (not connected) or ESTABLISHED. */
  state: string;
  uid: number;
  inode: number;
}

/** The kernel prints each 32-bit word of an address as a host-order number. */
function wordBytes(hex: string): number[] {
  const bytes = [0, 2, 4, 6].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return endianness() === 'LE' ? bytes.reverse() : bytes;
}

export function decodeAddress(hex: string): string {
  if (hex.length === 8) return wordBytes(hex).join('.');
  if (hex.length === 32) {
    const bytes: number[] = [];
    for (let w = 0; w < 4; w++) bytes.push(...wordBytes(hex.slice(w * 8, w * 8 + 8)));
    if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
    return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1); // the canonical, compressed form
  }
  return hex;
}

export function parseProcNet(protocol: NetSocket['protocol'], text: string): NetSocket[] {
  const sockets: NetSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [localAddr, localPort] = f[1]!.split(':');
    const [remoteAddr, remotePort] = f[2]!.split(':');
    if (!localAddr || !localPort || !remoteAddr || !remotePort) continue;
    const st = f[3]!.toUpperCase();
    const udp = protocol.startsWith('udp');
    sockets.push({
      protocol,
      localAddress: decodeAddress(localAddr),
      localPort: parseInt(localPort, 16),
      remoteAddress: decodeAddress(remoteAddr),
      remotePort: parseInt(remotePort, 16),
      state: udp ? (st === '01' ? 'ESTABLISHED' : 'UNCONN') : (TCP_STATES[st] ?? st),
      uid: Number(f[7]),
      inode: Number(f[9]),
    });
  }
  return sockets;
}

// ---------------------------------------------------------------------------------------------
// utmp / wtmp (glibc's struct utmp: 384 bytes on every Linux architecture glibc supports)

export const UTMP_RECORD_SIZE = 384;
const UTMP_TYPES = ['EMPTY', 'RUN_LVL', 'BOOT_TIME', 'NEW_TIME', 'OLD_TIME', 'INIT_PROCESS', 'LOGIN_PROCESS', 'USER_PROCESS', 'DEAD_PROCESS', 'ACCOUNTING'];

export interface UtmpRecord {
  type: string;
  pid: number;
  /** Terminal, e.g. pts/0. */
  line: string;
  id: string;
  user: string;
  host: string;
  session: number;
  time: string;
  address: string | null;
}

function cString(buf: Buffer, start: number, length: number): string {
  const part = buf.subarray(start, start + length);
  const nul = part.indexOf(0);
  return (nul < 0 ? part : part.subarray(0, nul)).toString('utf8');
}

export function parseUtmp(buf: Buffer): UtmpRecord[] {
  const le = endianness() === 'LE';
  const i16 = (o: number) => (le ? buf.readInt16LE(o) : buf.readInt16BE(o));
  const i32 = (o: number) => (le ? buf.readInt32LE(o) : buf.readInt32BE(o));
  const records: UtmpRecord[] = [];
  for (let o = 0; o + UTMP_RECORD_SIZE <= buf.length; o += UTMP_RECORD_SIZE) {
    const type = i16(o);
    const addr = buf.subarray(o + 348, o + 364);
    let address: string | null = null;
    if (addr.some((b) => b !== 0)) {
      address = addr.subarray(4).every((b) => b === 0)
        ? [...addr.subarray(0, 4)].join('.')
        : new URL(`http://[${[0, 2, 4, 6, 8, 10, 12, 14].map((i) => addr.readUInt16BE(i).toString(16)).join(':')}]/`).hostname.slice(1, -1);
    }
    records.push({
      type: UTMP_TYPES[type] ?? String(type),
      pid: i32(o + 4),
      line: cString(buf, o + 8, 32),
      id: cString(buf, o + 40, 4),
      user: cString(buf, o + 44, 32),
      host: cString(buf, o + 76, 256),
      session: i32(o + 336),
      time: new Date(i32(o + 340) * 1000 + Math.floor(i32(o + 344) / 1000)).toISOString(),
      address,
    });
  }
  return records;
}

// ---------------------------------------------------------------------------------------------
// /etc/passwd

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 7 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    entries.push({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! });
  }
  return entries;
}

/** Accounts that can log in (a real shell) or matter anyway (root): whose home files are autoruns. */
export function interactiveAccounts(entries: PasswdEntry[]): PasswdEntry[] {
  return entries.filter((e) => e.uid === 0 || !/(nologin|\/false|\/sync|\/shutdown|\/halt)$/.test(e.shell));
}

// ---------------------------------------------------------------------------------------------
// systemd unit files (just enough to list timers)

/** `Key=Value` lines of one `[Section]` of a unit file. */
export function unitSection(text: string, section: string): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    (result[key] ??= []).push(line.slice(eq + 1).trim());
  }
  return result;
}
