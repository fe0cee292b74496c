import type { Command } from 'commander';
import { odataString, type Collection, type Entity, type Machine } from '../client/index.js';
import { UsageError, connect, type ConnectionFlags } from './connection.js';
import { details, note, orDash, printJson, printText, shortTime, table, type Column } from './output.js';
import { EXIT, allPages, remoteCommand, run, wholeNumber } from './remote.js';

/** `countermand machines list|get`: the machines a caller may see, through the typed client. */

interface OutputFlags extends ConnectionFlags {
  json?: boolean;
}

interface ListFlags extends OutputFlags {
  health?: string;
  name?: string;
  filter?: string;
  orderby?: string;
  top?: number;
  skip?: number;
  all?: boolean;
}

const DEFAULT_TOP = 50;

const MACHINE_COLUMNS: readonly Column<Machine>[] = [
  { header: 'ID', value: (m) => m.id },
  { header: 'NAME', value: (m) => m.computerDnsName, shrink: true },
  { header: 'HEALTH', value: (m) => m.healthStatus, shrink: true },
  { header: 'LAST SEEN', value: (m) => shortTime(m.lastSeen), optional: true },
  { header: 'OS', value: (m) => [m.osPlatform, m.osVersion].filter(Boolean).join(' '), shrink: true, optional: true },
  { header: 'IP', value: (m) => orDash(m.lastIpAddress), optional: true },
  { header: 'GROUP', value: (m) => orDash(m.rbacGroupName), shrink: true, optional: true },
  { header: 'TAGS', value: (m) => m.machineTags.join(','), shrink: true, optional: true },
];

/** Every field of the entity, in the wire's order and under the wire's names. */
function machineDetails(m: Machine): string {
  return details([
    ['id', m.id],
    ['computerDnsName', m.computerDnsName],
    ['firstSeen', orDash(m.firstSeen)],
    ['lastSeen', orDash(m.lastSeen)],
    ['osPlatform', orDash(m.osPlatform)],
    ['osVersion', orDash(m.osVersion)],
    ['osProcessor', orDash(m.osProcessor)],
    ['version', orDash(m.version)],
    ['osBuild', orDash(m.osBuild)],
    ['lastIpAddress', orDash(m.lastIpAddress)],
    ['lastExternalIpAddress', orDash(m.lastExternalIpAddress)],
    ['agentVersion', orDash(m.agentVersion)],
    ['osArchitecture', orDash(m.osArchitecture)],
    ['healthStatus', m.healthStatus],
    ['defenderAvStatus', orDash(m.defenderAvStatus)],
    ['onboardingStatus', orDash(m.onboardingStatus)],
    ['deviceValue', orDash(m.deviceValue)],
    ['rbacGroupId', orDash(m.rbacGroupId)],
    ['rbacGroupName', orDash(m.rbacGroupName)],
    ['riskScore', orDash(m.riskScore)],
    ['exposureLevel', orDash(m.exposureLevel)],
    ['isAadJoined', String(m.isAadJoined)],
    ['aadDeviceId', orDash(m.aadDeviceId)],
    ['machineTags', m.machineTags.length ? m.machineTags.join(', ') : '-'],
    [
      'ipAddresses',
      m.ipAddresses.length
        ? m.ipAddresses.map((ip) => [ip.ipAddress, ip.macAddress, ip.type, ip.operationalStatus].filter(Boolean).join(' ')).join(', ')
        : '-',
    ],
  ]);
}

async function listMachines(flags: ListFlags): Promise<number> {
  if (flags.all && flags.top !== undefined) throw new UsageError('--all reads every page; it does not go with --top');
  const client = connect(flags);
  const clauses: string[] = [];
  if (flags.health) clauses.push(`healthStatus eq ${odataString(flags.health)}`);
  if (flags.name) clauses.push(`startswith(computerDnsName,${odataString(flags.name)})`);
  if (flags.filter) clauses.push(clauses.length ? `(${flags.filter})` : flags.filter);
  const query = {
    ...(clauses.length ? { filter: clauses.join(' and ') } : {}),
    ...(flags.orderby ? { orderby: flags.orderby } : {}),
    ...(flags.skip !== undefined ? { skip: flags.skip } : {}),
    count: true,
  };
  const page: Collection<Machine> = flags.all
    ? await allPages(client.pages<Machine>('/machines', query))
    : await client.listMachines({ ...query, top: flags.top ?? DEFAULT_TOP });
  if (flags.json) {
    printJson(page);
  } else if (page.value.length === 0) {
    note('no machines match');
  } else {
    printText(table(page.value, MACHINE_COLUMNS));
    const total = page['@odata.count'];
    if (total !== undefined && total > page.value.length) note(`${page.value.length} of ${total}: --top, --skip or --all for more`);
  }
  return EXIT.ok;
}

export function registerMachineCommands(program: Command): void {
  const machines = program.command('machines').description('machines on a server: list, get');
  remoteCommand(machines, 'list', `list machines (${DEFAULT_TOP} unless --top or --all)`)
    .option('--health <status>', 'only this healthStatus (Active, Inactive, ...)')
    .option('--name <prefix>', 'only computer names that start with this')
    .option('--filter <odata>', 'an OData $filter, e.g. "osPlatform eq \'Ubuntu\'" (and-ed with the options above)')
    .option('--orderby <odata>', 'an OData $orderby, e.g. "lastSeen desc"')
    .option('--top <n>', `at most this many (default ${DEFAULT_TOP})`, wholeNumber)
    .option('--skip <n>', 'skip this many first', wholeNumber)
    .option('--all', 'every match, following the pages')
    .action(run((flags: ListFlags) => listMachines(flags)));

  remoteCommand(machines, 'get <machine>', 'show one machine (id, aadDeviceId or computer name)').action(
    run(async (machine: string, flags: OutputFlags) => {
      const found: Entity<Machine> = await connect(flags).getMachine(machine);
      if (flags.json) printJson(found);
      else printText(machineDetails(found));
    }),
  );
}
