import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CommandExecutor, ExecutionReport } from '../core/executor.js';
import type { CommitEvent, StateManager } from '../core/state.js';
import type { StoreCheckpointEvent, StoreFaultEvent } from '../core/store.js';

export interface MetricsOptions {
  /** Node process metrics (CPU, memory, event loop lag, GC, handles). Default true. */
  processMetrics?: boolean;
  /** Labels added to every series, e.g. `{ instance: 'a' }`. */
  defaultLabels?: Record<string, string>;
}

/** Seconds; commands commit in well under a millisecond in process, so the buckets start at 100 µs. */
const DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Most distinct values a free-form label (an outcome code, an auth failure reason) may take. */
const MAX_LABEL_VALUES = 64;

/**
 * A label whose values come from code (error codes, failure reasons) but not from a closed list:
 * the first `MAX_LABEL_VALUES` distinct values are kept, later ones become `other`, so a bug that
 * makes codes from input cannot blow up the series count.
 */
class BoundedLabel {
  readonly #seen = new Set<string>();

  value(raw: string): string {
    if (this.#seen.has(raw)) return raw;
    if (this.#seen.size >= MAX_LABEL_VALUES || !/^[a-z][a-z0-9_]{0,63}$/.test(raw)) return 'other';
    this.#seen.add(raw);
    return raw;
  }
}

interface CommandSeries {
  duration: Histogram.Internal<'command' | 'outcome'>;
  total: Counter.Internal;
}

/**
 * coremcp's Prometheus metrics, in a registry of their own (never prom-client's global one, so two
 * cores in one process do not collide). Labels are bounded: commands are registered names or
 * `unknown`, documents are declared ones or `other`; no ids, no principals.
 */
export class CoreMetrics {
  readonly registry = new Registry();
  readonly #commandDuration: Histogram<'command' | 'outcome'>;
  readonly #commandsTotal: Counter<'command' | 'outcome'>;
  readonly #commits: Counter<'doc'>;
  readonly #conflicts: Counter;
  readonly #batchSize: Histogram;
  readonly #checkpoints: Histogram<'mode'>;
  readonly #revision: Gauge<'doc'>;
  readonly #recovery: Gauge;
  readonly #authFailures: Counter<'reason'>;
  readonly #subscriptions: Gauge;
  readonly #storeErrors: Counter<'kind'>;
  readonly #storeFaults: Counter<'kind'>;
  readonly #storeRecoveries: Counter<'kind'>;
  readonly #faultRecovery: Histogram<'kind'>;
  readonly #auditUnrecorded: Counter<'command'>;
  readonly #outcomes = new BoundedLabel();
  readonly #reasons = new BoundedLabel();
  readonly #series = new Map<string, CommandSeries>();
  readonly #subscriptionSources = new Set<() => number>();
  #state: StateManager | undefined;
  #declared = new Set<string>();
  #isCommand: (name: string) => boolean = () => false;

  constructor(options: MetricsOptions = {}) {
    const registers = [this.registry];
    if (options.defaultLabels) this.registry.setDefaultLabels(options.defaultLabels);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.#commandDuration = new Histogram({
      name: 'coremcp_command_duration_seconds',
      help: 'Time from a command entering the pipeline to its result, by command and outcome (ok or error code).',
      labelNames: ['command', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#commandsTotal = new Counter({
      name: 'coremcp_commands_total',
      help: 'Commands run, by command and outcome (ok or error code).',
      labelNames: ['command', 'outcome'],
      registers,
    });
    this.#commits = new Counter({
      name: 'coremcp_state_commits_total',
      help: 'Revisions this process committed, by document (undeclared documents count as "other").',
      labelNames: ['doc'],
      registers,
    });
    let conflictsSeen = 0;
    this.#conflicts = new Counter({
      name: 'coremcp_state_conflicts_total',
      help: 'Commits that lost a race with another writer and were re-run.',
      registers,
      collect: () => {
        const now = this.#state?.conflicts ?? 0;
        if (now > conflictsSeen) this.#conflicts.inc(now - conflictsSeen);
        conflictsSeen = now;
      },
    });
    this.#revision = new Gauge({
      name: 'coremcp_state_revision',
      help: 'Head revision of each declared document.',
      labelNames: ['doc'],
      registers,
      collect: async () => {
        const state = this.#state;
        if (!state) return;
        for (const doc of this.#declared) {
          // Heads are cached; a store that cannot answer leaves the last value rather than failing the scrape.
          const head = await state.get(doc).catch(() => undefined);
          if (head) this.#revision.set({ doc }, head.revision);
        }
      },
    });
    this.#recovery = new Gauge({
      name: 'coremcp_recovery_duration_seconds',
      help: 'Time the last recovery took: the start (opening the store, loading the declared documents), or, later, the last store fault from its first failed write to the first write that worked again.',
      registers,
    });
    this.#authFailures = new Counter({
      name: 'coremcp_auth_failures_total',
      help: 'Requests refused for missing or invalid credentials, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.#subscriptions = new Gauge({
      name: 'coremcp_active_subscriptions',
      help: 'Resource subscriptions and change-notification streams open now.',
      registers,
      collect: () => {
        let total = 0;
        for (const count of this.#subscriptionSources) total += count();
        this.#subscriptions.set(total);
      },
    });
    this.#storeErrors = new Counter({
      name: 'coremcp_store_errors_total',
      help: 'Store operations that failed, by operation (commit, loadDocument, ping, ...).',
      labelNames: ['kind'],
      registers,
    });
    this.#storeFaults = new Counter({
      name: 'coremcp_store_faults_total',
      help: 'Store operations that met a fault, by kind (busy, full, read_only, io, corrupt, replaced).',
      labelNames: ['kind'],
      registers,
    });
    this.#storeRecoveries = new Counter({
      name: 'coremcp_store_recoveries_total',
      help: 'Times the store wrote again after a fault, without a restart, by the kind of fault.',
      labelNames: ['kind'],
      registers,
    });
    this.#faultRecovery = new Histogram({
      name: 'coremcp_store_fault_duration_seconds',
      help: 'From the first failed write of a fault to the first write that succeeded after it, by kind.',
      labelNames: ['kind'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.#batchSize = new Histogram({
      name: 'coremcp_commit_batch_size',
      help: 'Commits per group commit: how many writers one store transaction answered.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    });
    this.#checkpoints = new Histogram({
      name: 'coremcp_store_checkpoint_duration_seconds',
      help: 'SQLite WAL checkpoints, by mode: passive (writers go on, though its syncs slow them), restart (writers wait while the log is rewound), truncate (writers wait while it is also cut).',
      labelNames: ['mode'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.#auditUnrecorded = new Counter({
      name: 'coremcp_audit_unrecorded_total',
      help: 'Calls answered (reads, replays) or failed whose audit record the store could not write; each is logged with its request id.',
      labelNames: ['command'],
      registers,
    });
  }

  /** The Content-Type of `render()`'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The metrics in Prometheus text format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Follows a core's pipeline and state: every command report, every commit, conflicts, head revisions. */
  bind(executor: CommandExecutor, state: StateManager): () => void {
    this.#state = state;
    this.#declared = new Set(state.declaredDocuments);
    this.#isCommand = (name) => executor.registry.get(name) !== undefined;
    executor.observe((report) => this.recordCommand(report));
    const stopBatches = state.onBatch((size) => this.#batchSize.observe(size));
    const stopCommits = state.onCommit((event) => this.recordCommit(event));
    return () => {
      stopBatches();
      stopCommits();
    };
  }

  recordCommand(report: ExecutionReport): void {
    const command = this.#isCommand(report.command) ? report.command : 'unknown';
    const outcome = report.outcome === 'ok' ? 'ok' : this.#outcomes.value(report.outcome);
    const key = `${command}\u0000${outcome}`;
    let series = this.#series.get(key);
    if (!series) {
      series = {
        duration: this.#commandDuration.labels(command, outcome),
        total: this.#commandsTotal.labels(command, outcome),
      };
      this.#series.set(key, series);
    }
    series.duration.observe(report.durationMs / 1000);
    series.total.inc();
    if (report.auditUnrecorded) this.#auditUnrecorded.inc({ command });
  }

  recordCommit(event: CommitEvent): void {
    // Another process's commits are counted by that process.
    if (event.external) return;
    this.#commits.inc({ doc: this.#declared.has(event.doc) ? event.doc : 'other' });
  }

  recordRecovery(seconds: number): void {
    this.#recovery.set(seconds);
  }

  recordAuthFailure(reason: string): void {
    this.#authFailures.inc({ reason: this.#reasons.value(reason) });
  }

  /** `kind` is the store operation that failed: a method name of the Store port. */
  recordStoreError(kind: string): void {
    this.#storeErrors.inc({ kind });
  }

  /** A store fault, or a recovery from one (`downMs`: how long writes failed). */
  recordStoreFault(event: StoreFaultEvent): void {
    if (event.type === 'fault') {
      this.#storeFaults.inc({ kind: event.kind });
      return;
    }
    this.#storeRecoveries.inc({ kind: event.kind });
    this.#faultRecovery.observe({ kind: event.kind }, event.downMs / 1000);
    this.#recovery.set(event.downMs / 1000);
  }

  recordCheckpoint(event: StoreCheckpointEvent): void {
    this.#checkpoints.observe({ mode: event.mode }, event.durationMs / 1000);
  }

  /** Adds a source of open subscriptions (a surface, an HTTP server); its count is read at scrape time. */
  countSubscriptions(source: () => number): () => void {
    this.#subscriptionSources.add(source);
    return () => this.#subscriptionSources.delete(source);
  }
}
