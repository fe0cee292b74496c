import { basename } from 'node:path';
import { failed, HRESULT, type ExecutionOutcome } from '../../executor.js';
import { CommandError, lastLines } from './command.js';
import { AbortedError } from './env.js';

/** Which Debian/Ubuntu package brings a program the executor runs, for "install it" messages. */
const PACKAGES: Record<string, string> = {
  nft: 'nftables',
  clamscan: 'clamav',
  mount: 'mount (util-linux)',
  umount: 'mount (util-linux)',
  bash: 'bash',
  ps: 'procps',
  ss: 'iproute2',
  ip: 'iproute2',
  systemctl: 'systemd',
  journalctl: 'systemd',
  who: 'coreutils',
  last: 'util-linux (Debian 13: wtmpdb)',
  'dpkg-query': 'dpkg',
  rpm: 'rpm',
  'iptables-save': 'iptables',
  df: 'coreutils',
  uname: 'coreutils',
};

export function debianPackageOf(command: string): string | undefined {
  return PACKAGES[basename(command)];
}

/** Thrown to end an action (or a live-response command) with this HRESULT and message. */
export class ActionFailure extends Error {
  constructor(
    readonly errorHResult: number,
    message: string,
  ) {
    super(message);
    this.name = 'ActionFailure';
  }
}

/** Maps anything thrown during an action to an outcome. */
export function outcomeOf(err: unknown): ExecutionOutcome {
  if (err instanceof AbortedError) return failed(HRESULT.aborted, `The action was ${err.message}`);
  if (err instanceof ActionFailure) return failed(err.errorHResult, lastLines(err.message, 1000));
  if (err instanceof CommandError) {
    switch (err.kind) {
      case 'notFound': {
        const pkg = debianPackageOf(err.command);
        return failed(HRESULT.fileNotFound, `${err.command} was not found: install it${pkg ? ` (Debian/Ubuntu package ${pkg})` : ''} or configure its path`);
      }
      case 'aborted':
        return failed(HRESULT.aborted, `The action was cancelled: ${err.message}`);
      case 'timeout':
        return failed(HRESULT.timeout, err.message);
      default:
        return failed(HRESULT.fail, lastLines(err.message, 1000));
    }
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && (e.name === 'AbortError' || e.code === 'ABORT_ERR')) return failed(HRESULT.aborted, 'The action was cancelled');
  if (e && typeof e === 'object' && (e.code === 'EACCES' || e.code === 'EPERM')) return failed(HRESULT.accessDenied, lastLines(String(e.message), 1000));
  return failed(HRESULT.fail, lastLines(String(e?.message ?? err), 1000));
}
