import { hashPatch } from './patch.js';
import type { AuditRecord, CommitRecord, Store } from './store.js';

const PAGE = 1000;
/** Problems reported at most: a rewrite usually breaks many records the same way. */
const MAX_PROBLEMS = 50;

/**
 * Checks history against the audit chain, the other way round from the chain walk: every commit names
 * an audit record that exists, that record names the commit (document, revision, command id), and the
 * `patchHash` it sealed is the hash of the patch the commit holds now. So a patch rewritten in the
 * database, or audit records deleted from the end of the chain while commits still name them, fail.
 * Also asks the store whether its indexed audit columns still say what each sealed record says.
 */
export async function verifyCommitsAgainstAudit(
  store: Store,
): Promise<{ commits: number; problems: string[] }> {
  const problems: string[] = [];
  const problem = (text: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push(text);
  };
  let commits = 0;
  for (const { doc, oldestRevision } of await store.listDocuments()) {
    let after = oldestRevision;
    for (;;) {
      const page = await store.readCommits(doc, { after, limit: PAGE });
      if (page.length === 0) break;
      const records = await auditRecordsFor(store, page);
      for (const commit of page) {
        commits++;
        const found = commitProblem(commit, records);
        if (found) problem(found);
      }
      after = page.at(-1)!.revision;
      if (page.length < PAGE || problems.length >= MAX_PROBLEMS) break;
    }
  }
  for (const seq of (await store.auditColumnMismatches?.()) ?? [])
    problem(`audit record ${seq}: its stored columns differ from the sealed record`);
  return { commits, problems };
}

/** The audit records a page of one document's commits names (their sequence numbers ascend). */
async function auditRecordsFor(
  store: Store,
  page: readonly CommitRecord[],
): Promise<Map<number, AuditRecord>> {
  const seqs = page.map((c) => c.auditSeq).filter((s): s is number => s !== undefined);
  const out = new Map<number, AuditRecord>();
  if (seqs.length === 0) return out;
  const from = Math.min(...seqs);
  const to = Math.max(...seqs);
  const wanted = new Set(seqs);
  let afterSeq = from - 1;
  while (afterSeq < to) {
    const records = await store.readAudit({ afterSeq, limit: Math.min(to - afterSeq, 5000) });
    if (records.length === 0) break;
    for (const record of records) if (wanted.has(record.seq)) out.set(record.seq, record);
    afterSeq = records.at(-1)!.seq;
  }
  return out;
}

/** What is wrong with one commit against the audit record it names, or undefined. */
function commitProblem(commit: CommitRecord, records: ReadonlyMap<number, AuditRecord>): string | undefined {
  const where = `${commit.doc}@${commit.revision}`;
  if (commit.auditSeq === undefined) return `commit ${where} names no audit record`;
  const record = records.get(commit.auditSeq);
  if (!record) return `commit ${where}: its audit record ${commit.auditSeq} is missing`;
  const sealed =
    record.doc === commit.doc
      ? { revision: record.revision, patchHash: record.patchHash }
      : record.alsoChanged?.find((c) => c.doc === commit.doc);
  if (!sealed || sealed.revision !== commit.revision || record.commandId !== commit.commandId)
    return `commit ${where}: audit record ${record.seq} is not about this commit`;
  if (sealed.patchHash !== hashPatch(commit.patches))
    return `commit ${where}: its patch is not the one audit record ${record.seq} sealed (patchHash differs)`;
  return undefined;
}
