import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { GENESIS_HASH, sealAuditRecord } from '../core/audit.js';
import type { IndexRange } from '../core/collections.js';
import { RecoveryError, SetupError, StateError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type {
  ApiKeyRecord,
  AttemptRequest,
  AuditChainHead,
  AuditCursor,
  AuditFollowPage,
  AuditFollowQuery,
  AuditQuery,
  AuditRecord,
  BatchOutcome,
  CollectionLayout,
  CommitOutcome,
  CommitRange,
  CommitRecord,
  CommitRequest,
  CreateOptions,
  CredentialStore,
  DocumentChange,
  DocumentInfo,
  EntryWrite,
  IdempotencyRecord,
  IndexedEntry,
  LoadedDocument,
  RestructureRequest,
  SchemaStatus,
  Snapshot,
  Store,
  StoredEntry,
  TaskRecord,
} from '../core/store.js';
import { StoreConfigError } from './config-error.js';
import { isConnectionError, isRetryable, storeErrorOf } from './postgres-errors.js';
import { ChangeFeed, quoteIdent } from './postgres-listen.js';
import { type CommitRow, type DocumentRow, type KeyRow, toCommit, toDocumentInfo, toKey } from './rows.js';

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database`; `?schema=NAME` picks the schema (see `schema`). */
  url: string;
  /**
   * Where the LISTEN connection goes, when `url` is a pooler in transaction mode (PgBouncer), which
   * cannot carry LISTEN: PostgreSQL itself (default: `url`).
   */
  listenUrl?: string | undefined;
  /** The PostgreSQL schema coremcp's tables live in (default: the URL's `schema`, else `coremcp`). */
  schema?: string | undefined;
  /** Connections in the pool (default 10). The LISTEN connection is one more, outside it. */
  poolSize?: number | undefined;
  /** How long to wait for a connection, from the pool or the server, in ms (default 5,000). */
  connectTimeoutMs?: number | undefined;
  /** The server cancels a statement running longer than this, in ms (default 10,000). */
  statementTimeoutMs?: number | undefined;
  /**
   * Watchers are told at least this often, whatever was heard (the backstop for a notification lost
   * while the LISTEN connection was down), in ms (default 2,000; 0 = only on notifications).
   */
  pollIntervalMs?: number | undefined;
}

/** Schema migrations, applied in order under an advisory lock; `meta.schema_version` counts them. */
export const PG_MIGRATIONS: readonly string[] = [
  `CREATE TABLE documents (
     doc TEXT COLLATE "C" PRIMARY KEY,
     revision BIGINT NOT NULL DEFAULT 0,
     oldest_revision BIGINT NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     collections TEXT NOT NULL DEFAULT '{}',
     version INTEGER NOT NULL DEFAULT 1,
     initial_hash TEXT,
     audit_link BIGINT NOT NULL DEFAULT 0,
     audit_hash TEXT NOT NULL,
     fence_token TEXT,
     fence_until BIGINT
   );
   CREATE TABLE commits (
     doc TEXT COLLATE "C" NOT NULL,
     revision BIGINT NOT NULL,
     command_id TEXT NOT NULL,
     command TEXT NOT NULL,
     principal TEXT NOT NULL,
     at TEXT COLLATE "C" NOT NULL,
     patches TEXT NOT NULL,
     inverse TEXT NOT NULL,
     request_id TEXT,
     idempotency_key TEXT,
     audit_seq BIGINT,
     PRIMARY KEY (doc, revision)
   );
   CREATE UNIQUE INDEX commits_command_doc ON commits (command_id, doc);
   CREATE TABLE snapshots (
     doc TEXT COLLATE "C" NOT NULL,
     revision BIGINT NOT NULL,
     value TEXT NOT NULL,
     PRIMARY KEY (doc, revision)
   );
   CREATE SEQUENCE audit_seq;
   CREATE TABLE audit (
     seq BIGINT PRIMARY KEY,
     chain TEXT COLLATE "C" NOT NULL,
     link BIGINT NOT NULL,
     at TEXT COLLATE "C" NOT NULL,
     principal TEXT NOT NULL,
     command TEXT NOT NULL,
     hash TEXT NOT NULL,
     record TEXT NOT NULL,
     UNIQUE (chain, link)
   );
   CREATE TABLE audit_chains (
     chain TEXT COLLATE "C" PRIMARY KEY,
     link BIGINT NOT NULL,
     hash TEXT NOT NULL
   );
   CREATE TABLE idempotency (
     principal TEXT NOT NULL,
     key TEXT NOT NULL,
     at TEXT COLLATE "C" NOT NULL,
     record TEXT NOT NULL,
     PRIMARY KEY (principal, key)
   );
   CREATE INDEX idempotency_at ON idempotency (at);
   CREATE INDEX idempotency_principal_at ON idempotency (principal, at);
   CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     created_at TEXT COLLATE "C" NOT NULL,
     revoked_at TEXT
   );
   CREATE TABLE entries (
     doc TEXT COLLATE "C" NOT NULL,
     coll TEXT COLLATE "C" NOT NULL,
     key TEXT COLLATE "C" NOT NULL,
     value TEXT NOT NULL,
     PRIMARY KEY (doc, coll, key)
   );
   CREATE TABLE entry_index (
     doc TEXT COLLATE "C" NOT NULL,
     coll TEXT COLLATE "C" NOT NULL,
     idx TEXT COLLATE "C" NOT NULL,
     ikey TEXT COLLATE "C" NOT NULL,
     key TEXT COLLATE "C" NOT NULL,
     PRIMARY KEY (doc, coll, idx, ikey, key)
   );
   CREATE TABLE collection_sizes (
     doc TEXT COLLATE "C" NOT NULL,
     coll TEXT COLLATE "C" NOT NULL,
     size BIGINT NOT NULL,
     PRIMARY KEY (doc, coll)
   );
   CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE sequences (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
   CREATE TABLE consumed (id TEXT PRIMARY KEY, expires_at TEXT COLLATE "C" NOT NULL);
   CREATE INDEX consumed_expires ON consumed (expires_at);
   CREATE TABLE mcp_tasks (
     task_id TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     expires_at TEXT COLLATE "C",
     record TEXT NOT NULL
   );
   CREATE INDEX mcp_tasks_expires ON mcp_tasks (expires_at) WHERE expires_at IS NOT NULL;`,
  // 2: the transaction that wrote each audit record, so a follower can take records in an order that
  // skips none (sequence numbers are drawn before commit; see followAudit). Rows already there get the
  // migration's own transaction id: they are all older than anything a follower waits for.
  `ALTER TABLE audit ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
   CREATE INDEX audit_tx_seq ON audit (tx, seq);`,
];

/** Records that change no document are spread over this many chains, so they do not queue on one row. */
const ATTEMPT_CHAINS = 8;
/** Commits removed per statement when compacting. */
const COMPACT_BATCH = 2000;
/** Serialization failures and deadlocks are retried this many times before they are reported. */
const TX_RETRIES = 5;
/** The first key of the advisory lock migrations take ('cmcp'); the second is the schema's hash. */
const MIGRATION_LOCK = 0x636d6370;
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,47}$/;

type PgModule = typeof pg;
let driver: Promise<PgModule> | undefined;

/** node-postgres, loaded when a store first opens: importing coremcp does not pay for it. */
function loadDriver(): Promise<PgModule> {
  driver ??= import('pg').then((module) => (module.default ?? module) as PgModule);
  return driver;
}

/** int8 as a JavaScript number (revisions, sequence numbers and sizes stay far below 2^53). */
function typesOf(driver: PgModule): pg.CustomTypesConfig {
  return {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === 20 ? (value: string) => Number(value) : driver.types.getTypeParser(oid, format)) as never,
  };
}

/** Ends a transaction with ROLLBACK and hands `value` back as its result. */
class Rollback<T> {
  constructor(readonly value: T) {}
}

/** The audit chain of a document's commits. */
export function documentChain(doc: string): string {
  return `doc:${doc}`;
}

/** The URL without coremcp's own parameters, and the schema it names. */
export function parsePostgresUrl(url: string): { connectionString: string; schema: string | undefined } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreConfigError('the store URL is not a valid postgres:// URL');
  }
  const schema = parsed.searchParams.get('schema') ?? undefined;
  parsed.searchParams.delete('schema');
  return { connectionString: parsed.toString(), schema };
}

/**
 * The store for several instances: PostgreSQL. Each document has a head row updated under optimistic
 * concurrency (`revision = expected`), so revisions stay gapless and a lost race is a conflict; the
 * commit rows, entries, audit record and idempotency record are written in the same transaction.
 * Audit records are chained per document (the chain's head lives on the document's row, which the
 * commit holds anyway), and records that change no document on a few chains of their own, so writers
 * to different documents never wait for one another. Commits NOTIFY `{doc, revision}`; watchers hear
 * them through one dedicated LISTEN connection. Tables live in their own schema, created and migrated
 * under a transaction-scoped advisory lock, so instances starting together do not collide.
 */
export class PostgresStore implements Store, CredentialStore {
  readonly kind = 'postgres';
  readonly schema: string;
  readonly #options: PostgresStoreOptions;
  readonly #connection: pg.ClientConfig;
  readonly #channel: string;
  readonly #keysChannel: string;
  #keysEpoch = 0;
  /** Keeps the LISTEN connection open once key lookups are cached. */
  #watchKeys: (() => void) | undefined;
  /** Names this handle in its notifications, so it does not wake itself. */
  readonly #self = randomBytes(8).toString('hex');
  readonly #listeners = new Set<() => void>();
  #pool: pg.Pool | undefined;
  #opening: Promise<void> | undefined;
  #feed: ChangeFeed | undefined;
  #driver: PgModule | undefined;
  #sql!: ReturnType<typeof statements>;

  constructor(options: PostgresStoreOptions) {
    const { connectionString, schema } = parsePostgresUrl(options.url);
    this.schema = options.schema ?? schema ?? 'coremcp';
    if (!SCHEMA_NAME.test(this.schema)) {
      throw new StoreConfigError(
        `PostgreSQL schema "${this.schema}" must be 1-48 lowercase letters, digits or _, starting with a letter or _`,
      );
    }
    this.#options = options;
    this.#connection = {
      connectionString,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      statement_timeout: options.statementTimeoutMs ?? 10_000,
      // The server enforces statement_timeout; this bounds a query whose server stopped answering.
      query_timeout: (options.statementTimeoutMs ?? 10_000) + 2000,
      keepAlive: true,
      application_name: 'coremcp',
    };
    this.#channel = `coremcp.${this.schema}`;
    this.#keysChannel = `coremcp.${this.schema}.keys`;
  }

  async open(): Promise<void> {
    if (this.#pool) return;
    this.#opening ??= this.#open().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  async #open(): Promise<void> {
    const driver = await loadDriver();
    this.#connection.types ??= typesOf(driver);
    this.#driver = driver;
    const pool = new driver.Pool({
      ...this.#connection,
      max: this.#options.poolSize ?? 10,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection the server dropped: the pool discards it; the next query gets a new one.
    pool.on('error', () => {});
    try {
      await this.#migrate(pool);
    } catch (error) {
      await pool.end().catch(() => {});
      throw this.#openError(error);
    }
    this.#sql = statements(quoteIdent(this.schema));
    this.#pool = pool;
    if (this.#listeners.size > 0) this.#startFeed();
  }

  async close(): Promise<void> {
    await this.#opening?.catch(() => {});
    const pool = this.#pool;
    this.#pool = undefined;
    const feed = this.#feed;
    this.#feed = undefined;
    await feed?.stop();
    await pool?.end().catch(() => {});
  }

  async ping(): Promise<void> {
    await this.#query('SELECT 1');
  }

  /** Readiness: one small write (a primary that went read-only, a full disk or a lost lock all fail it). */
  async probeWrite(): Promise<void> {
    await this.#query(this.#sql.writeProbe, [new Date().toISOString()]);
  }

  async auditColumnMismatches(): Promise<number[]> {
    const rows = await this.#query<{ seq: string }>(this.#sql.auditColumnMismatches);
    return rows.map((row) => Number(row.seq));
  }

  async schemaStatus(): Promise<SchemaStatus> {
    const rows = await this.#query<{ value: string }>(this.#sql.schemaVersion);
    return { version: rows[0] ? Number(rows[0].value) : 0, expected: PG_MIGRATIONS.length };
  }

  async listDocuments(): Promise<DocumentInfo[]> {
    return (await this.#query<DocumentRow>(this.#sql.listDocuments)).map(toDocumentInfo);
  }

  async createDocument(
    doc: string,
    initial: JsonValue,
    at: string,
    options: CreateOptions = {},
  ): Promise<boolean> {
    const layout = options.collections ?? {};
    return this.#tx(async (client) => {
      const inserted = await client.query(this.#sql.insertDocument, [
        doc,
        at,
        JSON.stringify(layout),
        options.version ?? 1,
        options.initialHash ?? null,
        GENESIS_HASH,
      ]);
      if (inserted.rowCount !== 1) return false;
      await client.query(this.#sql.insertSnapshot, [doc, 0, JSON.stringify(initial)]);
      const names = Object.keys(layout);
      if (names.length > 0) await client.query(this.#sql.initSizes, [doc, names]);
      return true;
    });
  }

  async headRevision(doc: string): Promise<number> {
    const rows = await this.#query<{ revision: number }>(this.#sql.headRevision, [doc]);
    return rows[0]?.revision ?? 0;
  }

  async restructure(request: RestructureRequest): Promise<void> {
    const { doc } = request;
    await this.#tx(async (client) => {
      const head = (await client.query(this.#sql.lockDocument, [doc])).rows[0] as
        | { revision: number; collections: string }
        | undefined;
      if (!head) throw new StateError('not_found', `No document "${doc}"`);
      if (head.revision !== request.revision)
        throw new StateError('revision_conflict', 'The document moved on during a restructure');
      const before = JSON.parse(head.collections) as CollectionLayout;
      for (const name of Object.keys(before)) {
        if (Object.hasOwn(request.layout, name)) continue;
        await this.#dropCollection(client, doc, name, true);
      }
      for (const name of Object.keys(request.layout)) {
        const entries = request.entries?.[name];
        const rows = request.indexRows?.[name];
        if (entries) {
          await this.#dropCollection(client, doc, name, false);
          await this.#putEntries(
            client,
            doc,
            entries.map((e) => ({ coll: name, key: e.key, value: JSON.stringify(e.value) })),
          );
          await this.#addIndexRows(
            client,
            doc,
            entries.flatMap((e) => e.index.map(([idx, ikey]) => ({ coll: name, idx, ikey, key: e.key }))),
          );
          await client.query(this.#sql.setSize, [doc, name, entries.length]);
        } else if (rows) {
          await client.query(this.#sql.deleteIndexRows, [doc, name]);
          await this.#addIndexRows(
            client,
            doc,
            rows.flatMap((r) => r.index.map(([idx, ikey]) => ({ coll: name, idx, ikey, key: r.key }))),
          );
        } else if (!Object.hasOwn(before, name)) {
          await client.query(this.#sql.setSize, [doc, name, 0]);
        }
      }
      await client.query(this.#sql.setLayout, [doc, JSON.stringify(request.layout)]);
      await client.query(this.#sql.upsertSnapshot, [doc, request.revision, JSON.stringify(request.plain)]);
    });
  }

  async readEntries(
    doc: string,
    collection: string,
    keys: readonly string[],
  ): Promise<Map<string, JsonValue>> {
    const out = new Map<string, JsonValue>();
    if (keys.length === 0) return out;
    const rows = await this.#query<{ key: string; value: string }>(this.#sql.entries, [
      doc,
      collection,
      [...keys],
    ]);
    for (const row of rows) out.set(row.key, JSON.parse(row.value));
    return out;
  }

  async listEntries(
    doc: string,
    collection: string,
    range: { after?: string; limit: number },
  ): Promise<StoredEntry[]> {
    const rows = await this.#query<{ key: string; value: string }>(this.#sql.entriesAfter, [
      doc,
      collection,
      range.after ?? '',
      range.limit,
    ]);
    return rows.map((row) => ({ key: row.key, value: JSON.parse(row.value) }));
  }

  async queryIndex(
    doc: string,
    collection: string,
    index: string,
    range: IndexRange,
  ): Promise<IndexedEntry[]> {
    const asc = range.order === 'asc';
    const after = range.after ?? (asc ? [range.from, ''] : [range.to, '']);
    const rows = await this.#query<{ ikey: string; key: string; value: string }>(
      asc ? this.#sql.indexAsc : this.#sql.indexDesc,
      [doc, collection, index, range.from, range.to, after[0], after[1], range.limit],
    );
    return rows.map((row) => ({ ikey: row.ikey, key: row.key, value: JSON.parse(row.value) }));
  }

  async countIndex(
    doc: string,
    collection: string,
    index: string,
    range: { from: string; to: string },
  ): Promise<number> {
    const rows = await this.#query<{ n: number }>(this.#sql.countIndex, [
      doc,
      collection,
      index,
      range.from,
      range.to,
    ]);
    return rows[0]?.n ?? 0;
  }

  async loadDocument(doc: string): Promise<LoadedDocument | undefined> {
    // One snapshot of the database: the head, its commits and the collection sizes agree.
    return this.#tx(
      async (client) => {
        const head = (await client.query(this.#sql.document, [doc])).rows[0] as
          | {
              revision: number;
              oldest_revision: number;
              collections: string;
              version: number;
              initial_hash: string | null;
            }
          | undefined;
        if (!head) return undefined;
        const snap = (await client.query(this.#sql.latestSnapshot, [doc, head.revision])).rows[0] as
          | { revision: number; value: string }
          | undefined;
        if (!snap)
          throw new StateError('revision_compacted', `Document "${doc}" has no snapshot to start from`);
        const commits = (
          await client.query(this.#sql.commitsAfter, [doc, snap.revision, head.revision, null])
        ).rows as CommitRow[];
        const sizes = new Map(
          ((await client.query(this.#sql.sizes, [doc])).rows as Array<{ coll: string; size: number }>).map(
            (row) => [row.coll, row.size],
          ),
        );
        const layout = JSON.parse(head.collections) as CollectionLayout;
        const collections: LoadedDocument['collections'] = {};
        for (const [name, { indexes }] of Object.entries(layout))
          collections[name] = { size: sizes.get(name) ?? 0, indexes };
        return {
          doc,
          revision: head.revision,
          oldestRevision: head.oldest_revision,
          snapshot: { revision: snap.revision, value: JSON.parse(snap.value) },
          commits: commits.map(toCommit),
          collections,
          version: head.version,
          ...(head.initial_hash === null ? {} : { initialHash: head.initial_hash }),
        };
      },
      { readOnly: true },
    );
  }

  async readSnapshot(doc: string, atOrBefore: number): Promise<Snapshot | undefined> {
    const rows = await this.#query<{ revision: number; value: string }>(this.#sql.latestSnapshot, [
      doc,
      atOrBefore,
    ]);
    const snap = rows[0];
    return snap && { revision: snap.revision, value: JSON.parse(snap.value) };
  }

  async readCommits(doc: string, range: CommitRange): Promise<CommitRecord[]> {
    const rows = await this.#query<CommitRow>(this.#sql.commitsAfter, [
      doc,
      range.after,
      range.to ?? Number.MAX_SAFE_INTEGER,
      range.limit ?? null,
    ]);
    return rows.map(toCommit);
  }

  async readCommand(commandId: string): Promise<CommitRecord[]> {
    return (await this.#query<CommitRow>(this.#sql.commitsOfCommand, [commandId])).map(toCommit);
  }

  async commit(request: CommitRequest): Promise<CommitOutcome> {
    const outcome =
      request.changes.length === 1
        ? await this.#commitOne(request)
        : await this.#tx((client) => this.#commitInTx(client, request));
    if (outcome.status === 'duplicate' && outcome.record === undefined) {
      // Another call with the key committed while this one ran: its record is readable now.
      const idem = request.idempotency!;
      const record = await this.findIdempotency(idem.principal, idem.key);
      if (record) return { status: 'duplicate', record };
      return this.commit(request);
    }
    return outcome as CommitOutcome;
  }

  /**
   * The requests in one transaction, each as `#commitInTx` writes it (head rows, audit chains,
   * entries and idempotency see the requests before them): one commit, one WAL flush, for all. A
   * lone request commits as `commit` does, in its two round trips.
   */
  async commitBatch(requests: readonly CommitRequest[]): Promise<BatchOutcome> {
    if (requests.length === 1) {
      const outcome = await this.commit(requests[0]!);
      return outcome.status === 'committed'
        ? { status: 'committed', audits: [outcome.audit] }
        : { status: 'refused', index: 0, outcome };
    }
    const outcome = await this.#tx(async (client): Promise<BatchOutcome> => {
      const audits: AuditRecord[] = [];
      for (const [index, request] of requests.entries()) {
        try {
          const one = await this.#commitInTx(client, request);
          if (one.status !== 'committed') throw new Rollback(one);
          audits.push(one.audit);
        } catch (error) {
          if (!(error instanceof Rollback)) throw error;
          throw new Rollback({ status: 'refused', index, outcome: error.value });
        }
      }
      return { status: 'committed', audits };
    });
    if (
      outcome.status === 'refused' &&
      outcome.outcome.status === 'duplicate' &&
      outcome.outcome.record === undefined
    ) {
      // Another call with the key committed while this batch ran: its record is readable now.
      const idem = requests[outcome.index]!.idempotency!;
      const record = await this.findIdempotency(idem.principal, idem.key);
      if (record) return { ...outcome, outcome: { status: 'duplicate', record } };
      return this.commitBatch(requests);
    }
    return outcome;
  }

  async fence(docs: readonly string[], token: string, ttlMs: number): Promise<boolean> {
    return this.#tx(async (client) => {
      const now = Date.now();
      const rows = (await client.query(this.#sql.lockFences, [[...docs]])).rows as Array<{
        fence_token: string | null;
        fence_until: number | null;
      }>;
      for (const row of rows) {
        if (row.fence_token !== null && row.fence_token !== token && (row.fence_until ?? 0) > now)
          return false;
      }
      await client.query(this.#sql.setFence, [[...docs], token, now + ttlMs]);
      return true;
    });
  }

  async releaseFence(docs: readonly string[], token: string): Promise<void> {
    await this.#query(this.#sql.releaseFence, [[...docs], token]);
  }

  async nextSequence(name: string, floor: number): Promise<number> {
    const rows = await this.#query<{ value: number }>(this.#sql.nextSequence, [name, floor]);
    return rows[0]!.value;
  }

  /**
   * Appends to one of the chains of records that change no document, picked at random, in two round
   * trips: read its end (drawing the sequence number), then one statement that moves the end only if
   * it is still there and writes the record only if it did. A writer that lost tries another chain.
   */
  async recordAttempt(request: AttemptRequest): Promise<AuditRecord> {
    const idem = request.idempotency;
    for (;;) {
      const chain = `attempts:${Math.floor(Math.random() * ATTEMPT_CHAINS)}`;
      const head = (
        await this.#query<{ link: number; hash: string; seq: number }>(this.#sql.readChain, [
          chain,
          GENESIS_HASH,
        ])
      )[0]!;
      const record = sealAuditRecord(request.audit, head.seq, head.hash, { chain, link: head.link + 1 });
      const written = (
        await this.#query<{ won: number }>(this.#sql.writeAttempt, [
          ...auditParams(record),
          idem?.principal ?? null,
          idem?.key ?? null,
          idem?.at ?? null,
          idem ? JSON.stringify(idem) : null,
        ])
      )[0]!;
      if (written.won === 1) return record;
    }
  }

  async writeSnapshot(doc: string, snapshot: Snapshot): Promise<void> {
    await this.#tx(async (client) => {
      const head = (await client.query(this.#sql.headRevision, [doc])).rows[0] as
        | { revision: number }
        | undefined;
      if (!head) throw new StateError('not_found', `No document "${doc}"`);
      if (snapshot.revision > head.revision)
        throw new StateError('invalid_revision', 'Snapshot is later than the head');
      await client.query(this.#sql.insertSnapshotIfAbsent, [
        doc,
        snapshot.revision,
        JSON.stringify(snapshot.value),
      ]);
    });
  }

  /**
   * Moves the retention point first (one short transaction), then deletes the commits before it in
   * batches, each its own statement: writers to the document never wait long.
   */
  async compact(doc: string, throughRevision: number): Promise<number> {
    const through = await this.#tx(async (client) => {
      const keep = (await client.query(this.#sql.latestSnapshot, [doc, throughRevision])).rows[0] as
        | { revision: number }
        | undefined;
      if (!keep) return undefined;
      await client.query(this.#sql.deleteSnapshotsBefore, [doc, keep.revision]);
      await client.query(this.#sql.raiseOldest, [doc, keep.revision]);
      return keep.revision;
    });
    if (through === undefined) return 0;
    let removed = 0;
    for (;;) {
      if (!this.#pool) return removed;
      const batch = await this.#run(this.#sql.deleteCommitsThrough, [doc, through]);
      removed += batch;
      if (batch < COMPACT_BATCH) return removed;
    }
  }

  async revisionBefore(doc: string, at: string): Promise<number> {
    const rows = await this.#query<{ revision: number }>(this.#sql.revisionBefore, [doc, at]);
    return rows[0]?.revision ?? 0;
  }

  /**
   * Calls `listener` when another handle may have committed: on a NOTIFY from a commit, after the
   * LISTEN connection (re)connects, and every `pollIntervalMs` as the backstop. One LISTEN connection
   * per store, opened with the first watcher, kept across close and open.
   */
  watchExternalChanges(listener: () => void): () => void {
    const wrapped = () => listener();
    this.#listeners.add(wrapped);
    if (this.#pool && !this.#feed) this.#startFeed();
    return () => {
      this.#listeners.delete(wrapped);
      if (this.#listeners.size === 0) {
        const feed = this.#feed;
        this.#feed = undefined;
        void feed?.stop();
      }
    };
  }

  /** The backend pid of the LISTEN connection, while it is up (for tests that cut it). */
  get listenerPid(): number | undefined {
    return this.#feed?.backendPid;
  }

  async readAudit(query: AuditQuery): Promise<AuditRecord[]> {
    const params: Array<string | number | null> = [query.afterSeq ?? 0];
    const where = ['seq > $1', ...auditFilters(query, params)];
    params.push(query.limit ?? null);
    const rows = await this.#query<{ record: string }>(
      `SELECT record FROM ${quoteIdent(this.schema)}.audit WHERE ${where.join(' AND ')} ORDER BY seq LIMIT $${params.length}`,
      params,
    );
    return rows.map((r) => JSON.parse(r.record) as AuditRecord);
  }

  /**
   * A record's sequence number is drawn before its transaction commits, so records become readable
   * out of `seq` order and a follower paging by `seq` would pass a late one by. Instead the cursor is
   * (writing transaction, seq), and only records of transactions older than every one still open
   * (`pg_snapshot_xmin`) are returned: any record that can still appear sorts after the cursor.
   * The price: a follower waits for the oldest open transaction in the cluster, whoever runs it.
   */
  async followAudit(query: AuditFollowQuery, cursor: AuditCursor | undefined): Promise<AuditFollowPage> {
    const s = quoteIdent(this.schema);
    if (cursor === undefined) {
      const [row] = await this.#query<{ xmin: string }>(
        'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin',
      );
      return { records: [], cursor: `${row!.xmin}:0` };
    }
    const from = parseAuditCursor(cursor);
    const params: Array<string | number | null> = [String(from.tx), String(from.seq)];
    const where = ['(a.tx, a.seq) > ($1::xid8, $2::bigint)', 'a.tx < h.xmin', ...auditFilters(query, params)];
    const limit = query.limit ?? 1000;
    params.push(limit);
    // The horizon comes from the same snapshot as the page: with a page that is not full, every
    // settled record is taken, so the cursor moves up to the horizon even when the filter matched none.
    const rows = await this.#query<{ record: string | null; tx: string; seq: string | null }>(
      `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
       SELECT NULL::text AS record, xmin::text AS tx, NULL::bigint AS seq FROM h
       UNION ALL
       (SELECT a.record, a.tx::text, a.seq FROM ${s}.audit a, h
         WHERE ${where.join(' AND ')} ORDER BY a.tx, a.seq LIMIT $${params.length})`,
      params,
    );
    const horizon = BigInt(rows.find((r) => r.record === null)!.tx);
    const page = rows
      .filter((r) => r.record !== null)
      .map((r) => ({ tx: BigInt(r.tx), seq: BigInt(r.seq!), record: r.record! }))
      .sort((a, b) => (a.tx === b.tx ? Number(a.seq - b.seq) : a.tx < b.tx ? -1 : 1));
    let next = page.at(-1) ?? from;
    if (page.length < limit && next.tx < horizon) next = { tx: horizon, seq: 0n };
    return {
      records: page.map((r) => JSON.parse(r.record) as AuditRecord),
      cursor: `${next.tx}:${next.seq}`,
    };
  }

  async auditHeads(): Promise<AuditChainHead[]> {
    return this.#query<AuditChainHead>(this.#sql.auditHeads);
  }

  async secret(name: string, create: () => string): Promise<string> {
    const found = await this.#query<{ value: string }>(this.#sql.secret, [name]);
    if (found[0]) return found[0].value;
    // Another instance may store one first: whichever row is there after the insert is the secret.
    await this.#query(this.#sql.insertSecret, [name, create()]);
    return (await this.#query<{ value: string }>(this.#sql.secret, [name]))[0]!.value;
  }

  async findIdempotency(principal: string, key: string): Promise<IdempotencyRecord | undefined> {
    const rows = await this.#query<{ record: string }>(this.#sql.idempotency, [principal, key]);
    return rows[0] && (JSON.parse(rows[0].record) as IdempotencyRecord);
  }

  async expireIdempotency(before: string): Promise<number> {
    return this.#run(this.#sql.expireIdempotency, [before]);
  }

  async trimIdempotency(principal: string, keep: number): Promise<number> {
    return this.#run(this.#sql.trimIdempotency, [principal, keep]);
  }

  async consumeOnce(id: string, expiresAt: string): Promise<boolean> {
    // The primary key decides between racing instances: one insert wins, the others change nothing.
    return (await this.#run(this.#sql.consume, [id, expiresAt])) === 1;
  }

  async expireConsumed(before: string): Promise<number> {
    return this.#run(this.#sql.expireConsumed, [before]);
  }

  async createTask(task: TaskRecord): Promise<void> {
    const inserted = await this.#run(this.#sql.insertTask, [
      task.taskId,
      task.version,
      task.expiresAt ?? null,
      JSON.stringify(task),
    ]);
    if (inserted !== 1) throw new StateError('already_exists', `A task "${task.taskId}" exists`);
  }

  async readTask(taskId: string): Promise<TaskRecord | undefined> {
    const rows = await this.#query<{ record: string }>(this.#sql.task, [taskId]);
    return rows[0] && (JSON.parse(rows[0].record) as TaskRecord);
  }

  async updateTask(task: TaskRecord): Promise<boolean> {
    const changed = await this.#run(this.#sql.updateTask, [
      task.taskId,
      task.version,
      task.expiresAt ?? null,
      JSON.stringify(task),
    ]);
    return changed === 1;
  }

  async expireTasks(before: string): Promise<number> {
    return this.#run(this.#sql.expireTasks, [before]);
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    try {
      await this.#query(this.#sql.insertKey, [
        key.id,
        key.name,
        key.role,
        key.hash,
        key.createdAt,
        key.revokedAt ?? null,
      ]);
    } catch (error) {
      if ((error as { code?: string }).code === '23505') {
        throw new StateError('already_exists', `An API key named "${key.name}" exists`);
      }
      throw error;
    }
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const rows = await this.#query<KeyRow>(this.#sql.keyByHash, [hash]);
    return rows[0] && toKey(rows[0]);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return (await this.#query<KeyRow>(this.#sql.listKeys)).map(toKey);
  }

  async revokeApiKey(idOrName: string, at: string): Promise<ApiKeyRecord | undefined> {
    const rows = await this.#query<KeyRow>(this.#sql.revokeKey, [at, idOrName, this.#keysChannel]);
    this.#keysEpoch++;
    return rows[0] && toKey(rows[0]);
  }

  /**
   * Moves when a key is revoked through any handle on the schema (a NOTIFY sent with the revoking
   * commit, heard by the LISTEN connection as soon as it commits), after every (re)connect of that
   * connection, and every `pollIntervalMs` (a key revoked with plain SQL sends no notification).
   * Undefined while the LISTEN connection is down: then every request looks its key up.
   */
  credentialsEpoch(): number | undefined {
    this.#watchKeys ??= this.watchExternalChanges(() => {});
    return this.#feed?.backendPid === undefined ? undefined : this.#keysEpoch;
  }

  // --- internals -------------------------------------------------------------------------------

  async #commitInTx(
    client: pg.PoolClient,
    request: CommitRequest,
  ): Promise<CommitOutcome | { status: 'duplicate'; record: undefined }> {
    const now = Date.now();
    const changes = [...request.changes].sort((a, b) =>
      a.commit.doc < b.commit.doc ? -1 : a.commit.doc > b.commit.doc ? 1 : 0,
    );
    // The audit record goes into the chain of the command's own document (the first if it names none).
    const chainDoc =
      request.changes.find((c) => c.commit.doc === request.audit.doc)?.commit.doc ??
      request.changes[0]!.commit.doc;
    let chainHead: { audit_link: number; audit_hash: string } | undefined;
    let seq = 0;
    // Head rows in sorted order (no deadlock between multi-document commits); the sequence number is
    // drawn once every row is held, so it ascends along each document's chain.
    for (const [i, { commit, expectedRevision }] of changes.entries()) {
      if (commit.revision !== expectedRevision + 1) {
        throw new Rollback(await this.#refusal(client, commit.doc, request.fence, now));
      }
      const last = i === changes.length - 1;
      const result = await client.query(last ? this.#sql.advanceHeadSeq : this.#sql.advanceHead, [
        commit.doc,
        expectedRevision,
        request.fence ?? null,
        now,
      ]);
      const row = result.rows[0] as { audit_link: number; audit_hash: string; seq?: number } | undefined;
      if (!row) throw new Rollback(await this.#refusal(client, commit.doc, request.fence, now));
      if (commit.doc === chainDoc) chainHead = row;
      if (last) seq = row.seq!;
    }
    for (const { commit, version } of changes) {
      if (version !== undefined) await client.query(this.#sql.setVersion, [commit.doc, version]);
    }
    // Entries go into the commit's one statement, unless one entry is written twice (then write by write).
    let batch = entryBatch(changes);
    if (!batch) {
      for (const { commit, entries } of changes)
        if (entries && entries.length > 0) await this.#writeEntries(client, commit.doc, entries);
      batch = entryBatch([]);
    }
    const record = sealAuditRecord(request.audit, seq, chainHead!.audit_hash, {
      chain: documentChain(chainDoc),
      link: chainHead!.audit_link + 1,
    });
    const idem = request.idempotency;
    const commits = changes.map((c) => c.commit);
    const written = (
      await client.query(this.#sql.writeCommit, this.#writeParams(record, chainDoc, commits, idem, batch!))
    ).rows[0] as { idem: number };
    if (idem && written.idem === 0) {
      // The key was taken (by a commit that finished while this one waited on it): undo everything.
      const existing = (await client.query(this.#sql.idempotency, [idem.principal, idem.key])).rows[0] as
        | { record: string }
        | undefined;
      throw new Rollback({
        status: 'duplicate',
        record: existing && (JSON.parse(existing.record) as IdempotencyRecord),
      });
    }
    return { status: 'committed', audit: record };
  }

  /**
   * A commit to one document in two round trips and no explicit transaction: read the head (and
   * draw the audit sequence number), then one statement that advances the head only if it is still
   * where it was read and writes everything else only if it did. A statement is atomic, so a lost
   * race writes nothing, and a taken idempotency key aborts the whole statement.
   */
  async #commitOne(
    request: CommitRequest,
  ): Promise<CommitOutcome | { status: 'duplicate'; record: IdempotencyRecord | undefined }> {
    const { commit, expectedRevision, version } = request.changes[0]!;
    const now = Date.now();
    const head = (
      await this.#query<{
        revision: number;
        audit_link: number;
        audit_hash: string;
        fence_token: string | null;
        fence_until: number | null;
        seq: number;
      }>(this.#sql.readHeadSeq, [commit.doc, expectedRevision])
    )[0];
    if (!head) throw new StateError('not_found', `No document "${commit.doc}"`);
    if (head.fence_token !== null && head.fence_token !== request.fence && (head.fence_until ?? 0) > now) {
      return { status: 'conflict', doc: commit.doc, currentRevision: head.revision, fenced: true };
    }
    if (head.revision !== expectedRevision || commit.revision !== expectedRevision + 1) {
      return { status: 'conflict', doc: commit.doc, currentRevision: head.revision };
    }
    const batch = entryBatch(request.changes);
    if (!batch) return this.#tx((client) => this.#commitInTx(client, request));
    const record = sealAuditRecord(request.audit, head.seq, head.audit_hash, {
      chain: documentChain(commit.doc),
      link: head.audit_link + 1,
    });
    let won: number;
    try {
      won = (
        await this.#query<{ won: number }>(this.#sql.commitOne, [
          ...this.#writeParams(record, commit.doc, [commit], request.idempotency, batch),
          version ?? null,
          expectedRevision,
          request.fence ?? null,
          now,
        ])
      )[0]!.won;
    } catch (error) {
      const failed = error as { code?: string; constraint?: string };
      if (failed.code === '23505' && failed.constraint === 'idempotency_pkey' && request.idempotency) {
        const idem = request.idempotency;
        return { status: 'duplicate', record: await this.findIdempotency(idem.principal, idem.key) };
      }
      throw error;
    }
    if (won === 1) return { status: 'committed', audit: record };
    // Another writer moved the head (or fenced it) between the read and the write.
    const now2 = Date.now();
    const row = (
      await this.#query<{ revision: number; fence_token: string | null; fence_until: number | null }>(
        this.#sql.headState,
        [commit.doc],
      )
    )[0];
    if (!row) throw new StateError('not_found', `No document "${commit.doc}"`);
    if (row.fence_token !== null && row.fence_token !== request.fence && (row.fence_until ?? 0) > now2) {
      return { status: 'conflict', doc: commit.doc, currentRevision: row.revision, fenced: true };
    }
    return { status: 'conflict', doc: commit.doc, currentRevision: row.revision };
  }

  /** $1..$45 of the commit statements: the audit row, the commits, idempotency, notifications, entries. */
  #writeParams(
    record: AuditRecord,
    chainDoc: string,
    commits: readonly CommitRecord[],
    idem: IdempotencyRecord | undefined,
    batch: { params: unknown[][] },
  ): unknown[] {
    return [
      ...auditParams(record),
      chainDoc,
      commits.map((c) => c.doc),
      commits.map((c) => c.revision),
      commits.map((c) => c.commandId),
      commits.map((c) => c.command),
      commits.map((c) => c.principal),
      commits.map((c) => c.at),
      commits.map((c) => JSON.stringify(c.patches)),
      commits.map((c) => JSON.stringify(c.inverse)),
      commits.map((c) => c.requestId ?? null),
      commits.map((c) => c.idempotencyKey ?? null),
      idem?.principal ?? null,
      idem?.key ?? null,
      idem?.at ?? null,
      idem ? JSON.stringify(idem) : null,
      this.#channel,
      commits.map((c) => JSON.stringify({ doc: c.doc, revision: c.revision, by: this.#self })),
      ...batch.params,
    ];
  }

  /** Why a head row could not be advanced: a missing document, a fence, or a revision moved on. */
  async #refusal(
    client: pg.PoolClient,
    doc: string,
    fence: string | undefined,
    now: number,
  ): Promise<CommitOutcome> {
    const row = (await client.query(this.#sql.headState, [doc])).rows[0] as
      | { revision: number; fence_token: string | null; fence_until: number | null }
      | undefined;
    if (!row) throw new StateError('not_found', `No document "${doc}"`);
    if (row.fence_token !== null && row.fence_token !== fence && (row.fence_until ?? 0) > now) {
      return { status: 'conflict', doc, currentRevision: row.revision, fenced: true };
    }
    return { status: 'conflict', doc, currentRevision: row.revision };
  }

  /** An entry's index rows out, its value written or deleted, its rows in, the sizes moved. */
  async #writeEntries(client: pg.PoolClient, doc: string, writes: readonly EntryWrite[]): Promise<void> {
    const seen = new Set<string>();
    const unique = writes.every((w) => {
      const id = `${w.collection}\u0000${w.key}`;
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
    // One statement per kind of change; an entry written twice in one commit goes write by write.
    const batches = unique ? [writes] : writes.map((w) => [w]);
    for (const batch of batches) {
      const removeRows = batch.flatMap((w) =>
        w.indexRemove.map(([idx, ikey]) => ({ coll: w.collection, idx, ikey, key: w.key })),
      );
      if (removeRows.length > 0) {
        await client.query(this.#sql.deleteIndexRowsOf, [
          doc,
          removeRows.map((r) => r.coll),
          removeRows.map((r) => r.idx),
          removeRows.map((r) => r.ikey),
          removeRows.map((r) => r.key),
        ]);
      }
      const removed = batch.filter((w) => w.value === undefined);
      if (removed.length > 0) {
        await client.query(this.#sql.deleteEntriesOf, [
          doc,
          removed.map((w) => w.collection),
          removed.map((w) => w.key),
        ]);
      }
      await this.#putEntries(
        client,
        doc,
        batch.flatMap((w) =>
          w.value === undefined ? [] : [{ coll: w.collection, key: w.key, value: JSON.stringify(w.value) }],
        ),
      );
      await this.#addIndexRows(
        client,
        doc,
        batch.flatMap((w) =>
          w.indexAdd.map(([idx, ikey]) => ({ coll: w.collection, idx, ikey, key: w.key })),
        ),
      );
    }
    const sizes = new Map<string, number>();
    for (const write of writes) {
      const delta = Number(write.value !== undefined) - Number(write.existed);
      if (delta !== 0) sizes.set(write.collection, (sizes.get(write.collection) ?? 0) + delta);
    }
    if (sizes.size > 0) await client.query(this.#sql.addSizes, [doc, [...sizes.keys()], [...sizes.values()]]);
  }

  async #putEntries(
    client: pg.PoolClient,
    doc: string,
    rows: Array<{ coll: string; key: string; value: string }>,
  ): Promise<void> {
    if (rows.length === 0) return;
    await client.query(this.#sql.putEntries, [
      doc,
      rows.map((r) => r.coll),
      rows.map((r) => r.key),
      rows.map((r) => r.value),
    ]);
  }

  async #addIndexRows(
    client: pg.PoolClient,
    doc: string,
    rows: Array<{ coll: string; idx: string; ikey: string; key: string }>,
  ): Promise<void> {
    if (rows.length === 0) return;
    await client.query(this.#sql.insertIndexRows, [
      doc,
      rows.map((r) => r.coll),
      rows.map((r) => r.idx),
      rows.map((r) => r.ikey),
      rows.map((r) => r.key),
    ]);
  }

  async #dropCollection(client: pg.PoolClient, doc: string, name: string, size: boolean): Promise<void> {
    await client.query(this.#sql.deleteEntries, [doc, name]);
    await client.query(this.#sql.deleteIndexRows, [doc, name]);
    if (size) await client.query(this.#sql.deleteSizes, [doc, name]);
  }

  #startFeed(): void {
    this.#feed = new ChangeFeed({
      driver: this.#driver!,
      // Named so an operator (or a test) can tell it from the pool's connections.
      connection: {
        ...this.#connection,
        ...(this.#options.listenUrl === undefined
          ? {}
          : { connectionString: parsePostgresUrl(this.#options.listenUrl).connectionString }),
        application_name: `coremcp-listen:${process.pid}`,
      },
      channel: this.#channel,
      self: this.#self,
      urgent: {
        channel: this.#keysChannel,
        onNotify: () => {
          this.#keysEpoch++;
        },
      },
      pollIntervalMs: this.#options.pollIntervalMs ?? 2000,
      onChange: () => {
        for (const listener of this.#listeners) listener();
      },
    });
    this.#feed.start();
  }

  async #migrate(pool: pg.Pool): Promise<void> {
    const schema = quoteIdent(this.schema);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // One instance migrates at a time; the lock ends with the transaction, so no pooler leaks it.
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK, this.schema]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
      );
      const found = (await client.query(`SELECT value FROM ${schema}.meta WHERE key = 'schema_version'`))
        .rows[0] as { value: string } | undefined;
      const version = found ? Number(found.value) : 0;
      if (version > PG_MIGRATIONS.length) {
        throw new SetupError(
          'store_too_new',
          `PostgreSQL schema "${this.schema}" is at version ${version}, newer than this coremcp knows (${PG_MIGRATIONS.length}); upgrade coremcp`,
        );
      }
      if (version < PG_MIGRATIONS.length) {
        await client.query(`SET LOCAL search_path TO ${schema}`);
        for (let v = version; v < PG_MIGRATIONS.length; v++) await client.query(PG_MIGRATIONS[v]!);
        await client.query(
          `INSERT INTO ${schema}.meta (key, value) VALUES ('schema_version', $1)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
          [String(PG_MIGRATIONS.length)],
        );
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  /** What an operator is told when the store cannot be opened: one line, never a stack. */
  #openError(error: unknown): unknown {
    const where = `PostgreSQL at ${describeTarget(this.#connection.connectionString!)}`;
    const message = error instanceof Error ? error.message : String(error);
    switch ((error as { code?: unknown } | null)?.code) {
      case '28P01':
      case '28000':
        return new StoreConfigError(`${where} refused the credentials: ${message}`);
      case '3D000':
        return new StoreConfigError(`${where}: ${message}`);
      case '42501':
        return new StoreConfigError(
          `${where}: ${message} (coremcp needs to create schema "${this.schema}" and its tables)`,
        );
    }
    if (isConnectionError(error)) {
      return new RecoveryError('store_unavailable', `cannot reach ${where}: ${message}`, { cause: error });
    }
    return storeErrorOf(error);
  }

  #poolOrThrow(): pg.Pool {
    if (!this.#pool) throw new Error('the PostgreSQL store is not open');
    return this.#pool;
  }

  async #query<R>(text: string | pg.QueryConfig, params?: unknown[]): Promise<R[]> {
    const pool = this.#poolOrThrow();
    try {
      return (await pool.query(text, params)).rows as R[];
    } catch (error) {
      throw storeErrorOf(error);
    }
  }

  /** Runs a statement; how many rows it changed. */
  async #run(text: string | pg.QueryConfig, params: unknown[]): Promise<number> {
    const pool = this.#poolOrThrow();
    try {
      return (await pool.query(text, params)).rowCount ?? 0;
    } catch (error) {
      throw storeErrorOf(error);
    }
  }

  /**
   * Runs `work` in one transaction (READ COMMITTED, or REPEATABLE READ for a consistent read),
   * again after a serialization failure or deadlock. `work` throws a `Rollback` to undo everything
   * and still return a value.
   */
  async #tx<T>(
    work: (client: pg.PoolClient) => Promise<T>,
    options: { readOnly?: boolean } = {},
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const pool = this.#poolOrThrow();
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw storeErrorOf(error);
      }
      let broken: Error | undefined;
      try {
        await client.query(options.readOnly ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
        if (error instanceof Rollback) return error.value as T;
        if (isConnectionError(error)) broken ??= error as Error;
        if (isRetryable(error) && attempt < TX_RETRIES) {
          await new Promise((resolve) => setTimeout(resolve, 2 ** attempt * (1 + Math.random()) * 5));
          continue;
        }
        throw storeErrorOf(error);
      } finally {
        client.release(broken);
      }
    }
  }
}

