import { canonicalJson, type JsonValue, parsePointer } from './json.js';
import { applyPatch, type JsonPatch } from './patch.js';
import type { Store } from './store.js';

/** What `verifyHistory` found for one document. */
export interface HistoryReport {
  doc: string;
  head: number;
  oldestRevision: number;
  commits: number;
  snapshots: number;
  problems: string[];
}

const PAGE = 1000;
/** Problems reported per document at most: one broken link usually breaks everything after it. */
const MAX_PROBLEMS = 20;

/**
 * Replays a document's history against what the store holds: from the snapshot at the retention
 * point, every commit in order (revisions gapless up to the head), each stored snapshot equal to the
 * replay at its revision, and the inverse patches, applied backwards from the head, leading back to
 * the first snapshot. Collections are stored entry by entry, not in snapshots, so patches to them
 * are left out of the replay (their entries and indexes are checked by the database's own check).
 */
export async function verifyHistory(store: Store, doc: string): Promise<HistoryReport> {
  const info = (await store.listDocuments()).find((d) => d.doc === doc);
  if (!info) throw new Error(`no document "${doc}"`);
  const report: HistoryReport = {
    doc,
    head: info.revision,
    oldestRevision: info.oldestRevision,
    commits: 0,
    snapshots: 0,
    problems: [],
  };
  const problem = (text: string) => {
    if (report.problems.length < MAX_PROBLEMS) report.problems.push(text);
  };
  const loaded = await store.loadDocument(doc);
  const collections = new Set(Object.keys(loaded?.collections ?? {}));
  // A member may have become a collection since an old snapshot was written (a restructure): compare
  // plain parts only.
  const plain = (value: JsonValue): JsonValue => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    return Object.fromEntries(Object.entries(value).filter(([key]) => !collections.has(key)));
  };
  const plainOps = (patch: JsonPatch): JsonPatch =>
    patch.filter((op) => {
      const top = parsePointer(op.path)[0];
      return top === undefined || !collections.has(top);
    });

  const first = await store.readSnapshot(doc, info.oldestRevision);
  if (!first || first.revision !== info.oldestRevision) {
    problem(`no snapshot at the retention point, revision ${info.oldestRevision}`);
    return report;
  }
  report.snapshots = 1;
  const start = plain(first.value);
  let value: JsonValue = start;
  let revision = first.revision;
  let lastSnapshot = first.revision;
  const inverses: JsonPatch[] = [];
  for (;;) {
    const page = await store.readCommits(doc, { after: revision, limit: PAGE });
    for (const commit of page) {
      if (commit.revision !== revision + 1) problem(`revision ${revision + 1} is missing`);
      try {
        value = applyPatch(value, plainOps(commit.patches));
      } catch {
        problem(`the patch of revision ${commit.revision} does not apply to revision ${revision}`);
      }
      inverses.push(plainOps(commit.inverse));
      revision = commit.revision;
      report.commits++;
      const snapshot = await store.readSnapshot(doc, revision);
      if (snapshot && snapshot.revision > lastSnapshot) {
        lastSnapshot = snapshot.revision;
        report.snapshots++;
        if (
          snapshot.revision === revision &&
          canonicalJson(plain(snapshot.value)) !== canonicalJson(plain(value))
        )
          problem(`the snapshot at revision ${revision} differs from the replayed history`);
      }
    }
    if (page.length < PAGE || report.problems.length >= MAX_PROBLEMS) break;
  }
  if (revision !== info.revision)
    problem(`the history ends at revision ${revision}, the head is ${info.revision}`);
  let back = value;
  try {
    for (let i = inverses.length - 1; i >= 0; i--) back = applyPatch(back, inverses[i]!);
    if (canonicalJson(plain(back)) !== canonicalJson(start))
      problem(`undoing every commit does not lead back to the snapshot at revision ${first.revision}`);
  } catch {
    problem('an inverse patch does not apply');
  }
  return report;
}
