import { createHash } from 'node:crypto';
import type { Principal } from './access.js';
import { sha256 } from './digest.js';
import { timeOrderedId } from './ids.js';
import { canonicalJson, type JsonObject, type JsonValue } from './json.js';
import type { AuditChainHead, AuditConsent, AuditEntry, AuditRecord, Store } from './store.js';

/** The `prevHash` of the first record in a chain. */
export const GENESIS_HASH = '0'.repeat(64);

// In sorted order, so the hashed body is canonical as built.
const HASHED_FIELDS = [
  'alsoChanged',
  'at',
  'chain',
  'command',
  'commandId',
  'consent',
  'doc',
  'input',
  'link',
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

/** An action that is not a command (a key made or revoked, a sign-in, a snapshot), as the audit keeps it. */
export interface ActionFacts {
  principal: Principal;
  command: string;
  /** Already redacted. */
  input: JsonObject;
}

/** Records one attempt of an action that is not a command in the audit chain. */
export function recordAction(
  store: Pick<Store, 'recordAttempt'>,
  facts: ActionFacts & { outcome: string; requestId?: string; doc?: string; revision?: number },
): Promise<AuditRecord> {
  return store.recordAttempt({
    audit: buildAuditEntry({
      at: new Date(),
      requestId: facts.requestId ?? timeOrderedId(),
      principal: facts.principal,
      command: facts.command,
      input: facts.input,
      outcome: facts.outcome,
      commandId: timeOrderedId(),
      doc: facts.doc,
      revision: facts.revision,
    }),
  });
}

/**
 * Runs an action that is not a command and records it: `ok` (with the document and revision it
 * changed, from `describe`), or the error's code (`failed` for an error without one), which is rethrown.
 */
export async function auditedAction<T>(
  store: Pick<Store, 'recordAttempt'>,
  facts: ActionFacts,
  work: () => Promise<T>,
  describe: (result: T) => { doc?: string; revision?: number } = () => ({}),
): Promise<T> {
  const requestId = timeOrderedId();
  let result: T;
  try {
    result = await work();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    await recordAction(store, { ...facts, requestId, outcome: typeof code === 'string' ? code : 'failed' });
    throw error;
  }
  await recordAction(store, { ...facts, requestId, outcome: 'ok', ...describe(result) });
  return result;
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
  return sha256(canonicalJson(body));
}

/**
 * Where a record goes in a store that keeps several chains (PostgreSQL: one per document, so writers
 * to different documents never wait for each other): the chain's name and the record's 1-based
 * position in it. A store with one chain across everything (memory, SQLite) passes none.
 */
export interface ChainPlacement {
  chain: string;
  link: number;
}

/**
 * Seals an entry into the chain. Stores call this inside the transaction that writes the record, with
 * the sequence number and hash of the record before it (in its chain, when `placement` names one).
 */
export function sealAuditRecord(
  entry: AuditEntry,
  seq: number,
  prevHash: string,
  placement?: ChainPlacement,
): AuditRecord {
  const record: Omit<AuditRecord, 'hash'> = placement
    ? { ...entry, seq, chain: placement.chain, link: placement.link, prevHash }
    : { ...entry, seq, prevHash };
  return { ...record, hash: hashAuditRecord(record) };
}

/** Where a verification stands in one of several chains: its last position and hash. */
export interface ChainPosition {
  link: number;
  hash: string;
}

export type AuditVerdict =
  | {
      ok: true;
      checked: number;
      lastHash: string;
      lastSeq: number;
      /** For a store with several chains: where each chain seen so far ends. */
      chains?: Map<string, ChainPosition>;
    }
  | { ok: false; checked: number; seq: number; reason: string };

/**
 * Checks a run of records, in ascending `seq`: each hash recomputes and each `prevHash` links to the
 * record before it. A record of the single chain (no `chain` field) must follow the previous one
 * without a gap in `seq`; a record of one of several chains must follow the previous record of its
 * chain without a gap in `link` (`seq` then only ascends: it comes from a database sequence). Pass
 * the previous run's verdict to continue across pages.
 */
export function verifyAuditRecords(
  records: readonly AuditRecord[],
  from: { lastHash: string; lastSeq: number; chains?: Map<string, ChainPosition> | undefined } = {
    lastHash: GENESIS_HASH,
    lastSeq: 0,
  },
  checkedBefore = 0,
): AuditVerdict {
  let { lastHash, lastSeq } = from;
  let chains = from.chains;
  let checked = checkedBefore;
  for (const record of records) {
    if (record.chain === undefined) {
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
    } else {
      if (record.seq <= lastSeq) {
        return { ok: false, checked, seq: record.seq, reason: `sequence goes back from ${lastSeq}` };
      }
      chains ??= new Map();
      const before = chains.get(record.chain) ?? { link: 0, hash: GENESIS_HASH };
      if (record.link !== before.link + 1) {
        return {
          ok: false,
          checked,
          seq: record.seq,
          reason: `chain "${record.chain}" jumps from link ${before.link} to ${record.link}`,
        };
      }
      if (record.prevHash !== before.hash) {
        return {
          ok: false,
          checked,
          seq: record.seq,
          reason: `prevHash does not match the previous record of chain "${record.chain}"`,
        };
      }
    }
    const { hash, ...rest } = record;
    if (hashAuditRecord(rest) !== hash) {
      return { ok: false, checked, seq: record.seq, reason: 'hash does not match the record content' };
    }
    if (record.chain !== undefined) chains!.set(record.chain, { link: record.link!, hash });
    lastHash = hash;
    lastSeq = record.seq;
    checked++;
  }
  return chains ? { ok: true, checked, lastHash, lastSeq, chains } : { ok: true, checked, lastHash, lastSeq };
}

/**
 * Checks a verified run of several chains against where the store says each chain ends (`heads`,
 * kept beside the documents and updated in the writing transaction): a chain whose newest records
 * were deleted, or that was removed whole, no longer reaches its head. A chain found without a head
 * was written around the store. Returns the first problem, or undefined when every chain is whole.
 */
export function checkAuditHeads(
  chains: ReadonlyMap<string, ChainPosition>,
  heads: readonly AuditChainHead[],
): string | undefined {
  const known = new Set<string>();
  for (const head of heads) {
    known.add(head.chain);
    const reached = chains.get(head.chain) ?? { link: 0, hash: GENESIS_HASH };
    if (reached.link !== head.link || reached.hash !== head.hash) {
      return `chain "${head.chain}" ends at link ${reached.link} but the store recorded ${head.link}: records were removed`;
    }
  }
  for (const chain of chains.keys()) {
    if (!known.has(chain)) return `chain "${chain}" has records but no recorded head`;
  }
  return undefined;
}

/**
 * One digest over every chain's head, sorted by chain: what to keep outside the store to notice a
 * rewrite of the newest records (or of the heads) later, as the last hash is for a single chain.
 */
export function digestAuditHeads(heads: readonly AuditChainHead[]): string {
  const sorted = [...heads].sort((a, b) => (a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0));
  const hash = createHash('sha256');
  for (const head of sorted) hash.update(`${head.chain}\n${head.link}\n${head.hash}\n`);
  return hash.digest('hex');
}