/**
 * A commit's entry writes as the columns of the commit statement's entry CTEs ($26..$45). Those run
 * on one snapshot, so an index row both removed and added by a write (it stays) is left out of both,
 * and undefined is returned when one entry is written twice (the caller then writes them in order).
 */
function entryBatch(changes: readonly DocumentChange[]): { params: unknown[][] } | undefined {
  const removeRows: string[][] = [[], [], [], [], []];
  const deleted: string[][] = [[], [], []];
  const put: string[][] = [[], [], [], []];
  const addRows: string[][] = [[], [], [], [], []];
  const sizes = new Map<string, { doc: string; coll: string; delta: number }>();
  const seen = new Set<string>();
  for (const { commit, entries } of changes) {
    const doc = commit.doc;
    for (const w of entries ?? []) {
      const id = JSON.stringify([doc, w.collection, w.key]);
      if (seen.has(id)) return undefined;
      seen.add(id);
      const added = new Set(w.indexAdd.map(([idx, ikey]) => `${idx}\u0000${ikey}`));
      const removed = new Set(w.indexRemove.map(([idx, ikey]) => `${idx}\u0000${ikey}`));
      for (const [idx, ikey] of w.indexRemove) {
        if (added.has(`${idx}\u0000${ikey}`)) continue;
        for (const [column, value] of [doc, w.collection, idx, ikey, w.key].entries())
          removeRows[column]!.push(value);
      }
      for (const [idx, ikey] of w.indexAdd) {
        if (removed.has(`${idx}\u0000${ikey}`)) continue;
        for (const [column, value] of [doc, w.collection, idx, ikey, w.key].entries())
          addRows[column]!.push(value);
      }
      if (w.value === undefined) {
        for (const [column, value] of [doc, w.collection, w.key].entries()) deleted[column]!.push(value);
      } else {
        for (const [column, value] of [doc, w.collection, w.key, JSON.stringify(w.value)].entries())
          put[column]!.push(value);
      }
      const delta = Number(w.value !== undefined) - Number(w.existed);
      if (delta !== 0) {
        const key = JSON.stringify([doc, w.collection]);
        const size = sizes.get(key) ?? { doc, coll: w.collection, delta: 0 };
        size.delta += delta;
        sizes.set(key, size);
      }
    }
  }
  const sized = [...sizes.values()];
  return {
    params: [
      ...removeRows,
      ...deleted,
      ...put,
      ...addRows,
      sized.map((z) => z.doc),
      sized.map((z) => z.coll),
      sized.map((z) => z.delta) as unknown as string[],
    ],
  };
}

