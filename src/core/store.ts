import type { IndexRange } from './collections.js';
import type { JsonObject, JsonValue } from './json.js';
import type { JsonPatch } from './patch.js';

/**
 * The storage port: everything the core needs from a database, nothing more. Every method is async
 * so a networked store (PostgreSQL) implements it as naturally as an embedded one (SQLite).
 *
 * Implementations pass the contract suite in `src/store/contract.ts`. Invariants they guarantee:
 * - `commit` is atomic: the commit, its audit record, its idempotency record and the new head are
 *   written together or not at all, and only if the head is still at `expectedRevision`.
 * - Audit records form a hash chain, sealed inside the writing transaction with `sealAuditRecord`:
 *   either one chain across all documents (each record's `prevHash` is the previous record's `hash`),
 *   or, for a store written by several instances at once, one chain per document plus chains for
 *   records that change no document, each record naming its `chain` and `link`, with the head of
 *   every chain readable through `auditHeads`.
 * - History is append-only; only `compact` removes commits, and only before a snapshot.
 */
/**
 * What went wrong with the store itself (not with a request): another process's write lock held
 * past the wait allowed, a full disk, a read-only file, an I/O error, a corrupt file, or the database
 * file (or its log) replaced or deleted under the server.
 */
export type StoreFaultKind = 'busy' | 'full' | 'read_only' | 'io' | 'corrupt' | 'replaced';

/**
 * One checkpoint of the store's log (SQLite: a WAL checkpoint its worker thread ran). PASSIVE copies
 * the log into the database without holding writers off (its syncs can still slow them); RESTART
 * holds them off while it rewinds the log; TRUNCATE while it also cuts the file.
 */
export interface StoreCheckpointEvent {
  mode: 'passive' | 'restart' | 'truncate';
  /** When it started, in ms since the epoch (fractional: `performance.timeOrigin + performance.now()`). */
  startedAt: number;
  durationMs: number;
  /** Frames in the log when it ran (the live log's; for an idle TRUNCATE, those the file held). */
  frames: number;
}

/** A fault, or the first success after one (`downMs`: how long writes failed). */
export type StoreFaultEvent =
  | { type: 'fault'; kind: StoreFaultKind }
  | { type: 'recovered'; kind: StoreFaultKind; downMs: number };

export interface Store {
  /** A short name for logs and health checks: `memory`, `sqlite`, `postgres`. */
  readonly kind: string;
  /** Creates or migrates the schema. Idempotent. */
  open(): Promise<void>;
  close(): Promise<void>;
  /** Throws when the store cannot serve requests. */
  ping(): Promise<void>;
  /**
   * The schema version the database is at and the one this code expects (readiness: migrations
   * applied). Optional: a store without a schema (memory) has nothing to migrate.
   */
  schemaStatus?(): Promise<SchemaStatus>;

