/** A data folder written by an older coremcp opens in this one, with its state and history intact. */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StateManager } from 'coremcp';
import { expect, it } from 'vitest';
import { MIGRATIONS, SqliteStore } from '../src/store/sqlite.js';
import { tempDir } from './helpers/tmp.js';

// Every schema an earlier coremcp wrote (1 = WITHOUT ROWID commits and snapshots, 2 = rowid tables),
// with the data such a file holds, opens in this one and migrates in place.
it.each(Array.from({ length: MIGRATIONS.length - 1 }, (_, i) => i + 1))(
  'migrates a schema-%i file to the current schema',
  async (from) => {
    const tmp = tempDir();
    try {
      const path = join(tmp.dir, 'coremcp.db');
      const old = new Database(path);
      old.exec('CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
      for (let v = 0; v < from; v++) old.exec(MIGRATIONS[v]!);
      old.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?)").run(String(from));
      old
        .prepare(
          "INSERT INTO documents (doc, oldest_revision, created_at) VALUES ('d', 0, '2026-01-01T00:00:00Z')",
        )
        .run();
      old.prepare("INSERT INTO snapshots (doc, revision, value) VALUES ('d', 0, '{\"n\":0}')").run();
      const insert = old.prepare(
        `INSERT INTO commits (doc, revision, command_id, command, principal, at, patches, inverse)
       VALUES ('d', ?, ?, 'inc', 'p', ?, ?, ?)`,
      );
      for (let r = 1; r <= 3; r++) {
        insert.run(
          r,
          `00000000-0000-7000-8000-00000000000${r}`,
          `2026-01-01T00:00:0${r}Z`,
          JSON.stringify([{ op: 'replace', path: '/n', value: r }]),
          JSON.stringify([{ op: 'replace', path: '/n', value: r - 1 }]),
        );
      }
      old.close();

      const store = new SqliteStore({ path });
      await store.open();
      try {
        expect(store.schemaVersion).toBe(MIGRATIONS.length);
        const state = new StateManager(store);
        await state.open();
        expect(await state.get('d')).toEqual({ doc: 'd', revision: 3, value: { n: 3 } });
        expect((await state.diff('d', 1)).patches).toEqual([
          { op: 'replace', path: '/n', value: 2 },
          { op: 'replace', path: '/n', value: 3 },
        ]);
        const updated = await state.update('d', (draft: { n: number }) => {
          draft.n = 4;
        });
        expect(updated.revision).toBe(4);
        expect(await readCommitOf(store, '00000000-0000-7000-8000-000000000002')).toMatchObject({
          revision: 2,
        });
      } finally {
        await store.close();
      }
    } finally {
      tmp.remove();
    }
  },
);

async function readCommitOf(store: SqliteStore, commandId: string) {
  return (await store.readCommand(commandId))[0];
}
