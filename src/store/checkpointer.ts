import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { StoreCheckpointEvent } from '../core/store.js';

/**
 * Runs SQLite WAL checkpoints on a worker thread with its own connection, so a commit never pays for
 * copying the log back into the database (a few milliseconds every thousand pages, otherwise charged
 * to whichever commit crosses the threshold). PASSIVE checkpoints never block writers (though on a
 * small machine their syncs slow the commits that run meanwhile); under sustained
 * writes the log is bounded by a RESTART checkpoint once it passes `walLimitBytes` (writers then
 * overwrite it from the start), and it is emptied (TRUNCATE) only after a second idle: cutting a file
 * of many MiB takes 10–20 ms, all of it holding writers off. A writer of much log (a compaction) can
 * ask for a run between ticks (`runNow`), and that run rewinds the log whatever its size.
 */
const WORKER = `
const { statSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 100');
const version = db.prepare('PRAGMA data_version').pluck();
const walPath = workerData.path + '-wal';
const walSize = () => statSync(walPath, { throwIfNoEntry: false })?.size ?? 0;
// A frame of the log: a 24-byte header and one page.
const frameBytes = db.pragma('page_size', { simple: true }) + 24;
let seen = -1;
let idleTicks = 0;
let last = '';
const clock = () => performance.timeOrigin + performance.now();
// Each checkpoint run, for metrics: how long it held the log (and, past PASSIVE, the writers).
const run = (mode, startedAt, frames) =>
  parentPort.postMessage({ kind: 'checkpoint', mode, startedAt, durationMs: clock() - startedAt, frames });
const checkpoint = (asked) => {
  try {
    // data_version moves when another connection commits: an idle database costs one cheap read.
    const now = version.get();
    if (now === seen && !asked) {
      // Idle for a while: give the log's disk space back (the file is truncated to zero bytes).
      const size = ++idleTicks === workerData.idleTicks ? walSize() : 0;
      if (size > 0) {
        const startedAt = clock();
        db.pragma('wal_checkpoint(TRUNCATE)');
        // TRUNCATE reports the log it left (none): the frames the file held before are the news.
        run('truncate', startedAt, Math.max(0, Math.floor((size - 32) / frameBytes)));
      }
      return;
    }
    seen = now;
    idleTicks = 0;
    // A PASSIVE checkpoint copies the log back without blocking anyone, but under sustained writes it
    // never catches up with the last frame, so no writer restarts the log and it grows without bound.
    // Once the live log passes the limit, a RESTART holds writers off until it is rewound (2–4 ms):
    // only once a PASSIVE has copied every frame, so it has little left to copy. The live log is its
    // frames, not the file: the file keeps its size after a rewind (the next writers overwrite it in
    // place rather than grow a freshly cut one), so its size would ask for a RESTART on every tick.
    // Far past the limit (a reader kept PASSIVE from finishing), TRUNCATE copies whatever is left
    // and cuts the file.
    let startedAt = clock();
    const [result] = db.pragma('wal_checkpoint(PASSIVE)');
    run('passive', startedAt, result.log);
    const copied = result.log === result.checkpointed;
    startedAt = clock();
    if (walSize() > 4 * workerData.walLimitBytes) {
      db.pragma('wal_checkpoint(TRUNCATE)');
      run('truncate', startedAt, result.log);
    } else if (copied && (asked ? result.log > 0 : result.log * frameBytes > workerData.walLimitBytes)) {
      // Asked for by a writer that paused (a compaction): rewind now, while little is written. A
      // RESTART waits for readers holding the writers off; an asked one, every few batches, waits
      // 10 ms at most (a reader holding a snapshot then leaves the log to the next one).
      if (asked) db.pragma('busy_timeout = 10');
      try {
        db.pragma('wal_checkpoint(RESTART)');
        run('restart', startedAt, result.log);
      } finally {
        if (asked) db.pragma('busy_timeout = 100');
      }
    }
    last = '';
  } catch (error) {
    const message = String(error && error.message);
    if (message !== last) parentPort.postMessage({ kind: 'error', message });
    last = message;
  }
};
const timer = setInterval(() => checkpoint(false), workerData.intervalMs);
parentPort.on('message', (message) => {
  // Asked for between ticks (a compaction waits for one after each stretch of deletes).
  if (message === 'now') {
    checkpoint(true);
    parentPort.postMessage({ kind: 'ran' });
    return;
  }
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export interface Checkpointer {
  /**
   * Runs a checkpoint now, between the worker's ticks, and resolves once it ran (or after
   * `timeoutMs`, or at once if the worker has stopped): a writer of much log can let it catch up.
   */
  runNow(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

type WorkerMessage =
  | ({ kind: 'checkpoint' } & StoreCheckpointEvent)
  | { kind: 'error'; message: string }
  | { kind: 'ran' };

/**
 * `onCheckpoint` hears of every checkpoint run (not of idle ticks, which run none); `onError` hears
 * about failed checkpoints (retried on the next tick); `onExit` is called if the
 * worker dies before `stop()`, so the caller can hand checkpoints back to SQLite.
 */
export function startCheckpointer(
  path: string,
  options: { intervalMs: number; walLimitBytes: number },
  handlers: {
    onError: (message: string) => void;
    onExit: (message: string) => void;
    onCheckpoint?: (event: StoreCheckpointEvent) => void;
  },
): Checkpointer {
  const module = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: {
      module,
      path,
      intervalMs: options.intervalMs,
      walLimitBytes: options.walLimitBytes,
      idleTicks: Math.max(1, Math.round(1000 / options.intervalMs)),
    },
  });
  let stopping = false;
  let running = true;
  let failure = 'exited';
  // Callers of runNow, in the order their requests went to the worker (it answers each in turn).
  const waiting: Array<() => void> = [];
  const release = () => {
    for (const resolve of waiting.splice(0)) resolve();
  };
  worker.on('message', (message: WorkerMessage) => {
    if (message.kind === 'ran') return waiting.shift()?.();
    if (message.kind === 'error') return handlers.onError(message.message);
    const { kind: _, ...event } = message;
    handlers.onCheckpoint?.(event);
  });
  worker.on('error', (error) => {
    failure = error.message;
  });
  const exited = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      running = false;
      release();
      if (!stopping) handlers.onExit(failure);
      resolve();
    }),
  );
  // After the listeners: attaching a 'message' listener refs the worker again.
  worker.unref();
  return {
    runNow(timeoutMs = 1000) {
      if (!running || stopping) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          const at = waiting.indexOf(done);
          if (at >= 0) waiting[at] = () => {};
          resolve();
        }, timeoutMs);
        // Not unref'd: a CLI compaction waiting here has nothing else keeping the process alive.
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        waiting.push(done);
        worker.postMessage('now');
      });
    },
    async stop() {
      stopping = true;
      release();
      // Keep the process alive until the worker has closed its connection.
      worker.ref();
      worker.postMessage('stop');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
      await worker.terminate();
    },
  };
}
