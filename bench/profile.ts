/**
 * `npx tsx bench/profile.ts <create|cancel|get|list> [--quick] [--dataset-dir DIR] [--seconds N] [--what-if-analyze]`
 *
 * A diagnostic, not a figure: runs one workload against Countermand started with --cpu-prof
 * and prints the functions with the most self time (and writes the .cpuprofile for Chrome
 * DevTools). Uses the same build, dataset and settings as `npm run bench`.
 */
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchToken, dataDirWithCopy, FULL, pick, QUICK, SERVER_SETTINGS, writeFixedAction, type RunContext } from './lib/context.js';
import { machineId, prepareDataset, reuseDataset } from './lib/dataset.js';
import { runLoad } from './lib/load.js';
import { buildAll, startCountermand } from './lib/processes.js';
import { listPath } from './scenarios/reads.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

async function main(): Promise<void> {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const argv = process.argv.slice(2);
  const workload = argv[0] as 'create' | 'get' | 'list';
  if (!['create', 'get', 'list'].includes(workload)) throw new Error('usage: profile.ts <create|get|list> [--quick] [--dataset-dir DIR] [--seconds N]');
  const sizes = argv.includes('--quick') ? QUICK : FULL;
  const ownDataset = !argv.includes('--dataset-dir');
  const datasetDir = ownDataset ? mkdtempSync(join(tmpdir(), 'countermand-profile-ds-')) : resolve(argv[argv.indexOf('--dataset-dir') + 1]!);
  const seconds = argv.includes('--seconds') ? Number(argv[argv.indexOf('--seconds') + 1]) : 10;
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const build = buildAll(root, log);
  const dataset = reuseDataset(sizes.dataset, datasetDir) ?? prepareDataset(sizes.dataset, datasetDir, log);
  const workDir = mkdtempSync(join(tmpdir(), 'countermand-profile-'));
  const ctx: RunContext = { root, sizes, build, dataset, workDir, fixedActionPath: writeFixedAction(workDir), analyze: argv.includes('--what-if-analyze'), log };
  const profDir = join(workDir, 'prof');
  let kept: string | null = null;
  try {
    const server = await startCountermand({
      build,
      dataDir: dataDirWithCopy(ctx, 'data'),
      fixturesPath: dataset.fixturesPath,
      settings: { ...SERVER_SETTINGS },
      probe: false,
      nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
    });
    try {
      const headers = { authorization: `Bearer ${await benchToken(server.url)}`, 'content-type': 'application/json' };
      let k = 0;
      const result =
        workload === 'create'
          ? await runLoad({
              url: server.url,
              connections: sizes.writeConnections,
              amount: sizes.dataset.idleMachines,
              method: 'POST',
              headers,
              body: JSON.stringify({ Comment: 'profile', IsolationType: 'Full' }),
              path: () => `/api/machines/${machineId(k++)}/isolate`,
            })
          : await runLoad({
              url: server.url,
              connections: sizes.readConnections,
              duration: seconds,
              method: 'GET',
              headers,
              path: () => (workload === 'get' ? `/api/machineactions/${pick(dataset.sampleActionIds)}` : listPath(pick(dataset.busyMachineIds))),
            });
      log(`${workload}: ${result.okPerSecond} 2xx/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, codes ${JSON.stringify(result.statusCodes)}`);
    } finally {
      await server.stop();
    }
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      kept = join(tmpdir(), `countermand-${workload}-${file}`);
      renameSync(join(profDir, file), kept);
    }
  } finally {
    // The work directory holds a copy of the database (and, without --dataset-dir, so does this one).
    rmSync(workDir, { recursive: true, force: true });
    if (ownDataset) rmSync(datasetDir, { recursive: true, force: true });
  }
  if (!kept) throw new Error('the server wrote no CPU profile');
  const profile = JSON.parse(readFileSync(kept, 'utf8')) as { nodes: ProfileNode[]; samples: number[] };
  const total = profile.samples.length;
  const self = new Map<string, number>();
  for (const node of profile.nodes) {
    const f = node.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|src|dist)\//, '$1/')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (node.hitCount ?? 0));
  }
  log(`\nprofile ${kept}: top self time of ${total} samples`);
  for (const [key, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) log(`${((100 * hits) / total).toFixed(1).padStart(5)}%  ${key}`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
