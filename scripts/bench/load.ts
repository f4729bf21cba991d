/**
 * The closed-loop load generator: `concurrency` workers each issue one call, wait for it, and issue
 * the next, until the time window or the call budget runs out. The same loop drives in-process
 * commands, HTTP and stdio; only the `call` function differs.
 */
import { summarizeLatencies } from './stats.js';

/** One call by worker `worker`; resolves false (or throws) when the call failed. */
export type CallFn = (worker: number) => Promise<boolean>;

export interface LoadOptions {
  concurrency: number;
  /** Measured window. */
  durationMs: number;
  /** Unmeasured calls before it, so the JIT and caches are warm. */
  warmupMs: number;
  /** Upper bound on measured calls, whatever the window. */
  maxCalls: number;
  /** Called when the measured window starts, after the warm-up. */
  onMeasureStart?: () => void;
  /**
   * Untimed work after each call, before the worker's next one (yielding to the event loop, undoing
   * what the call did): inside the window, so it lowers calls/s, but never in a call's latency.
   */
  between?: (worker: number) => Promise<void>;
}

export interface LoadResult {
  calls: number;
  /** Calls made during the warm-up, not measured. */
  warmupCalls: number;
  errors: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** CPU this process (the generator) used per wall-clock second of the window: 1.0 = one core busy. */
  generatorCpu: number;
  firstError: string | undefined;
}

interface Window {
  deadline: number;
  budget: number;
  issued: number;
  done: number;
  errors: number;
  firstError: string | undefined;
  latencies: Float64Array | undefined;
  between: ((worker: number) => Promise<void>) | undefined;
}

async function worker(call: CallFn, id: number, window: Window): Promise<void> {
  while (window.issued < window.budget && performance.now() < window.deadline) {
    window.issued++;
    const started = performance.now();
    let ok: boolean;
    try {
      ok = await call(id);
    } catch (error) {
      ok = false;
      window.firstError ??= error instanceof Error ? error.message : String(error);
    }
    if (window.latencies) window.latencies[window.done] = performance.now() - started;
    window.done++;
    if (!ok) window.errors++;
    if (window.between) await window.between(id);
  }
}

function runWindow(call: CallFn, concurrency: number, window: Window): Promise<unknown> {
  return Promise.all(Array.from({ length: concurrency }, (_, id) => worker(call, id, window)));
}

export async function runLoad(call: CallFn, options: LoadOptions): Promise<LoadResult> {
  const warmupBudget = Math.max(options.concurrency, Math.ceil(options.maxCalls / 4));
  const warmup: Window = {
    deadline: performance.now() + options.warmupMs,
    budget: warmupBudget,
    issued: 0,
    done: 0,
    errors: 0,
    firstError: undefined,
    latencies: undefined,
    between: options.between,
  };
  await runWindow(call, options.concurrency, warmup);
  const window: Window = {
    deadline: 0,
    budget: options.maxCalls,
    issued: 0,
    done: 0,
    errors: 0,
    firstError: undefined,
    latencies: new Float64Array(options.maxCalls),
    between: options.between,
  };
  options.onMeasureStart?.();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  window.deadline = started + options.durationMs;
  await runWindow(call, options.concurrency, window);
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const latency = summarizeLatencies(window.latencies!, window.done);
  return {
    calls: window.done,
    warmupCalls: warmup.done,
    errors: window.errors,
    callsPerSec: (window.done / elapsedMs) * 1000,
    p50Ms: latency.p50,
    p99Ms: latency.p99,
    maxMs: latency.max,
    generatorCpu: (cpu.user + cpu.system) / 1000 / elapsedMs,
    firstError: window.firstError,
  };
}

/** The numbers of a load result, for the report; a failed call is reported on stderr, once per run. */
export function measurementOf(result: LoadResult, label: string): Record<string, number> {
  if (result.errors > 0) {
    process.stderr.write(
      `bench: ${label}: ${result.errors} of ${result.calls} calls failed: ${result.firstError}\n`,
    );
  }
  const { firstError: _, ...numbers } = result;
  return numbers;
}
