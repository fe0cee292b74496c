import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { failed, HRESULT, succeeded, type ExecutionOutcome } from '../../executor.js';
import { lastLines, runCommand } from './command.js';
import type { ActionEnv } from './env.js';
import { DEFAULTS } from './options.js';

/**
 * RunAntiVirusScan with ClamAV's clamscan. Like MDE's scan action, the action succeeds whether
 * or not it finds something; what it found is in `detail.findings` and troubleshootInfo.
 * clamscan exit codes: 0 clean, 1 something found, 2 an error (then the action fails, and any
 * findings printed before the error are still reported in `detail`).
 */

export interface Finding {
  path: string;
  signature: string;
  /** Of the file's content, when it could be read (the server's alert evidence carries them). */
  sha1?: string;
  sha256?: string;
}

/** Findings whose files are hashed, and the largest file hashed: bounded work after a scan. */
const HASHED_FINDINGS = 100;
const MAX_HASHED_BYTES = 256 * 1024 * 1024;

/** SHA-1 and SHA-256 of a regular file in one read, or null (gone, unreadable, too large). */
async function hashFile(path: string, signal: AbortSignal): Promise<{ sha1: string; sha256: string } | null> {
  try {
    const stats = await lstat(path);
    if (!stats.isFile() || stats.size > MAX_HASHED_BYTES) return null;
    const sha1 = createHash('sha1');
    const sha256 = createHash('sha256');
    for await (const chunk of createReadStream(path, { signal })) {
      sha1.update(chunk as Buffer);
      sha256.update(chunk as Buffer);
    }
    return { sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
  } catch {
    return null;
  }
}

const FOUND = /^(.*): (\S+) FOUND$/;

/** One clamscan output line, or null when it is not a finding. */
export function parseFinding(line: string): Finding | null {
  const m = FOUND.exec(line.replace(/\r$/, ''));
  return m ? { path: m[1]!, signature: m[2]! } : null;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** clamscan's --exclude-dir takes a regular expression matched against the full directory path. */
export function excludeDirArgument(dir: string): string {
  return `--exclude-dir=^${escapeRegex(dir)}(/|$)`;
}

/** The clamscan command line (findings go to stdout, errors and warnings to stderr). */
export function clamscanArguments(env: Pick<ActionEnv, 'options'>, scanType: 'Quick' | 'Full', targets: string[]): string[] {
  const { options } = env;
  const args = ['--infected', '--recursive', '--no-summary'];
  if (options.clamDatabaseDir) args.push('-d', options.clamDatabaseDir);
  if (scanType === 'Full') {
    const excludes = [...DEFAULTS.fullScanSystemExcludes, options.quarantineDir, ...options.fullScanExcludes];
    for (const dir of excludes) args.push(excludeDirArgument(dir));
  } else {
    // Never report (or re-read) what is already in quarantine.
    args.push(excludeDirArgument(options.quarantineDir));
  }
  args.push('--', ...targets);
  return args;
}

export function summarize(findings: Finding[], total: number): string | null {
  if (total === 0) return null;
  const shown = findings
    .slice(0, 3)
    .map((f) => `${f.path}: ${f.signature}`)
    .join('; ');
  const more = total > 3 ? `; and ${total - 3} more` : '';
  return `${total} threat${total === 1 ? '' : 's'} found: ${shown}${more}`;
}

export async function runAntiVirusScan(env: ActionEnv): Promise<ExecutionOutcome> {
  const { options, context } = env;
  const scope = context.action.scope;
  if (scope !== 'Quick' && scope !== 'Full') {
    return failed(HRESULT.fail, `Unsupported scan type ${JSON.stringify(scope)}: expected Quick or Full`);
  }
  const configured = scope === 'Full' ? [options.fullScanRoot] : options.quickScanPaths;
  // clamscan fails (exit 2) on a path that does not exist; default paths like /home may not.
  const targets: string[] = [];
  const missing: string[] = [];
  for (const path of configured) {
    try {
      await lstat(path);
      targets.push(path);
    } catch {
      missing.push(path);
    }
  }
  if (missing.length > 0) await env.note('scan.skipped', { paths: missing, reason: 'does not exist' });
  if (targets.length === 0) {
    await env.note('scan.end', { scanType: scope, findingsTotal: 0, note: 'nothing to scan' });
    return succeeded({ scanType: scope, paths: [], skippedPaths: missing, findings: [], findingsTotal: 0 });
  }
  const args = clamscanArguments(env, scope, targets);
  const findings: Finding[] = [];
  let total = 0;
  await env.note('scan.start', { scanType: scope, command: [options.clamscanPath, ...args] });
  const started = Date.now();
  // Errors here (not installed, timeout, cancelled) are mapped by the executor.
  const result = await runCommand(options.clamscanPath, args, {
    timeoutMs: scope === 'Full' ? options.fullScanTimeoutMs : options.quickScanTimeoutMs,
    signal: context.signal,
    maxOutputBytes: 64 * 1024,
    onStdoutLine: (line) => {
      const f = parseFinding(line);
      if (!f) return;
      total += 1;
      if (findings.length < options.maxFindings) findings.push(f);
    },
  });
  const durationMs = Date.now() - started;
  for (const f of findings.slice(0, HASHED_FINDINGS)) {
    if (context.signal.aborted) break;
    const hashes = await hashFile(f.path, context.signal);
    if (hashes) Object.assign(f, hashes);
  }
  const detail = {
    scanType: scope,
    paths: targets,
    ...(missing.length ? { skippedPaths: missing } : {}),
    findings,
    findingsTotal: total,
    ...(total > findings.length ? { findingsTruncated: true } : {}),
    exitCode: result.code,
    durationMs,
  };
  await env.note('scan.end', { scanType: scope, exitCode: result.code, findingsTotal: total, findings: findings.slice(0, 100), durationMs });
  if (result.code === 0 || (result.code === 1 && total > 0)) {
    const outcome = succeeded(detail);
    return { ...outcome, troubleshootInfo: summarize(findings, total) };
  }
  const why = lastLines(result.stderr) || lastLines(result.stdout.split('\n').filter((l) => !FOUND.test(l)).join('\n')) || 'no error output';
  const how = result.code === null ? `was killed by ${result.signal}` : `exited with ${result.code}`;
  const found = total > 0 ? ` (${summarize(findings, total)})` : '';
  return failed(HRESULT.fail, `clamscan ${how}: ${why}${found}`, detail);
}
