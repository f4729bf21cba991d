import type { JsonObject } from '../core/json.js';
import { StateManager } from '../core/state.js';
import { type CommonOptions, configOf, storeOf } from './context.js';
import { bytes, table, time } from './format.js';

export interface DocumentListing {
  doc: string;
  revision: number;
  oldestRevision: number;
  /** Serialized size of the document's plain members at head (collections not included). */
  bytes: number;
  /** Entries per collection. */
  collections: Record<string, number>;
  lastChange?: { at: string; principal: string; command: string };
}

/** `coremcp state list`: every document with its revision, size and last change, as the console shows them. */
export async function stateList(options: CommonOptions & { json?: boolean }): Promise<void> {
  const store = storeOf(options, configOf(options));
  await store.open();
  const listings: DocumentListing[] = [];
  try {
    const state = new StateManager(store);
    for (const info of await state.listDocuments()) {
      // An untouched `default` is an artefact of opening the store, not a document anyone made.
      if (info.doc === 'default' && info.revision === 0) continue;
      const collections: Record<string, number> = {};
      for (const [name, c] of Object.entries(await state.collectionsOf(info.doc))) collections[name] = c.size;
      const { value } = await state.read(info.doc, { limit: 1 });
      const plain: JsonObject = { ...(value as JsonObject) };
      for (const name of Object.keys(collections)) delete plain[name];
      const listing: DocumentListing = {
        doc: info.doc,
        revision: info.revision,
        oldestRevision: info.oldestRevision,
        bytes: Buffer.byteLength(JSON.stringify(plain)),
        collections,
      };
      if (info.revision > info.oldestRevision) {
        const last = (await state.history(info.doc, info.revision - 1, 1)).commits[0];
        if (last) listing.lastChange = { at: last.at, principal: last.principal, command: last.command };
      }
      listings.push(listing);
    }
  } finally {
    await store.close();
  }
  if (options.json) {
    process.stdout.write(`${JSON.stringify(listings, null, 2)}\n`);
    return;
  }
  process.stdout.write(
    table(
      [
        { header: 'DOC', value: (d) => d.doc },
        { header: 'REVISION', value: (d) => String(d.revision), right: true },
        { header: 'SIZE', value: (d) => bytes(d.bytes), right: true },
        {
          header: 'ENTRIES',
          value: (d) =>
            Object.entries(d.collections)
              .map(([name, size]) => `${name}: ${size}`)
              .join(', ') || '-',
        },
        { header: 'LAST CHANGE', value: (d) => time(d.lastChange?.at) },
        { header: 'BY', value: (d) => d.lastChange?.principal ?? '-' },
        { header: 'COMMAND', value: (d) => d.lastChange?.command ?? '-' },
      ],
      listings,
      { empty: 'no documents yet' },
    ),
  );
}
