import { randomUUID } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { GENESIS_HASH, sealAuditRecord } from '../core/audit.js';
import type { IndexRange } from '../core/collections.js';
import { RecoveryError, SetupError, StateError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type {
  ApiKeyRecord,
  AttemptRequest,
  AuditEntry,
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
  DocumentInfo,
  EntryWrite,
  IdempotencyRecord,
  IndexedEntry,
  LoadedDocument,
  RestructureRequest,
  SchemaStatus,
  Snapshot,
  Store,
  StoreCheckpointEvent,
  StoredEntry,
  StoreFaultEvent,
  TaskRecord,
} from '../core/store.js';
import { type Checkpointer, startCheckpointer } from './checkpointer.js';
import { type CommitRow, type DocumentRow, type KeyRow, toCommit, toDocumentInfo, toKey } from './rows.js';
import { StoreGuard, storeFaultError, typedStoreError } from './sqlite-faults.js';

export interface SqliteStoreOptions {
  /** Path of the database file, or `:memory:`. Parent folders are created. */
  path: string;
  /**
   * `normal` (default): WAL with synchronous=NORMAL. A commit survives a crash or kill of the process;
   * a power loss may lose the last few commits, never corrupt the file. `full`: fsync every commit,
   * surviving power loss too, at about 0.2 ms more per commit on the machines measured.
   */
  durability?: 'normal' | 'full';
  /**
   * SQLite's page cache, in MiB (default 64). Pages are cached as they are read, so a small database
   * never uses it all; a large collection's index pages stay in memory instead of being re-read.
   */
  cacheMiB?: number;
  /**
   * How long one write attempt waits, blocking, for another process's write lock, in ms (default 5).
   * Kept short: better-sqlite3 waits synchronously, so this is time the event loop stands still.
   */
  busyTimeoutMs?: number;
  /**
   * How long a write waits in all for another process's lock, retrying asynchronously with backoff,
   * before it fails with `store_busy` (default 2,000 ms).
   */
  busyWaitMs?: number;
  /**
   * Checkpoint the write-ahead log on a worker thread this often, in ms (default 100), instead of in
   * the commit that crosses SQLite's threshold. 0 leaves checkpoints to SQLite, inline.
   */
  checkpointIntervalMs?: number;
  /**
   * The write-ahead log is rewound (a RESTART checkpoint) once it grows past this, in MiB (default
   * 16), cut (TRUNCATE) at four times this, and emptied after a second without writes.
   */
  walLimitMiB?: number;
  /** How often the database file and its log are checked for having been replaced, in ms (default 250). */
  fileCheckIntervalMs?: number;
}

interface FileIdentity {
  dev: number;
  ino: number;
}

function identityOf(path: string): FileIdentity | undefined {
  const stat = statSync(path, { throwIfNoEntry: false });
  return stat && { dev: stat.dev, ino: stat.ino };
}

function sameFile(a: FileIdentity | undefined, b: FileIdentity | undefined): boolean {
  return a === undefined ? b === undefined : b !== undefined && a.dev === b.dev && a.ino === b.ino;
}

const SQLITE_MAGIC = 'SQLite format 3\u0000';

/**
 * Refuses a database file that cannot be one before SQLite sees it: an empty file is not a first
 * start (that would mint a new admin key over a lost database), a file without SQLite's header is
 * not a database, and one shorter than its header says was truncated. Checked only when no
 * write-ahead log holds newer pages (a crash mid-checkpoint may leave the file short until the log
 * is replayed). A missing file is a first start.
 */
export function checkDatabaseFile(path: string): void {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) return;
  // SQLite would open a read-only file read-only without a word, and fail later, vaguely.
  for (const target of [path, dirname(path)]) {
    try {
      accessSync(target, constants.W_OK);
    } catch {
      throw new RecoveryError(
        'store_read_only',
        `${target === path ? 'the database file' : 'the folder of the database'} ${target} is read-only; coremcp needs to write it (and its -wal and -shm files beside it)`,
        { details: { fault: 'read_only' } },
      );
    }
  }
  const corrupt = (why: string) =>
    new RecoveryError('store_corrupt', `the database file ${path} ${why}`, { details: { fault: 'corrupt' } });
  if (stat.size === 0)
    throw corrupt(
      'is empty (0 bytes); a first start needs no file at all: restore it from a backup, or delete it to start over with a new admin key',
    );
  const header = Buffer.alloc(100);
  const fd = openSync(path, 'r');
  let read: number;
  try {
    read = readSync(fd, header, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
  if (read < 100 || header.toString('latin1', 0, 16) !== SQLITE_MAGIC)
    throw corrupt('is not a SQLite database (its header is missing or damaged); restore it from a backup');
  const raw = header.readUInt16BE(16);
  const pageSize = raw === 1 ? 65536 : raw;
  const walSize = statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0;
  if (walSize > 0) return;
  // The page count in the header is valid only when its version stamp matches the change counter.
  const pages = header.readUInt32BE(92) === header.readUInt32BE(24) ? header.readUInt32BE(28) : 0;
  if (stat.size % pageSize !== 0 || stat.size < pages * pageSize)
    throw corrupt(
      `is truncated (${stat.size} bytes, its header says ${pages * pageSize}); restore it from a backup`,
    );
}

/** Schema migrations, applied in order; `meta.schema_version` records how many ran. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE documents (
     doc TEXT PRIMARY KEY,
     oldest_revision INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE commits (
     doc TEXT NOT NULL,
     revision INTEGER NOT NULL,
     command_id TEXT NOT NULL,
     command TEXT NOT NULL,
     principal TEXT NOT NULL,
     at TEXT NOT NULL,
     patches TEXT NOT NULL,
     inverse TEXT NOT NULL,
     request_id TEXT,
     idempotency_key TEXT,
     audit_seq INTEGER,
     PRIMARY KEY (doc, revision)
   ) WITHOUT ROWID;
   CREATE UNIQUE INDEX commits_command_id ON commits (command_id);
   CREATE TABLE snapshots (
     doc TEXT NOT NULL,
     revision INTEGER NOT NULL,
     value TEXT NOT NULL,
     PRIMARY KEY (doc, revision)
   ) WITHOUT ROWID;
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY,
     at TEXT NOT NULL,
     principal TEXT NOT NULL,
     command TEXT NOT NULL,
     hash TEXT NOT NULL,
     record TEXT NOT NULL
   );
   CREATE TABLE idempotency (
     principal TEXT NOT NULL,
     key TEXT NOT NULL,
     at TEXT NOT NULL,
     record TEXT NOT NULL,
     PRIMARY KEY (principal, key)
   ) WITHOUT ROWID;
   CREATE INDEX idempotency_at ON idempotency (at);
   CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );`,
  // 2: commits and snapshots as rowid tables. WITHOUT ROWID keeps whole rows in the primary-key tree,
  // so a seek to a document's newest revision compared keys against large patches and snapshots
  // (overflow pages) and slowed every commit as the history grew. The keys now live in an index.
  `CREATE TABLE commits_v2 (
     id INTEGER PRIMARY KEY,
     doc TEXT NOT NULL,
     revision INTEGER NOT NULL,
     command_id TEXT NOT NULL,
     command TEXT NOT NULL,
     principal TEXT NOT NULL,
     at TEXT NOT NULL,
     patches TEXT NOT NULL,
     inverse TEXT NOT NULL,
     request_id TEXT,
     idempotency_key TEXT,
     audit_seq INTEGER
   );
   INSERT INTO commits_v2 (doc, revision, command_id, command, principal, at, patches, inverse, request_id, idempotency_key, audit_seq)
     SELECT doc, revision, command_id, command, principal, at, patches, inverse, request_id, idempotency_key, audit_seq
     FROM commits ORDER BY doc, revision;
   DROP TABLE commits;
   ALTER TABLE commits_v2 RENAME TO commits;
   CREATE UNIQUE INDEX commits_doc_revision ON commits (doc, revision);
   CREATE UNIQUE INDEX commits_command_id ON commits (command_id);
   CREATE TABLE snapshots_v2 (
     id INTEGER PRIMARY KEY,
     doc TEXT NOT NULL,
     revision INTEGER NOT NULL,
     value TEXT NOT NULL
   );
   INSERT INTO snapshots_v2 (doc, revision, value) SELECT doc, revision, value FROM snapshots ORDER BY doc, revision;
   DROP TABLE snapshots;
   ALTER TABLE snapshots_v2 RENAME TO snapshots;
   CREATE UNIQUE INDEX snapshots_doc_revision ON snapshots (doc, revision);`,
  // 3: collections. A document's collections keep their head entry by entry, with index rows and a
  // size, all updated in the commit's transaction. One command may commit to several documents, so a
  // command id is unique per document only.
  `ALTER TABLE documents ADD COLUMN collections TEXT NOT NULL DEFAULT '{}';
   ALTER TABLE documents ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
   ALTER TABLE documents ADD COLUMN initial_hash TEXT;
   CREATE TABLE entries (
     id INTEGER PRIMARY KEY,
     doc TEXT NOT NULL,
     coll TEXT NOT NULL,
     key TEXT NOT NULL,
     value TEXT NOT NULL
   );
   CREATE UNIQUE INDEX entries_key ON entries (doc, coll, key);
   CREATE TABLE entry_index (
     doc TEXT NOT NULL,
     coll TEXT NOT NULL,
     idx TEXT NOT NULL,
     ikey TEXT NOT NULL,
     key TEXT NOT NULL,
     PRIMARY KEY (doc, coll, idx, ikey, key)
   ) WITHOUT ROWID;
   CREATE TABLE collection_sizes (
     doc TEXT NOT NULL,
     coll TEXT NOT NULL,
     size INTEGER NOT NULL,
     PRIMARY KEY (doc, coll)
   ) WITHOUT ROWID;
   DROP INDEX commits_command_id;
   CREATE UNIQUE INDEX commits_command_doc ON commits (command_id, doc);
   CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX idempotency_principal_at ON idempotency (principal, at);
   CREATE TABLE fences (doc TEXT PRIMARY KEY, token TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID;
   CREATE TABLE sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;`,
  // 4: the 2026-07-28 protocol. Ids consumed once (MRTR request states), and MCP tasks (the tasks
  // extension), each kept whole as JSON with its version for compare-and-set updates.
  `CREATE TABLE consumed (id TEXT PRIMARY KEY, expires_at TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX consumed_expires ON consumed (expires_at);
   CREATE TABLE mcp_tasks (
     task_id TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     expires_at TEXT,
     record TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE INDEX mcp_tasks_expires ON mcp_tasks (expires_at) WHERE expires_at IS NOT NULL;`,
];

/**
 * Compaction deletes commits in batches sized to take about `COMPACT_BATCH_MS` each (a batch of wide
 * commits with large patches costs more than one of small ones), so writers and timers run between
 * them and no batch holds the event loop or the write lock for long.
 */
const COMPACT_BATCH_MS = 4;
/**
 * After this many milliseconds of deleting, compaction pauses for a checkpoint of its own (see
 * `compact`).
 */
const COMPACT_CHECKPOINT_MS = 16;
const COMPACT_BATCH_MIN = 16;
const COMPACT_BATCH_MAX = 4096;
/**
 * A batch also stops where its commits' patches pass this many bytes: a commit that seeded 50,000
 * entries holds ~14 MB, and freeing its pages takes ~26 ms; a first batch of 256 commits holding
 * two of them held the loop ~85 ms. One larger than this goes alone.
 */
const COMPACT_BATCH_BYTES = 4 * 1024 * 1024;

/**
 * The last revision of a compaction batch: of the oldest commits (revision and size, in revision
 * order), as many as fit in `budget` bytes, and the first whatever its size. Undefined for none.
 */
export function batchEnd(
  oldest: ReadonlyArray<readonly [number, number]>,
  budget: number,
): number | undefined {
  if (oldest.length === 0) return undefined;
  let [last, bytes] = oldest[0]!;
  for (let i = 1; i < oldest.length; i++) {
    const [revision, size] = oldest[i]!;
    if (bytes + size > budget) break;
    bytes += size;
    last = revision;
  }
  return last;
}

function prepareStatements(db: Database.Database) {
  return {
    // The head is the newest commit (or the compaction floor): no row to update per commit, and the
    // commits primary key refuses a second writer of the same revision.
    head: db.prepare(
      'SELECT MAX(oldest_revision, COALESCE((SELECT MAX(revision) FROM commits WHERE doc = @doc), 0)) AS revision, oldest_revision FROM documents WHERE doc = @doc',
    ),
    listDocuments: db.prepare(
      'SELECT d.doc, MAX(d.oldest_revision, COALESCE((SELECT MAX(revision) FROM commits c WHERE c.doc = d.doc), 0)) AS revision, d.oldest_revision, d.created_at FROM documents d ORDER BY d.doc',
    ),
    headRevision: db
      .prepare(
        'SELECT MAX(oldest_revision, COALESCE((SELECT MAX(revision) FROM commits WHERE doc = @doc), 0)) FROM documents WHERE doc = @doc',
      )
      .pluck(),
    documentLayout: db.prepare('SELECT collections FROM documents WHERE doc = ?').pluck(),
    setLayout: db.prepare('UPDATE documents SET collections = ? WHERE doc = ?'),
    insertDocument: db.prepare(
      'INSERT INTO documents (doc, oldest_revision, created_at, collections, version, initial_hash) VALUES (?, 0, ?, ?, ?, ?)',
    ),
    documentMeta: db.prepare('SELECT collections, version, initial_hash FROM documents WHERE doc = ?'),
    setVersion: db.prepare('UPDATE documents SET version = ? WHERE doc = ?'),
    sizes: db.prepare('SELECT coll, size FROM collection_sizes WHERE doc = ?'),
    setSize: db.prepare(
      'INSERT INTO collection_sizes (doc, coll, size) VALUES (?, ?, ?) ON CONFLICT (doc, coll) DO UPDATE SET size = excluded.size',
    ),
    addSize: db.prepare('UPDATE collection_sizes SET size = size + ? WHERE doc = ? AND coll = ?'),
    deleteSizes: db.prepare('DELETE FROM collection_sizes WHERE doc = ? AND coll = ?'),
    entry: db.prepare('SELECT value FROM entries WHERE doc = ? AND coll = ? AND key = ?').pluck(),
    entriesAfter: db.prepare(
      'SELECT key, value FROM entries WHERE doc = ? AND coll = ? AND key > ? ORDER BY key LIMIT ?',
    ),
    putEntry: db.prepare(
      'INSERT INTO entries (doc, coll, key, value) VALUES (?, ?, ?, ?) ON CONFLICT (doc, coll, key) DO UPDATE SET value = excluded.value',
    ),
    deleteEntry: db.prepare('DELETE FROM entries WHERE doc = ? AND coll = ? AND key = ?'),
    deleteEntries: db.prepare('DELETE FROM entries WHERE doc = ? AND coll = ?'),
    insertIndexRow: db.prepare(
      'INSERT OR IGNORE INTO entry_index (doc, coll, idx, ikey, key) VALUES (?, ?, ?, ?, ?)',
    ),
    deleteIndexRow: db.prepare(
      'DELETE FROM entry_index WHERE doc = ? AND coll = ? AND idx = ? AND ikey = ? AND key = ?',
    ),
    deleteIndexRows: db.prepare('DELETE FROM entry_index WHERE doc = ? AND coll = ?'),
    indexAsc: db.prepare(
      `SELECT i.ikey, i.key, e.value FROM entry_index i JOIN entries e ON e.doc = i.doc AND e.coll = i.coll AND e.key = i.key
       WHERE i.doc = ? AND i.coll = ? AND i.idx = ? AND i.ikey >= ? AND i.ikey < ? AND (i.ikey, i.key) > (?, ?)
       ORDER BY i.ikey, i.key LIMIT ?`,
    ),
    indexDesc: db.prepare(
      `SELECT i.ikey, i.key, e.value FROM entry_index i JOIN entries e ON e.doc = i.doc AND e.coll = i.coll AND e.key = i.key
       WHERE i.doc = ? AND i.coll = ? AND i.idx = ? AND i.ikey >= ? AND i.ikey < ? AND (i.ikey, i.key) < (?, ?)
       ORDER BY i.ikey DESC, i.key DESC LIMIT ?`,
    ),
    countIndex: db
      .prepare(
        'SELECT COUNT(*) FROM entry_index WHERE doc = ? AND coll = ? AND idx = ? AND ikey >= ? AND ikey < ?',
      )
      .pluck(),
    upsertSnapshot: db.prepare(
      'INSERT INTO snapshots (doc, revision, value) VALUES (?, ?, ?) ON CONFLICT (doc, revision) DO UPDATE SET value = excluded.value',
    ),
    setOldest: db.prepare('UPDATE documents SET oldest_revision = ? WHERE doc = ?'),
    insertSnapshot: db.prepare('INSERT INTO snapshots (doc, revision, value) VALUES (?, ?, ?)'),
    insertSnapshotIfAbsent: db.prepare(
      'INSERT OR IGNORE INTO snapshots (doc, revision, value) VALUES (?, ?, ?)',
    ),
    latestSnapshot: db.prepare(
      'SELECT revision, value FROM snapshots WHERE doc = ? AND revision <= ? ORDER BY revision DESC LIMIT 1',
    ),
    commitsAfter: db.prepare(
      'SELECT * FROM commits WHERE doc = ? AND revision > ? AND revision <= ? ORDER BY revision LIMIT ?',
    ),
    commitsOfCommand: db.prepare('SELECT * FROM commits WHERE command_id = ? ORDER BY id'),
    commitTime: db.prepare('SELECT at FROM commits WHERE doc = ? AND revision = ?').pluck(),
    insertCommit: db.prepare(
      `INSERT INTO commits (doc, revision, command_id, command, principal, at, patches, inverse, request_id, idempotency_key, audit_seq)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // A compaction batch: the oldest commits' sizes (octet_length reads a value's length, not its
    // overflow pages), then every commit through the last one the batch takes.
    oldestCommitSizes: db
      .prepare(
        'SELECT revision, octet_length(patches) + octet_length(inverse) FROM commits WHERE doc = ? AND revision <= ? ORDER BY revision LIMIT ?',
      )
      .raw(),
    deleteCommitsThrough: db.prepare('DELETE FROM commits WHERE doc = ? AND revision <= ?'),
    deleteSnapshotsBefore: db.prepare('DELETE FROM snapshots WHERE doc = ? AND revision < ?'),
    lastAudit: db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
    insertAudit: db.prepare(
      'INSERT INTO audit (seq, at, principal, command, hash, record) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    fenceOf: db.prepare('SELECT token, until FROM fences WHERE doc = ?'),
    putFence: db.prepare(
      'INSERT INTO fences (doc, token, until) VALUES (?, ?, ?) ON CONFLICT (doc) DO UPDATE SET token = excluded.token, until = excluded.until',
    ),
    deleteFence: db.prepare('DELETE FROM fences WHERE doc = ? AND token = ?'),
    sequence: db.prepare('SELECT value FROM sequences WHERE name = ?').pluck(),
    putSequence: db.prepare(
      'INSERT INTO sequences (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    ),
    secret: db.prepare('SELECT value FROM secrets WHERE name = ?').pluck(),
    insertSecret: db.prepare('INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)'),
    idempotency: db.prepare('SELECT record FROM idempotency WHERE principal = ? AND key = ?'),
    insertIdempotency: db.prepare(
      'INSERT OR IGNORE INTO idempotency (principal, key, at, record) VALUES (?, ?, ?, ?)',
    ),
    expireIdempotency: db.prepare('DELETE FROM idempotency WHERE at < ?'),
    trimIdempotency: db.prepare(
      `DELETE FROM idempotency WHERE principal = @principal AND key IN (
         SELECT key FROM idempotency WHERE principal = @principal ORDER BY at DESC LIMIT -1 OFFSET @keep)`,
    ),
    consume: db.prepare('INSERT OR IGNORE INTO consumed (id, expires_at) VALUES (?, ?)'),
    expireConsumed: db.prepare('DELETE FROM consumed WHERE expires_at < ?'),
    insertTask: db.prepare(
      'INSERT INTO mcp_tasks (task_id, version, expires_at, record) VALUES (?, ?, ?, ?)',
    ),
    task: db.prepare('SELECT record FROM mcp_tasks WHERE task_id = ?').pluck(),
    updateTask: db.prepare(
      'UPDATE mcp_tasks SET version = ?, expires_at = ?, record = ? WHERE task_id = ? AND version = ?',
    ),
    expireTasks: db.prepare('DELETE FROM mcp_tasks WHERE expires_at IS NOT NULL AND expires_at < ?'),
    insertKey: db.prepare(
      'INSERT INTO api_keys (id, name, role, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    keyByHash: db.prepare('SELECT * FROM api_keys WHERE hash = ?'),
    keyByIdOrName: db.prepare('SELECT * FROM api_keys WHERE id = ? OR name = ?'),
    listKeys: db.prepare('SELECT * FROM api_keys ORDER BY created_at, name'),
    revokeKey: db.prepare(
      'UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? OR name = ?',
    ),
  };
}

/**
 * The embedded default store: one SQLite file in WAL mode. Each commit is one IMMEDIATE transaction
 * holding the head check, the commit row, the sealed audit record, the idempotency record and the new
 * head, so another process writing the same file (the CLI, a second server) can never interleave.
 * better-sqlite3 is synchronous: a call finishes before its promise is returned.
 */
export class SqliteStore implements Store, CredentialStore {
  readonly kind = 'sqlite';
  readonly path: string;
  readonly #options: SqliteStoreOptions;
  #db: Database.Database | undefined;
  #checkpointer: Checkpointer | undefined;
  /** The file every coremcp process rewrites after changing a key (none for `:memory:`). */
  readonly #keysMarker: string | undefined;
  /** What `credentialsEpoch` has seen of key changes. */
  readonly #keys: {
    epoch: number;
    marker: { ino: number; mtimeMs: number; size: number };
    stopWatching: (() => void) | undefined;
  } = { epoch: 0, marker: { ino: -1, mtimeMs: -1, size: -1 }, stopWatching: undefined };
  /** Set from open until the first write starts the checkpointer. */
  #checkpointDue: { intervalMs: number; walLimitBytes: number } | undefined;
  #sql!: ReturnType<typeof prepareStatements>;
  #commitTx!: (request: CommitRequest) => CommitOutcome;
  #batchTx!: (requests: readonly CommitRequest[]) => AuditRecord[];
  #attemptTx!: (request: AttemptRequest) => AuditRecord;
  #compactTx!: (doc: string, through: number) => number | undefined;
  /** Deletes one batch: how many commits it removed, and whether it reached `through`. */
  #compactBatchTx!: (doc: string, through: number, limit: number) => { removed: number; done: boolean };
  /** Set by `close` (compaction stops between batches), cleared by `open`. */
  #closing = false;
  #createTx!: (doc: string, initial: string, at: string, options: CreateOptions) => boolean;
  #restructureTx!: (request: RestructureRequest) => void;
  #fenceTx!: (docs: readonly string[], token: string, ttlMs: number) => boolean;
  #sequenceTx!: (name: string, floor: number) => number;
  readonly #faultListeners = new Set<(event: StoreFaultEvent) => void>();
  readonly #checkpointListeners = new Set<(event: StoreCheckpointEvent) => void>();
  readonly #guard: StoreGuard;
  #stopWatchingFiles: (() => void) | undefined;
  #files: { db: FileIdentity; wal: FileIdentity | undefined } | undefined;

  constructor(options: SqliteStoreOptions) {
    this.#options = options;
    this.path = options.path;
    this.#keysMarker = this.path === ':memory:' ? undefined : `${this.path}-keys`;
    this.#guard = new StoreGuard({
      busyWaitMs: options.busyWaitMs,
      beforeWrite: () => {
        if (this.#checkpointDue) this.#startCheckpointer(this.#checkpointDue);
      },
      refine: (kind) => (kind === 'io' && this.#readOnlyFile() ? 'read_only' : kind),
      onEvent: (event) => {
        for (const listener of this.#faultListeners) listener(event);
      },
    });
  }

  /** Calls `listener` on every WAL checkpoint the worker runs (a database on disk, once written to). */
  watchCheckpoints(listener: (event: StoreCheckpointEvent) => void): () => void {
    this.#checkpointListeners.add(listener);
    return () => this.#checkpointListeners.delete(listener);
  }

  watchFaults(listener: (event: StoreFaultEvent) => void): () => void {
    this.#faultListeners.add(listener);
    return () => this.#faultListeners.delete(listener);
  }

  async open(): Promise<void> {
    if (this.#db) return;
    this.#closing = false;
    const onDisk = this.path !== ':memory:';
    if (onDisk) {
      mkdirSync(dirname(this.path), { recursive: true });
      // A file another process is creating this very moment is empty for a few milliseconds.
      for (
        let waited = 0;
        waited < 500 && statSync(this.path, { throwIfNoEntry: false })?.size === 0;
        waited += 50
      )
        await new Promise((resolve) => setTimeout(resolve, 50));
      checkDatabaseFile(this.path);
    }
    let db: Database.Database;
    try {
      db = new Database(this.path);
    } catch (error) {
      throw typedStoreError(error);
    }
    const walLimitBytes = (this.#options.walLimitMiB ?? 16) * 1024 * 1024;
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.#options.durability === 'full' ? 'FULL' : 'NORMAL'}`);
      // Nothing is served yet: the start may wait the whole budget for another process's lock.
      db.pragma(`busy_timeout = ${this.#options.busyWaitMs ?? 2000}`);
      db.pragma(`cache_size = -${(this.#options.cacheMiB ?? 64) * 1024}`);
      // When the log is restarted it is cut back to this size, whatever it grew to before. Four times
      // the limit, so that the commit that rewinds the log does not also cut the file: the
      // checkpointer rewinds it past the limit and cuts it when idle. Without the checkpointer
      // (SQLite checkpointing inline) this is what bounds the file.
      db.pragma(`journal_size_limit = ${4 * walLimitBytes}`);
      this.#migrate(db);
      db.pragma(`busy_timeout = ${this.#options.busyTimeoutMs ?? 5}`);
      const interval = this.#options.checkpointIntervalMs ?? 100;
      if (interval > 0 && onDisk) {
        db.pragma('wal_autocheckpoint = 0');
        // Started by the first write: a process that has written nothing (a server before its first
        // call, a CLI command that reads) has nothing to checkpoint and keeps the worker's ~9 MB.
        this.#checkpointDue = { intervalMs: interval, walLimitBytes };
      }
    } catch (error) {
      this.#checkpointDue = undefined;
      await this.#checkpointer?.stop();
      this.#checkpointer = undefined;
      db.close();
      throw typedStoreError(error);
    }
    this.#db = db;
    if (onDisk) this.#watchFiles(this.#options.fileCheckIntervalMs ?? 250);
    this.#sql = prepareStatements(db);
    this.#commitTx = db.transaction((request: CommitRequest) => this.#commitInTx(request)).immediate;
    this.#batchTx = db.transaction((requests: readonly CommitRequest[]) => {
      const audits: AuditRecord[] = [];
      for (const [index, request] of requests.entries()) {
        const outcome = this.#commitInTx(request);
        // Thrown to roll the whole transaction back: nothing of a refused batch is written.
        if (outcome.status !== 'committed') throw new BatchRefusal(index, outcome);
        audits.push(outcome.audit);
      }
      return audits;
    }).immediate;
    this.#attemptTx = db.transaction((request: AttemptRequest) => this.#attemptInTx(request)).immediate;
    this.#compactTx = db.transaction((doc: string, through: number) =>
      this.#compactInTx(doc, through),
    ).immediate;
    this.#compactBatchTx = db.transaction((doc: string, through: number, limit: number) => {
      const oldest = this.#sql.oldestCommitSizes.all(doc, through, limit) as Array<[number, number]>;
      const last = batchEnd(oldest, COMPACT_BATCH_BYTES);
      if (last === undefined) return { removed: 0, done: true };
      const removed = this.#sql.deleteCommitsThrough.run(doc, last).changes;
      // Fewer than asked for, all of them taken: nothing is left through the revision.
      return { removed, done: oldest.length < limit && last === oldest.at(-1)![0] };
    }).immediate;
    this.#createTx = db.transaction((doc: string, initial: string, at: string, options: CreateOptions) => {
      if (this.#sql.head.get({ doc: doc })) return false;
      const layout = options.collections ?? {};
      this.#sql.insertDocument.run(
        doc,
        at,
        JSON.stringify(layout),
        options.version ?? 1,
        options.initialHash ?? null,
      );
      this.#sql.insertSnapshot.run(doc, 0, initial);
      for (const name of Object.keys(layout)) this.#sql.setSize.run(doc, name, 0);
      return true;
    }).immediate;
    this.#restructureTx = db.transaction((request: RestructureRequest) =>
      this.#restructureInTx(request),
    ).immediate;
    this.#fenceTx = db.transaction((docs: readonly string[], token: string, ttlMs: number) => {
      const now = Date.now();
      for (const doc of docs) {
        const held = this.#sql.fenceOf.get(doc) as { token: string; until: number } | undefined;
        if (held && held.until > now && held.token !== token) return false;
      }
      for (const doc of docs) this.#sql.putFence.run(doc, token, now + ttlMs);
      return true;
    }).immediate;
    this.#sequenceTx = db.transaction((name: string, floor: number) => {
      const next = Math.max(((this.#sql.sequence.get(name) as number | undefined) ?? 0) + 1, floor);
      this.#sql.putSequence.run(name, next);
      return next;
    }).immediate;
  }

  /** Whether the WAL checkpointer runs: from the first write after open, on a file on disk. */
  get checkpointing(): boolean {
    return this.#checkpointer !== undefined;
  }

  #startCheckpointer(options: { intervalMs: number; walLimitBytes: number }): void {
    this.#checkpointDue = undefined;
    this.#checkpointer = startCheckpointer(this.path, options, {
      // Housekeeping: a failed checkpoint is retried on the next tick and nothing else fails.
      onError: (message) => process.emitWarning(`coremcp: WAL checkpoint failed: ${message}`),
      onCheckpoint: (event) => {
        for (const listener of this.#checkpointListeners) listener(event);
      },
      // Without the worker the log would grow without bound: give checkpoints back to SQLite.
      onExit: (message) => {
        process.emitWarning(`coremcp: WAL checkpointer stopped (${message}); checkpointing inline`);
        this.#db?.pragma('wal_autocheckpoint = 1000');
      },
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#checkpointDue = undefined;
    this.#stopWatchingFiles?.();
    this.#stopWatchingFiles = undefined;
    this.#keys.stopWatching?.();
    this.#keys.stopWatching = undefined;
    await this.#checkpointer?.stop();
    this.#checkpointer = undefined;
    this.#db?.close();
    this.#db = undefined;
  }

  /**
   * Readiness: the file is still the one opened, and a one-row write commits now (no waiting for a
   * lock: a held lock answers `store_busy` at once). Goes through the circuit breaker, so a probe that
   * succeeds closes an open circuit.
   */
  async probeWrite(): Promise<void> {
    const db = this.#conn();
    this.#checkFiles();
    if (this.#guard.isolated) throw storeFaultError(this.#guard.isolated);
    const at = new Date().toISOString();
    await this.#guard.probe(() =>
      db
        .prepare(
          "INSERT INTO meta (key, value) VALUES ('write_probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .run(at),
    );
  }

  async checkIntegrity(options: { full?: boolean } = {}): Promise<string[]> {
    const db = this.#conn();
    const rows = this.#guard.read(
      () =>
        db.pragma(options.full ? 'integrity_check(100)' : 'quick_check(100)', { simple: false }) as unknown[],
    );
    const problems = rows.map((row) => String(Object.values(row as Record<string, unknown>)[0]));
    return problems.length === 1 && problems[0] === 'ok' ? [] : problems;
  }

  async ping(): Promise<void> {
    const db = this.#conn();
    this.#guard.read(() => db.prepare('SELECT 1').get());
  }

  /** The schema version this file is at. */
  get schemaVersion(): number {
    const db = this.#conn();
    return this.#guard.read(() => this.#version(db));
  }

  async schemaStatus(): Promise<SchemaStatus> {
    return { version: this.schemaVersion, expected: MIGRATIONS.length };
  }

  async listDocuments(): Promise<DocumentInfo[]> {
    this.#conn();
    return this.#guard.read(() => (this.#sql.listDocuments.all() as DocumentRow[]).map(toDocumentInfo));
  }

  async createDocument(
    doc: string,
    initial: JsonValue,
    at: string,
    options: CreateOptions = {},
  ): Promise<boolean> {
    this.#conn();
    // Existing (every start but the first): no write lock taken, nothing written.
    if (this.#guard.read(() => this.#sql.head.get({ doc }))) return false;
    const text = JSON.stringify(initial);
    return this.#guard.write(() => this.#createTx(doc, text, at, options));
  }

  async headRevision(doc: string): Promise<number> {
    this.#conn();
    return this.#guard.read(() => {
      return (this.#sql.headRevision.get({ doc }) as number | undefined) ?? 0;
    });
  }

  async restructure(request: RestructureRequest): Promise<void> {
    this.#conn();
    await this.#guard.write(() => this.#restructureTx(request));
  }

  async readEntries(
    doc: string,
    collection: string,
    keys: readonly string[],
  ): Promise<Map<string, JsonValue>> {
    this.#conn();
    return this.#guard.read(() => {
      const out = new Map<string, JsonValue>();
      for (const key of keys) {
        const text = this.#sql.entry.get(doc, collection, key) as string | undefined;
        if (text !== undefined) out.set(key, JSON.parse(text));
      }
      return out;
    });
  }

  async listEntries(
    doc: string,
    collection: string,
    range: { after?: string; limit: number },
  ): Promise<StoredEntry[]> {
    this.#conn();
    return this.#guard.read(() => {
      const rows = this.#sql.entriesAfter.all(doc, collection, range.after ?? '', range.limit) as Array<{
        key: string;
        value: string;
      }>;
      return rows.map((row) => ({ key: row.key, value: JSON.parse(row.value) }));
    });
  }

  async queryIndex(
    doc: string,
    collection: string,
    index: string,
    range: IndexRange,
  ): Promise<IndexedEntry[]> {
    this.#conn();
    return this.#guard.read(() => {
      const asc = range.order === 'asc';
      const after = range.after ?? (asc ? [range.from, ''] : [range.to, '']);
      const rows = (asc ? this.#sql.indexAsc : this.#sql.indexDesc).all(
        doc,
        collection,
        index,
        range.from,
        range.to,
        after[0],
        after[1],
        range.limit,
      ) as Array<{ ikey: string; key: string; value: string }>;
      return rows.map((row) => ({ ikey: row.ikey, key: row.key, value: JSON.parse(row.value) }));
    });
  }

  async countIndex(
    doc: string,
    collection: string,
    index: string,
    range: { from: string; to: string },
  ): Promise<number> {
    this.#conn();
    return this.#guard.read(() => {
      return this.#sql.countIndex.get(doc, collection, index, range.from, range.to) as number;
    });
  }

  async loadDocument(doc: string): Promise<LoadedDocument | undefined> {
    this.#conn();
    return this.#guard.read(() => {
      const head = this.#sql.head.get({ doc: doc }) as
        | { revision: number; oldest_revision: number }
        | undefined;
      if (!head) return undefined;
      const snap = this.#sql.latestSnapshot.get(doc, head.revision) as
        | { revision: number; value: string }
        | undefined;
      if (!snap)
        throw new StateError('revision_compacted', `Document "${doc}" has no snapshot to start from`);
      const commits = (this.#sql.commitsAfter.all(doc, snap.revision, head.revision, -1) as CommitRow[]).map(
        toCommit,
      );
      const meta = this.#sql.documentMeta.get(doc) as {
        collections: string;
        version: number;
        initial_hash: string | null;
      };
      const layout = JSON.parse(meta.collections) as CollectionLayout;
      const sizes = new Map(
        (this.#sql.sizes.all(doc) as Array<{ coll: string; size: number }>).map((row) => [
          row.coll,
          row.size,
        ]),
      );
      const collections: LoadedDocument['collections'] = {};
      for (const [name, { indexes }] of Object.entries(layout))
        collections[name] = { size: sizes.get(name) ?? 0, indexes };
      return {
        doc,
        revision: head.revision,
        oldestRevision: head.oldest_revision,
        snapshot: { revision: snap.revision, value: JSON.parse(snap.value) },
        commits,
        collections,
        version: meta.version,
        ...(meta.initial_hash === null ? {} : { initialHash: meta.initial_hash }),
      };
    });
  }

  async readSnapshot(doc: string, atOrBefore: number): Promise<Snapshot | undefined> {
    this.#conn();
    return this.#guard.read(() => {
      const snap = this.#sql.latestSnapshot.get(doc, atOrBefore) as
        | { revision: number; value: string }
        | undefined;
      return snap && { revision: snap.revision, value: JSON.parse(snap.value) };
    });
  }

  async readCommits(doc: string, range: CommitRange): Promise<CommitRecord[]> {
    this.#conn();
    return this.#guard.read(() => {
      const rows = this.#sql.commitsAfter.all(
        doc,
        range.after,
        range.to ?? Number.MAX_SAFE_INTEGER,
        range.limit ?? -1,
      ) as CommitRow[];
      return rows.map(toCommit);
    });
  }

  async readCommand(commandId: string): Promise<CommitRecord[]> {
    this.#conn();
    return this.#guard.read(() => {
      return (this.#sql.commitsOfCommand.all(commandId) as CommitRow[]).map(toCommit);
    });
  }

  async commit(request: CommitRequest): Promise<CommitOutcome> {
    this.#conn();
    // One stat (under a microsecond): a commit into a file renamed over or deleted since it was
    // opened would be acknowledged and lost, so that is checked before each, not only every 250 ms.
    if (this.#files && !sameFile(this.#files.db, identityOf(this.path))) this.#checkFiles();
    return this.#guard.write(() => this.#commitTx(request));
  }

  async commitBatch(requests: readonly CommitRequest[]): Promise<BatchOutcome> {
    this.#conn();
    if (this.#files && !sameFile(this.#files.db, identityOf(this.path))) this.#checkFiles();
    return this.#guard.write((): BatchOutcome => {
      try {
        return { status: 'committed', audits: this.#batchTx(requests) };
      } catch (error) {
        if (error instanceof BatchRefusal)
          return { status: 'refused', index: error.index, outcome: error.outcome };
        throw error;
      }
    });
  }

  async recordAttempt(request: AttemptRequest): Promise<AuditRecord> {
    this.#conn();
    return this.#guard.write(() => this.#attemptTx(request));
  }

  async writeSnapshot(doc: string, snapshot: Snapshot): Promise<void> {
    this.#conn();
    const head = this.#guard.read(() => this.#sql.head.get({ doc: doc })) as { revision: number } | undefined;
    if (!head) throw new StateError('not_found', `No document "${doc}"`);
    if (snapshot.revision > head.revision)
      throw new StateError('invalid_revision', 'Snapshot is later than the head');
    const text = JSON.stringify(snapshot.value);
    // A snapshot only shortens a later load: a busy lock skips it (the next commit schedules another).
    await this.#guard.writeLater(() => this.#sql.insertSnapshotIfAbsent.run(doc, snapshot.revision, text));
  }

  /**
   * Moves the retention point first (one short transaction), then deletes the commits before it in
   * batches of their own, yielding to the event loop between them: a million-commit compaction never
   * holds the write lock or the loop for long. Deleting writes log faster than anything else (~20 MiB
   * a second): left to the checkpointer's ticks, the log reached thousands of frames before a
   * RESTART, which then held every writer off for ~100 ms. So after every `COMPACT_CHECKPOINT_MS` of
   * deleting it pauses for a checkpoint of its own, which copies the log back and rewinds it while
   * little is being written. Deleting 100,000 commits beside a writer: its slowest call 32–37 ms
   * instead of 137–147, the compaction 1.3–2× as long.
   */
  async compact(doc: string, throughRevision: number): Promise<number> {
    this.#conn();
    const through = await this.#guard.write(() => this.#compactTx(doc, throughRevision));
    if (through === undefined) return 0;
    let removed = 0;
    let limit = 256;
    let sinceCheckpointMs = 0;
    for (;;) {
      let tookMs = 0;
      const batch = await this.#guard.write(() => {
        const started = performance.now();
        const outcome = this.#compactBatchTx(doc, through, limit);
        tookMs = performance.now() - started;
        return outcome;
      });
      removed += batch.removed;
      // A batch cut short by its bytes leaves commits behind, so a short batch alone does not mean done.
      if (batch.done) return removed;
      // Aim each batch at the time budget: halve after a slow one, grow after a quick one.
      if (tookMs > COMPACT_BATCH_MS) limit = Math.max(COMPACT_BATCH_MIN, limit >> 1);
      else if (tookMs < COMPACT_BATCH_MS / 2) limit = Math.min(COMPACT_BATCH_MAX, limit * 2);
      sinceCheckpointMs += tookMs;
      if (this.#checkpointer && sinceCheckpointMs >= COMPACT_CHECKPOINT_MS) {
        sinceCheckpointMs = 0;
        await this.#checkpointer.runNow();
      }
      await new Promise((resolve) => setImmediate(resolve));
      if (!this.#db || this.#closing) return removed;
    }
  }

  async revisionBefore(doc: string, at: string): Promise<number> {
    this.#conn();
    return this.#guard.read(() => {
      const head = this.#sql.head.get({ doc }) as { revision: number; oldest_revision: number } | undefined;
      if (!head) return 0;
      // Commit times ascend with revisions, so a binary search over the (doc, revision) index finds the
      // boundary in ~log2(history) point reads, with no index on time to pay for on every commit.
      let lo = head.oldest_revision;
      let hi = head.revision;
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        const time = this.#sql.commitTime.get(doc, mid) as string | undefined;
        if (time !== undefined && time < at) lo = mid;
        else hi = mid - 1;
      }
      return lo;
    });
  }

  /**
   * Polls SQLite's data_version, which moves when another connection commits to the file: a CLI
   * rollback or a second server. Cheap (no I/O when nothing changed); the timer does not keep the
   * process alive.
   */
  watchExternalChanges(listener: () => void, intervalMs = 250): () => void {
    let db = this.#conn();
    let version = db.prepare('PRAGMA data_version').pluck();
    let last = version.get();
    const timer = setInterval(() => {
      if (!this.#db) return;
      if (this.#db !== db) {
        // Closed and opened again: data_version is per connection, so anything may have changed.
        db = this.#db;
        version = db.prepare('PRAGMA data_version').pluck();
        last = version.get();
        listener();
        return;
      }
      let now: unknown;
      try {
        now = version.get();
      } catch {
        // A store fault: the calls that meet it report it; the watcher tries again next tick.
        return;
      }
      if (now !== last) {
        last = now;
        listener();
      }
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  async readAudit(query: AuditQuery): Promise<AuditRecord[]> {
    const db = this.#conn();
    return this.#guard.read(() => {
      const where = ['seq > ?'];
      const params: Array<string | number> = [query.afterSeq ?? 0];
      if (query.principal !== undefined) {
        where.push('principal = ?');
        params.push(query.principal);
      }
      if (query.command !== undefined) {
        where.push('command = ?');
        params.push(query.command);
      }
      if (query.since !== undefined) {
        where.push('at >= ?');
        params.push(query.since);
      }
      params.push(query.limit ?? -1);
      const rows = db
        .prepare(`SELECT record FROM audit WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`)
        .all(...params) as Array<{
        record: string;
      }>;
      return rows.map((r) => JSON.parse(r.record) as AuditRecord);
    });
  }

  async auditColumnMismatches(): Promise<number[]> {
    const db = this.#conn();
    return this.#guard.read(
      () =>
        db
          .prepare(
            `SELECT seq FROM audit WHERE seq IS NOT json_extract(record, '$.seq') OR at IS NOT json_extract(record, '$.at')
               OR principal IS NOT json_extract(record, '$.principal') OR command IS NOT json_extract(record, '$.command')
               OR hash IS NOT json_extract(record, '$.hash') ORDER BY seq LIMIT 100`,
          )
          .pluck()
          .all() as number[],
    );
  }

  async fence(docs: readonly string[], token: string, ttlMs: number): Promise<boolean> {
    this.#conn();
    return this.#guard.write(() => this.#fenceTx(docs, token, ttlMs));
  }

  async releaseFence(docs: readonly string[], token: string): Promise<void> {
    this.#conn();
    await this.#guard.write(() => {
      for (const doc of docs) this.#sql.deleteFence.run(doc, token);
    });
  }

  async nextSequence(name: string, floor: number): Promise<number> {
    this.#conn();
    return this.#guard.write(() => this.#sequenceTx(name, floor));
  }

  async secret(name: string, create: () => string): Promise<string> {
    this.#conn();
    const found = this.#guard.read(() => this.#sql.secret.get(name)) as string | undefined;
    if (found !== undefined) return found;
    // Another process may store one first: whichever row is there after the insert is the secret.
    const value = create();
    await this.#guard.write(() => this.#sql.insertSecret.run(name, value));
    return this.#guard.read(() => this.#sql.secret.get(name)) as string;
  }

  async findIdempotency(principal: string, key: string): Promise<IdempotencyRecord | undefined> {
    this.#conn();
    const row = this.#guard.read(() => this.#sql.idempotency.get(principal, key)) as
      | { record: string }
      | undefined;
    return row && (JSON.parse(row.record) as IdempotencyRecord);
  }

  async expireIdempotency(before: string): Promise<number> {
    this.#conn();
    return this.#guard.write(() => this.#sql.expireIdempotency.run(before).changes);
  }

  async trimIdempotency(principal: string, keep: number): Promise<number> {
    this.#conn();
    return this.#guard.write(() => this.#sql.trimIdempotency.run({ principal, keep }).changes);
  }

  async consumeOnce(id: string, expiresAt: string): Promise<boolean> {
    this.#conn();
    // The primary key decides between racing processes: one insert wins, the others change nothing.
    return this.#guard.write(() => this.#sql.consume.run(id, expiresAt).changes === 1);
  }

  async expireConsumed(before: string): Promise<number> {
    this.#conn();
    return this.#guard.write(() => this.#sql.expireConsumed.run(before).changes);
  }

  async createTask(task: TaskRecord): Promise<void> {
    this.#conn();
    try {
      const text = JSON.stringify(task);
      await this.#guard.write(() =>
        this.#sql.insertTask.run(task.taskId, task.version, task.expiresAt ?? null, text),
      );
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new StateError('already_exists', `A task "${task.taskId}" exists`);
      }
      throw error;
    }
  }

  async readTask(taskId: string): Promise<TaskRecord | undefined> {
    this.#conn();
    const text = this.#guard.read(() => this.#sql.task.get(taskId)) as string | undefined;
    return text === undefined ? undefined : (JSON.parse(text) as TaskRecord);
  }

  async updateTask(task: TaskRecord): Promise<boolean> {
    this.#conn();
    const text = JSON.stringify(task);
    const changes = await this.#guard.write(
      () =>
        this.#sql.updateTask.run(task.version, task.expiresAt ?? null, text, task.taskId, task.version - 1)
          .changes,
    );
    return changes === 1;
  }

  async expireTasks(before: string): Promise<number> {
    this.#conn();
    return this.#guard.write(() => this.#sql.expireTasks.run(before).changes);
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    this.#conn();
    try {
      await this.#guard.write(() =>
        this.#sql.insertKey.run(key.id, key.name, key.role, key.hash, key.createdAt, key.revokedAt ?? null),
      );
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new StateError('already_exists', `An API key named "${key.name}" exists`);
      }
      throw error;
    }
    this.#keysChanged();
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    this.#conn();
    const row = this.#guard.read(() => this.#sql.keyByHash.get(hash)) as KeyRow | undefined;
    return row && toKey(row);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    this.#conn();
    return (this.#guard.read(() => this.#sql.listKeys.all()) as KeyRow[]).map(toKey);
  }

  async revokeApiKey(idOrName: string, at: string): Promise<ApiKeyRecord | undefined> {
    this.#conn();
    await this.#guard.write(() => this.#sql.revokeKey.run(at, idOrName, idOrName));
    this.#keysChanged();
    const row = this.#guard.read(() => this.#sql.keyByIdOrName.get(idOrName, idOrName)) as KeyRow | undefined;
    return row && toKey(row);
  }

  /**
   * Moves with every committed key change: this store's own at once; another process's (a CLI
   * `keys revoke`, a second server) at its next request, through the marker file beside the database
   * (`<file>-keys`) that every coremcp process rewrites after changing a key; any other commit to the
   * file (a key revoked with plain SQL) within 250 ms, through `data_version`. Undefined when the
   * marker can be neither read nor made (a read-only folder): then nothing is cached.
   */
  credentialsEpoch(): number | undefined {
    const keys = this.#keys;
    const marker = this.#keysMarker;
    if (marker === undefined) return keys.epoch;
    let seen = statSync(marker, { throwIfNoEntry: false });
    if (!seen) {
      if (!this.#writeKeysMarker()) return undefined;
      seen = statSync(marker, { throwIfNoEntry: false });
      if (!seen) return undefined;
    }
    if (
      seen.ino !== keys.marker.ino ||
      seen.mtimeMs !== keys.marker.mtimeMs ||
      seen.size !== keys.marker.size
    ) {
      keys.marker = { ino: seen.ino, mtimeMs: seen.mtimeMs, size: seen.size };
      keys.epoch++;
    }
    keys.stopWatching ??= this.watchExternalChanges(() => {
      keys.epoch++;
    });
    return keys.epoch;
  }

  #keysChanged(): void {
    this.#keys.epoch++;
    this.#writeKeysMarker();
  }

  /** Rewrites the marker in place (new content, new mtime); false if it cannot be written. */
  #writeKeysMarker(): boolean {
    if (this.#keysMarker === undefined) return false;
    try {
      writeFileSync(this.#keysMarker, `${randomUUID()}\n`);
      return true;
    } catch {
      // A read-only folder or a full disk: other processes notice the change through data_version.
      return false;
    }
  }

  // --- internals -------------------------------------------------------------------------------

  #commitInTx(request: CommitRequest): CommitOutcome {
    const now = Date.now();
    for (const { commit, expectedRevision } of request.changes) {
      const revision = this.#sql.headRevision.get({ doc: commit.doc }) as number | null | undefined;
      if (revision === undefined || revision === null)
        throw new StateError('not_found', `No document "${commit.doc}"`);
      const fence = this.#sql.fenceOf.get(commit.doc) as { token: string; until: number } | undefined;
      if (fence && fence.until > now && fence.token !== request.fence) {
        return { status: 'conflict', doc: commit.doc, currentRevision: revision, fenced: true };
      }
      if (revision !== expectedRevision || commit.revision !== expectedRevision + 1) {
        return { status: 'conflict', doc: commit.doc, currentRevision: revision };
      }
    }
    const idem = request.idempotency;
    if (idem) {
      const existing = this.#sql.idempotency.get(idem.principal, idem.key) as { record: string } | undefined;
      if (existing) return { status: 'duplicate', record: JSON.parse(existing.record) };
    }
    const audit = this.#appendAudit(request.audit);
    for (const { commit, entries, version } of request.changes) {
      if (version !== undefined) this.#sql.setVersion.run(version, commit.doc);
      this.#sql.insertCommit.run(
        commit.doc,
        commit.revision,
        commit.commandId,
        commit.command,
        commit.principal,
        commit.at,
        JSON.stringify(commit.patches),
        JSON.stringify(commit.inverse),
        commit.requestId ?? null,
        commit.idempotencyKey ?? null,
        audit.seq,
      );
      if (entries) this.#writeEntries(commit.doc, entries);
    }
    if (idem) this.#sql.insertIdempotency.run(idem.principal, idem.key, idem.at, JSON.stringify(idem));
    return { status: 'committed', audit };
  }

  #writeEntries(doc: string, writes: readonly EntryWrite[]): void {
    const sizes = new Map<string, number>();
    for (const write of writes) {
      for (const [index, ikey] of write.indexRemove)
        this.#sql.deleteIndexRow.run(doc, write.collection, index, ikey, write.key);
      if (write.value === undefined) this.#sql.deleteEntry.run(doc, write.collection, write.key);
      else this.#sql.putEntry.run(doc, write.collection, write.key, JSON.stringify(write.value));
      for (const [index, ikey] of write.indexAdd)
        this.#sql.insertIndexRow.run(doc, write.collection, index, ikey, write.key);
      const delta = Number(write.value !== undefined) - Number(write.existed);
      if (delta !== 0) sizes.set(write.collection, (sizes.get(write.collection) ?? 0) + delta);
    }
    for (const [collection, delta] of sizes) this.#sql.addSize.run(delta, doc, collection);
  }

  #restructureInTx(request: RestructureRequest): void {
    const { doc } = request;
    const revision = this.#sql.headRevision.get({ doc }) as number | null | undefined;
    if (revision === undefined || revision === null)
      throw new StateError('not_found', `No document "${doc}"`);
    if (revision !== request.revision)
      throw new StateError('revision_conflict', 'The document moved on during a restructure');
    const before = JSON.parse(this.#sql.documentLayout.get(doc) as string) as CollectionLayout;
    for (const name of Object.keys(before)) {
      if (Object.hasOwn(request.layout, name)) continue;
      this.#sql.deleteEntries.run(doc, name);
      this.#sql.deleteIndexRows.run(doc, name);
      this.#sql.deleteSizes.run(doc, name);
    }
    for (const name of Object.keys(request.layout)) {
      const entries = request.entries?.[name];
      const rows = request.indexRows?.[name];
      if (entries) {
        this.#sql.deleteEntries.run(doc, name);
        this.#sql.deleteIndexRows.run(doc, name);
        for (const entry of entries) {
          this.#sql.putEntry.run(doc, name, entry.key, JSON.stringify(entry.value));
          for (const [index, ikey] of entry.index)
            this.#sql.insertIndexRow.run(doc, name, index, ikey, entry.key);
        }
        this.#sql.setSize.run(doc, name, entries.length);
      } else if (rows) {
        this.#sql.deleteIndexRows.run(doc, name);
        for (const row of rows)
          for (const [index, ikey] of row.index)
            this.#sql.insertIndexRow.run(doc, name, index, ikey, row.key);
      } else if (!Object.hasOwn(before, name)) {
        this.#sql.setSize.run(doc, name, 0);
      }
    }
    this.#sql.setLayout.run(JSON.stringify(request.layout), doc);
    this.#sql.upsertSnapshot.run(doc, request.revision, JSON.stringify(request.plain));
  }

  #attemptInTx(request: AttemptRequest): AuditRecord {
    const audit = this.#appendAudit(request.audit);
    const idem = request.idempotency;
    if (idem) this.#sql.insertIdempotency.run(idem.principal, idem.key, idem.at, JSON.stringify(idem));
    return audit;
  }

  #appendAudit(entry: AuditEntry): AuditRecord {
    // Read the chain's end inside the transaction: another process may have appended since.
    const last = this.#sql.lastAudit.get() as { seq: number; hash: string } | undefined;
    const record = sealAuditRecord(entry, (last?.seq ?? 0) + 1, last?.hash ?? GENESIS_HASH);
    this.#sql.insertAudit.run(
      record.seq,
      record.at,
      record.principal,
      record.command,
      record.hash,
      JSON.stringify(record),
    );
    return record;
  }

  /** Moves the retention point to the newest snapshot at or before `through`; its revision, or undefined. */
  #compactInTx(doc: string, through: number): number | undefined {
    const keep = this.#sql.latestSnapshot.get(doc, through) as { revision: number } | undefined;
    if (!keep) return undefined;
    this.#sql.deleteSnapshotsBefore.run(doc, keep.revision);
    const head = this.#sql.head.get({ doc: doc }) as { oldest_revision: number } | undefined;
    if (head && keep.revision > head.oldest_revision) this.#sql.setOldest.run(keep.revision, doc);
    return keep.revision;
  }

  #version(db: Database.Database): number {
    const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
      | { value: string }
      | undefined;
    return row ? Number(row.value) : 0;
  }

  #migrate(db: Database.Database): void {
    db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    db.transaction(() => {
      const version = this.#version(db);
      // Tables without a recorded version: the meta table was damaged or emptied. Migrating again
      // would fail halfway or, worse, run over the data.
      if (version === 0 && db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'documents'").get()) {
        throw new RecoveryError(
          'store_corrupt',
          `the database file ${this.path} has coremcp's tables but no schema version: it is damaged; restore it from a backup`,
          { details: { fault: 'corrupt' } },
        );
      }
      if (version > MIGRATIONS.length) {
        throw new SetupError(
          'store_too_new',
          `database schema version ${version} is newer than this coremcp knows (${MIGRATIONS.length}); upgrade coremcp`,
        );
      }
      for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!);
      db.prepare(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(String(MIGRATIONS.length));
    }).immediate();
  }

  /**
   * Compares the database file and its log with the ones this connection opened, every `intervalMs`
   * (and before each readiness probe). A replaced or deleted file means later commits would go where
   * nobody reads them: writes stop with `store_corrupt` and /readyz says so.
   */
  #watchFiles(intervalMs: number): void {
    this.#files = { db: identityOf(this.path)!, wal: identityOf(`${this.path}-wal`) };
    const timer = setInterval(() => this.#checkFiles(), intervalMs);
    timer.unref();
    this.#stopWatchingFiles = () => clearInterval(timer);
  }

  #checkFiles(): void {
    const files = this.#files;
    if (!files || this.#guard.isolated || !this.#db) return;
    const db = identityOf(this.path);
    const wal = identityOf(`${this.path}-wal`);
    files.wal ??= wal;
    const dbMoved = !sameFile(files.db, db);
    if (!dbMoved && sameFile(files.wal, wal)) return;
    if (!dbMoved) {
      // Only the log went: this connection still holds it open, so copy it into the database
      // file now, keeping the commits it acknowledged, before writes stop.
      try {
        this.#db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // Another connection's lock; the worker's next checkpoint copies what is left.
      }
    }
    process.emitWarning(
      `coremcp: the database ${dbMoved ? 'file' : 'write-ahead log'} ${this.path}${dbMoved ? '' : '-wal'} was replaced or deleted under the server; writes are stopped until it is restored and the server restarted`,
    );
    this.#guard.isolate('replaced');
  }

  /** Whether the database, its log or its folder can no longer be written (only asked after an I/O error). */
  #readOnlyFile(): boolean {
    if (this.path === ':memory:') return false;
    for (const target of [this.path, `${this.path}-wal`, dirname(this.path)]) {
      try {
        accessSync(target, constants.W_OK);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return true;
      }
    }
    return false;
  }

  #conn(): Database.Database {
    if (!this.#db) throw new Error('the SQLite store is not open');
    return this.#db;
  }
}

/** Rolls a batch's transaction back when one of its requests would not commit. */
class BatchRefusal extends Error {
  readonly index: number;
  readonly outcome: Exclude<CommitOutcome, { status: 'committed' }>;

  constructor(index: number, outcome: Exclude<CommitOutcome, { status: 'committed' }>) {
    super('batch refused');
    this.index = index;
    this.outcome = outcome;
  }
}
