/**
 * Event-loop stalls: the longest time a process's event loop could not run a 1 ms timer, read with
 * `perf_hooks.monitorEventLoopDelay`, in this process or, through `stall-probe.mjs`, in a server.
 */
import type { ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

const RESOLUTION_MS = 1;
const PROBE_LINE = /^coremcp-bench-stall (\{.*\})$/m;
const PROBE_TIMEOUT_MS = 10_000;

export interface StallReading {
  /** The longest stall, ms (the longest timer interval less the 1 ms it was set for). */
  maxMs: number;
  p99Ms: number;
  /** The longest garbage-collection pause in the same time (this process only). */
  gcMaxMs?: number;
}

export interface StallMonitor {
  /** Starts a new measurement. */
  reset(): void;
  /** The stalls since the last reset. */
  read(): StallReading;
  stop(): void;
}

/** Watches this process's event loop, and its garbage-collection pauses, the usual suspects. */
export function stallMonitor(): StallMonitor {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  let gcMaxMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMaxMs = Math.max(gcMaxMs, entry.duration);
  });
  gc.observe({ entryTypes: ['gc'] });
  const stall = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  return {
    reset: () => {
      histogram.reset();
      gcMaxMs = 0;
    },
    read: () => ({
      maxMs: histogram.count > 0 ? stall(histogram.max) : 0,
      p99Ms: histogram.count > 0 ? stall(histogram.percentile(99)) : 0,
      gcMaxMs,
    }),
    stop: () => {
      histogram.disable();
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
