import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  IsolatedCircuitError,
  retry,
  TimeoutStrategy,
  timeout,
  wrap,
} from 'cockatiel';
import { isCoreMcpError, type RecoveryCode, RecoveryError } from '../core/errors.js';
import type { StoreFaultEvent, StoreFaultKind } from '../core/store.js';

/** The kind of store fault a SQLite error is, by its extended result code; undefined for anything else. */
export function sqliteFaultOf(error: unknown): StoreFaultKind | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return undefined;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return 'busy';
  if (code === 'SQLITE_FULL') return 'full';
  // The file was renamed or deleted under the connection: its writes would go nowhere anyone reads.
  if (code === 'SQLITE_READONLY_DBMOVED') return 'replaced';
  if (code.startsWith('SQLITE_READONLY')) return 'read_only';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return 'corrupt';
  if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_NOMEM')
    return 'io';
  return undefined;
}

const FAULTS: Record<StoreFaultKind, { code: RecoveryCode; message: string }> = {
  busy: {
    code: 'store_busy',
    message: 'another process holds the database write lock (a backup, the CLI, a second server)',
  },
  full: { code: 'storage_full', message: 'the disk holding the database is full' },
  read_only: { code: 'store_read_only', message: 'the database file or its file system is read-only' },
  io: { code: 'store_unavailable', message: 'the database file could not be read or written (I/O error)' },
  corrupt: { code: 'store_corrupt', message: 'the database file is corrupt or not a coremcp database' },
  replaced: {
    code: 'store_corrupt',
    message: 'the database file or its write-ahead log was replaced or deleted under the server',
  },
};

/** The typed error for a fault: one line for an operator's log (never shown to clients). */
export function storeFaultError(kind: StoreFaultKind, cause?: unknown): RecoveryError {
  const { code, message } = FAULTS[kind];
  return new RecoveryError(code, message, { cause, details: { fault: kind } });
}

/** A SQLite error as its typed fault; anything else unchanged. */
export function typedStoreError(error: unknown): unknown {
  if (isCoreMcpError(error)) return error;
  const kind = sqliteFaultOf(error);
  return kind === undefined ? error : storeFaultError(kind, error);
}

export interface StoreGuardOptions {
  /** Runs before each write (the store starts its WAL checkpointer at the first). */
  beforeWrite?: (() => void) | undefined;
  /** The longest a write waits, in all, for another process's write lock (default 2,000 ms). */
  busyWaitMs?: number | undefined;
  /** How long the circuit stays open before one call probes the store again (default 50 ms). */
  halfOpenAfterMs?: number | undefined;
  onEvent?: ((event: StoreFaultEvent) => void) | undefined;
  /**
   * A second look at a fault, given what SQLite said: SQLite reports a write refused by a file made
   * read-only under it as an I/O error, which only the file itself can tell apart.
   */
  refine?: ((kind: StoreFaultKind) => StoreFaultKind) | undefined;
}

/**
 * What stands between a synchronous SQLite write and the event loop. A write runs at once (the
 * common case costs nothing more); a busy lock is waited for asynchronously, with exponential backoff
 * and jitter, up to `busyWaitMs` in all, so the loop (and /healthz) keeps running meanwhile. A fault
 * that outlasts that opens a circuit breaker: calls fail fast with `circuit_open` (a failed call's own
 * audit record does not wait a second time) until, `halfOpenAfterMs` later, one call probes and its
 * success closes the circuit. cockatiel does the retry, the timeout and the breaker.
 */
export class StoreGuard {
  readonly #breaker;
  readonly #patient;
  readonly #patientAlone;
  readonly #onEvent: (event: StoreFaultEvent) => void;
  readonly #halfOpenAfterMs: number;
  readonly #refine: (kind: StoreFaultKind) => StoreFaultKind;
  readonly #beforeWrite: (() => void) | undefined;
  #down: { kind: StoreFaultKind; since: number } | undefined;
  /** The fault that last opened the circuit: what `circuit_open` names while it stays open. */
  #openedBy: StoreFaultKind = 'io';
  #isolated: { kind: StoreFaultKind; dispose: () => void } | undefined;

