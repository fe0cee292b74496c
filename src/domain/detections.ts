import type { Alert, AlertEvidence, Machine, MachineAction } from './model.js';

/**
 * Alerts from what a machine reports finding (contract §10, docs/api-decisions.md). Nothing
 * else raises an alert: a report's `detail` is read for
 * - RunAntiVirusScan: `findings: [{path, signature, sha1?, sha256?}]` (what the linux executor's
 *   ClamAV scan reports): one alert per signature, its files as evidence, `Detected`;
 * - StopAndQuarantineFile: `sha1` and `files: [{originalPath, killedPids}]` (what the linux
 *   executor's quarantine reports, on success): one alert, the files and the killed processes
 *   as evidence, `Blocked`.
 * The detail comes from an agent: entries that are not well formed are skipped, and counts are
 * bounded.
 */

/** Stable ids of Countermand's two detectors (`detectorId`). */
export const DETECTORS = {
  scan: 'c0a1e7d2-5b3f-4e8a-9d6c-1f2e3a4b5c01',
  quarantine: 'c0a1e7d2-5b3f-4e8a-9d6c-1f2e3a4b5c02',
} as const;

const MAX_ALERTS_PER_REPORT = 50;
const MAX_EVIDENCE_PER_ALERT = 100;
const MAX_PATH = 4096;
const MAX_SIGNATURE = 256;
const SHA1 = /^[0-9a-fA-F]{40}$/;
const SHA256 = /^[0-9a-fA-F]{64}$/;

/** Offset of the Unix epoch in .NET ticks (100 ns since 0001-01-01). */
const EPOCH_TICKS = 621_355_968_000_000_000n;

/**
 * An alert id shaped like MDE's, `da<ticks>_<n>`: `da`, the creation time in .NET ticks (the
 * sub-millisecond digits from `random`), `_`, and a non-negative 31-bit number from `random`.
 */
export function alertId(at: number, random: (below: number) => number): string {
  const ticks = BigInt(Math.trunc(at)) * 10_000n + EPOCH_TICKS + BigInt(random(10_000));
  return `da${ticks}_${random(2 ** 31)}`;
}

/**
 * ClamAV's `Platform.Category.Name-Id-Rev` to `Name` (a `.UNOFFICIAL` mark of a local database
 * dropped); other names as they are, without a numeric suffix.
 */
export function threatFamily(signature: string): string {
  const parts = signature.replace(/\.UNOFFICIAL$/, '').split('.');
  const name = parts.length >= 3 ? parts.slice(2).join('.') : signature;
  return name.replace(/(-\d+)+$/, '') || signature;
}

/** A path split as MDE's evidence has it: the folder in filePath, the name in fileName. */
export function splitPath(path: string): { filePath: string | null; fileName: string } {
  const cut = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  if (cut < 0) return { filePath: null, fileName: path };
  return { filePath: cut === 0 ? path.slice(0, 1) : path.slice(0, cut), fileName: path.slice(cut + 1) };
}

/** The full path of a File evidence, for messages. */
export function evidencePath(e: Pick<AlertEvidence, 'filePath' | 'fileName'>): string {
  if (!e.filePath) return e.fileName ?? '';
  const sep = e.filePath.includes('\\') && !e.filePath.includes('/') ? '\\' : '/';
  return e.filePath.endsWith(sep) ? `${e.filePath}${e.fileName ?? ''}` : `${e.filePath}${sep}${e.fileName ?? ''}`;
}

/** Text the store can keep (no NUL, no lone surrogate) and of a sane length, else null. */
function text(value: unknown, max: number): string | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) return null;
  if (value.includes('\u0000') || !value.isWellFormed()) return null;
  return value;
}

const hash = (value: unknown, pattern: RegExp): string | null =>
  typeof value === 'string' && pattern.test(value) ? value.toLowerCase() : null;

function evidence(entityType: AlertEvidence['entityType'], at: number, fields: Partial<AlertEvidence>): AlertEvidence {
  return {
    entityType,
    evidenceCreationTime: at,
    sha1: null,
    sha256: null,
    fileName: null,
    filePath: null,
    processId: null,
    processCommandLine: null,
    processCreationTime: null,
    parentProcessId: null,
    parentProcessCreationTime: null,
    parentProcessFileName: null,
    parentProcessFilePath: null,
    ipAddress: null,
    url: null,
    registryKey: null,
    registryHive: null,
    registryValueType: null,
    registryValue: null,
    accountName: null,
    domainName: null,
    userSid: null,
    aadUserId: null,
    userPrincipalName: null,
    detectionStatus: null,
    ...fields,
  };
}

export interface ReportedDetection {
  action: MachineAction;
  machine: Pick<Machine, 'computerDnsName' | 'rbacGroupName'> | null;
  status: 'Succeeded' | 'Failed';
  detail: Record<string, unknown> | undefined;
  at: number;
  newId: () => string;
}

/** The alerts a machine's report raises; none for most reports. */
export function alertsFromReport(report: ReportedDetection): Alert[] {
  const { action, detail } = report;
  if (!detail) return [];
  if (action.type === 'RunAntiVirusScan') return scanAlerts(report, detail);
  if (action.type === 'StopAndQuarantineFile' && report.status === 'Succeeded') return quarantineAlerts(report, detail);
  return [];
}

