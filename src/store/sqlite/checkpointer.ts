import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * WAL checkpoints off the event loop. With SQLite's automatic checkpoint, the COMMIT that
 * crosses the WAL size threshold copies the log into the database file and syncs it, on the
 * event loop, stalling every request for up to hundreds of milliseconds on a large database.
 * Instead the server's connection never checkpoints (wal_autocheckpoint=0) and this worker
 * thread, with a connection of its own, runs PASSIVE checkpoints (which never block writers or
 * readers) every interval. After a complete checkpoint SQLite starts the log over, so it stays
 * small.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
let timer;
const tick = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (error) {
    parentPort.postMessage({ error: String(error) });
  }
  timer = setTimeout(tick, workerData.intervalMs);
};
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearTimeout(timer);
  db.close();
  parentPort.postMessage('stopped');
});
tick();
`;

export class Checkpointer {
  private readonly worker: Worker;

  constructor(path: string, intervalMs: number, onError: (message: string) => void) {
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, module, intervalMs } });
    this.worker.on('message', (message: unknown) => {
      if (typeof message === 'object' && message !== null && 'error' in message) onError(String((message as { error: unknown }).error));
    });
    this.worker.on('error', (error) => onError(String(error)));
    this.worker.unref();
  }

  /** Stops the worker after its current checkpoint. */
  async stop(): Promise<void> {
    const stopped = new Promise<void>((resolve) => {
      this.worker.on('message', (message) => message === 'stopped' && resolve());
      this.worker.on('exit', () => resolve());
    });
    // Unreferenced while it runs (it must not keep a process alive); referenced while stopping,
    // or a process with nothing else to do would exit before the worker answers.
    this.worker.ref();
    this.worker.postMessage('stop');
    await stopped;
    await this.worker.terminate();
  }
}
