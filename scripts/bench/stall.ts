/**
 * Event-loop stalls: the longest time a process's event loop could not run a 1 ms timer, in this
 * process or, through `stall-probe.mjs`, in a server. On a shared machine a process also stalls when
 * the OS runs someone else, so each gap is also measured less the time the thread waited for a CPU
 * (Linux's /proc/thread-self/schedstat): `ownMaxMs` is the longest gap of the process's own making
 * (a long task, a GC pause, a synchronous read), `maxMs` the longest by the clock, whatever filled it.
 */
import type { ChildProcess } from 'node:child_process';
import { openSync, readSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';

const TICK_MS = 1;
const PROBE_LINE = /^coremcp-bench-stall (\{.*\})$/m;
const PROBE_TIMEOUT_MS = 10_000;

export interface StallReading {
  /** The longest gap between two runs of the 1 ms timer, less the 1 ms, ms. */
  maxMs: number;
  /** The longest such gap less the time the thread waited for a CPU in it (= `maxMs` off Linux). */
  ownMaxMs: number;
  /** The longest garbage-collection pause in the same time (this process only). */
  gcMaxMs?: number;
  /** Whether that pause was a full (mark-compact) collection: 1, or a young-generation one: 0. */
  gcMajor?: number;
}

export interface StallMonitor {
  /** Starts a new measurement. */
  reset(): void;
  /** The stalls since the last reset, once the timer has run after them. */
  read(): Promise<StallReading>;
  stop(): void;
}

/** Milliseconds the calling thread has waited, runnable, for a CPU; 0 where the OS does not say. */
function cpuWaitClock(): () => number {
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return () => 0;
  }
  const buffer = Buffer.alloc(128);
  return () => {
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    return Number(buffer.toString('latin1', 0, length).split(' ')[1]) / 1e6;
  };
}

/** Watches this process's event loop, and its garbage-collection pauses, the usual suspects. */
export function stallMonitor(): StallMonitor {
  const waitMs = cpuWaitClock();
  let lastWall = performance.now();
  let lastWait = waitMs();
  let reading: Required<StallReading> = { maxMs: 0, ownMaxMs: 0, gcMaxMs: 0, gcMajor: 0 };
  const timer = setInterval(() => {
    const wall = performance.now();
    const wait = waitMs();
    const gap = wall - lastWall;
    reading.maxMs = Math.max(reading.maxMs, gap - TICK_MS);
    reading.ownMaxMs = Math.max(reading.ownMaxMs, gap - (wait - lastWait) - TICK_MS);
    lastWall = wall;
    lastWait = wait;
  }, TICK_MS);
  timer.unref();
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.duration <= reading.gcMaxMs) continue;
      reading.gcMaxMs = entry.duration;
      const { detail } = entry as unknown as { detail?: { kind?: number } };
      reading.gcMajor = detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR ? 1 : 0;
    }
  });
  gc.observe({ entryTypes: ['gc'] });
  return {
    // A gap under way when the measurement starts counts in full: it ends inside the measurement.
    reset: () => {
      reading = { maxMs: 0, ownMaxMs: 0, gcMaxMs: 0, gcMajor: 0 };
    },
    read: async () => {
      // The gap that ends when the timer next runs belongs to the work just done.
      await new Promise((resolve) => setTimeout(resolve, 2 * TICK_MS + 1));
      return { ...reading, maxMs: Math.max(0, reading.maxMs), ownMaxMs: Math.max(0, reading.ownMaxMs) };
    },
    stop: () => {
      clearInterval(timer);
      gc.disconnect();
    },
  };
}

/** Reads the stalls of a server started with the probe preloaded (`stallProbe: true`). */
export class StallProbe {
  readonly #child: ChildProcess;
  readonly #waiting: Array<(reading: StallReading | undefined) => void> = [];
  #buffer = '';

  constructor(child: ChildProcess) {
    if (!child.stderr) throw new Error('the stall probe reads the server’s stderr: pipe it');
    this.#child = child;
    child.stderr.on('data', (chunk: Buffer) => {
      this.#buffer += chunk.toString();
      for (;;) {
        const match = PROBE_LINE.exec(this.#buffer);
        if (!match) break;
        this.#buffer = this.#buffer.slice(match.index + match[0].length);
        this.#waiting.shift()?.(JSON.parse(match[1]!) as StallReading);
      }
      if (this.#buffer.length > 100_000) this.#buffer = this.#buffer.slice(-1000);
    });
  }

  /** Starts a new measurement in the server (its answer is dropped). */
  reset(): void {
    this.#waiting.push(() => {});
    this.#child.kill('SIGUSR2');
  }

  /** The server's stalls since the last reset or read. */
  read(): Promise<StallReading> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.#waiting.indexOf(done);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(new Error('the server did not answer the stall probe'));
      }, PROBE_TIMEOUT_MS);
      const done = (reading: StallReading | undefined) => {
        clearTimeout(timer);
        if (reading) resolve(reading);
      };
      this.#waiting.push(done);
      this.#child.kill('SIGUSR2');
    });
  }
}