  listDocuments(): Promise<DocumentInfo[]>;
  /**
   * Creates a document at revision 0 holding `initial` (as its first snapshot), with the empty
   * collections named, at the app's schema `version` (default 1), remembering `initialHash` (what it
   * was created from, so a changed declaration can be noticed). False if it exists.
   */
  createDocument(doc: string, initial: JsonValue, at: string, options?: CreateOptions): Promise<boolean>;
  /** The newest snapshot of a document and every commit after it, or undefined if it does not exist. */
  loadDocument(doc: string): Promise<LoadedDocument | undefined>;
  /** The revision a document is at now (0 for one that does not exist): cheap, for freshness checks. */
  headRevision(doc: string): Promise<number>;
  /**
   * Changes which collections a document keeps, or their indexes, leaving its value as it is: the
   * new plain snapshot, the collections' entries (all of them, for a collection listed with
   * `entries`) and index rows are written in one transaction, if the document is still at `revision`.
   */
  restructure(request: RestructureRequest): Promise<void>;
  /** The newest snapshot at or before `revision`. */
  readSnapshot(doc: string, atOrBefore: number): Promise<Snapshot | undefined>;
  /** Commits with `after < revision <= to`, ascending, at most `limit`. */
  readCommits(doc: string, range: CommitRange): Promise<CommitRecord[]>;
  /** The commits one command made (one per document it changed), or none. */
  readCommand(commandId: string): Promise<CommitRecord[]>;
  /** Writes the commits if every document is at its `expectedRevision`. See the invariants above. */
  commit(request: CommitRequest): Promise<CommitOutcome>;
  /**
   * Group commit: the requests in one transaction, applied in order, each exactly as `commit` would
   * (the same head, fence and idempotency checks; its own audit record, in chain order). Either every
   * request commits, or nothing of the batch is written: the first request that would not commit
   * (conflict, fenced, duplicate) rolls the whole transaction back and is named by `index`. A store
   * fault throws, writing nothing. Optional: without it every write commits alone.
   */
  commitBatch?(requests: readonly CommitRequest[]): Promise<BatchOutcome>;
  /**
   * Takes an exclusive write fence on documents, for `ttlMs` or until released: commits to them from
   * anyone but `token` are refused (`conflict` with `fenced`). What an operator's rollback takes so it
   * wins under sustained writes from other processes. False, taking nothing, while another holder's
   * fence on one of them is in force.
   */
  fence(docs: readonly string[], token: string, ttlMs: number): Promise<boolean>;
  /** Releases the fences `token` holds on `docs` (others' fences stay). */
  releaseFence(docs: readonly string[], token: string): Promise<void>;
  /**
   * The next value of a named counter kept outside every document, so no rollback rewinds it: at
   * least `floor`, and greater than any value it returned before. For ids an app hands out.
   */
  nextSequence(name: string, floor: number): Promise<number>;

  /** Head values of entries, by key; missing keys are absent from the map. */
  readEntries(doc: string, collection: string, keys: readonly string[]): Promise<Map<string, JsonValue>>;
  /** Entries in key order (code point order) after `after`, at most `limit`. */
  listEntries(
    doc: string,
    collection: string,
    range: { after?: string; limit: number },
  ): Promise<StoredEntry[]>;
  /** Entries in the order of an index, within `range`. */
  queryIndex(doc: string, collection: string, index: string, range: IndexRange): Promise<IndexedEntry[]>;
  /** How many rows an index holds with `from <= key < to`. */
  countIndex(
    doc: string,
    collection: string,
    index: string,
    range: { from: string; to: string },
  ): Promise<number>;
  /** Records an attempt that changed no state (a query, a refusal, a failure) in the audit chain. */
  recordAttempt(request: AttemptRequest): Promise<AuditRecord>;
  writeSnapshot(doc: string, snapshot: Snapshot): Promise<void>;
  /**
   * Deletes commits at or before `throughRevision` and every snapshot older than the newest one at or
   * before it. Returns how many commits were removed. A snapshot at or before `throughRevision`
   * must exist (the caller writes one first); otherwise nothing is removed.
   */
  compact(doc: string, throughRevision: number): Promise<number>;

  /** The newest revision committed before `at` (ISO time), or the oldest readable one if none. */
  revisionBefore(doc: string, at: string): Promise<number>;
  /**
   * Calls `listener` when another process (another server, the CLI) may have committed to this store.
   * Optional: a store only this process writes has nothing to report. Returns the stop function.
   */
  watchExternalChanges?(listener: () => void): () => void;
  /**
   * Proves the store can write now (readiness): one small write, no waiting for another process's
   * lock. Throws the typed fault (`store_busy`, `storage_full`, ...) when it cannot. Optional.
   */
  probeWrite?(): Promise<void>;
  /**
   * The database's own consistency check (SQLite: `PRAGMA quick_check`, or `integrity_check` when
   * `full`): the problems it found, none when intact. Optional.
   */
  checkIntegrity?(options?: { full?: boolean }): Promise<string[]>;
  /** Calls `listener` on every store fault and on each recovery from one. Optional. */
  watchFaults?(listener: (event: StoreFaultEvent) => void): () => void;
  /** Calls `listener` on every checkpoint of the store's log (SQLite's WAL). Optional. */
  watchCheckpoints?(listener: (event: StoreCheckpointEvent) => void): () => void;

