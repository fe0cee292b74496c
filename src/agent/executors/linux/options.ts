import { isIP } from 'node:net';
import { isAbsolute, normalize } from 'node:path';

/** How the Linux executor is configured. Every field has a default; see docs/linux-executor.md. */
export interface LinuxExecutorOptions {
  /**
   * IPv4/IPv6 addresses of the Countermand server. Always reachable while the machine is
   * isolated, so the agent can still be told to unisolate. Isolate refuses to run when empty.
   * Default: [].
   */
  serverAddresses?: string[];
  /** When set, isolation lets through only this TCP/UDP port of the server addresses. Default: any port. */
  serverPort?: number;
  /** Extra addresses or CIDRs reachable under `IsolationType: Selective` (not Full/UnManagedDevice). Default: []. */
  selectiveAllowList?: string[];
  /**
   * Let DHCP (v4 and v6) through while isolated so the machine keeps its address (and with it the
   * path to the server). Default: true.
   */
  allowDhcp?: boolean;
  /** Name of the executor's own nftables table (family inet). Default: `countermand`. */
  nftTable?: string;
  /** The nft program. Default: `nft` (looked up on PATH). */
  nftPath?: string;
  /** Directories made non-executable by RestrictCodeExecution. Default: /tmp, /var/tmp, /dev/shm, /home. */
  restrictPaths?: string[];
  /** The mount/umount programs (util-linux). Default: `mount`, `umount`. */
  mountPath?: string;
  umountPath?: string;
  /** What a Quick scan covers. Default: /tmp, /var/tmp, /dev/shm, /home, /root. */
  quickScanPaths?: string[];
  /** What a Full scan covers; /proc, /sys, /dev, /run and the quarantine directory are excluded. Default: `/`. */
  fullScanRoot?: string;
  /** Further directories a Full scan skips. Default: []. */
  fullScanExcludes?: string[];
  /** The clamscan program. Default: `clamscan` (looked up on PATH). */
  clamscanPath?: string;
  /** A signature database directory or file for clamscan (`-d`). Default: clamscan's own. */
  clamDatabaseDir?: string;
  /** Quarantined files live in `<quarantineDir>/<sha1>/<n>` with `<n>.json` beside them. Default: /var/lib/countermand/quarantine. */
  quarantineDir?: string;
  /** What undoing isolation and restriction needs. Default: /var/lib/countermand/state. */
  stateDir?: string;
  /** Every real action appends JSON lines here. Default: /var/log/countermand/actions.log. */
  logFile?: string;
  /** Time limit of each nft/mount/umount run. Default: 30 s. */
  commandTimeoutMs?: number;
  /** Time limit of a Quick scan. Default: 1 h. */
  quickScanTimeoutMs?: number;
  /** Time limit of a Full scan. Default: 23 h (the server's deadline for scans is 24 h). */
  fullScanTimeoutMs?: number;
  /** At most this many findings are kept in the outcome (the total is always counted). Default: 1000. */
  maxFindings?: number;
  /**
   * LiveResponse RunScript: the script (with everything it started) is killed after this long.
   * Default: what the server sends with the action (its liveResponseScriptTimeoutSeconds), else 10 min.
   */
  scriptTimeoutMs?: number;
  /** LiveResponse RunScript: at most this many bytes of stdout and of stderr are kept. Default: 1 MiB each. */
  scriptOutputMaxBytes?: number;
  /** LiveResponse RunScript: what runs a script that has no `#!` line. Default: /bin/bash. */
  scriptInterpreter?: string;
  /** LiveResponse GetFile: only files under these directories (symlinks resolved) can be fetched. Default: [`/`]. */
  getFileAllowedRoots?: string[];
  /** LiveResponse GetFile: never files under these, on top of /proc, /sys and /dev. Default: []. */
  getFileDeniedPaths?: string[];
  /** LiveResponse GetFile: larger files are refused. Default: 100 MiB. */
  getFileMaxBytes?: number;
  /** CollectInvestigationPackage: time limit of each program it runs (ps, ss, systemctl, ...). Default: 30 s. */
  packageCommandTimeoutMs?: number;
  /** CollectInvestigationPackage: at most this many bytes of each item (logs keep their end). Default: 16 MiB. */
  packageItemMaxBytes?: number;
  /** CollectInvestigationPackage: at most this many bytes in all (before compression). Default: 256 MiB. */
  packageMaxBytes?: number;
  /** CollectInvestigationPackage: items not collected by then are recorded as skipped. Default: 15 min. */
  packageTimeoutMs?: number;
}

