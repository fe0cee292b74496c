/**
 * `npm run bench [-- --quick] [--only startup,reads,writes,dispatch] [--keep] [--dataset-dir DIR] [--pin]`
 *
 * Builds the server, prepares the database, runs every scenario against the server and against
 * the bare Fastify baseline, and writes bench/results/<date>-<sha>[-quick].{json,md} (and
 * bench/results/latest.md for a full run). Method: docs/benchmarks.md.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FULL, QUICK, SERVER_SETTINGS, writeFixedAction, pick, type RunContext } from './lib/context.js';
import { prepareDataset, reuseDataset, type Dataset } from './lib/dataset.js';
import { describeEnvironment } from './lib/environment.js';
import { runLoad, type LoadResult } from './lib/load.js';
import { buildAll, pinCpus, startBaseline } from './lib/processes.js';
import { explainHotQueries, type QueryPlan } from './lib/plans.js';
import { figures, markdown, type RunResults } from './lib/report.js';
import { feasibleLevels, runDispatch } from './scenarios/dispatch.js';
import { runReads } from './scenarios/reads.js';
import { runStartup } from './scenarios/startup.js';
import { runWrites } from './scenarios/writes.js';

const SCENARIOS = ['startup', 'reads', 'writes', 'dispatch'] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Args {
  quick: boolean;
  keep: boolean;
  only: Scenario[];
  datasetDir: string | null;
  out: string;
  whatIfAnalyze: boolean;
  pin: boolean;
}

function parseArgs(argv: string[], root: string): Args {
  const args: Args = { quick: false, keep: false, only: [...SCENARIOS], datasetDir: null, out: join(root, 'bench', 'results'), whatIfAnalyze: false, pin: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') args.quick = true;
    else if (a === '--keep') args.keep = true;
    else if (a === '--only') {
      const names = value().split(',');
      for (const n of names) if (!(SCENARIOS as readonly string[]).includes(n)) throw new Error(`unknown scenario ${n} (${SCENARIOS.join(', ')})`);
      args.only = names as Scenario[];
    } else if (a === '--dataset-dir') args.datasetDir = resolve(value());
    else if (a === '--out') args.out = resolve(value());
    else if (a === '--what-if-analyze') args.whatIfAnalyze = true;
    else if (a === '--pin') args.pin = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'npm run bench [-- --quick] [--only startup,reads,writes,dispatch] [--keep] [--dataset-dir DIR] [--out DIR]\n' +
          '  --quick        reduced sizes (100k actions, 1,000 agents, short runs); results are labelled QUICK\n' +
          '  --only         run only these scenarios (the report marks the others not measured)\n' +
          '  --keep         keep the temporary directory (databases, data dirs) and print where it is\n' +
          '  --dataset-dir  prepare the database there, or reuse one prepared there with the same sizes\n' +
          '  --out          where results go (default bench/results)\n' +
          '  --pin          pin the servers to the last CPU and the load generator to the others (taskset);\n' +
          '                 steadier on a quiet machine, worse when other work competes for the pinned CPU\n' +
          '  --what-if-analyze  diagnostic: run PRAGMA optimize on each database copy first (the product does not);\n' +
          '                 results are labelled WHAT-IF and never become latest.md\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  return args;
}

function commandLine(argv: string[]): string {
  const rest = argv.length ? ` -- ${argv.join(' ')}` : '';
  return process.env.npm_lifecycle_event === 'bench' ? `npm run bench${rest}` : `npx tsx bench/run.ts${argv.length ? ` ${argv.join(' ')}` : ''}`;
}

async function main(): Promise<void> {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const argv = process.argv.slice(2);
  const args = parseArgs(argv, root);
  const sizes = args.quick ? QUICK : FULL;
  const started = Date.now();
  const t0 = performance.now();
  const log = (line: string) => process.stdout.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
  const phases: Record<string, number> = {};
  const phase = async <T>(name: string, run: () => Promise<T> | T): Promise<T> => {
    const t = performance.now();
    try {
      return await run();
    } finally {
      phases[name] = Math.round((performance.now() - t) / 100) / 10;
    }
  };

  const environment = describeEnvironment(root);
  log(`countermand benchmarks (${sizes.mode}) at ${environment.gitShort} on ${environment.cpuModel} x${environment.cores}, node ${environment.node}`);
  const build = await phase('build', () => buildAll(root, log));

  const workDir = mkdtempSync(join(tmpdir(), 'countermand-bench-'));
  log(`work directory ${workDir}`);
  const notes: string[] = [];
  const errors: Record<string, string> = {};
  try {
    let reused = false;
    const dataset: Dataset = await phase('dataset', () => {
      const dir = args.datasetDir ?? join(workDir, 'dataset');
      mkdirSync(dir, { recursive: true });
      const existing = args.datasetDir ? reuseDataset(sizes.dataset, dir) : null;
      if (existing) {
        reused = true;
        log(`dataset: reusing ${dir} (prepared ${new Date(existing.preparedAt).toISOString()})`);
        return existing;
      }
      log(`dataset: ${sizes.dataset.actions.toLocaleString('en-US')} actions over ${(sizes.dataset.idleMachines + sizes.dataset.busyMachines).toLocaleString('en-US')} machines`);
      return prepareDataset(sizes.dataset, dir, log);
    });
    if (reused) notes.push('The database was reused from an earlier preparation (--dataset-dir): its timestamps are older than this run.');
    const ctx: RunContext = { root, sizes, build, dataset, workDir, fixedActionPath: writeFixedAction(workDir), analyze: args.whatIfAnalyze, log };

    let queryPlans: QueryPlan[] = [];
    try {
      queryPlans = await phase('query-plans', () => explainHotQueries(dataset));
    } catch (error) {
      notes.push(`Query plans could not be taken: ${(error as Error).message}`);
    }

    const levels = feasibleLevels(sizes.agentLevels, environment.openFilesLimit);
    for (const level of sizes.agentLevels.filter((l) => !levels.includes(l))) {
      notes.push(`${level.toLocaleString('en-US')} agents were not measured: \`ulimit -n\` is ${environment.openFilesLimit}, and one process holds a socket per agent (raise it, e.g. \`ulimit -n 65536\`).`);
    }
    if (args.whatIfAnalyze) {
      notes.push(
        'WHAT-IF run (--what-if-analyze): every database copy got `PRAGMA optimize=0x10002` (planner statistics) before the server opened it. The product does not do this; these are not the product\'s figures.',
      );
    }
    if (sizes.mode === 'quick') {
      notes.push(
        `QUICK mode: ${sizes.dataset.actions.toLocaleString('en-US')} stored actions instead of 1,000,000, ${sizes.readSeconds} s load runs, ${sizes.writeSeconds} s of creations (and their cancels), ${sizes.agentLevels.map((n) => n.toLocaleString('en-US')).join(' and ')} agents only, ${sizes.samples} latency samples. Not comparable with the targets' conditions.`,
      );
    }

    const attempt = async <T>(name: Scenario, run: () => Promise<T>): Promise<T | undefined> => {
      if (!args.only.includes(name)) return undefined;
      log(`== ${name}`);
      try {
        return await phase(name, run);
      } catch (error) {
        errors[name] = (error as Error).message.split('\n').slice(0, 6).join(' | ');
        log(`${name} FAILED: ${(error as Error).stack ?? String(error)}`);
        return undefined;
      }
    };
    const startup = await attempt('startup', () => runStartup(ctx));
    // After the start-up runs (which measure an unpinned start), servers get their own CPU.
    const pinned = args.pin ? pinCpus() : null;
    if (pinned) {
      log(`pinned: servers on CPU ${pinned.server}, this load generator on CPU ${pinned.generator} (taskset)`);
      notes.push(`Load runs: each server under test pinned to CPU ${pinned.server} and the load generator to CPU ${pinned.generator} (taskset), baseline and Countermand alike; the start-up runs are not pinned.`);
    } else notes.push('Servers and the load generator were not pinned to CPUs (the scheduler places them; see --pin).');
    const reads = await attempt('reads', () => runReads(ctx));
    const writes = await attempt('writes', () => runWrites(ctx));
    const dispatch = await attempt('dispatch', () => runDispatch(ctx, levels));

    let baselineRecheck: LoadResult | undefined;
    if (reads) {
      baselineRecheck = await phase('baseline-recheck', async () => {
        log('== baseline re-check (GET by id, as at the start of the read figures)');
        const b = await startBaseline({ build, fixedActionPath: ctx.fixedActionPath, pollSeconds: 120, probe: false });
        try {
          const path = () => `/api/machineactions/${pick(dataset.sampleActionIds)}`;
          const result = await runLoad({ url: b.url, connections: sizes.readConnections, duration: Math.max(3, Math.round(sizes.readSeconds / 3)), method: 'GET', headers: { authorization: 'Bearer x.y.z' }, path });
          log(`  baseline again: ${result.okPerSecond} 2xx/s (was ${reads!.getById.baseline.okPerSecond})`);
          return result;
        } finally {
          await b.stop();
        }
      });
      const drift = baselineRecheck.okPerSecond / reads.getById.baseline.okPerSecond - 1;
      notes.push(
        `Machine drift: the GET-by-id baseline measured ${Math.round(reads.getById.baseline.okPerSecond).toLocaleString('en-US')} req/s before Countermand's run and ${Math.round(baselineRecheck.okPerSecond).toLocaleString('en-US')} req/s at the end of the run (${(drift * 100).toFixed(1)}%).`,
      );
    }

    const { sampleActionIds: _ids, busyMachineIds: _busy, dir: _dir, dbPath: _db, fixturesPath: _fx, ...datasetSummary } = dataset;
    const partial: Omit<RunResults, 'figures'> = {
      title: `Countermand benchmarks (${sizes.mode}${args.whatIfAnalyze ? ', what-if: analysed database' : ''})`,
      mode: sizes.mode,
      startedAt: new Date(started).toISOString(),
      finishedAt: new Date().toISOString(),
      totalSeconds: Math.round(performance.now() - t0) / 1000,
      command: commandLine(argv),
      environment,
      loadAverageAtEnd: loadavg().map((l) => Math.round(l * 100) / 100),
      sizes,
      dataset: { ...datasetSummary, reused },
      phases: { ...phases, build: build.seconds },
      serverSettings: { ...SERVER_SETTINGS },
      ...(startup ? { startup } : {}),
      ...(reads ? { reads } : {}),
      ...(writes ? { writes } : {}),
      ...(dispatch ? { dispatch } : {}),
      ...(baselineRecheck ? { baselineRecheck } : {}),
      queryPlans,
      errors,
      notes,
    };
    const results: RunResults = { ...partial, figures: figures(partial, sizes.agentLevels) };

    mkdirSync(args.out, { recursive: true });
    const date = results.startedAt.slice(0, 10);
    const base = join(args.out, `${date}-${environment.gitShort}${sizes.mode === 'quick' ? '-quick' : ''}${args.whatIfAnalyze ? '-whatif-analyze' : ''}`);
    writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
    const md = markdown(results);
    writeFileSync(`${base}.md`, md);
    const complete = args.only.length === SCENARIOS.length && !args.whatIfAnalyze;
    if (sizes.mode === 'full' && complete) writeFileSync(join(args.out, 'latest.md'), md);
    log(`wrote ${relative(root, base)}.json and .md${sizes.mode === 'full' && complete ? ' and latest.md' : ''}`);
    process.stdout.write(`\n${md}\n`);
  } finally {
    if (args.keep) log(`kept ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  }
  if (Object.keys(errors).length) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