  constructor(options: StoreGuardOptions = {}) {
    this.#onEvent = options.onEvent ?? (() => {});
    this.#halfOpenAfterMs = options.halfOpenAfterMs ?? 50;
    this.#refine = options.refine ?? ((kind) => kind);
    this.#beforeWrite = options.beforeWrite;
    this.#breaker = circuitBreaker(
      handleWhen((error) => sqliteFaultOf(error) !== undefined),
      { halfOpenAfter: this.#halfOpenAfterMs, breaker: new ConsecutiveBreaker(1) },
    );
    const waitForLock = retry(
      handleWhen((error) => sqliteFaultOf(error) === 'busy'),
      {
        maxAttempts: Number.MAX_SAFE_INTEGER,
        backoff: new ExponentialBackoff({ initialDelay: 2, maxDelay: 40 }),
      },
    );
    // Cooperative: the retry loop stops at the deadline and rethrows the last busy error.
    const deadline = timeout(options.busyWaitMs ?? 2000, TimeoutStrategy.Cooperative);
    this.#patient = wrap(this.#breaker, deadline, waitForLock);
    this.#patientAlone = wrap(deadline, waitForLock);
  }

  /** Whether writes are refused because the file was replaced or lost (see `isolate`). */
  get isolated(): StoreFaultKind | undefined {
    return this.#isolated?.kind;
  }

  /** Runs a write: at once when all is well, through retry and breaker when it meets a fault. */
  async write<T>(fn: () => T): Promise<T> {
    this.#beforeWrite?.();
    if (this.#breaker.state === CircuitState.Closed) {
      try {
        const result = fn();
        if (this.#down) this.#recovered();
        return result;
      } catch (error) {
        const kind = sqliteFaultOf(error);
        if (kind === undefined) throw error;
        // Only a busy lock is worth another try; any other fault is handed to the breaker as it is.
        if (kind !== 'busy')
          return this.#guarded(() =>
            this.#breaker.execute(() => {
              throw error;
            }),
          );
      }
    }
    return this.#guarded(() => this.#patient.execute(() => fn()));
  }

  /**
   * Background work no caller waits for (a snapshot): it waits for a busy lock like a write, but
   * what it meets never opens the circuit. Its retries run on timers, which a process busy with
   * callers' writes may hold off past the deadline while those writes succeed: optional work that
   * gave up must not refuse the calls behind it. Faults are typed; refused while the circuit is open.
   */
  async writeLater<T>(fn: () => T): Promise<T> {
    if (this.#breaker.state !== CircuitState.Closed) return this.write(fn);
    this.#beforeWrite?.();
    try {
      return await this.#patientAlone.execute(() => fn());
    } catch (error) {
      const kind = sqliteFaultOf(error);
      throw kind === undefined ? error : storeFaultError(this.#refine(kind), error);
    }
  }

  /** One attempt through the breaker, no waiting for a lock: readiness probes. */
  async probe<T>(fn: () => T): Promise<T> {
    return this.#guarded(() => this.#breaker.execute(() => fn()));
  }

  /** Runs a read: it never takes the write lock, so no retry; a fault is typed and counted. */
  read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      const kind = sqliteFaultOf(error);
      if (kind === undefined) throw error;
      this.#onEvent({ type: 'fault', kind });
      throw storeFaultError(kind, error);
    }
  }

  /** Holds the circuit open until `release` (the database file was replaced or lost). */
  isolate(kind: StoreFaultKind): void {
    if (this.#isolated) return;
    this.#isolated = { kind, dispose: this.#breaker.isolate().dispose };
    this.#onEvent({ type: 'fault', kind });
    this.#down ??= { kind, since: performance.now() };
  }

  release(): void {
    this.#isolated?.dispose();
    this.#isolated = undefined;
  }

  async #guarded<T>(run: () => Promise<T>): Promise<T> {
    try {
      const result = await run();
      if (this.#down) this.#recovered();
      return result;
    } catch (error) {
      if (error instanceof IsolatedCircuitError) {
        throw storeFaultError(this.#isolated?.kind ?? 'replaced', error);
      }
      if (error instanceof BrokenCircuitError) {
        const kind = this.#down?.kind ?? this.#openedBy;
        throw new RecoveryError(
          'circuit_open',
          `store writes are paused after a fault (${FAULTS[kind].code})`,
          {
            cause: error,
            details: { retryAfterSeconds: Math.max(1, Math.ceil(this.#halfOpenAfterMs / 1000)), fault: kind },
          },
        );
      }
      const kind = sqliteFaultOf(error);
      if (kind === undefined) throw error;
      return this.#fail(kind, error);
    }
  }

  #fail(raw: StoreFaultKind, error: unknown): never {
    const kind = this.#refine(raw);
    this.#openedBy = kind;
    this.#onEvent({ type: 'fault', kind });
    this.#down ??= { kind, since: performance.now() };
    throw storeFaultError(kind, error);
  }

  #recovered(): void {
    const down = this.#down!;
    this.#down = undefined;
    this.#onEvent({ type: 'recovered', kind: down.kind, downMs: performance.now() - down.since });
  }
}
