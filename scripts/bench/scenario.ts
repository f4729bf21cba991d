/** The shape every benchmark scenario has, so `main.ts` can interleave their runs. */
import type { ChildProcess } from 'node:child_process';

/** Named numbers from one run: calls/s, p50 and p99 in ms, … */
export type Measurement = Record<string, number>;

export interface Case {
  /** Stable key the report looks results up by, e.g. `http.16.coremcp`. */
  key: string;
  /** `round` counts from 0; scenarios that compare two servers alternate which goes first. */
  run(round: number): Promise<Measurement>;
  /**
   * The bench's processes this case talks to; every other one is stopped while it runs. By default,
   * the processes its scenario started while it was prepared.
   */
  uses?: () => readonly ChildProcess[];
}

export interface Scenario {
  name: string;
  /** Run once per round, in order; each round runs every scenario's cases. */
  cases: Case[];
  /** Numbers measured once (memory, sizes), read after the last round. */
  facts?(): Measurement;
  close(): Promise<void>;
}

/** How long and how much: the full run and `--quick` differ only in these. */
export interface BenchConfig {
  quick: boolean;
  rounds: number;
  /** Measured window per load run, and the warm-up before it. */
  windowMs: number;
  warmupMs: number;
  /** Call budget per run, whatever the window. */
  maxCalls: number;
  /** Commits of history for the restart and rollback scenario. */
  historyCommits: number;
  /** How many commits one rollback reverts. */
  rollbackCommits: number;
  httpConcurrency: number[];
  stdioConcurrency: number[];
  /** Board sizes (tasks) of the scaling scenario; the largest also carries the long history. */
  scaleSizes: number[];
  /** HTTP clients in the scaling scenario. */
  scaleClients: number;
  /** Tasks per `state.update` when seeding a board. */
  seedBatch: number;
  /** Tasks one bulk add writes in one `state.update`. */
  bulkEntries: number;
}
