import type { RollbackResult, UndoResult } from '../core/history.js';
import { StateManager, type TransactResult } from '../core/state.js';
import type { Store } from '../core/store.js';
import { type HistoryReport, verifyHistory } from '../core/verify.js';
import { type CommonOptions, configOf, integerOption, storeOf } from './context.js';
import { table, time } from './format.js';
import { auditedByOperator, operatorPrincipal as operator } from './operator.js';
import { CheckFailed, UsageError } from './usage.js';

export interface StateOptions extends CommonOptions {
  doc?: string;
  json?: boolean;
}

/** Opens the data folder's store for a state command; no app is loaded. */
export async function withState<T>(
  options: StateOptions,
  work: (state: StateManager, doc: string, store: Store) => Promise<T>,
): Promise<T> {
  const store = storeOf(options, configOf(options));
  await store.open();
  try {
    const state = new StateManager(store);
    return await work(state, options.doc ?? (await defaultDoc(store)), store);
  } finally {
    await store.close();
  }
}

/** Without --doc: the store's only document (besides an untouched `default`); with several, a usage error naming them. */
async function defaultDoc(store: Store): Promise<string> {
  const all = await store.listDocuments();
  const docs = all.filter((d) => d.doc !== 'default' || d.revision > 0).map((d) => d.doc);
  if (docs.length === 1) return docs[0]!;
  if (docs.length === 0) return 'default';
  throw new UsageError(`several documents exist (${docs.join(', ')}): name one with --doc`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export async function stateGet(
  options: StateOptions & { revision?: string; collection?: string; cursor?: string; limit?: string },
): Promise<void> {
  const revision = integerOption('--revision', options.revision);
  const limit = integerOption('--limit', options.limit, 1);
  if (options.cursor !== undefined && options.collection === undefined)
    throw new UsageError('--cursor goes with --collection');
  await withState(options, async (state, doc) => {
    if (options.collection !== undefined) {
      printJson(
        await state.page(doc, { collection: options.collection, cursor: options.cursor, limit, revision }),
      );
      return;
    }
    printJson(await state.read(doc, { revision, limit }));
  });
}

export async function stateHistory(
  options: StateOptions & { limit?: string; since?: string },
): Promise<void> {
  const limit = integerOption('--limit', options.limit, 1) ?? 20;
  const since = integerOption('--since', options.since);
  await withState(options, async (state, doc) => {
    const head = (await state.get(doc)).revision;
    // Without --since: the last `limit` commits.
    const page = await state.history(doc, since ?? Math.max(0, head - limit), Math.min(limit, 10_000));
    if (options.json) {
      printJson(page);
      return;
    }
    process.stdout.write(`${doc}: head ${page.head}, history from ${page.oldestRevision}\n`);
    process.stdout.write(
      table(
        [
          { header: 'REVISION', value: (c) => String(c.revision), right: true },
          { header: 'TIME', value: (c) => time(c.at) },
          { header: 'PRINCIPAL', value: (c) => c.principal },
          { header: 'COMMAND', value: (c) => c.command },
          { header: 'COMMAND ID', value: (c) => c.commandId },
          {
            header: 'PATHS',
            value: (c) => {
              const paths = [...new Set(c.patches.map((p) => p.path))];
              return paths.slice(0, 4).join(' ') + (paths.length > 4 ? ` (+${paths.length - 4})` : '');
            },
          },
        ],
        page.commits,
        { empty: 'no commits in this range' },
      ),
    );
  });
}

/** A history operation's outcome, with the commit it made (none when nothing changed). */
function printCommit(result: TransactResult<RollbackResult | UndoResult>): void {
  const { revision, committed, commandId } = result;
  printJson({ ...result.result, revision, committed, commandId });
}

export async function stateDiff(options: StateOptions & { from?: string; to?: string }): Promise<void> {
  const from = integerOption('--from', options.from);
  if (from === undefined) throw new UsageError('state diff needs --from N');
  const to = integerOption('--to', options.to);
  await withState(options, async (state, doc) => printJson(await state.diff(doc, from, to)));
}

export async function stateSnapshot(options: StateOptions): Promise<void> {
  await withState(options, async (state, doc, store) => {
    const snapshot = await auditedByOperator(
      store,
      'state.snapshot',
      { doc },
      () => state.snapshot(doc),
      () => ({ doc }),
    );
    printJson({ doc, snapshot });
  });
}

export async function stateCompact(
  options: StateOptions & { keepCommits?: string; keepDays?: string },
): Promise<void> {
  const config = configOf(options);
  const keepCommits = integerOption('--keep-commits', options.keepCommits) ?? config.retention?.keepCommits;
  const keepDays = integerOption('--keep-days', options.keepDays) ?? config.retention?.keepDays;
  if (keepCommits === undefined && keepDays === undefined) {
    throw new UsageError(
      'state compact needs --keep-commits K and/or --keep-days D (or "retention" in the config)',
    );
  }
  await withState(options, async (state, doc, store) => {
    const input = {
      doc,
      ...(keepCommits === undefined ? {} : { keepCommits }),
      ...(keepDays === undefined ? {} : { keepDays }),
    };
    printJson(
      await auditedByOperator(
        store,
        'state.compact',
        input,
        () => state.compact(doc, { keepCommits, keepDays }),
        () => ({ doc }),
      ),
    );
  });
}

export async function stateRollback(options: StateOptions & { to?: string }): Promise<void> {
  const to = integerOption('--to', options.to);
  if (to === undefined) throw new UsageError('state rollback needs --to N');
  await withState(options, async (state, doc) => {
    printCommit(await state.rollback(doc, to, { principal: operator() }));
  });
}

/** Undoes one command: named by its id, or by the document and the revision it made. */
export async function stateUndo(
  options: StateOptions & { commandId?: string; revision?: string },
): Promise<void> {
  const revision = integerOption('--revision', options.revision, 1);
  if ((options.commandId === undefined) === (revision === undefined))
    throw new UsageError('state undo takes a command id, or --revision N (with --doc D)');
  await withState(options, async (state, doc) => {
    let commandId = options.commandId;
    if (commandId === undefined) {
      const head = (await state.get(doc)).revision;
      const commit =
        revision! <= head
          ? (await state.history(doc, revision! - 1, 1)).commits.find((c) => c.revision === revision)
          : undefined;
      if (!commit)
        throw new UsageError(`${doc} has no commit at revision ${revision} (see \`state history\`)`);
      commandId = commit.commandId;
    }
    printCommit(await state.undo(commandId, { principal: operator() }));
  });
}

/**
 * Checks the store end to end: the database's own check (quick, or `--full`), then every document's
 * history replayed against its snapshots and head. Prints what it checked; exit 1 naming each problem.
 */
export async function stateVerify(options: StateOptions & { full?: boolean }): Promise<void> {
  const store = storeOf(options, configOf(options));
  await store.open();
  let integrity: string[] = [];
  const reports: HistoryReport[] = [];
  try {
    integrity = (await store.checkIntegrity?.({ full: options.full === true })) ?? [];
    const docs = options.doc === undefined ? (await store.listDocuments()).map((d) => d.doc) : [options.doc];
    for (const doc of docs) reports.push(await verifyHistory(store, doc));
  } finally {
    await store.close();
  }
  const problems = [
    ...integrity.map((p) => `integrity: ${p}`),
    ...reports.flatMap((r) => r.problems.map((p) => `${r.doc}: ${p}`)),
  ];
  if (options.json) printJson({ ok: problems.length === 0, integrity, documents: reports });
  else {
    process.stdout.write(
      `integrity (${options.full ? 'integrity_check' : 'quick_check'}): ${integrity.length === 0 ? 'ok' : `${integrity.length} problems`}\n`,
    );
    for (const r of reports)
      process.stdout.write(
        `${r.doc}: revisions ${r.oldestRevision}..${r.head}, ${r.commits} commits and ${r.snapshots} snapshots replayed: ${r.problems.length === 0 ? 'ok' : `${r.problems.length} problems`}\n`,
      );
  }
  if (problems.length > 0) throw new CheckFailed(`state verify failed:\n  ${problems.join('\n  ')}`);
}