export interface ResolvedOptions {
  serverAddresses: string[];
  serverPort: number | null;
  selectiveAllowList: string[];
  allowDhcp: boolean;
  nftTable: string;
  nftPath: string;
  restrictPaths: string[];
  mountPath: string;
  umountPath: string;
  quickScanPaths: string[];
  fullScanRoot: string;
  fullScanExcludes: string[];
  clamscanPath: string;
  clamDatabaseDir: string | null;
  quarantineDir: string;
  stateDir: string;
  logFile: string;
  commandTimeoutMs: number;
  quickScanTimeoutMs: number;
  fullScanTimeoutMs: number;
  maxFindings: number;
  /** null: the server's value (or 10 minutes), see scriptTimeoutOf. */
  scriptTimeoutMs: number | null;
  scriptOutputMaxBytes: number;
  scriptInterpreter: string;
  getFileAllowedRoots: string[];
  getFileDeniedPaths: string[];
  getFileMaxBytes: number;
  packageCommandTimeoutMs: number;
  packageItemMaxBytes: number;
  packageMaxBytes: number;
  packageTimeoutMs: number;
}

export const DEFAULTS = {
  nftTable: 'countermand',
  restrictPaths: ['/tmp', '/var/tmp', '/dev/shm', '/home'],
  quickScanPaths: ['/tmp', '/var/tmp', '/dev/shm', '/home', '/root'],
  fullScanRoot: '/',
  fullScanSystemExcludes: ['/proc', '/sys', '/dev', '/run'],
  quarantineDir: '/var/lib/countermand/quarantine',
  stateDir: '/var/lib/countermand/state',
  logFile: '/var/log/countermand/actions.log',
  commandTimeoutMs: 30_000,
  quickScanTimeoutMs: 60 * 60_000,
  fullScanTimeoutMs: 23 * 60 * 60_000,
  maxFindings: 1000,
  scriptOutputMaxBytes: 1024 * 1024,
  scriptInterpreter: '/bin/bash',
  getFileAllowedRoots: ['/'],
  /** Pseudo-files (sizes that lie, reads with side effects or no end, other processes' memory and environment). */
  getFileAlwaysDenied: ['/proc', '/sys', '/dev'],
  getFileMaxBytes: 100 * 1024 * 1024,
  packageCommandTimeoutMs: 30_000,
  packageItemMaxBytes: 16 * 1024 * 1024,
  packageMaxBytes: 256 * 1024 * 1024,
  packageTimeoutMs: 15 * 60_000,
} as const;

/** An address or CIDR, checked so it can be written into an nft script as is. */
export interface Prefix {
  family: 4 | 6;
  /** `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::y/n` */
  text: string;
}

export function parsePrefix(value: string, what: string): Prefix {
  const trimmed = value.trim();
  const slash = trimmed.indexOf('/');
  const address = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const family = isIP(address);
  if (family !== 4 && family !== 6) throw new Error(`${what}: ${JSON.stringify(value)} is not an IPv4/IPv6 address or CIDR`);
  if (slash >= 0) {
    const bits = trimmed.slice(slash + 1);
    const max = family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) throw new Error(`${what}: ${JSON.stringify(value)} has an invalid prefix length`);
  }
  // isIP accepts IPv6 zone ids ("fe80::1%eth0"); nft does not.
  if (address.includes('%')) throw new Error(`${what}: ${JSON.stringify(value)}: zone ids are not supported`);
  return { family, text: trimmed };
}

function absolutePaths(values: string[], what: string): string[] {
  return values.map((p) => {
    if (typeof p !== 'string' || !isAbsolute(p) || p.includes('\0')) throw new Error(`${what}: ${JSON.stringify(p)} is not an absolute path`);
    const n = normalize(p);
    return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
  });
}

function absolutePath(value: string, what: string): string {
  return absolutePaths([value], what)[0]!;
}

