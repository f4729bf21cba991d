import { StateManager } from '../core/state.js';
import type { SqliteStore } from '../store/sqlite.js';
import { type CommonOptions, configOf, integerOption, openSqlite } from './context.js';

export interface StateOptions extends CommonOptions {
  doc?: string;
  json?: boolean;
}

/** Opens the data folder's store for a state command; no app is loaded. */
export async function withState<T>(
  options: StateOptions,
  work: (state: StateManager, doc: string, store: SqliteStore) => Promise<T>,
): Promise<T> {
  const store = openSqlite(options, configOf(options));
  await store.open();
  try {
    const state = new StateManager(store);
    return await work(state, options.doc ?? (await defaultDoc(store)), store);
  } finally {
    await store.close();
  }
}

/** Without --doc: the store's only document besides `default`, else `default`. */
async function defaultDoc(store: SqliteStore): Promise<string> {
  const docs = (await store.listDocuments()).map((d) => d.doc).filter((d) => d !== 'default');
  return docs.length === 1 ? docs[0]! : 'default';
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export async function stateGet(options: StateOptions & { revision?: string }): Promise<void> {
  const revision = integerOption('--revision', options.revision);
  await withState(options, async (state, doc) => {
    printJson(await state.get(doc, revision === undefined ? {} : { revision }));
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
    for (const c of page.commits) {
      const paths = [...new Set(c.patches.map((p) => p.path))];
      const shown = paths.slice(0, 4).join(' ') + (paths.length > 4 ? ` (+${paths.length - 4})` : '');
      process.stdout.write(
        `${String(c.revision).padStart(6)}  ${c.at}  ${c.principal.padEnd(16)} ${c.command.padEnd(20)} ${c.commandId}  ${shown}\n`,
      );
    }
  });
}
