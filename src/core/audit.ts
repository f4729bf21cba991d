import { createHash } from 'node:crypto';
import type { Principal } from './access.js';
import { canonicalJson, type JsonObject, type JsonValue } from './json.js';
import type { AuditConsent, AuditEntry, AuditRecord } from './store.js';

/** The `prevHash` of the first record in a chain. */
export const GENESIS_HASH = '0'.repeat(64);

// In sorted order, so the hashed body is canonical as built.
const HASHED_FIELDS = [
  'alsoChanged',
  'at',
  'command',
  'commandId',
  'consent',
  'doc',
  'input',
  'outcome',
  'patchHash',
  'prevHash',
  'principal',
  'requestId',
  'revision',
  'seq',
  'traceparent',
  'via',
] as const;

/** What the pipeline knows about an attempt when it writes its audit record. */
export interface AuditFacts {
  at: Date;
  requestId: string;
  /** Undefined for a caller that never authenticated (audited as `anonymous`). */
  principal: Principal | undefined;
  command: string;
  /** Already redacted. */
  input: JsonValue;
  outcome: string;
  commandId: string;
  doc?: string | undefined;
  revision?: number | undefined;
  patchHash?: string | undefined;
  alsoChanged?: AuditEntry['alsoChanged'];
  traceparent?: string | undefined;
  consent?: AuditConsent | undefined;
}

/** The one place an audit entry is built: committed writes and every other attempt alike. */
export function buildAuditEntry(facts: AuditFacts): AuditEntry {
  const entry: AuditEntry = {
    at: facts.at.toISOString(),
    requestId: facts.requestId,
    principal: facts.principal?.id ?? 'anonymous',
    via: facts.principal?.via ?? 'none',
    command: facts.command,
    input: facts.input,
    outcome: facts.outcome,
    commandId: facts.commandId,
  };
  if (facts.doc !== undefined) entry.doc = facts.doc;
  if (facts.revision !== undefined) entry.revision = facts.revision;
  if (facts.patchHash !== undefined) entry.patchHash = facts.patchHash;
  if (facts.alsoChanged !== undefined && facts.alsoChanged.length > 0) entry.alsoChanged = facts.alsoChanged;
  if (facts.traceparent !== undefined) entry.traceparent = facts.traceparent;
  if (facts.consent !== undefined) entry.consent = facts.consent;
  return entry;
}

/** SHA-256 over the canonical JSON of every field but `hash` itself. */
export function hashAuditRecord(record: Omit<AuditRecord, 'hash'>): string {
  const body: JsonObject = {};
  for (const field of HASHED_FIELDS) {
    const value = record[field];
    if (value !== undefined) body[field] = value as JsonValue;
  }
  return createHash('sha256').update(canonicalJson(body)).digest('hex');
}

/**
 * Seals an entry into the chain. Stores call this inside the transaction that writes the record, with
 * the sequence number and hash of the record before it.
 */
export function sealAuditRecord(entry: AuditEntry, seq: number, prevHash: string): AuditRecord {
  const record: Omit<AuditRecord, 'hash'> = { ...entry, seq, prevHash };
  return { ...record, hash: hashAuditRecord(record) };
}

export type AuditVerdict =
  | { ok: true; checked: number; lastHash: string; lastSeq: number }
  | { ok: false; checked: number; seq: number; reason: string };

/**
 * Checks a run of records: each hash recomputes, each `prevHash` links to the record before, and
 * sequence numbers have no gaps. Pass the previous run's verdict to continue a chain across pages.
 */
export function verifyAuditRecords(
  records: readonly AuditRecord[],
  from: { lastHash: string; lastSeq: number } = { lastHash: GENESIS_HASH, lastSeq: 0 },
  checkedBefore = 0,
): AuditVerdict {
  let { lastHash, lastSeq } = from;
  let checked = checkedBefore;
  for (const record of records) {
    if (record.seq !== lastSeq + 1) {
      return {
        ok: false,
        checked,
        seq: record.seq,
        reason: `sequence jumps from ${lastSeq} to ${record.seq}`,
      };
    }
    if (record.prevHash !== lastHash) {
      return { ok: false, checked, seq: record.seq, reason: 'prevHash does not match the previous record' };
    }
    const { hash, ...rest } = record;
    if (hashAuditRecord(rest) !== hash) {
      return { ok: false, checked, seq: record.seq, reason: 'hash does not match the record content' };
    }
    lastHash = hash;
    lastSeq = record.seq;
    checked++;
  }
  return { ok: true, checked, lastHash, lastSeq };
}