/** host:port/database of a connection string, without the user or password. */
/** The filters `readAudit` and `followAudit` share, as SQL on the `audit` table (params appended). */
function auditFilters(query: AuditFollowQuery, params: Array<string | number | null>): string[] {
  const where: string[] = [];
  if (query.principal !== undefined) {
    params.push(query.principal);
    where.push(`principal = $${params.length}`);
  }
  if (query.command !== undefined) {
    params.push(query.command);
    where.push(`command = $${params.length}`);
  }
  if (query.since !== undefined) {
    params.push(query.since);
    where.push(`at >= $${params.length}`);
  }
  return where;
}

function parseAuditCursor(cursor: AuditCursor): { tx: bigint; seq: bigint } {
  const match = /^(\d+):(\d+)$/.exec(cursor);
  if (!match) throw new TypeError(`not an audit cursor of this store: "${cursor}"`);
  return { tx: BigInt(match[1]!), seq: BigInt(match[2]!) };
}

function describeTarget(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    return `${url.hostname || 'localhost'}:${url.port || '5432'}${url.pathname}`;
  } catch {
    return 'the configured URL';
  }
}

/** The audit row's parameters ($1..$8) for a sealed record. */
function auditParams(record: AuditRecord): unknown[] {
  return [
    record.seq,
    record.chain,
    record.link,
    record.at,
    record.principal,
    record.command,
    record.hash,
    JSON.stringify(record),
  ];
}

