/**
 * Preloaded into a server under test (`node --expose-gc --import probe.js ...`) when its memory
 * is measured. On SIGUSR2 it runs a full garbage collection (twice, with a pause for finalisers)
 * and writes `BENCH-PROBE {process.memoryUsage()}` to stderr. It adds no route and touches
 * nothing else; the start-to-ready runs do not load it.
 */
const gc = (globalThis as { gc?: () => void }).gc;

process.on('SIGUSR2', () => {
  gc?.();
  setTimeout(() => {
    gc?.();
    const usage = { ...process.memoryUsage(), gcAvailable: gc !== undefined };
    process.stderr.write(`BENCH-PROBE ${JSON.stringify(usage)}\n`);
  }, 200);
});