function positive(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${what} must be a positive number`);
  return value;
}

/** Fills in defaults and rejects invalid options (the constructor throws; execute() never does). */
export function resolveOptions(options: LinuxExecutorOptions = {}): ResolvedOptions {
  const serverAddresses = (options.serverAddresses ?? []).map((a) => {
    const p = parsePrefix(a, 'serverAddresses');
    if (p.text.includes('/')) throw new Error(`serverAddresses: ${JSON.stringify(a)}: give single addresses, not CIDRs`);
    return p.text;
  });
  const selectiveAllowList = (options.selectiveAllowList ?? []).map((a) => parsePrefix(a, 'selectiveAllowList').text);
  if (options.serverPort !== undefined && (!Number.isInteger(options.serverPort) || options.serverPort < 1 || options.serverPort > 65535)) {
    throw new Error('serverPort must be an integer from 1 to 65535');
  }
  const nftTable = options.nftTable ?? DEFAULTS.nftTable;
  if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(nftTable)) throw new Error('nftTable must be a letter followed by up to 31 letters, digits or underscores');
  const restrictPaths = absolutePaths(options.restrictPaths ?? [...DEFAULTS.restrictPaths], 'restrictPaths');
  if (restrictPaths.includes('/')) throw new Error('restrictPaths: refusing to make / non-executable');
  const getFileAllowedRoots = absolutePaths(options.getFileAllowedRoots ?? [...DEFAULTS.getFileAllowedRoots], 'getFileAllowedRoots');
  if (getFileAllowedRoots.length === 0) throw new Error('getFileAllowedRoots: give at least one directory');
  return {
    serverAddresses,
    serverPort: options.serverPort ?? null,
    selectiveAllowList,
    allowDhcp: options.allowDhcp ?? true,
    nftTable,
    nftPath: options.nftPath ?? 'nft',
    restrictPaths,
    mountPath: options.mountPath ?? 'mount',
    umountPath: options.umountPath ?? 'umount',
    quickScanPaths: absolutePaths(options.quickScanPaths ?? [...DEFAULTS.quickScanPaths], 'quickScanPaths'),
    fullScanRoot: absolutePath(options.fullScanRoot ?? DEFAULTS.fullScanRoot, 'fullScanRoot'),
    fullScanExcludes: absolutePaths(options.fullScanExcludes ?? [], 'fullScanExcludes'),
    clamscanPath: options.clamscanPath ?? 'clamscan',
    clamDatabaseDir: options.clamDatabaseDir ?? null,
    quarantineDir: absolutePath(options.quarantineDir ?? DEFAULTS.quarantineDir, 'quarantineDir'),
    stateDir: absolutePath(options.stateDir ?? DEFAULTS.stateDir, 'stateDir'),
    logFile: absolutePath(options.logFile ?? DEFAULTS.logFile, 'logFile'),
    commandTimeoutMs: positive(options.commandTimeoutMs, DEFAULTS.commandTimeoutMs, 'commandTimeoutMs'),
    quickScanTimeoutMs: positive(options.quickScanTimeoutMs, DEFAULTS.quickScanTimeoutMs, 'quickScanTimeoutMs'),
    fullScanTimeoutMs: positive(options.fullScanTimeoutMs, DEFAULTS.fullScanTimeoutMs, 'fullScanTimeoutMs'),
    maxFindings: Math.floor(positive(options.maxFindings, DEFAULTS.maxFindings, 'maxFindings')),
    scriptTimeoutMs: options.scriptTimeoutMs === undefined ? null : positive(options.scriptTimeoutMs, 0, 'scriptTimeoutMs'),
    scriptOutputMaxBytes: Math.floor(positive(options.scriptOutputMaxBytes, DEFAULTS.scriptOutputMaxBytes, 'scriptOutputMaxBytes')),
    scriptInterpreter: absolutePath(options.scriptInterpreter ?? DEFAULTS.scriptInterpreter, 'scriptInterpreter'),
    getFileAllowedRoots,
    getFileDeniedPaths: absolutePaths([...DEFAULTS.getFileAlwaysDenied, ...(options.getFileDeniedPaths ?? [])], 'getFileDeniedPaths'),
    getFileMaxBytes: Math.floor(positive(options.getFileMaxBytes, DEFAULTS.getFileMaxBytes, 'getFileMaxBytes')),
    packageCommandTimeoutMs: positive(options.packageCommandTimeoutMs, DEFAULTS.packageCommandTimeoutMs, 'packageCommandTimeoutMs'),
    packageItemMaxBytes: Math.floor(positive(options.packageItemMaxBytes, DEFAULTS.packageItemMaxBytes, 'packageItemMaxBytes')),
    packageMaxBytes: Math.floor(positive(options.packageMaxBytes, DEFAULTS.packageMaxBytes, 'packageMaxBytes')),
    packageTimeoutMs: positive(options.packageTimeoutMs, DEFAULTS.packageTimeoutMs, 'packageTimeoutMs'),
  };
}
