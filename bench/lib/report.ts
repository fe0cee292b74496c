import type { DispatchResults, LevelResult } from '../scenarios/dispatch.js';
import type { ReadResults } from '../scenarios/reads.js';
import type { StartupResults } from '../scenarios/startup.js';
import type { WriteResults } from '../scenarios/writes.js';
import type { Sizes } from './context.js';
import type { Dataset } from './dataset.js';
import type { Environment } from './environment.js';
import type { LoadResult } from './load.js';
import type { QueryPlan } from './plans.js';
import { round } from './stats.js';

/** One row of the table: a figure of the issue, its target, the measurement and its baseline. */
export interface Figure {
  figure: string;
  target: string;
  measured: number | null;
  baseline: number | null;
  unit: string;
  /** measured / baseline. */
  ratio: number | null;
  verdict: 'met' | 'MISSED' | 'info' | 'not measured' | 'failed';
  note?: string;
}

export interface RunResults {
  title: string;
  mode: Sizes['mode'];
  startedAt: string;
  finishedAt: string;
  totalSeconds: number;
  command: string;
  environment: Environment;
  loadAverageAtEnd: number[];
  sizes: Sizes;
  dataset: Omit<Dataset, 'sampleActionIds' | 'busyMachineIds' | 'dir' | 'dbPath' | 'fixturesPath'> & { reused: boolean };
  phases: Record<string, number>;
  serverSettings: Record<string, string>;
  startup?: StartupResults;
  reads?: ReadResults;
  writes?: WriteResults;
  dispatch?: DispatchResults;
  /** The GET-by-id baseline measured again at the end of the run: how much the machine drifted. */
  baselineRecheck?: LoadResult;
  /** SQLite's plans for the measured paths' queries on the prepared database. */
  queryPlans: QueryPlan[];
  errors: Record<string, string>;
  notes: string[];
  figures: Figure[];
}

const ratioOf = (measured: number | null, baseline: number | null) =>
  measured === null || baseline === null || baseline === 0 ? null : round(measured / baseline, 3);

function fig(
  figure: string,
  target: string,
  unit: string,
  measured: number | null,
  baseline: number | null,
  meets: ((measured: number, ratio: number | null) => boolean) | null,
  note?: string,
): Figure {
  const ratio = ratioOf(measured, baseline);
  const verdict: Figure['verdict'] = measured === null ? 'not measured' : meets === null ? 'info' : meets(measured, ratio) ? 'met' : 'MISSED';
  return { figure, target, measured, baseline, unit, ratio, verdict, ...(note ? { note } : {}) };
}