/**
 * The store's statements, each prepared once per connection under its own name (the server parses
 * and plans it once). Names carry the schema, as a statement's text does.
 */
function statements(s: string): Record<keyof ReturnType<typeof statementTexts>, pg.QueryConfig> {
  const tag = createHash('sha256').update(s).digest('hex').slice(0, 8);
  return Object.fromEntries(
    Object.entries(statementTexts(s)).map(([key, text]) => [key, { name: `cmcp_${tag}_${key}`, text }]),
  ) as Record<keyof ReturnType<typeof statementTexts>, pg.QueryConfig>;
}

function statementTexts(s: string) {
  return {
    schemaVersion: `SELECT value FROM ${s}.meta WHERE key = 'schema_version'`,
    writeProbe: `INSERT INTO ${s}.meta (key, value) VALUES ('write_probe', $1)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    auditColumnMismatches: `SELECT seq FROM (SELECT seq, at, principal, command, hash, record::jsonb AS r FROM ${s}.audit) a
       WHERE seq IS DISTINCT FROM (r->>'seq')::bigint OR at IS DISTINCT FROM r->>'at'
          OR principal IS DISTINCT FROM r->>'principal' OR command IS DISTINCT FROM r->>'command'
          OR hash IS DISTINCT FROM r->>'hash'
       ORDER BY seq LIMIT 100`,
    listDocuments: `SELECT doc, revision, oldest_revision, created_at FROM ${s}.documents ORDER BY doc`,
    headRevision: `SELECT revision FROM ${s}.documents WHERE doc = $1`,
    headState: `SELECT revision, fence_token, fence_until FROM ${s}.documents WHERE doc = $1`,
    document: `SELECT revision, oldest_revision, collections, version, initial_hash FROM ${s}.documents WHERE doc = $1`,
    lockDocument: `SELECT revision, collections FROM ${s}.documents WHERE doc = $1 FOR UPDATE`,
    insertDocument: `INSERT INTO ${s}.documents (doc, created_at, collections, version, initial_hash, audit_hash)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (doc) DO NOTHING`,
    // The optimistic-concurrency step: only a writer that saw the head it moves from advances it, and
    // only past a fence it holds (or one expired). The row stays locked to the end of the transaction.
    advanceHead: `UPDATE ${s}.documents SET revision = revision + 1
       WHERE doc = $1 AND revision = $2 AND (fence_token IS NULL OR fence_token = $3 OR fence_until <= $4)
       RETURNING audit_link, audit_hash`,
    advanceHeadSeq: `UPDATE ${s}.documents SET revision = revision + 1
       WHERE doc = $1 AND revision = $2 AND (fence_token IS NULL OR fence_token = $3 OR fence_until <= $4)
       RETURNING audit_link, audit_hash, nextval('${s}.audit_seq') AS seq`,
    setVersion: `UPDATE ${s}.documents SET version = $2 WHERE doc = $1`,
    setLayout: `UPDATE ${s}.documents SET collections = $2 WHERE doc = $1`,
    raiseOldest: `UPDATE ${s}.documents SET oldest_revision = $2 WHERE doc = $1 AND oldest_revision < $2`,
    lockFences: `SELECT fence_token, fence_until FROM ${s}.documents WHERE doc = ANY($1) ORDER BY doc FOR UPDATE`,
    setFence: `UPDATE ${s}.documents SET fence_token = $2, fence_until = $3 WHERE doc = ANY($1)`,
    releaseFence: `UPDATE ${s}.documents SET fence_token = NULL, fence_until = NULL WHERE doc = ANY($1) AND fence_token = $2`,
    // The commit rows, the audit record, the chain's new head, the idempotency record and the
    // notifications, in one statement. `idem` is 0 when the key was already taken.
    writeCommit: `WITH
       a AS (INSERT INTO ${s}.audit (seq, chain, link, at, principal, command, hash, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)),
       h AS (UPDATE ${s}.documents SET audit_link = $3, audit_hash = $7 WHERE doc = $9),
       c AS (INSERT INTO ${s}.commits (doc, revision, command_id, command, principal, at, patches, inverse, request_id, idempotency_key, audit_seq)
             SELECT d, r, ci, co, p, t, pa, iv, rq, ik, $1
             FROM unnest($10::text[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[])
               AS x(d, r, ci, co, p, t, pa, iv, rq, ik)),
       i AS (INSERT INTO ${s}.idempotency (principal, key, at, record)
             SELECT $20, $21, $22, $23 WHERE $20::text IS NOT NULL
             ON CONFLICT (principal, key) DO NOTHING RETURNING 1),
       ir AS (DELETE FROM ${s}.entry_index e USING unnest($26::text[], $27::text[], $28::text[], $29::text[], $30::text[]) AS x(d, c, i, ik, k)
             WHERE e.doc = x.d AND e.coll = x.c AND e.idx = x.i AND e.ikey = x.ik AND e.key = x.k),
       ed AS (DELETE FROM ${s}.entries e USING unnest($31::text[], $32::text[], $33::text[]) AS x(d, c, k)
             WHERE e.doc = x.d AND e.coll = x.c AND e.key = x.k),
       ep AS (INSERT INTO ${s}.entries (doc, coll, key, value)
             SELECT d, c, k, v FROM unnest($34::text[], $35::text[], $36::text[], $37::text[]) AS x(d, c, k, v)
             ON CONFLICT (doc, coll, key) DO UPDATE SET value = excluded.value),
       ia AS (INSERT INTO ${s}.entry_index (doc, coll, idx, ikey, key)
             SELECT d, c, i, ik, k FROM unnest($38::text[], $39::text[], $40::text[], $41::text[], $42::text[]) AS x(d, c, i, ik, k)
             ON CONFLICT DO NOTHING),
       sz AS (UPDATE ${s}.collection_sizes AS z SET size = z.size + x.delta
             FROM unnest($43::text[], $44::text[], $45::bigint[]) AS x(d, c, delta) WHERE z.doc = x.d AND z.coll = x.c)
     SELECT (SELECT count(*) FROM i)::int AS idem,
            (SELECT count(pg_notify($24, n)) FROM unnest($25::text[]) AS n)::int AS notified`,
    // The head as one-statement commits read it; the sequence number is drawn only when the head is
    // where the writer expects it (a writer that is already behind burns none).
    readHeadSeq: `SELECT revision, audit_link, audit_hash, fence_token, fence_until,
         CASE WHEN revision = $2 THEN nextval('${s}.audit_seq') ELSE 0 END AS seq
       FROM ${s}.documents WHERE doc = $1`,
    commitOne: `WITH
       h AS (UPDATE ${s}.documents SET revision = revision + 1, audit_link = $3, audit_hash = $7,
               version = COALESCE($46::int, version)
             WHERE doc = $9 AND revision = $47 AND audit_link = $3 - 1
               AND (fence_token IS NULL OR fence_token = $48 OR fence_until <= $49)
             RETURNING doc),
       a AS (INSERT INTO ${s}.audit (seq, chain, link, at, principal, command, hash, record)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM h)),
       c AS (INSERT INTO ${s}.commits (doc, revision, command_id, command, principal, at, patches, inverse, request_id, idempotency_key, audit_seq)
             SELECT d, r, ci, co, p, t, pa, iv, rq, ik, $1
             FROM unnest($10::text[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[])
               AS x(d, r, ci, co, p, t, pa, iv, rq, ik)
             WHERE EXISTS (SELECT 1 FROM h)),
       i AS (INSERT INTO ${s}.idempotency (principal, key, at, record)
             SELECT $20, $21, $22, $23 WHERE $20::text IS NOT NULL AND EXISTS (SELECT 1 FROM h)),
       ir AS (DELETE FROM ${s}.entry_index e USING unnest($26::text[], $27::text[], $28::text[], $29::text[], $30::text[]) AS x(d, c, i, ik, k)
             WHERE e.doc = x.d AND e.coll = x.c AND e.idx = x.i AND e.ikey = x.ik AND e.key = x.k AND EXISTS (SELECT 1 FROM h)),
       ed AS (DELETE FROM ${s}.entries e USING unnest($31::text[], $32::text[], $33::text[]) AS x(d, c, k)
             WHERE e.doc = x.d AND e.coll = x.c AND e.key = x.k AND EXISTS (SELECT 1 FROM h)),
       ep AS (INSERT INTO ${s}.entries (doc, coll, key, value)
             SELECT d, c, k, v FROM unnest($34::text[], $35::text[], $36::text[], $37::text[]) AS x(d, c, k, v)
             WHERE EXISTS (SELECT 1 FROM h)
             ON CONFLICT (doc, coll, key) DO UPDATE SET value = excluded.value),
       ia AS (INSERT INTO ${s}.entry_index (doc, coll, idx, ikey, key)
             SELECT d, c, i, ik, k FROM unnest($38::text[], $39::text[], $40::text[], $41::text[], $42::text[]) AS x(d, c, i, ik, k)
             WHERE EXISTS (SELECT 1 FROM h)
             ON CONFLICT DO NOTHING),
       sz AS (UPDATE ${s}.collection_sizes AS z SET size = z.size + x.delta
             FROM unnest($43::text[], $44::text[], $45::bigint[]) AS x(d, c, delta)
             WHERE z.doc = x.d AND z.coll = x.c AND EXISTS (SELECT 1 FROM h))
     SELECT (SELECT count(*) FROM h)::int AS won,
            (SELECT count(pg_notify($24, n)) FROM unnest($25::text[]) AS n WHERE EXISTS (SELECT 1 FROM h))::int AS notified`,
    readChain: `SELECT COALESCE((SELECT link FROM ${s}.audit_chains WHERE chain = $1), 0) AS link,
         COALESCE((SELECT hash FROM ${s}.audit_chains WHERE chain = $1), $2) AS hash,
         nextval('${s}.audit_seq') AS seq`,
    // The chain's end moves from link $3 - 1 to $3 only if it is still there (a first record creates
    // it); the record and the idempotency record are written only if it moved.
    writeAttempt: `WITH
       h AS (INSERT INTO ${s}.audit_chains AS c (chain, link, hash) SELECT $2, $3::bigint, $7 WHERE $3::bigint = 1
             ON CONFLICT (chain) DO UPDATE SET link = excluded.link, hash = excluded.hash WHERE c.link = $3::bigint - 1
             RETURNING 1),
       u AS (UPDATE ${s}.audit_chains SET link = $3::bigint, hash = $7 WHERE chain = $2 AND link = $3::bigint - 1 AND $3::bigint > 1
             RETURNING 1),
       w AS (SELECT 1 FROM h UNION ALL SELECT 1 FROM u),
       a AS (INSERT INTO ${s}.audit (seq, chain, link, at, principal, command, hash, record)
             SELECT $1, $2, $3::bigint, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM w)),
       i AS (INSERT INTO ${s}.idempotency (principal, key, at, record)
             SELECT $9, $10, $11, $12 WHERE $9::text IS NOT NULL AND EXISTS (SELECT 1 FROM w)
             ON CONFLICT (principal, key) DO NOTHING)
     SELECT (SELECT count(*) FROM w)::int AS won`,
    auditHeads: `SELECT 'doc:' || doc AS chain, audit_link AS link, audit_hash AS hash FROM ${s}.documents
       UNION ALL SELECT chain, link, hash FROM ${s}.audit_chains`,
    sizes: `SELECT coll, size FROM ${s}.collection_sizes WHERE doc = $1`,
    initSizes: `INSERT INTO ${s}.collection_sizes (doc, coll, size) SELECT $1, unnest($2::text[]), 0
       ON CONFLICT (doc, coll) DO UPDATE SET size = 0`,
    setSize: `INSERT INTO ${s}.collection_sizes (doc, coll, size) VALUES ($1, $2, $3)
       ON CONFLICT (doc, coll) DO UPDATE SET size = excluded.size`,
    addSizes: `UPDATE ${s}.collection_sizes AS z SET size = z.size + d.delta
       FROM unnest($2::text[], $3::bigint[]) AS d(coll, delta) WHERE z.doc = $1 AND z.coll = d.coll`,
    deleteSizes: `DELETE FROM ${s}.collection_sizes WHERE doc = $1 AND coll = $2`,
    entries: `SELECT key, value FROM ${s}.entries WHERE doc = $1 AND coll = $2 AND key = ANY($3::text[])`,
    entriesAfter: `SELECT key, value FROM ${s}.entries WHERE doc = $1 AND coll = $2 AND key > $3 ORDER BY key LIMIT $4`,
    putEntries: `INSERT INTO ${s}.entries (doc, coll, key, value)
       SELECT $1, c, k, v FROM unnest($2::text[], $3::text[], $4::text[]) AS x(c, k, v)
       ON CONFLICT (doc, coll, key) DO UPDATE SET value = excluded.value`,
    deleteEntriesOf: `DELETE FROM ${s}.entries e USING unnest($2::text[], $3::text[]) AS x(c, k)
       WHERE e.doc = $1 AND e.coll = x.c AND e.key = x.k`,
    deleteEntries: `DELETE FROM ${s}.entries WHERE doc = $1 AND coll = $2`,
    insertIndexRows: `INSERT INTO ${s}.entry_index (doc, coll, idx, ikey, key)
       SELECT $1, c, i, ik, k FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(c, i, ik, k)
       ON CONFLICT DO NOTHING`,
    deleteIndexRowsOf: `DELETE FROM ${s}.entry_index e USING unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(c, i, ik, k)
       WHERE e.doc = $1 AND e.coll = x.c AND e.idx = x.i AND e.ikey = x.ik AND e.key = x.k`,
    deleteIndexRows: `DELETE FROM ${s}.entry_index WHERE doc = $1 AND coll = $2`,
    indexAsc: `SELECT i.ikey, i.key, e.value FROM ${s}.entry_index i
       JOIN ${s}.entries e ON e.doc = i.doc AND e.coll = i.coll AND e.key = i.key
       WHERE i.doc = $1 AND i.coll = $2 AND i.idx = $3 AND i.ikey >= $4 AND i.ikey < $5 AND (i.ikey, i.key) > ($6, $7)
       ORDER BY i.ikey, i.key LIMIT $8`,
    indexDesc: `SELECT i.ikey, i.key, e.value FROM ${s}.entry_index i
       JOIN ${s}.entries e ON e.doc = i.doc AND e.coll = i.coll AND e.key = i.key
       WHERE i.doc = $1 AND i.coll = $2 AND i.idx = $3 AND i.ikey >= $4 AND i.ikey < $5 AND (i.ikey, i.key) < ($6, $7)
       ORDER BY i.ikey DESC, i.key DESC LIMIT $8`,
    countIndex: `SELECT count(*)::int AS n FROM ${s}.entry_index
       WHERE doc = $1 AND coll = $2 AND idx = $3 AND ikey >= $4 AND ikey < $5`,
    insertSnapshot: `INSERT INTO ${s}.snapshots (doc, revision, value) VALUES ($1, $2, $3)`,
    insertSnapshotIfAbsent: `INSERT INTO ${s}.snapshots (doc, revision, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    upsertSnapshot: `INSERT INTO ${s}.snapshots (doc, revision, value) VALUES ($1, $2, $3)
       ON CONFLICT (doc, revision) DO UPDATE SET value = excluded.value`,
    latestSnapshot: `SELECT revision, value FROM ${s}.snapshots WHERE doc = $1 AND revision <= $2 ORDER BY revision DESC LIMIT 1`,
    deleteSnapshotsBefore: `DELETE FROM ${s}.snapshots WHERE doc = $1 AND revision < $2`,
    commitsAfter: `SELECT * FROM ${s}.commits WHERE doc = $1 AND revision > $2 AND revision <= $3 ORDER BY revision LIMIT $4`,
    commitsOfCommand: `SELECT * FROM ${s}.commits WHERE command_id = $1 ORDER BY audit_seq, doc`,
    deleteCommitsThrough: `DELETE FROM ${s}.commits WHERE doc = $1 AND revision IN (
       SELECT revision FROM ${s}.commits WHERE doc = $1 AND revision <= $2 ORDER BY revision LIMIT ${COMPACT_BATCH})`,
    revisionBefore: `SELECT GREATEST(d.oldest_revision,
         COALESCE((SELECT max(c.revision) FROM ${s}.commits c WHERE c.doc = d.doc AND c.at < $2), 0)) AS revision
       FROM ${s}.documents d WHERE d.doc = $1`,
    nextSequence: `INSERT INTO ${s}.sequences AS q (name, value) VALUES ($1, GREATEST($2::bigint, 1))
       ON CONFLICT (name) DO UPDATE SET value = GREATEST(q.value + 1, $2::bigint) RETURNING value`,
    secret: `SELECT value FROM ${s}.secrets WHERE name = $1`,
    insertSecret: `INSERT INTO ${s}.secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
    idempotency: `SELECT record FROM ${s}.idempotency WHERE principal = $1 AND key = $2`,
    expireIdempotency: `DELETE FROM ${s}.idempotency WHERE at < $1`,
    trimIdempotency: `DELETE FROM ${s}.idempotency WHERE principal = $1 AND key IN (
       SELECT key FROM ${s}.idempotency WHERE principal = $1 ORDER BY at DESC OFFSET $2)`,
    consume: `INSERT INTO ${s}.consumed (id, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
    expireConsumed: `DELETE FROM ${s}.consumed WHERE expires_at < $1`,
    insertTask: `INSERT INTO ${s}.mcp_tasks (task_id, version, expires_at, record) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
    task: `SELECT record FROM ${s}.mcp_tasks WHERE task_id = $1`,
    updateTask: `UPDATE ${s}.mcp_tasks SET version = $2, expires_at = $3, record = $4 WHERE task_id = $1 AND version = $2 - 1`,
    expireTasks: `DELETE FROM ${s}.mcp_tasks WHERE expires_at IS NOT NULL AND expires_at < $1`,
    insertKey: `INSERT INTO ${s}.api_keys (id, name, role, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)`,
    keyByHash: `SELECT * FROM ${s}.api_keys WHERE hash = $1`,
    listKeys: `SELECT * FROM ${s}.api_keys ORDER BY created_at, name`,
    // The notification goes out with the commit: every instance's cached lookup of the key ends then.
    revokeKey: `WITH r AS (UPDATE ${s}.api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 OR name = $2 RETURNING *)
      SELECT r.*, pg_notify($3, '') AS notified FROM r`,
  };
}
