import type { Registry } from 'prom-client';
import type { MetricsPoint } from './wire.js';

interface Sample {
  t: number;
  /** Cumulative command count per histogram bucket (`le`, seconds; +Inf last), summed over labels. */
  buckets: Array<[le: number, count: number]>;
  commands: number;
  commits: number;
  /** Cumulative failed commands by error code. */
  errors: Map<string, number>;
}

export interface MetricsSamplerOptions {
  /** Time between samples (default 5 s). */
  intervalMs?: number | undefined;
  /** How many intervals are kept (default 120: ten minutes at 5 s). */
  intervals?: number | undefined;
}

const DURATION = 'coremcp_command_duration_seconds';
const COMMANDS = 'coremcp_commands_total';
const COMMITS = 'coremcp_state_commits_total';

type Values = Array<{
  value: number;
  labels: Record<string, string | number | undefined>;
  metricName?: string;
}>;

async function valuesOf(registry: Registry, name: string): Promise<Values> {
  const metric = registry.getSingleMetric(name);
  return metric ? ((await metric.get()).values as Values) : [];
}

/** A quantile of the observations between two cumulative bucket lists, as Prometheus' histogram_quantile. */
function quantile(q: number, buckets: Array<[number, number]>, total: number): number | null {
  if (total <= 0) return null;
  const rank = q * total;
  let previousLe = 0;
  let previousCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Number.POSITIVE_INFINITY) return previousLe;
      const inBucket = count - previousCount;
      const within = inBucket > 0 ? (rank - previousCount) / inBucket : 1;
      return previousLe + (le - previousLe) * within;
    }
    previousLe = le;
    previousCount = count;
  }
  return previousLe;
}

/**
 * The last minutes of the core's own Prometheus series, sampled every few seconds: what the console's
 * charts draw (commands/s, p50/p99 latency, errors by code, commits/s). It reads the same registry
 * `/metrics` renders, so the charts and a scraper never disagree, and the command path pays nothing.
 */
export class MetricsSampler {
  readonly intervalMs: number;
  /** How many intervals are kept. */
  readonly intervals: number;
  readonly #registry: Registry;
  readonly #keep: number;
  readonly #samples: Sample[] = [];
  #timer: NodeJS.Timeout | undefined;
  #sampling: Promise<void> | undefined;

  constructor(registry: Registry, options: MetricsSamplerOptions = {}) {
    this.#registry = registry;
    this.intervalMs = options.intervalMs ?? 5000;
    this.intervals = options.intervals ?? 120;
    this.#keep = this.intervals + 1;
  }

  /** Takes a first sample and one every interval until `stop()`; the timer never keeps the process alive. */
  start(): void {
    if (this.#timer) return;
    void this.sample();
    this.#timer = setInterval(() => void this.sample(), this.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one sample now (sampling never throws: a failed read leaves a gap). */
  sample(): Promise<void> {
    this.#sampling ??= this.#take()
      .catch(() => {})
      .finally(() => {
        this.#sampling = undefined;
      });
    return this.#sampling;
  }

  /** One point per interval between consecutive samples, oldest first. */
  points(): MetricsPoint[] {
    const points: MetricsPoint[] = [];
    for (let i = 1; i < this.#samples.length; i++) {
      const a = this.#samples[i - 1]!;
      const b = this.#samples[i]!;
      const seconds = Math.max(0.001, (b.t - a.t) / 1000);
      const before = new Map(a.buckets);
      const buckets = b.buckets.map(([le, count]): [number, number] => [le, count - (before.get(le) ?? 0)]);
      const commands = b.commands - a.commands;
      const errors: Record<string, number> = {};
      for (const [code, count] of b.errors) {
        const delta = count - (a.errors.get(code) ?? 0);
        if (delta > 0) errors[code] = delta;
      }
      const p50 = quantile(0.5, buckets, commands);
      const p99 = quantile(0.99, buckets, commands);
      points.push({
        t: b.t,
        commandsPerSecond: commands / seconds,
        commitsPerSecond: (b.commits - a.commits) / seconds,
        p50Ms: p50 === null ? null : p50 * 1000,
        p99Ms: p99 === null ? null : p99 * 1000,
        errors,
      });
    }
    return points;
  }

  async #take(): Promise<void> {
    const [duration, commands, commits] = await Promise.all([
      valuesOf(this.#registry, DURATION),
      valuesOf(this.#registry, COMMANDS),
      valuesOf(this.#registry, COMMITS),
    ]);
    const byLe = new Map<number, number>();
    for (const v of duration) {
      if (v.metricName !== `${DURATION}_bucket`) continue;
      const le = v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le);
      byLe.set(le, (byLe.get(le) ?? 0) + v.value);
    }
    const errors = new Map<string, number>();
    let total = 0;
    for (const v of commands) {
      total += v.value;
      const outcome = String(v.labels.outcome ?? 'ok');
      if (outcome !== 'ok') errors.set(outcome, (errors.get(outcome) ?? 0) + v.value);
    }
    let committed = 0;
    for (const v of commits) committed += v.value;
    this.#samples.push({
      t: Date.now(),
      buckets: [...byLe].sort((x, y) => x[0] - y[0]),
      commands: total,
      commits: committed,
      errors,
    });
    if (this.#samples.length > this.#keep) this.#samples.shift();
  }
}
