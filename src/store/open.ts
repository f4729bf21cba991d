import { join } from 'node:path';
import type { CredentialStore, Store } from '../core/store.js';
import { StoreConfigError } from './config-error.js';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';

/** The SQLite database's file name inside the data directory. */
export const DATABASE_FILE = 'coremcp.db';

/** Which store to open: the data directory's SQLite database, or the database a URL names. */
export interface StoreConfig {
  /** Where the embedded database lives (`<dataDir>/coremcp.db`) when no `url` is given. */
  dataDir: string;
  /** SQLite's synchronous mode: `normal` (default) or `full`. */
  durability?: 'normal' | 'full' | undefined;
  /** SQLite: the longest a write waits for another process's lock, in all (default 2,000 ms). */
  busyWaitMs?: number | undefined;
  /** SQLite: the write-ahead log is emptied once it passes this many MiB (default 16). */
  walLimitMiB?: number | undefined;
  /** A database URL (`postgres://…`). Without one, SQLite in `dataDir`. */
  url?: string | undefined;
  /** PostgreSQL: the schema coremcp's tables live in (default: the URL's `?schema=`, else `coremcp`). */
  schema?: string | undefined;
  /** PostgreSQL: connections in the pool (default 10). */
  poolSize?: number | undefined;
  /** PostgreSQL: the server cancels a statement running longer than this, in ms (default 10,000). */
  statementTimeoutMs?: number | undefined;
  /** PostgreSQL: where the LISTEN connection goes when `url` is a transaction-mode pooler (default `url`). */
  listenUrl?: string | undefined;
  /** PostgreSQL: look for other instances' commits at least this often, in ms (default 2,000; 0 = LISTEN only). */
  pollIntervalMs?: number | undefined;
}

export { StoreConfigError };

/**
 * The store a configuration names, not yet opened (the core opens and closes it). One case per kind
 * of store: a new kind is a file beside `sqlite.ts` and a case here.
 */
export function openStore(config: StoreConfig): Store & CredentialStore {
  if (config.url === undefined) {
    return new SqliteStore({
      path: join(config.dataDir, DATABASE_FILE),
      durability: config.durability ?? 'normal',
      ...(config.busyWaitMs === undefined ? {} : { busyWaitMs: config.busyWaitMs }),
      ...(config.walLimitMiB === undefined ? {} : { walLimitMiB: config.walLimitMiB }),
    });
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(config.url)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'postgres':
    case 'postgresql':
      return new PostgresStore({
        url: config.url,
        schema: config.schema,
        poolSize: config.poolSize,
        statementTimeoutMs: config.statementTimeoutMs,
        pollIntervalMs: config.pollIntervalMs,
        listenUrl: config.listenUrl,
      });
    default:
      throw new StoreConfigError(
        `unsupported store URL "${redact(config.url)}"; leave it unset to keep state in SQLite in the data directory`,
      );
  }
}

/** A URL as it may be shown: without a password. */
function redact(url: string): string {
  return url.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
}
