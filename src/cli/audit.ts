import { setTimeout as sleep } from 'node:timers/promises';
import { checkAuditHeads, digestAuditHeads, GENESIS_HASH, verifyAuditRecords } from '../core/audit.js';
import { verifyCommitsAgainstAudit } from '../core/audit-commits.js';
import type { AuditQuery, AuditRecord, Store } from '../core/store.js';
import { type CommonOptions, configOf, integerOption, storeOf } from './context.js';
import { type Column, table, time, widths } from './format.js';
import { CheckFailed, UsageError } from './usage.js';

export interface AuditOptions extends CommonOptions {
  principal?: string;
  command?: string;
  since?: string;
  limit?: string;
  follow?: boolean;
  json?: boolean;
}

const PAGE = 5000;

async function withStore<T>(options: CommonOptions, work: (store: Store) => Promise<T>): Promise<T> {
  const store = storeOf(options, configOf(options));
  await store.open();
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

/** Reads every record matching `query` after `afterSeq`, page by page, handing each page to `each`. */
async function forEachPage(
  store: Store,
  query: AuditQuery,
  each: (records: AuditRecord[]) => void,
): Promise<number> {
  let afterSeq = query.afterSeq ?? 0;
  for (;;) {
    const page = await store.readAudit({ ...query, afterSeq, limit: PAGE });
    if (page.length === 0) return afterSeq;
    each(page);
    afterSeq = page.at(-1)!.seq;
    if (page.length < PAGE) return afterSeq;
  }
}

/**
 * Walks the whole trail: every hash recomputes, every record links to the one before it in its chain,
 * no gaps. A store with one chain prints the last hash; one with a chain per document (PostgreSQL)
 * also checks that every chain reaches the head the store recorded for it, and prints one digest of
 * all heads. Keep that value elsewhere: it anchors the trail against a rewrite of its newest records.
 * A broken trail is exit code 1, naming the first bad record.
 */
export async function auditVerify(options: CommonOptions & { json?: boolean }): Promise<void> {
  await withStore(options, async (store) => {
    let verdict = verifyAuditRecords([]);
    await forEachPage(store, {}, (records) => {
      if (!verdict.ok) return;
      verdict = verifyAuditRecords(records, verdict, verdict.checked);
    });
    if (!verdict.ok) {
      throw new CheckFailed(`audit chain broken at record ${verdict.seq}: ${verdict.reason}`);
    }
    const heads = store.auditHeads ? await store.auditHeads() : undefined;
    if (heads) {
      const problem = checkAuditHeads(verdict.chains ?? new Map(), heads);
      if (problem) throw new CheckFailed(`audit trail incomplete: ${problem}`);
    }
    const chains = verdict.chains?.size ?? 0;
    // The chain can be intact and still not be the history: compare the commits with what it sealed.
    const history = await verifyCommitsAgainstAudit(store);
    if (history.problems.length > 0) {
      throw new CheckFailed(`history does not match the audit chain:\n  ${history.problems.join('\n  ')}`);
    }
    if (options.json) {
      const report: Record<string, unknown> = {
        ok: true,
        records: verdict.checked,
        lastHash: verdict.lastHash,
        commits: history.commits,
      };
      if (heads) Object.assign(report, { chains, headsDigest: digestAuditHeads(heads) });
      process.stdout.write(`${JSON.stringify(report)}\n`);
    } else if (heads) {
      process.stdout.write(
        `audit trail intact: ${verdict.checked} records in ${chains} chains, heads digest ${digestAuditHeads(heads)}; ${history.commits} commits match the patch hashes their records sealed\n`,
      );
    } else {
      const last = verdict.lastHash === GENESIS_HASH ? '(empty)' : verdict.lastHash;
      process.stdout.write(
        `audit chain intact: ${verdict.checked} records, last hash ${last}; ${history.commits} commits match the patch hashes their records sealed\n`,
      );
    }
  });
}

const COLUMNS: ReadonlyArray<Column<AuditRecord>> = [
  { header: 'SEQ', value: (r) => String(r.seq), right: true },
  { header: 'TIME', value: (r) => time(r.at) },
  { header: 'PRINCIPAL', value: (r) => r.principal },
  { header: 'VIA', value: (r) => r.via },
  { header: 'COMMAND', value: (r) => r.command },
  { header: 'OUTCOME', value: (r) => r.outcome },
  { header: 'DOC@REV', value: (r) => (r.doc === undefined ? '-' : `${r.doc}@${r.revision ?? '-'}`) },
];

function queryOf(options: AuditOptions): AuditQuery {
  const query: AuditQuery = {};
  if (options.principal !== undefined) query.principal = options.principal;
  if (options.command !== undefined) query.command = options.command;
  if (options.since !== undefined) query.since = isoTime(options.since);
  return query;
}

function isoTime(value: string): string {
  const time = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(time.getTime()))
    throw new UsageError(
      `--since takes an ISO date or time (2026-12-01, 2026-12-01T10:00:00Z), not "${value}"`,
    );
  return time.toISOString();
}