  /**
   * Sequence numbers (at most 100) of audit rows whose indexed columns (seq, time, principal, command,
   * hash) differ from the sealed record they store: what a filter on those columns would get wrong.
   * Optional: a store that keeps only the record has nothing to compare.
   */
  auditColumnMismatches?(): Promise<number[]>;
  /** Audit records with `seq > afterSeq`, ascending. */
  readAudit(query: AuditQuery): Promise<AuditRecord[]>;
  /**
   * For a follower (`audit tail --follow`): the records that became readable after `cursor`, in an
   * order that skips none, and the cursor to pass next; with no cursor, none and the cursor of now.
   * A store that draws sequence numbers before its transactions commit (PostgreSQL) needs it: a
   * record with a lower `seq` can become readable after a higher one, so paging by `seq` would pass
   * it by. Without it a follower pages by `seq`, which is right for a store that commits in sequence
   * order (SQLite: one writer at a time draws and commits).
   */
  followAudit?(query: AuditFollowQuery, cursor: AuditCursor | undefined): Promise<AuditFollowPage>;
  /**
   * Where each audit chain ends, for a store that keeps several (records carry `chain` and `link`):
   * what `coremcp audit verify` compares the records with, so that removing a chain's newest records,
   * or a whole chain, is noticed. Optional: a single chain's `seq` has no gaps, which shows the same.
   */
  auditHeads?(): Promise<AuditChainHead[]>;

  /**
   * A server secret by name (e.g. the key that signs MRTR request states), shared by every instance
   * on this store: the stored one, or `create()`'s result stored now if there is none. Never exposed
   * through documents, history or the audit trail.
   */
  secret(name: string, create: () => string): Promise<string>;

  /** The stored outcome of an idempotent call, or undefined. */
  findIdempotency(principal: string, key: string): Promise<IdempotencyRecord | undefined>;
  /** Deletes idempotency records older than `before`. Returns how many. */
  expireIdempotency(before: string): Promise<number>;
  /**
   * Keeps a principal's newest `keep` idempotency records and deletes the rest (a fair share: one
   * principal's flood of keys cannot grow the store without bound). Returns how many were deleted.
   */
  trimIdempotency(principal: string, keep: number): Promise<number>;

  /**
   * Records `id` as used, atomically across every instance on this store: true the first time, false
   * for every later call with the same id (until it is expired). What makes an MRTR `requestState`
   * good for one retry. `expiresAt` (ISO time) is when the id may be forgotten.
   */
  consumeOnce(id: string, expiresAt: string): Promise<boolean>;
  /** Forgets consumed ids whose `expiresAt` is before `before`. Returns how many. */
  expireConsumed(before: string): Promise<number>;

  /**
   * Stores a new MCP task (the tasks extension; not an app's own "tasks"). Durable when the promise
   * resolves: any instance's `readTask` finds it. Throws `already_exists` for a taken id.
   */
  createTask(task: TaskRecord): Promise<void>;
  /** A task by id, or undefined. */
  readTask(taskId: string): Promise<TaskRecord | undefined>;
  /**
   * Replaces a task if the stored one is at `task.version - 1` (a compare-and-set on the version);
   * false, writing nothing, if another update came first or the task is gone.
   */
  updateTask(task: TaskRecord): Promise<boolean>;
  /** Deletes tasks whose `expiresAt` is before `before`. Returns how many. */
  expireTasks(before: string): Promise<number>;
}

/** The status of an MCP task. */
export type TaskStatus = 'working' | 'input_required' | 'completed' | 'failed' | 'cancelled';

/**
 * An MCP task (the `io.modelcontextprotocol/tasks` extension): one long-running command call, its
 * progress, its questions and its outcome, kept in the store so that every instance can answer for
 * it. Stores keep it whole (a JSON column is enough); only `taskId`, `version` and `expiresAt` are
 * looked at.
 */
