/**
 * The bench's side of `board-worker.ts`: starts a worker on a database, sends it requests one at a
 * time and waits for each answer. Workers are tracked like servers, so `killAll` ends them too.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stop, track } from './servers.js';

const WORKER = fileURLToPath(new URL('./board-worker.ts', import.meta.url));
const READY_TIMEOUT_MS = 120_000;
const EXIT_TIMEOUT_MS = 30_000;

/** What a worker reports once its core is open. */
export interface WorkerReady {
  /** `createCore` wall time: open the store, load the declared documents. */
  openMs: number;
  /** The same as the core measures it (`core.recoveryMs`). */
  recoveryMs: number;
  /** Entries on the board. */
  entries: number;
  rssMb: number;
  heapMb: number;
}

export interface WorkerRequest {
  id: number;
  op: string;
  args?: unknown;
}

type WorkerMessage = { ready: WorkerReady } | { id: number; result?: unknown; error?: string };

export class BoardWorker {
  readonly child: ChildProcess;
  readonly ready: WorkerReady;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;

  private constructor(child: ChildProcess, ready: WorkerReady) {
    this.child = child;
    this.ready = ready;
    child.on('message', (message: WorkerMessage) => {
      if ('ready' in message) return;
      const waiter = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(`board worker: ${message.error}`));
      else waiter?.resolve(message.result);
    });
    child.once('exit', (code) => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error(`board worker exited (${code})`));
      this.#pending.clear();
    });
  }

  /**
   * Starts a worker on `path`; with `clockAt`, its core's clock stands still at that time;
   * `nodeFlags` go to its `node` (e.g. `--cpu-prof`).
   */
  static start(path: string, options: { clockAt?: string; nodeFlags?: string[] } = {}): Promise<BoardWorker> {
    const child = track(
      fork(WORKER, [path, ...(options.clockAt ? [options.clockAt] : [])], {
        execArgv: ['--import', 'tsx', ...(options.nodeFlags ?? [])],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      }),
    );
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`board worker on ${path} did not start`)),
        READY_TIMEOUT_MS,
      );
      child.on('message', (message: WorkerMessage) => {
        if (!('ready' in message)) return;
        clearTimeout(timer);
        resolve(new BoardWorker(child, message.ready));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`board worker on ${path} exited with ${code} before it was ready`));
      });
    });
  }

  call<T = Record<string, number>>(op: string, args?: unknown): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.child.send({ id, op, args } satisfies WorkerRequest);
    });
  }

  /** Closes the core (a clean close of the database) and waits for the process to end. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.call('close').catch(() => {});
    // It exits by itself once closed (writing a --cpu-prof profile on the way); stop it if it hangs.
    const timer = setTimeout(() => void stop(this.child), EXIT_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}
