import { describe, expect, it } from 'vitest';
import { alertId, alertsFromReport, splitPath, threatFamily, type ReportedDetection } from '../../src/domain/detections.js';
import { investigationProgress } from '../../src/domain/investigations.js';
import { canonicalIp, reportedAddresses } from '../../src/domain/ip.js';
import type { AlertEvidence, MachineAction } from '../../src/domain/model.js';
import { ALERT_SET, INVESTIGATION_SET, MACHINE_ACTION_SET, MACHINE_SET } from '../../src/domain/query-sets.js';
import { defineEntitySet, parseQueryOptions } from '../../src/odata/index.js';

/** The pure rules behind findbyip, alerts and investigations. */

const action = (overrides: Partial<MachineAction> = {}): MachineAction => ({
  id: '5cbc1982-f7e2-47c2-a34e-9ea33a112ee4',
  tenantId: 't',
  type: 'RunAntiVirusScan',
  title: null,
  requestor: 'App',
  requestorId: 'a',
  requestorComment: 'c',
  status: 'Succeeded',
  machineId: 'm'.repeat(40),
  computerDnsName: 'web-01.local',
  creationDateTimeUtc: 1,
  lastUpdateDateTimeUtc: 99,
  cancellationRequestor: null,
  cancellationComment: null,
  cancellationDateTimeUtc: null,
  errorHResult: 0,
  scope: 'Quick',
  externalId: null,
  requestSource: 'PublicApi',
  relatedFileInfo: null,
  commands: [],
  troubleshootInfo: null,
  conflictKey: 'RunAntiVirusScan',
  startedAt: 2,
  ...overrides,
});

let n = 0;
const report = (detail: Record<string, unknown> | undefined, overrides: Partial<ReportedDetection> = {}): ReportedDetection => ({
  action: action(),
  machine: { computerDnsName: 'web-01.local', rbacGroupName: 'Servers' },
  status: 'Succeeded',
  detail,
  at: 1_700_000_000_000,
  newId: () => `id-${n++}`,
  ...overrides,
});

