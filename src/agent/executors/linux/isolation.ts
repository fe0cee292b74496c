import { parsePrefix } from './options.js';

/**
 * Network isolation with nftables. The executor owns one table (`inet <nftTable>`) and never
 * touches any other. Isolating writes the whole table in one nft transaction; unisolating
 * deletes it. Because every base chain at a hook must accept a packet, this table's `policy
 * drop` isolates the machine whatever other tables say; its accepts only let through what
 * other tables also accept.
 */

export type IsolationMode = 'Full' | 'Selective';

export interface IsolationPlan {
  table: string;
  mode: IsolationMode;
  serverAddresses: string[];
  serverPort: number | null;
  /** Only used when mode is Selective. */
  allowList: string[];
  allowDhcp: boolean;
  /** Kept in the table's comment: which action created it. */
  actionId: string;
}

/** `Full`, `UnManagedDevice` and no scope isolate fully; `Selective` adds the allow list. */
export function isolationMode(scope: string | null): IsolationMode | null {
  if (scope === null || scope === 'Full' || scope === 'UnManagedDevice') return 'Full';
  if (scope === 'Selective') return 'Selective';
  return null;
}

const PRIORITY = -10;

function setDefinition(name: string, type: 'ipv4_addr' | 'ipv6_addr', elements: string[]): string {
  const body = [`type ${type}`, 'flags interval', 'auto-merge'];
  if (elements.length > 0) body.push(`elements = { ${elements.join(', ')} }`);
  return `  set ${name} {\n${body.map((l) => `    ${l}`).join('\n')}\n  }`;
}

/**
 * The nft script that (re)creates the isolation table in one transaction. The leading
 * `table` + `delete table` pair makes it idempotent: an existing table is replaced atomically,
 * so isolating twice never opens a gap.
 */
export function buildIsolationRuleset(plan: IsolationPlan): string {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(plan.table)) throw new Error(`invalid nft table name ${plan.table}`);
  const split = (values: string[], what: string) => {
    const v4: string[] = [];
    const v6: string[] = [];
    for (const value of values) {
      const p = parsePrefix(value, what); // re-checked: only validated addresses reach the script
      (p.family === 4 ? v4 : v6).push(p.text);
    }
    return { v4, v6 };
  };
  const server = split(plan.serverAddresses, 'serverAddresses');
  const allow = split(plan.mode === 'Selective' ? plan.allowList : [], 'selectiveAllowList');
  const port = plan.serverPort;
  if (port !== null && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new Error(`invalid server port ${port}`);
  const comment = `countermand isolation (${plan.mode}) by action ${plan.actionId.replace(/[^A-Za-z0-9-]/g, '').slice(0, 64)}`;

  const input: string[] = ['iif "lo" accept'];
  const output: string[] = ['oif "lo" accept'];
  // IPv6 needs neighbour discovery to reach anything on the link, the server included.
  const nd = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept';
  input.push(nd);
  output.push(nd);
  if (plan.allowDhcp) {
    input.push('udp sport 67 udp dport 68 accept', 'udp sport 547 udp dport 546 accept');
    output.push('udp sport 68 udp dport 67 accept', 'udp sport 546 udp dport 547 accept');
  }
  for (const [ip, set] of [
    ['ip', 'server4'],
    ['ip6', 'server6'],
  ] as const) {
    if (port === null) {
      input.push(`${ip} saddr @${set} accept`);
      output.push(`${ip} daddr @${set} accept`);
    } else {
      // Only connections the agent opens to the server's port, and their replies.
      output.push(`${ip} daddr @${set} meta l4proto { tcp, udp } th dport ${port} accept`);
      input.push(`${ip} saddr @${set} meta l4proto { tcp, udp } th sport ${port} ct state established accept`);
    }
    // ICMP errors (e.g. "fragmentation needed") about connections to the server, from any router.
    input.push(`ct state related ct original ${ip} daddr @${set} accept`);
  }
  for (const [ip, set] of [
    ['ip', 'allow4'],
    ['ip6', 'allow6'],
  ] as const) {
    if (plan.mode !== 'Selective') continue;
    input.push(`${ip} saddr @${set} accept`);
    output.push(`${ip} daddr @${set} accept`);
    input.push(`ct state related ct original ${ip} daddr @${set} accept`);
  }

  const chain = (name: string, hook: string, rules: string[]) =>
    [`  chain ${name} {`, `    type filter hook ${hook} priority ${PRIORITY}; policy drop;`, ...rules.map((r) => `    ${r}`), '  }'].join('\n');

  return [
    `table inet ${plan.table}`,
    `delete table inet ${plan.table}`,
    `table inet ${plan.table} {`,
    `  comment "${comment}"`,
    setDefinition('server4', 'ipv4_addr', server.v4),
    setDefinition('server6', 'ipv6_addr', server.v6),
    setDefinition('allow4', 'ipv4_addr', allow.v4),
    setDefinition('allow6', 'ipv6_addr', allow.v6),
    chain('input', 'input', input),
    chain('output', 'output', output),
    // Nothing is forwarded while isolated (a machine that routes stops routing).
    chain('forward', 'forward', []),
    '}',
    '',
  ].join('\n');
}

/** Deletes the table if it exists, in one transaction (creating an empty one first makes absence fine). */
export function buildUnisolationScript(table: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(table)) throw new Error(`invalid nft table name ${table}`);
  return `table inet ${table}\ndelete table inet ${table}\n`;
}

/** Whether `nft list tables` output names `inet <table>`. */
export function hasTable(listTablesOutput: string, table: string): boolean {
  return listTablesOutput.split('\n').some((line) => line.trim() === `table inet ${table}`);
}
