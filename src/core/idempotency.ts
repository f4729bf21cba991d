import { sha256 } from './digest.js';
import { CommandError, type CoreMcpError } from './errors.js';
import { canonicalJson, type JsonValue } from './json.js';
import type { IdempotencyRecord, Store } from './store.js';

export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** Stored idempotency records kept per principal by default: a fair share of the store. */
export const DEFAULT_KEYS_PER_PRINCIPAL = 10_000;
/** Keyed calls per principal between two trims of its records. */
const TRIM_EVERY = 100;

/** A call that carries an idempotency key: who, which key, and what it asked for. */
export interface IdempotencySlot {
  principal: string;
  key: string;
  /** SHA-256 of the command name and canonical input: a repeat must match it. */
  fingerprint: string;
}

export function idempotencySlot(
  principal: string,
  key: string,
  command: string,
  input: unknown,
): IdempotencySlot {
  const fingerprint = sha256(`${command}\u0000${canonicalJson(input as JsonValue)}`);
  return { principal, key, fingerprint };
}

/** The one place an idempotency record is built: for commits, no-op writes and stored refusals. */
export function idempotencyRecord(
  slot: IdempotencySlot,
  outcome: {
    command: string;
    doc: string;
    revision: number;
    commandId: string;
    /** `ok`, or the code of an app-level refusal. */
    outcome: string;
    /** The result, or the public error. */
    response: JsonValue;
    at: string;
  },
): IdempotencyRecord {
  return { principal: slot.principal, key: slot.key, fingerprint: slot.fingerprint, ...outcome };
}

/** Refusals worth storing for idempotent repeats: the handler ran and said no. */
export function isStoredRefusal(error: CoreMcpError): boolean {
  const { family, expose } = error.spec;
  return expose && (family === 'command' || family === 'state') && !NOT_STORED.has(error.code);
}
const NOT_STORED = new Set(['timeout', 'cancelled', 'invalid_input', 'unknown_command', 'revision_conflict']);

export function reusedKey(key: string): CommandError {
  return new CommandError(
    'idempotency_key_reused',
    `Idempotency key "${key}" was already used with a different command or input`,
  );
}

/**
 * Runs each (principal, key) at most once: a repeat arriving while the first call runs waits for its
 * outcome; a repeat arriving later finds the stored record. Refuses a key reused for other input.
 */
export class IdempotencyGuard<T> {
  readonly #store: Pick<Store, 'findIdempotency' | 'trimIdempotency'>;
  readonly #inflight = new Map<string, { fingerprint: string; done: Promise<T> }>();
  readonly #maxPerPrincipal: number;
  /** Keyed calls per principal since its records were last trimmed. */
  readonly #sinceTrim = new Map<string, number>();

  /** `maxPerPrincipal`: the most records kept per principal (default 10,000); the oldest go first. */
  constructor(
    store: Pick<Store, 'findIdempotency' | 'trimIdempotency'>,
    maxPerPrincipal = DEFAULT_KEYS_PER_PRINCIPAL,
  ) {
    this.#store = store;
    this.#maxPerPrincipal = maxPerPrincipal;
  }

  /**
   * `first` runs the call when nothing is known of the key; `repeat` answers a repeat from the first
   * call's outcome (in flight) or from the stored record.
   */
  async run(
    slot: IdempotencySlot,
    first: () => Promise<T>,
    repeat: (original: { inflight: T } | { stored: IdempotencyRecord }) => Promise<T>,
  ): Promise<T> {
    const id = `${slot.principal}\u0000${slot.key}`;
    const running = this.#inflight.get(id);
    if (running) {
      if (running.fingerprint !== slot.fingerprint) throw reusedKey(slot.key);
      return repeat({ inflight: await running.done });
    }
    const done = (async () => {
      const stored = await this.#store.findIdempotency(slot.principal, slot.key);
      if (stored) {
        if (stored.fingerprint !== slot.fingerprint) throw reusedKey(slot.key);
        return repeat({ stored });
      }
      return first();
    })();
    this.#inflight.set(id, { fingerprint: slot.fingerprint, done });
    try {
      return await done;
    } finally {
      this.#inflight.delete(id);
      this.#counted(slot.principal);
    }
  }

  /**
   * Trims a principal's records to its share every so many keyed calls (a count per principal would
   * cost a scan per call); at most `TRIM_EVERY` records over the share in between.
   */
  #counted(principal: string): void {
    const seen = (this.#sinceTrim.get(principal) ?? 0) + 1;
    if (seen < TRIM_EVERY) {
      this.#sinceTrim.set(principal, seen);
      if (this.#sinceTrim.size > 10_000) this.#sinceTrim.clear();
      return;
    }
    this.#sinceTrim.delete(principal);
    this.#store.trimIdempotency(principal, this.#maxPerPrincipal).catch(() => {
      // Housekeeping: the next trim tries again; the call itself has its answer already.
    });
  }
}