/**
 * Follows the trail from now: each `next()` returns the records that became readable since. With the
 * store's `followAudit` (PostgreSQL, whose records become readable out of `seq` order) none is passed
 * by; otherwise by `seq`, from `afterSeq`.
 */
async function auditFollower(
  store: Store,
  query: AuditQuery,
): Promise<{ next(afterSeq: number): Promise<AuditRecord[]> }> {
  if (store.followAudit) {
    const follow = store.followAudit.bind(store);
    let { cursor } = await follow(query, undefined);
    return {
      async next() {
        const records: AuditRecord[] = [];
        for (;;) {
          const page = await follow({ ...query, limit: PAGE }, cursor);
          cursor = page.cursor;
          records.push(...page.records);
          if (page.records.length < PAGE) return records;
        }
      },
    };
  }
  return {
    async next(afterSeq) {
      const records: AuditRecord[] = [];
      await forEachPage(store, { ...query, afterSeq }, (page) => records.push(...page));
      return records;
    },
  };
}

/** The last `--limit` matching records (default 20), then with `--follow` new ones as they come. */
export async function auditTail(options: AuditOptions): Promise<void> {
  const limit = integerOption('--limit', options.limit, 1) ?? 20;
  await withStore(options, async (store) => {
    const query = queryOf(options);
    // Placed before the last records are read, so nothing committed in between is missed.
    const follower = options.follow ? await auditFollower(store, query) : undefined;
    const recent: AuditRecord[] = [];
    let lastSeq = await forEachPage(store, query, (records) => {
      recent.push(...records);
      recent.splice(0, Math.max(0, recent.length - limit));
    });
    if (options.json) for (const r of recent) process.stdout.write(`${JSON.stringify(r)}\n`);
    else
      process.stdout.write(
        table(COLUMNS, recent, {
          empty: options.follow ? 'no audit records yet; following' : 'no audit records',
        }),
      );
    if (!follower) return;
    // The follower may meet records already shown (readable when the last ones were read): once each.
    const shown = new Set(recent.map((r) => r.seq));
    // Rows that come later line up with the first ones, as far as they fit.
    const minWidths = widths(COLUMNS, recent);
    const print = (r: AuditRecord) =>
      process.stdout.write(
        options.json ? `${JSON.stringify(r)}\n` : table(COLUMNS, [r], { header: false, minWidths }),
      );
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    process.once('SIGTERM', () => stop.abort());
    while (!stop.signal.aborted) {
      await sleep(500, undefined, { signal: stop.signal }).catch(() => {});
      for (const record of await follower.next(lastSeq)) {
        lastSeq = Math.max(lastSeq, record.seq);
        if (shown.delete(record.seq)) continue;
        print(record);
      }
    }
  });
}

/** Every matching record as JSON lines (for a SIEM, or an archive). */
export async function auditExport(options: AuditOptions): Promise<void> {
  if (options.since === undefined) throw new UsageError('audit export needs --since T (an ISO date or time)');
  await withStore(options, async (store) => {
    await forEachPage(store, queryOf(options), (records) => {
      process.stdout.write(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
    });
  });
}