function base(report: ReportedDetection): Omit<Alert, 'id' | 'severity' | 'detectorId' | 'threatFamilyName' | 'threatName' | 'title' | 'description' | 'evidence'> {
  const { action, machine, at } = report;
  return {
    tenantId: action.tenantId,
    incidentId: null,
    investigationId: null,
    assignedTo: null,
    status: 'New',
    classification: null,
    determination: null,
    investigationState: null,
    detectionSource: 'Antivirus',
    category: 'Malware',
    alertCreationTime: at,
    firstEventTime: at,
    lastEventTime: at,
    lastUpdateTime: at,
    resolvedTime: null,
    machineId: action.machineId,
    computerDnsName: machine?.computerDnsName ?? action.computerDnsName,
    rbacGroupName: machine?.rbacGroupName ?? null,
    mitreTechniques: [],
    relatedUser: null,
    comments: [],
    actionId: action.id,
  };
}

function scanAlerts(report: ReportedDetection, detail: Record<string, unknown>): Alert[] {
  const findings = Array.isArray(detail.findings) ? detail.findings : [];
  const bySignature = new Map<string, AlertEvidence[]>();
  for (const f of findings.slice(0, MAX_ALERTS_PER_REPORT * MAX_EVIDENCE_PER_ALERT)) {
    if (typeof f !== 'object' || f === null) continue;
    const finding = f as Record<string, unknown>;
    const path = text(finding.path, MAX_PATH);
    const signature = text(finding.signature, MAX_SIGNATURE);
    if (!path || !signature) continue;
    let files = bySignature.get(signature);
    if (!files) {
      if (bySignature.size >= MAX_ALERTS_PER_REPORT) continue;
      files = [];
      bySignature.set(signature, files);
    }
    if (files.length >= MAX_EVIDENCE_PER_ALERT) continue;
    files.push(
      evidence('File', report.at, {
        ...splitPath(path),
        sha1: hash(finding.sha1, SHA1),
        sha256: hash(finding.sha256, SHA256),
        detectionStatus: 'Detected',
      }),
    );
  }
  const { action } = report;
  const where = report.machine?.computerDnsName ?? action.computerDnsName ?? action.machineId;
  return [...bySignature].map(([signature, files]) => ({
    ...base(report),
    id: report.newId(),
    severity: 'Medium' as const,
    detectorId: DETECTORS.scan,
    threatFamilyName: threatFamily(signature),
    threatName: signature,
    title: `'${signature}' malware was detected`,
    description: truncate(
      `${action.scope ? `A ${action.scope}` : 'An'} antivirus scan (action ${action.id}, requested by ${action.requestor}) found ${files.length} file${files.length === 1 ? '' : 's'} with '${signature}' on ${where}: ${files.slice(0, 5).map(evidencePath).join(', ')}${files.length > 5 ? ', ...' : ''}. The files were left in place.`,
    ),
    evidence: files,
  }));
}

function quarantineAlerts(report: ReportedDetection, detail: Record<string, unknown>): Alert[] {
  const sha1 = hash(detail.sha1, SHA1) ?? report.action.relatedFileInfo?.fileIdentifier ?? null;
  const entries = Array.isArray(detail.files) ? detail.files : [];
  const files: AlertEvidence[] = [];
  const processes: AlertEvidence[] = [];
  for (const f of entries.slice(0, MAX_EVIDENCE_PER_ALERT)) {
    if (typeof f !== 'object' || f === null) continue;
    const entry = f as Record<string, unknown>;
    const path = text(entry.originalPath, MAX_PATH);
    if (!path) continue;
    const where = splitPath(path);
    files.push(evidence('File', report.at, { ...where, sha1, detectionStatus: 'Blocked' }));
    const pids = Array.isArray(entry.killedPids) ? entry.killedPids : [];
    for (const pid of pids.slice(0, MAX_EVIDENCE_PER_ALERT)) {
      if (!Number.isSafeInteger(pid) || (pid as number) <= 0 || processes.length >= MAX_EVIDENCE_PER_ALERT) continue;
      processes.push(evidence('Process', report.at, { ...where, sha1, processId: pid as number, detectionStatus: 'Blocked' }));
    }
  }
  if (files.length === 0) return [];
  const { action } = report;
  const name = files[0]!.fileName ?? sha1 ?? 'file';
  const where = report.machine?.computerDnsName ?? action.computerDnsName ?? action.machineId;
  return [
    {
      ...base(report),
      id: report.newId(),
      severity: 'Low',
      detectorId: DETECTORS.quarantine,
      threatFamilyName: null,
      threatName: null,
      title: `'${name}' was stopped and quarantined`,
      description: truncate(
        `Stop and quarantine (action ${action.id}, requested by ${action.requestor}) quarantined ${files.length} file${files.length === 1 ? '' : 's'} with SHA-1 ${sha1 ?? 'unknown'} on ${where} and stopped ${processes.length} process${processes.length === 1 ? '' : 'es'}: ${files.slice(0, 5).map(evidencePath).join(', ')}${files.length > 5 ? ', ...' : ''}.`,
      ),
      evidence: [...files, ...processes],
    },
  ];
}

function truncate(s: string): string {
  return s.length > 4000 ? `${s.slice(0, 3997)}...` : s;
}