export interface TaskRecord {
  /** 128 random bits, base64url: unguessable. */
  taskId: string;
  /** Who created it: only they may see or change it. */
  principal: string;
  /** The command (tool) and its arguments, to run it again after a restart. */
  command: string;
  input: JsonValue;
  status: TaskStatus;
  statusMessage?: string;
  createdAt: string;
  lastUpdatedAt: string;
  ttlMs: number | null;
  pollIntervalMs?: number;
  /** `createdAt` plus `ttlMs`: when it may be deleted. Absent for a task without a time to live. */
  expiresAt?: string;
  /** The questions waiting for answers (status `input_required`), by key, as MCP embeds them. */
  inputRequests?: JsonObject;
  /** Every answer delivered so far, by key. */
  answers?: JsonObject;
  /** The CallToolResult (status `completed`, tool errors included). */
  result?: JsonObject;
  /** The JSON-RPC error (status `failed`). */
  error?: JsonObject;
  /** The client asked to cancel; the runner stops at the next chance. */
  cancelRequested?: boolean;
  /** The process running it and until when that claim holds (renewed while it runs). */
  runner?: { id: string; until: string };
  /** What the runner needs besides the input: the client's capabilities, the call's options. */
  context?: JsonObject;
  /** 1 when created, one more with every update. */
  version: number;
}

export interface SchemaStatus {
  version: number;
  expected: number;
}

/** The credential port: API keys live beside the state, but only `security/` uses them. */
export interface CredentialStore {
  insertApiKey(key: ApiKeyRecord): Promise<void>;
  findApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined>;
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Marks a key revoked by id or name. Returns the key, or undefined if no such key. */
  revokeApiKey(idOrName: string, at: string): Promise<ApiKeyRecord | undefined>;
  /**
   * A number that moves whenever any API key may have changed — through this store, another process
   * or another instance — as soon as that change is committed; cheap enough to read on every request.
   * A lookup is cached only while it stays the same. A store without this method, or answering
   * undefined, cannot tell: then every request looks its key up.
   */
  credentialsEpoch?(): number | undefined;
}

export interface CreateOptions {
  collections?: CollectionLayout | undefined;
  /** The app's schema version of the document (default 1). */
  version?: number | undefined;
  /** SHA-256 of the canonical initial value the document was created from. */
  initialHash?: string | undefined;
}

/** Collections of a document and the index fields each is built for, by collection name. */
export type CollectionLayout = Record<string, { indexes: Record<string, readonly string[]> }>;

export interface DocumentInfo {
  doc: string;
  revision: number;
  /** The oldest revision that can still be read (the oldest snapshot's). */
  oldestRevision: number;
  createdAt: string;
}

export interface Snapshot {
  revision: number;
  value: JsonValue;
}

export interface LoadedDocument {
  doc: string;
  revision: number;
  oldestRevision: number;
  /** Of the plain part (without collections), for a document with collections. */
  snapshot: Snapshot;
  /** Commits after the snapshot, ascending, up to the head. */
  commits: CommitRecord[];
  /** The collections the store keeps for this document, with their sizes at head. */
  collections: Record<string, { size: number; indexes: Record<string, readonly string[]> }>;
  /** The app's schema version the document is at (1 unless migrations moved it). */
  version: number;
  /** What it was created from (absent for documents created before this was kept). */
  initialHash?: string;
}

export interface StoredEntry {
  key: string;
  value: JsonValue;
}

export interface IndexedEntry extends StoredEntry {
  /** The entry's key in the index. */
  ikey: string;
}

/** One index row of an entry: (index name, encoded index key). */
export type IndexRow = [index: string, ikey: string];

/** One entry a commit writes. */
export interface EntryWrite {
  collection: string;
  key: string;
  /** The new value; absent when the entry is removed. */
  value?: JsonValue;
  /** Whether the entry existed at the expected revision (the collection's size follows). */
  existed: boolean;
  indexRemove: IndexRow[];
  indexAdd: IndexRow[];
}

export interface RestructureRequest {
  doc: string;
  /** The head revision the request was computed at. */
  revision: number;
  /** The document's new plain part, written as its snapshot at `revision`. */
  plain: JsonValue;
  /** The collections the document keeps from now on (any not listed are dropped). */
  layout: CollectionLayout;
  /**
   * For collections whose rows are rewritten: every entry with its index rows. Collections of
   * `layout` not listed here keep their entries; their index rows are rebuilt when given in
   * `indexRows` (all rows of the collection).
   */
  entries?: Record<string, Array<{ key: string; value: JsonValue; index: IndexRow[] }>>;
  indexRows?: Record<string, Array<{ key: string; index: IndexRow[] }>>;
}

export interface CommitRange {
  after: number;
  to?: number;
  limit?: number;
}

