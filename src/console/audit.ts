import { type AuditVerdict, checkAuditHeads, GENESIS_HASH, verifyAuditRecords } from '../core/audit.js';
import type { AuditQuery, AuditRecord, Store } from '../core/store.js';

/** What the audit view filters on. Principal, command and `since` go to the store; the rest is matched here. */
export interface AuditFilter {
  principal?: string | undefined;
  command?: string | undefined;
  /** `ok`, `error` (any failure), or one error code. */
  outcome?: string | undefined;
  /** ISO times, inclusive. */
  since?: string | undefined;
  until?: string | undefined;
}

export interface AuditPage {
  records: AuditRecord[];
  /** Pass as `before` for older records. */
  next?: number;
}

/** Records read per store query when paging backwards, and at most per request. */
const WINDOW = 500;
const MAX_SCAN = 20_000;
const VERIFY_PAGE = 5000;

function matches(record: AuditRecord, filter: AuditFilter): boolean {
  if (filter.outcome !== undefined) {
    if (filter.outcome === 'error' ? record.outcome === 'ok' : record.outcome !== filter.outcome)
      return false;
  }
  if (filter.until !== undefined && record.at > filter.until) return false;
  return true;
}

/**
 * The audit trail as the console reads it: newest first, filtered, in pages, over the store's
 * ascending `readAudit`. Sequence numbers have no gaps in an intact chain, so a page is read as
 * windows of sequence numbers going back from the newest record.
 */
export class AuditBrowser {
  readonly #store: Pick<Store, 'readAudit' | 'auditHeads'>;
  #knownLast = 0;
  #verifying: Promise<AuditVerdict> | undefined;

  constructor(store: Pick<Store, 'readAudit' | 'auditHeads'>) {
    this.#store = store;
  }

  /** The newest record's sequence number (0 when there is none): a doubling then a halving search. */
  async lastSeq(): Promise<number> {
    const exists = async (seq: number) =>
      seq <= 0 || (await this.#store.readAudit({ afterSeq: seq - 1, limit: 1 })).length > 0;
    let lo = (await exists(this.#knownLast)) ? this.#knownLast : 0;
    let step = 1;
    while (await exists(lo + step)) {
      lo += step;
      step *= 2;
    }
    let hi = lo + step;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await exists(mid)) lo = mid;
      else hi = mid;
    }
    this.#knownLast = lo;
    return lo;
  }

  /** Up to `limit` matching records with `seq < before` (default: from the newest), newest first. */
  async page(
    filter: AuditFilter,
    options: { before?: number | undefined; limit: number },
  ): Promise<AuditPage> {
    const last = await this.lastSeq();
    let hi = options.before === undefined ? last : Math.min(options.before - 1, last);
    const records: AuditRecord[] = [];
    let scanned = 0;
    while (hi > 0 && scanned < MAX_SCAN) {
      const lo = Math.max(0, hi - WINDOW);
      const query: AuditQuery = { afterSeq: lo, limit: hi - lo };
      if (filter.principal !== undefined) query.principal = filter.principal;
      if (filter.command !== undefined) query.command = filter.command;
      if (filter.since !== undefined) query.since = filter.since;
      const rows = await this.#store.readAudit(query);
      for (let i = rows.length - 1; i >= 0; i--) {
        const record = rows[i]!;
        if (record.seq > hi || !matches(record, filter)) continue;
        records.push(record);
        if (records.length === options.limit) return { records, next: record.seq };
      }
      scanned += hi - lo;
      hi = lo;
    }
    return hi > 0 ? { records, next: hi + 1 } : { records };
  }

  /** Every matching record, oldest first, page by page (for export). */
  async *all(filter: AuditFilter): AsyncGenerator<AuditRecord[]> {
    let afterSeq = 0;
    for (;;) {
      const query: AuditQuery = { afterSeq, limit: VERIFY_PAGE };
      if (filter.principal !== undefined) query.principal = filter.principal;
      if (filter.command !== undefined) query.command = filter.command;
      if (filter.since !== undefined) query.since = filter.since;
      const rows = await this.#store.readAudit(query);
      if (rows.length === 0) return;
      yield rows.filter((r) => matches(r, filter));
      afterSeq = rows.at(-1)!.seq;
      if (rows.length < VERIFY_PAGE) return;
    }
  }

  /** Checks the whole chain, as `coremcp audit verify` does; callers at the same time share one run. */
  verify(): Promise<AuditVerdict> {
    this.#verifying ??= this.#verify().finally(() => {
      this.#verifying = undefined;
    });
    return this.#verifying;
  }

  async #verify(): Promise<AuditVerdict> {
    let chain: AuditVerdict & { ok: true } = { ok: true, lastHash: GENESIS_HASH, lastSeq: 0, checked: 0 };
    for (;;) {
      const rows = await this.#store.readAudit({ afterSeq: chain.lastSeq, limit: VERIFY_PAGE });
      const verdict: AuditVerdict =
        rows.length === 0 ? chain : verifyAuditRecords(rows, chain, chain.checked);
      if (!verdict.ok) return verdict;
      if (rows.length < VERIFY_PAGE) return this.#checkHeads(verdict);
      chain = verdict;
    }
  }

  /** A store with a chain per document also records each chain's head: every chain must reach it. */
  async #checkHeads(verdict: AuditVerdict & { ok: true }): Promise<AuditVerdict> {
    if (!this.#store.auditHeads) return verdict;
    const problem = checkAuditHeads(verdict.chains ?? new Map(), await this.#store.auditHeads());
    return problem === undefined
      ? verdict
      : { ok: false, checked: verdict.checked, seq: verdict.lastSeq, reason: problem };
  }
}
