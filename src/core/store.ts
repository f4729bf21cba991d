import type { JsonValue } from './json.js';
import type { JsonPatch } from './patch.js';

/**
 * The storage port: everything the core needs from a database, nothing more. Every method is async
 * so a networked store (PostgreSQL) implements it as naturally as an embedded one (SQLite).
 *
 * Implementations pass the contract suite in `src/store/contract.ts`. Invariants they guarantee:
 * - `commit` is atomic: the commit, its audit record, its idempotency record and the new head are
 *   written together or not at all, and only if the head is still at `expectedRevision`.
 * - Audit records form one chain across all documents: each record's `prevHash` is the previous
 *   record's `hash`, sealed inside the writing transaction with `sealAuditRecord`.
 * - History is append-only; only `compact` removes commits, and only before a snapshot.
 */
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
  /** Creates a document at revision 0 holding `initial` (as its first snapshot). False if it exists. */
  createDocument(doc: string, initial: JsonValue, at: string): Promise<boolean>;
  /** The newest snapshot of a document and every commit after it, or undefined if it does not exist. */
  loadDocument(doc: string): Promise<LoadedDocument | undefined>;
  /** The newest snapshot at or before `revision`. */
  readSnapshot(doc: string, atOrBefore: number): Promise<Snapshot | undefined>;
  /** Commits with `after < revision <= to`, ascending, at most `limit`. */
  readCommits(doc: string, range: CommitRange): Promise<CommitRecord[]>;
  /** One commit by its command id. */
  readCommit(commandId: string): Promise<CommitRecord | undefined>;
  /** Writes a commit if the document is at `expectedRevision`. See the invariants above. */
  commit(request: CommitRequest): Promise<CommitOutcome>;
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

  /** Audit records with `seq > afterSeq`, ascending. */
  readAudit(query: AuditQuery): Promise<AuditRecord[]>;

  /** The stored outcome of an idempotent call, or undefined. */
  findIdempotency(principal: string, key: string): Promise<IdempotencyRecord | undefined>;
  /** Deletes idempotency records older than `before`. Returns how many. */
  expireIdempotency(before: string): Promise<number>;
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
}

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
  snapshot: Snapshot;
  /** Commits after the snapshot, ascending, up to the head. */
  commits: CommitRecord[];
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
  traceparent?: string;
}

export interface AuditRecord extends AuditEntry {
  seq: number;
  prevHash: string;
  hash: string;
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

export interface CommitRequest {
  commit: CommitRecord;
  expectedRevision: number;
  audit: AuditEntry;
  idempotency?: IdempotencyRecord;
}

export type CommitOutcome =
  | { status: 'committed'; audit: AuditRecord }
  | { status: 'conflict'; currentRevision: number }
  /** Another call with the same idempotency key committed first. */
  | { status: 'duplicate'; record: IdempotencyRecord };

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