/** One durable change to one document. */
export interface CommitRecord {
  doc: string;
  revision: number;
  commandId: string;
  command: string;
  principal: string;
  at: string;
  patches: JsonPatch;
  inverse: JsonPatch;
  requestId?: string;
  idempotencyKey?: string;
  /** The audit record written with this commit. */
  auditSeq?: number;
}

/** An audit entry before the store seals it into the chain. */
export interface AuditEntry {
  at: string;
  requestId: string;
  principal: string;
  via: string;
  command: string;
  /** The input with secrets redacted. */
  input: JsonValue;
  /** `ok`, or the error code. */
  outcome: string;
  doc?: string;
  revision?: number;
  commandId?: string;
  /** SHA-256 of the canonical patch, when state changed. */
  patchHash?: string;
  /** When one command changed several documents: the others, with their revisions and patch hashes. */
  alsoChanged?: Array<{ doc: string; revision: number; patchHash: string }>;
  traceparent?: string;
  /** For a command that asks for consent: the decision and the hash of the changes shown. */
  consent?: AuditConsent;
}

/** What the audit keeps of a consent: what was decided about which diff. */
export interface AuditConsent {
  decision: 'requested' | 'accepted' | 'declined';
  /** SHA-256 of the changes shown (`hashChanges`): the documents, their revisions and patches. */
  diffHash: string;
}

export interface AuditRecord extends AuditEntry {
  /** Ascending in the order records were written (without gaps in a single chain). */
  seq: number;
  /** In a store with several chains: the chain this record belongs to (see `Store.auditHeads`). */
  chain?: string;
  /** In a store with several chains: the record's 1-based position in its chain. */
  link?: number;
  prevHash: string;
  hash: string;
}

/** Where one audit chain ends, as the store recorded it in the transaction that extended it. */
export interface AuditChainHead {
  chain: string;
  link: number;
  hash: string;
}

/** A follower's place in the audit trail, from `followAudit`: opaque to its callers. */
export type AuditCursor = string;

export type AuditFollowQuery = Omit<AuditQuery, 'afterSeq'>;

export interface AuditFollowPage {
  records: AuditRecord[];
  cursor: AuditCursor;
}

export interface AuditQuery {
  afterSeq?: number;
  limit?: number;
  principal?: string;
  command?: string;
  /** ISO time: records at or after it. */
  since?: string;
}

export interface IdempotencyRecord {
  principal: string;
  key: string;
  /** SHA-256 of the command name and canonical input: a repeat must match it. */
  fingerprint: string;
  command: string;
  doc: string;
  revision: number;
  commandId: string;
  /** `ok`, or the error code of an app-level refusal. */
  outcome: string;
  /** The result, or the public error, returned the first time. */
  response: JsonValue;
  at: string;
}

/** One document's part of a commit. */
export interface DocumentChange {
  commit: CommitRecord;
  expectedRevision: number;
  /** Collection entries the commit writes. */
  entries?: EntryWrite[];
  /** The schema version the document is at after this commit (a migration's), if it changes. */
  version?: number;
}

export interface CommitRequest {
  /** One per document changed, each at its own next revision. */
  changes: DocumentChange[];
  audit: AuditEntry;
  idempotency?: IdempotencyRecord;
  /** The token of the fence this write holds, if any (see `Store.fence`). */
  fence?: string;
}

export type CommitOutcome =
  | { status: 'committed'; audit: AuditRecord }
  /**
   * A document had moved on, or (`fenced`) another writer holds a fence on it: nothing was written.
   */
  | { status: 'conflict'; doc: string; currentRevision: number; fenced?: true }
  /** Another call with the same idempotency key committed first. */
  | { status: 'duplicate'; record: IdempotencyRecord };

/** What a `commitBatch` did: every request committed, or none (`refused` names the first that would not). */
export type BatchOutcome =
  | { status: 'committed'; audits: AuditRecord[] }
  | { status: 'refused'; index: number; outcome: Exclude<CommitOutcome, { status: 'committed' }> };

export interface AttemptRequest {
  audit: AuditEntry;
  idempotency?: IdempotencyRecord;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  role: string;
  /** SHA-256 of the whole key, hex. The key itself is never stored. */
  hash: string;
  createdAt: string;
  revokedAt?: string;
}
