import type { ApiKeyRecord, CommitRecord, DocumentInfo } from '../core/store.js';

/** Row shapes and their conversions that the SQL stores (SQLite, PostgreSQL) share: the same columns in both. */

export interface CommitRow {
  doc: string;
  revision: number;
  command_id: string;
  command: string;
  principal: string;
  at: string;
  patches: string;
  inverse: string;
  request_id: string | null;
  idempotency_key: string | null;
  audit_seq: number | null;
}

export interface KeyRow {
  id: string;
  name: string;
  role: string;
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

export function toCommit(row: CommitRow): CommitRecord {
  const commit: CommitRecord = {
    doc: row.doc,
    revision: row.revision,
    commandId: row.command_id,
    command: row.command,
    principal: row.principal,
    at: row.at,
    patches: JSON.parse(row.patches),
    inverse: JSON.parse(row.inverse),
  };
  if (row.request_id !== null) commit.requestId = row.request_id;
  if (row.idempotency_key !== null) commit.idempotencyKey = row.idempotency_key;
  if (row.audit_seq !== null) commit.auditSeq = row.audit_seq;
  return commit;
}

export function toKey(row: KeyRow): ApiKeyRecord {
  const key: ApiKeyRecord = {
    id: row.id,
    name: row.name,
    role: row.role,
    hash: row.hash,
    createdAt: row.created_at,
  };
  if (row.revoked_at !== null) key.revokedAt = row.revoked_at;
  return key;
}

export interface DocumentRow {
  doc: string;
  revision: number;
  oldest_revision: number;
  created_at: string;
}

export function toDocumentInfo(row: DocumentRow): DocumentInfo {
  return {
    doc: row.doc,
    revision: row.revision,
    oldestRevision: row.oldest_revision,
    createdAt: row.created_at,
  };
}