/** The figures of the issue, in its order, from whatever the run measured. */
export function figures(r: Omit<RunResults, 'figures'>, plannedLevels: number[]): Figure[] {
  const out: Figure[] = [];
  const failed = (scenario: string, names: string[]) => {
    for (const name of names) {
      out.push({ figure: name, target: '', measured: null, baseline: null, unit: '', ratio: null, verdict: r.errors[scenario] ? 'failed' : 'not measured', ...(r.errors[scenario] ? { note: r.errors[scenario] } : {}) });
    }
  };

  const reads = r.reads;
  const getName = 'GET /api/machineactions/{id}, 50 connections: 2xx requests/s';
  const getP99Name = 'GET /api/machineactions/{id}, 50 connections: p99 latency';
  const listName = "GET /api/machineactions?$filter=machineId eq '...' and status in ('Pending','InProgress')&$top=100: p99 latency";
  if (reads) {
    const g = reads.getById;
    const codes = (l: LoadResult) => (l.non2xx || l.errors ? `; ${l.non2xx} non-2xx, ${l.errors} errors` : '');
    out.push(fig(getName, '>= 60% of baseline', 'req/s', g.server.okPerSecond, g.baseline.okPerSecond, (_m, ratio) => (ratio ?? 0) >= 0.6, codes(g.server).slice(2) || undefined));
    out.push(fig(getP99Name, '< 10 ms', 'ms', g.server.latencyMs.p99, g.baseline.latencyMs.p99, (m) => m < 10));
    out.push(fig('GET /api/machineactions/{id}, 50 connections: p50 latency', '', 'ms', g.server.latencyMs.p50, g.baseline.latencyMs.p50, null));
    const l = reads.list;
    out.push(fig(listName, '< 20 ms', 'ms', l.server.latencyMs.p99, l.baseline.latencyMs.p99, (m) => m < 20, codes(l.server).slice(2) || undefined));
    out.push(fig('The same list query: 2xx requests/s (50 connections)', '', 'req/s', l.server.okPerSecond, l.baseline.okPerSecond, null));
  } else failed('reads', [getName, getP99Name, listName]);

  const writes = r.writes;
  const createName = 'Action creation (SQLite): 2xx per second';
  const cancelName = 'Action cancel (SQLite): 2xx per second';
  if (writes) {
    const errs = (l: LoadResult) => `${l.ok} of ${l.requests} 2xx; non-2xx ${l.non2xx}; socket errors ${l.errors}; p99 ${l.latencyMs.p99} ms`;
    out.push(fig(createName, '>= 5,000/s', '/s', writes.create.server.okPerSecond, writes.create.baseline.okPerSecond, (m) => m >= 5000, errs(writes.create.server)));
    out.push(fig(cancelName, '>= 5,000/s', '/s', writes.cancel.server.okPerSecond, writes.cancel.baseline.okPerSecond, (m) => m >= 5000, errs(writes.cancel.server)));
  } else failed('writes', [createName, cancelName]);

  const dispatch = r.dispatch;
  for (const level of plannedLevels) {
    const target = level <= 1000 ? 20 : 50;
    const names = [`Dispatch latency, ${level.toLocaleString('en-US')} agents`, `Cancel latency, ${level.toLocaleString('en-US')} agents`];
    const s = dispatch?.server.levels.find((x) => x.agents === level);
    const b = dispatch?.baseline.levels.find((x) => x.agents === level);
    if (!s || !b) {
      if (dispatch) {
        for (const name of names) out.push({ figure: `${name}: p99`, target: `< ${target} ms`, measured: null, baseline: null, unit: 'ms', ratio: null, verdict: 'not measured', note: 'this level was not run (see notes)' });
      } else failed('dispatch', names.map((n) => `${n}: p99`));
      continue;
    }
    const rows: [string, (x: LevelResult) => { p50: number; p99: number }][] = [
      [names[0]!, (x) => x.dispatchMs],
      [names[1]!, (x) => x.cancelMs],
    ];
    for (const [name, get] of rows) {
      out.push(fig(`${name}: p50`, '', 'ms', get(s).p50, get(b).p50, null, `${s.samples} samples, ${s.failures} failed`));
      out.push(fig(`${name}: p99`, `< ${target} ms`, 'ms', get(s).p99, get(b).p99, (m) => m < target));
    }
  }

  const memName = 'Memory per idle connected agent (server RssAnon)';
  if (dispatch && dispatch.server.memory.length > 0) {
    const s = dispatch.server.memory[dispatch.server.memory.length - 1]!;
    const b = dispatch.baseline.memory.find((m) => m.agents === s.agents);
    out.push(
      fig(`${memName}, ${s.agents.toLocaleString('en-US')} agents`, '< 20 KB', 'KB', round(s.rssPerAgentBytes / 1000, 2), b ? round(b.rssPerAgentBytes / 1000, 2) : null, (m) => m < 20,
        `(RssAnon with ${s.agents} parked check-ins - RssAnon with none) / ${s.agents}, after a forced GC; KB = 1,000 bytes`),
    );
    out.push(
      fig(`Heap per idle connected agent, ${s.agents.toLocaleString('en-US')} agents`, '', 'KB', round(s.heapPerAgentBytes / 1000, 2), b ? round(b.heapPerAgentBytes / 1000, 2) : null, null, 'V8 heapUsed, same method'),
    );
  } else failed('dispatch', [memName]);

  const startName = 'Start to ready, embedded default (fresh data dir, demo fleet on): median';
  if (r.startup) {
    const st = r.startup;
    out.push(fig(startName, '< 1 s', 'ms', st.coldMedianMs, st.baselineMedianMs, (m) => m < 1000, `${st.cold.length} runs; first HTTP response`));
    out.push(fig('Start to ready, warm (existing data dir): median', '< 1 s', 'ms', st.warmMedianMs, st.baselineMedianMs, (m) => m < 1000));
  } else failed('startup', [startName]);
  return out;
}

