/** Small statistics helpers: percentiles of latency samples, medians of runs. */

/** The p-th percentile (0..100) of ascending-sorted samples, nearest-rank. NaN when there are none. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface LatencySummary {
  p50: number;
  p99: number;
  max: number;
}

/** p50, p99 and max of the first `count` samples (milliseconds). */
export function summarizeLatencies(samples: Float64Array, count: number): LatencySummary {
  const sorted = samples.slice(0, count).sort();
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[count - 1] ?? Number.NaN };
}

/** The median of some numbers (the middle one of three runs). NaN when there are none. */
export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The median of each numeric field across runs of the same shape. */
export function medianOf<T extends object>(runs: readonly T[]): { [K in keyof T]: number } {
  const out = {} as { [K in keyof T]: number };
  const first = runs[0];
  if (!first) return out;
  for (const key of Object.keys(first) as Array<keyof T>) {
    if (typeof first[key] === 'number') out[key] = median(runs.map((run) => run[key] as number));
  }
  return out;
}
