import { join } from 'node:path';
import { describeStoreContract } from '../src/store/contract.js';
import { MemoryStore } from '../src/store/memory.js';
import { PostgresStore } from '../src/store/postgres.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { freshSchema, PG_URL } from './helpers/postgres.js';
import { tempDir } from './helpers/tmp.js';

describeStoreContract('memory', async () => ({
  store: new MemoryStore(),
  provides: { watchExternalChanges: false, schemaStatus: false },
  cleanup: async () => {},
}));

describeStoreContract('sqlite', async () => {
  const tmp = tempDir();
  const path = join(tmp.dir, 'state.db');
  return {
    store: new SqliteStore({ path }),
    second: async () => new SqliteStore({ path }),
    provides: { watchExternalChanges: true, schemaStatus: true, commitBatch: true },
    cleanup: async () => tmp.remove(),
  };
});

describeStoreContract('postgres', async () => {
  const { schema, drop } = await freshSchema('contract');
  const make = () => new PostgresStore({ url: PG_URL, schema, pollIntervalMs: 200 });
  return {
    store: make(),
    second: async () => make(),
    provides: { watchExternalChanges: true, schemaStatus: true, commitBatch: true },
    cleanup: drop,
  };
});
