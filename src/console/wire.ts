/**
 * The console's JSON API as both sides see it: the server's routes answer with these shapes and the
 * front-end (console/) reads them. Types only, and self-contained, so the browser build can import
 * this file without pulling in anything of Node's.
 */

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** One RFC 6902 operation, as history and diffs carry them. */
export interface PatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: Json;
}

/** Which parts of the console the signed-in principal may use (controls hidden otherwise). */
export interface ConsolePermissions {
  /** Read the audit trail, check its chain, export it. */
  audit: boolean;
  /** List, create and revoke API keys. */
  keys: boolean;
  /** Read the metrics charts. */
  metrics: boolean;
}

/** `GET /console/api/session`: who is signed in, and the token mutating requests must carry. */
export interface SessionInfo {
  app: string;
  principal: { id: string; name: string; roles: string[] };
  /** Send as `X-CSRF-Token` with every POST and DELETE. */
  csrfToken: string;
  /** ISO time the session ends at the latest. */
  expiresAt: string;
  /** The session ends after this long without a request. */
  idleTimeoutMs: number;
  permissions: ConsolePermissions;
}

export interface DocumentSummary {
  doc: string;
  revision: number;
  oldestRevision: number;
  /** Bytes of the serialized plain part (a document without collections: all of it). */
  bytes: number;
  /** Entries per collection, at head. */
  collections: Record<string, number>;
  /** The last commit, when there is one. */
  lastChange?: { at: string; principal: string; command: string };
}

export interface DocumentsResponse {
  documents: DocumentSummary[];
}

/** `GET /console/api/document?doc=D[&revision=N]`: plain members whole, each collection's first page. */
export interface DocumentResponse {
  doc: string;
  revision: number;
  head: number;
  oldestRevision: number;
  value: Json;
  /** Collections with more entries than the first page: where to continue (`/console/api/entries`). */
  more: Record<string, { size: number; cursor: string }>;
  /** Which history actions the principal may take on this document. */
  actions: { rollback: boolean; undo: boolean };
}

/** `GET /console/api/entries?doc=D&collection=C&cursor=X`: the next page, at the cursor's revision. */
export interface EntriesResponse {
  doc: string;
  collection: string;
  revision: number;
  entries: Array<[string, Json]>;
  size: number;
  cursor?: string;
}

/**
 * `GET /console/api/diff?doc=D&from=A[&to=B]`: the patches that turn the value at A into the value at B
 * (default: head). With B before A, the commits' inverses, newest first: what a rollback to B applies.
 */
export interface DiffResponse {
  doc: string;
  from: number;
  to: number;
  patches: PatchOp[];
  /** The JSON Pointers the patches touch. */
  paths: string[];
  /** True when `from` lies before the retention point: one whole-value replace. */
  compacted: boolean;
}

export interface CommitSummary {
  revision: number;
  at: string;
  principal: string;
  command: string;
  commandId: string;
  /** The first paths the commit touched. */
  paths: string[];
  /** How many distinct paths it touched. */
  pathCount: number;
}

/** `GET /console/api/history?doc=D[&before=N][&principal=P][&command=C][&limit=L]`: newest first. */
export interface HistoryResponse {
  doc: string;
  head: number;
  oldestRevision: number;
  commits: CommitSummary[];
  /** Pass as `before` for the next (older) page; absent when history is exhausted. */
  next?: number;
}

export interface AuditRecordView {
  seq: number;
  at: string;
  requestId: string;
  principal: string;
  via: string;
  command: string;
  outcome: string;
  input: Json;
  doc?: string;
  revision?: number;
  commandId?: string;
  patchHash?: string;
  prevHash: string;
  hash: string;
}

/** `GET /console/api/audit?principal&command&outcome&since&until&before&limit`: newest first. */
export interface AuditResponse {
  records: AuditRecordView[];
  /** Pass as `before` for the next (older) page; absent when there are no older records. */
  next?: number;
}

/** `GET /console/api/audit/verify`: the whole chain checked, as `coremcp audit verify` does. */
export type AuditVerifyResponse =
  | { ok: true; records: number; lastSeq: number; lastHash: string }
  | { ok: false; records: number; seq: number; reason: string };

export interface HealthCheckView {
  status: 'healthy' | 'degraded' | 'unhealthy';
  detail?: string;
  durationMs: number;
}

export interface HealthResponse {
  status: 'healthy' | 'degraded' | 'unhealthy';
  checks: Record<string, HealthCheckView>;
}

/** One interval of the metrics series. */
export interface MetricsPoint {
  /** End of the interval, ms since the epoch. */
  t: number;
  commandsPerSecond: number;
  commitsPerSecond: number;
  /** Latency quantiles of the commands in the interval, ms; null when none ran. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Failed commands in the interval, by error code. */
  errors: Record<string, number>;
}

/** `GET /console/api/metrics`: the last minutes, oldest interval first. */
export interface MetricsResponse {
  intervalMs: number;
  /** How many intervals the server keeps: the charts' full width. */
  intervals: number;
  points: MetricsPoint[];
}

export interface KeyView {
  id: string;
  name: string;
  role: string;
  createdAt: string;
  revokedAt?: string;
}

export interface KeysResponse {
  keys: KeyView[];
  roles: string[];
}

/** `POST /console/api/keys`: the key itself, shown this once. */
export interface CreatedKeyResponse {
  key: string;
  record: KeyView;
}

/** `POST /console/api/rollback` and `/console/api/undo`: the command's outcome. */
export interface CommandResponse {
  command: string;
  requestId: string;
  commandId: string;
  doc: string;
  revision: number;
  committed: boolean;
  result: Json;
}

/** Server-sent events on `/console/api/events`. */
export interface CommitEventView {
  doc: string;
  revision: number;
  at: string;
  principal: string;
  command: string;
  commandId: string;
  /** Made by another process (the CLI, another server) and discovered here. */
  external: boolean;
  paths: string[];
}

export interface SessionEndedEvent {
  reason: 'signed_out' | 'expired' | 'revoked';
}

/** The body of every error answer (the HTTP edge's one error writer). */
export interface ErrorBody {
  error: { code: number; message: string; data: { code: string; requestId?: string; details?: Json } };
}