describe('IP addresses', () => {
  it('one canonical spelling per address; anything else is not an address', () => {
    expect(canonicalIp('10.1.2.3')).toBe('10.1.2.3');
    expect(canonicalIp('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalIp('fe80::1%eth0')).toBe('fe80::1');
    expect(canonicalIp('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(canonicalIp('::FFFF:a01:203')).toBe('10.1.2.3');
    for (const bad of ['010.1.2.3', '10.1.2', '10.1.2.256', ' 10.1.2.3', 'host.local', '', '1'.repeat(100), '::g']) expect(canonicalIp(bad), bad).toBeNull();
  });

  it('a check-in reports its lastIpAddress and interfaces, without loopback, sorted; or nothing', () => {
    expect(reportedAddresses({})).toBeUndefined();
    expect(reportedAddresses({ agentVersion: '1' } as never)).toBeUndefined();
    expect(
      reportedAddresses({
        lastIpAddress: '10.0.0.9',
        ipAddresses: [{ ipAddress: '127.0.0.1' }, { ipAddress: '::1' }, { ipAddress: '10.0.0.9' }, { ipAddress: '2001:DB8::5' }, { ipAddress: 'junk' }, { ipAddress: '0.0.0.0' }],
      }),
    ).toEqual(['10.0.0.9', '2001:db8::5']);
    expect(reportedAddresses({ lastIpAddress: '127.0.0.1' })).toEqual([]);
  });
});

describe('alerts from reports', () => {
  it('ids are shaped like MDE\'s: da, the creation time in .NET ticks, _, a number', () => {
    const id = alertId(Date.UTC(2021, 0, 26, 20, 33, 57, 722), (below) => below - 1);
    expect(id).toBe('da637472900377229999_2147483647');
    expect(alertId(0, () => 0)).toBe('da621355968000000000_0');
  });

  it('threat families from ClamAV names', () => {
    expect(threatFamily('Win.Test.EICAR_HDB-1')).toBe('EICAR_HDB');
    expect(threatFamily('Unix.Trojan.Mirai-7100807-0')).toBe('Mirai');
    expect(threatFamily('Countermand.Test.EICAR.UNOFFICIAL')).toBe('EICAR');
    expect(threatFamily('Eicar-Signature')).toBe('Eicar-Signature');
    expect(threatFamily('Heuristics.Broken.Executable')).toBe('Executable');
  });

  it('paths split as MDE evidence has them', () => {
    expect(splitPath('/tmp/x/eicar.com')).toEqual({ filePath: '/tmp/x', fileName: 'eicar.com' });
    expect(splitPath('/eicar.com')).toEqual({ filePath: '/', fileName: 'eicar.com' });
    expect(splitPath('C:\\temp\\suspicious.dll')).toEqual({ filePath: 'C:\\temp', fileName: 'suspicious.dll' });
    expect(splitPath('eicar.com')).toEqual({ filePath: null, fileName: 'eicar.com' });
  });

  it('a scan: one alert per signature, malformed findings skipped, bounded', () => {
    const alerts = alertsFromReport(
      report({
        findings: [
          { path: '/a/1', signature: 'S1', sha1: 'A'.repeat(40), sha256: 'not-a-hash' },
          { path: '/a/2', signature: 'S2' },
          { path: '/a/3', signature: 'S1' },
          { path: 42, signature: 'S3' },
          { path: '/a/\ud800', signature: 'S3' },
          { path: '/a/4', signature: '' },
          null,
        ],
      }),
    );
    expect(alerts.map((a) => [a.threatName, a.evidence.map((e) => e.fileName)])).toEqual([
      ['S1', ['1', '3']],
      ['S2', ['2']],
    ]);
    const [first] = alerts;
    expect(first).toMatchObject({ machineId: 'm'.repeat(40), rbacGroupName: 'Servers', actionId: action().id, detectionSource: 'Antivirus', status: 'New' });
    expect(first!.evidence[0]).toMatchObject({ sha1: 'a'.repeat(40), sha256: null, detectionStatus: 'Detected' });
    expect(first!.description).toBe(`A Quick antivirus scan (action ${action().id}, requested by App) found 2 files with 'S1' on web-01.local: /a/1, /a/3. The files were left in place.`);
    const many = alertsFromReport(report({ findings: Array.from({ length: 10_000 }, (_, i) => ({ path: `/f/${i}`, signature: `S${i % 80}` })) }));
    expect(many).toHaveLength(50);
    expect(Math.max(...many.map((a) => a.evidence.length))).toBeLessThanOrEqual(100);
    // A failed scan that found something before failing still raises it.
    expect(alertsFromReport(report({ findings: [{ path: '/x', signature: 'S' }] }, { status: 'Failed' }))).toHaveLength(1);
  });

  it('nothing else raises an alert', () => {
    expect(alertsFromReport(report(undefined))).toEqual([]);
    expect(alertsFromReport(report({ findings: [] }))).toEqual([]);
    expect(alertsFromReport(report({ findings: 'x' }))).toEqual([]);
    expect(alertsFromReport(report({ findings: [{ path: '/x', signature: 'S' }] }, { action: action({ type: 'Isolate' }) }))).toEqual([]);
    const quarantine = action({ type: 'StopAndQuarantineFile', relatedFileInfo: { fileIdentifier: 'b'.repeat(40), fileIdentifierType: 'Sha1' } });
    expect(alertsFromReport(report({ files: [] }, { action: quarantine }))).toEqual([]);
    expect(alertsFromReport(report({ files: [{ originalPath: '/x' }] }, { action: quarantine, status: 'Failed' }))).toEqual([]);
    const [q] = alertsFromReport(report({ files: [{ originalPath: '/usr/bin/x', killedPids: [7, -1, 'x', 8] }] }, { action: quarantine }));
    expect(q!.evidence.map((e) => [e.entityType, e.processId, e.sha1, e.detectionStatus])).toEqual([
      ['File', null, 'b'.repeat(40), 'Blocked'],
      ['Process', 7, 'b'.repeat(40), 'Blocked'],
      ['Process', 8, 'b'.repeat(40), 'Blocked'],
    ]);
  });
});

describe('an investigation follows its package collection', () => {
  const file = (detectionStatus: AlertEvidence['detectionStatus']) => ({ entityType: 'File', fileName: 'x', filePath: '/tmp', detectionStatus }) as AlertEvidence;
  const collect = (overrides: Partial<MachineAction>) => action({ type: 'CollectInvestigationPackage', ...overrides });
  it.each([
    ['Pending', null, 'Queued', null],
    ['InProgress', null, 'Running', null],
    ['Succeeded', null, 'Benign', 99],
    ['Succeeded', [file('Blocked')], 'SuccessfullyRemediated', 99],
    ['Succeeded', [file('Blocked'), file('Detected')], 'PendingApproval', 99],
    ['Failed', null, 'Failed', 99],
    ['TimeOut', [file('Detected')], 'TerminatedBySystem', 99],
    ['Cancelled', null, 'TerminatedByUser', 99],
  ] as const)('%s (trigger %j) -> %s', (status, trigger, state, endTime) => {
    const progress = investigationProgress(collect({ status, cancellationRequestor: 'ana', cancellationComment: 'stop' }), trigger);
    expect(progress.state).toBe(state);
    expect(progress.endTime).toBe(endTime);
    expect(progress.cancelledBy).toBe(status === 'Cancelled' ? 'ana' : null);
  });
});

describe('the query sets', () => {
  it('are well formed, with the contract\'s filterable properties and every scalar for $orderby', () => {
    for (const set of [MACHINE_ACTION_SET, MACHINE_SET, ALERT_SET, INVESTIGATION_SET]) expect(() => defineEntitySet(set)).not.toThrow();
    const filterable = (set: typeof ALERT_SET) => set.properties.filter((p) => !p.orderOnly).map((p) => p.name).sort();
    expect(filterable(MACHINE_ACTION_SET)).toEqual(['creationDateTimeUtc', 'id', 'machineId', 'requestor', 'status', 'type']);
    expect(filterable(ALERT_SET)).toEqual(
      ['alertCreationTime', 'assignedTo', 'category', 'detectionSource', 'id', 'incidentId', 'investigationId', 'lastEventTime', 'lastUpdateTime', 'severity', 'status'],
    );
    expect(filterable(INVESTIGATION_SET)).toEqual(['id', 'machineId', 'startTime', 'state', 'triggeringAlertId']);
  });

  it("investigation ids are numbers clients quote: compared as numbers, a non-number is an error", () => {
    expect(parseQueryOptions("$filter=id eq '63017'", INVESTIGATION_SET).filter).toEqual({ kind: 'compare', op: 'eq', property: 'id', value: { kind: 'number', value: 63017 } });
    expect(parseQueryOptions('$filter=id gt 5', INVESTIGATION_SET).filter).toMatchObject({ value: { kind: 'number', value: 5 } });
    expect(() => parseQueryOptions("$filter=id eq 'abc'", INVESTIGATION_SET)).toThrow(/expected an id/);
    expect(() => parseQueryOptions("$filter=startswith(id,'6')", INVESTIGATION_SET)).toThrow(/startswith/);
  });

  it('$expand=evidence only where there is evidence', () => {
    expect(parseQueryOptions('$expand=Evidence', ALERT_SET).expand).toEqual(['evidence']);
    expect(() => parseQueryOptions('$expand=comments', ALERT_SET)).toThrow(/evidence/);
    expect(() => parseQueryOptions('$expand=evidence', MACHINE_ACTION_SET)).toThrow(/Unsupported query option/);
  });
});