const fmt = (value: number | null, unit: string): string => {
  if (value === null) return '—';
  const digits = unit === 'req/s' || unit === '/s' ? 0 : unit === 'KB' ? 2 : Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })} ${unit}`;
};

const fmtRatio = (f: Figure): string => {
  if (f.ratio === null) return '—';
  return f.unit === 'req/s' || f.unit === '/s' ? `${(f.ratio * 100).toFixed(1)}%` : `${f.ratio.toFixed(2)}×`;
};

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/** The table alone (README-sized), then the details. */
export function markdown(r: RunResults): string {
  const e = r.environment;
  const lines: string[] = [];
  const quick = r.mode === 'quick';
  const whatIf = r.title.includes('what-if');
  lines.push(
    `# Countermand benchmarks${quick ? ' — QUICK run (reduced sizes; not the issue\'s conditions)' : ''}${whatIf ? ' — WHAT-IF: databases analysed first (not the product as it is)' : ''}`,
  );
  lines.push('');
  lines.push(`- **When:** ${r.startedAt} (took ${Math.round(r.totalSeconds)} s)`);
  lines.push(`- **Commit:** \`${e.gitCommit}\`${e.gitDirty.length ? ` with ${e.gitDirty.length} uncommitted change(s) in the tree (listed in the JSON)` : ''}`);
  lines.push(`- **Command:** \`${r.command}\``);
  lines.push(`- **Machine:** ${e.cpuModel}, ${e.cores} cores, ${mib(e.memTotalBytes)} RAM, Linux ${e.kernel}; \`ulimit -n\` ${e.openFilesLimit}; load average at start ${e.loadAverageAtStart.join(' / ')}, at end ${r.loadAverageAtEnd.join(' / ')}`);
  lines.push(`- **Versions:** Node ${e.node}, npm ${e.npm}, SQLite ${e.sqlite} (better-sqlite3 ${e.betterSqlite3}), Fastify ${e.fastify}, autocannon ${e.autocannon}`);
  const d = r.dataset;
  lines.push(
    `- **Data:** ${d.counts.actions.toLocaleString('en-US')} stored actions (${d.counts.activeActions.toLocaleString('en-US')} Pending/InProgress), ${d.counts.events.toLocaleString('en-US')} history events, ${d.counts.machines.toLocaleString('en-US')} machines, ${mib(d.dbBytes)} SQLite file${d.reused ? ' (reused from an earlier preparation)' : `, prepared in ${Math.round(d.preparedInSeconds)} s`}`,
  );
  lines.push('- **Baseline:** a bare Fastify 5 route in its own process returning a fixed MachineAction JSON with the same headers, measured in this run with the same load settings (docs/benchmarks.md).');
  lines.push('');
  lines.push('| Figure | Target | Measured | Baseline | Ratio | Verdict |');
  lines.push('|---|---|---|---|---|---|');
  for (const f of r.figures) {
    const verdict = f.verdict === 'met' ? 'met' : f.verdict === 'MISSED' ? '**MISSED**' : f.verdict;
    lines.push(`| ${f.figure.replace(/\|/g, '\\|')} | ${f.target || '—'} | ${fmt(f.measured, f.unit)} | ${fmt(f.baseline, f.unit)} | ${fmtRatio(f)} | ${verdict} |`);
  }
  lines.push('');
  lines.push('Ratio is measured ÷ baseline (as a percentage for throughput). Latencies are in milliseconds from request written to response fully received, measured by the load generator in its own process.');
  const notes = [...r.notes, ...r.figures.filter((f) => f.note).map((f) => `${f.figure}: ${f.note}`)];
  if (notes.length) {
    lines.push('');
    lines.push('## Notes');
    lines.push('');
    for (const n of notes) lines.push(`- ${n}`);
  }
  lines.push('');
  lines.push('## Details');
  lines.push('');
  const load = (name: string, l: LoadResult) =>
    `| ${name} | ${l.connections} | ${l.requests.toLocaleString('en-US')} | ${l.seconds} s | ${Math.round(l.okPerSecond).toLocaleString('en-US')} | ${l.rounds ? l.rounds.map((x) => Math.round(x.okPerSecond).toLocaleString('en-US')).join(' / ') : '—'} | ${l.latencyMs.p50} | ${l.latencyMs.p90} | ${l.latencyMs.p99} | ${l.latencyMs.max} | ${JSON.stringify(l.statusCodes)} | ${l.errors} |`;
  if (r.reads || r.writes || r.baselineRecheck) {
    lines.push('| Load | Conn. | Requests | Time | 2xx/s | 2xx/s by round | p50 ms | p90 ms | p99 ms | max ms | Status codes | Socket errors |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    if (r.reads) {
      lines.push(load('GET by id — Countermand', r.reads.getById.server));
      lines.push(load('GET by id — baseline', r.reads.getById.baseline));
      lines.push(load('List (machine, active) — Countermand', r.reads.list.server));
      lines.push(load('List — baseline', r.reads.list.baseline));
    }
    if (r.writes) {
      lines.push(load('Create — Countermand', r.writes.create.server));
      lines.push(load('Create — baseline', r.writes.create.baseline));
      lines.push(load('Cancel — Countermand', r.writes.cancel.server));
      lines.push(load('Cancel — baseline', r.writes.cancel.baseline));
    }
    if (r.baselineRecheck) lines.push(load('GET by id — baseline, again at the end of the run', r.baselineRecheck));
    lines.push('');
  }
  if (r.reads) {
    if (r.reads.serverBacklogSeconds.list > 1 || r.reads.serverBacklogSeconds.getById > 1) {
      lines.push(
        `After its load runs ended, Countermand kept answering requests already queued for up to ${r.reads.serverBacklogSeconds.getById.toFixed(1)} s (GET by id) and ${r.reads.serverBacklogSeconds.list.toFixed(1)} s (list); the next run waited for it.`,
      );
      lines.push('');
    }
    lines.push(
      `Response sizes: GET by id ${r.reads.sampleBytes.getById} bytes; list ${r.reads.sampleBytes.list} bytes for ${r.reads.sampleBytes.listItems} action(s) (a busy machine's active actions).`,
    );
    lines.push('');
  }
  if (r.dispatch) {
    const x = r.dispatch;
    lines.push('| Dispatch | Agents | Samples | Failed | Dispatch p50 / p90 / p99 / max ms | Cancel p50 / p90 / p99 / max ms | Create API p50 / p99 ms | Cancel API p50 / p99 ms | Connect s |');
    lines.push('|---|---|---|---|---|---|---|---|---|');
    for (const [name, t] of [['Countermand', x.server], ['baseline', x.baseline]] as const) {
      for (const l of t.levels) {
        lines.push(
          `| ${name} | ${l.agents.toLocaleString('en-US')} | ${l.samples} | ${l.failures} | ${l.dispatchMs.p50} / ${l.dispatchMs.p90} / ${l.dispatchMs.p99} / ${l.dispatchMs.max} | ${l.cancelMs.p50} / ${l.cancelMs.p90} / ${l.cancelMs.p99} / ${l.cancelMs.max} | ${l.createApiMs.p50} / ${l.createApiMs.p99} | ${l.cancelApiMs.p50} / ${l.cancelApiMs.p99} | ${l.connectSeconds} |`,
        );
      }
    }
    lines.push('');
    lines.push('| Memory | Agents parked | RssAnon | Heap used | RssAnon per agent | Heap per agent |');
    lines.push('|---|---|---|---|---|---|');
    for (const [name, t] of [['Countermand', x.server], ['baseline', x.baseline]] as const) {
      lines.push(`| ${name} | 0 | ${mib(t.idle.rss)} | ${mib(t.idle.heapUsed)} | — | — |`);
      for (const m of t.memory) {
        lines.push(`| ${name} | ${m.agents.toLocaleString('en-US')} | ${mib(m.snapshot.rss)} | ${mib(m.snapshot.heapUsed)} | ${(m.rssPerAgentBytes / 1000).toFixed(2)} KB | ${(m.heapPerAgentBytes / 1000).toFixed(2)} KB |`);
      }
    }
    lines.push('');
    lines.push(`Check-in poll time ${x.pollSeconds} s (answers are wake-ups, not timeouts: ${x.server.emptyAnswers} empty answers during the Countermand phase); the cancel is sent ${x.parkMs} ms after the agent's check-in with the action in \`running\` was written.`);
    lines.push('');
  }
  if (r.startup) {
    const s = r.startup;
    const list = (runs: { readyMs: number }[]) => runs.map((x) => x.readyMs).join(', ');
    lines.push(`Start to ready (ms, first HTTP response, polled every ${s.pollMs} ms): cold ${list(s.cold)}; warm ${list(s.warm)}; baseline ${list(s.baseline)}.`);
    const lines2 = s.cold.map((x) => x.listeningLineMs).filter((x): x is number => x !== null);
    if (lines2.length) lines.push(`Until the CLI printed "listening" (after the demo fleet enrolled), cold: ${lines2.join(', ')} ms.`);
    lines.push('');
  }
  if (r.queryPlans.length) {
    lines.push('SQLite query plans on the prepared database, as the server gets it (mean time of one execution in the load generator\'s process):');
    lines.push('');
    lines.push('| Query | Plan | Mean |');
    lines.push('|---|---|---|');
    for (const q of r.queryPlans) lines.push(`| ${q.name.replace(/\|/g, '\\|')} | ${q.plan} | ${q.meanMs} ms |`);
    lines.push('');
  }
  const warnings = [...(r.reads?.serverWarnings ?? []), ...(r.writes?.serverWarnings ?? []), ...(r.dispatch?.serverWarnings ?? [])];
  if (warnings.length) {
    lines.push('Server log lines at warn or above during the run:');
    lines.push('');
    for (const w of warnings.slice(0, 20)) lines.push(`    ${w}`);
    lines.push('');
  }
  if (Object.keys(r.errors).length) {
    lines.push('Scenario failures:');
    lines.push('');
    for (const [k, v] of Object.entries(r.errors)) lines.push(`- ${k}: ${v}`);
    lines.push('');
  }
  lines.push(`Server settings: ${Object.entries(r.serverSettings).map(([k, v]) => `\`${k}=${v}\``).join(', ')}.`);
  lines.push('');
  return lines.join('\n');
}
