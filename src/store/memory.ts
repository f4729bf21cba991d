import { GENESIS_HASH, sealAuditRecord } from '../core/audit.js';
import { StateError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type {
  ApiKeyRecord,
  AttemptRequest,
  AuditQuery,
  AuditRecord,
  CommitOutcome,
  CommitRange,
  CommitRecord,
  CommitRequest,
  CredentialStore,
  DocumentInfo,
  IdempotencyRecord,
  LoadedDocument,
  Snapshot,
  Store,
} from '../core/store.js';

interface MemoryDocument {
  revision: number;
  oldestRevision: number;
  createdAt: string;
  commits: CommitRecord[];
  snapshots: Snapshot[];
}

/** Values cross the store boundary as copies, as they would through a database. */
function copy<T>(value: T): T {
  return structuredClone(value);
}

/**
 * A store that keeps everything in process memory: for tests, examples and servers whose state may
 * vanish on restart. Same semantics as the durable stores; passes the same contract suite.
 */
export class MemoryStore implements Store, CredentialStore {
  readonly kind = 'memory';
  readonly #docs = new Map<string, MemoryDocument>();
  readonly #commitsById = new Map<string, CommitRecord>();
  readonly #audit: AuditRecord[] = [];
  readonly #idempotency = new Map<string, IdempotencyRecord>();
  readonly #keys = new Map<string, ApiKeyRecord>();
  #open = false;

  async open(): Promise<void> {
    this.#open = true;
  }

  async close(): Promise<void> {
    this.#open = false;
  }

  async ping(): Promise<void> {
    this.#check();
  }

  async listDocuments(): Promise<DocumentInfo[]> {
    this.#check();
    return [...this.#docs.entries()]
      .map(([doc, d]) => ({
        doc,
        revision: d.revision,
        oldestRevision: d.oldestRevision,
        createdAt: d.createdAt,
      }))
      .sort((a, b) => a.doc.localeCompare(b.doc));
  }

  async createDocument(doc: string, initial: JsonValue, at: string): Promise<boolean> {
    this.#check();
    if (this.#docs.has(doc)) return false;
    this.#docs.set(doc, {
      revision: 0,
      oldestRevision: 0,
      createdAt: at,
      commits: [],
      snapshots: [{ revision: 0, value: copy(initial) }],
    });
    return true;
  }

  async loadDocument(doc: string): Promise<LoadedDocument | undefined> {
    this.#check();
    const d = this.#docs.get(doc);
    if (!d) return undefined;
    const snapshot = d.snapshots.at(-1)!;
    return {
      doc,
      revision: d.revision,
      oldestRevision: d.oldestRevision,
      snapshot: copy(snapshot),
      commits: copy(d.commits.filter((c) => c.revision > snapshot.revision)),
    };
  }

  async readSnapshot(doc: string, atOrBefore: number): Promise<Snapshot | undefined> {
    this.#check();
    const d = this.#docs.get(doc);
    const found = d?.snapshots.filter((s) => s.revision <= atOrBefore).at(-1);
    return found && copy(found);
  }

  async readCommits(doc: string, range: CommitRange): Promise<CommitRecord[]> {
    this.#check();
    const d = this.#docs.get(doc);
    if (!d) return [];
    const to = range.to ?? Number.POSITIVE_INFINITY;
    const out = d.commits.filter((c) => c.revision > range.after && c.revision <= to);
    return copy(range.limit === undefined ? out : out.slice(0, range.limit));
  }

  async readCommit(commandId: string): Promise<CommitRecord | undefined> {
    this.#check();
    const found = this.#commitsById.get(commandId);
    return found && copy(found);
  }

  async commit(request: CommitRequest): Promise<CommitOutcome> {
    this.#check();
    const { commit } = request;
    const d = this.#docs.get(commit.doc);
    if (!d) throw new StateError('not_found', `No document "${commit.doc}"`);
    if (d.revision !== request.expectedRevision || commit.revision !== request.expectedRevision + 1) {
      return { status: 'conflict', currentRevision: d.revision };
    }
    if (request.idempotency) {
      const existing = this.#idempotency.get(idempotencySlot(request.idempotency));
      if (existing) return { status: 'duplicate', record: copy(existing) };
    }
    const audit = this.#seal(request.audit);
    const stored = copy({ ...commit, auditSeq: audit.seq });
    d.commits.push(stored);
    d.revision = commit.revision;
    this.#commitsById.set(commit.commandId, stored);
    if (request.idempotency)
      this.#idempotency.set(idempotencySlot(request.idempotency), copy(request.idempotency));
    return { status: 'committed', audit: copy(audit) };
  }

  async recordAttempt(request: AttemptRequest): Promise<AuditRecord> {
    this.#check();
    const audit = this.#seal(request.audit);
    if (request.idempotency) {
      const slot = idempotencySlot(request.idempotency);
      if (!this.#idempotency.has(slot)) this.#idempotency.set(slot, copy(request.idempotency));
    }
    return copy(audit);
  }

  async writeSnapshot(doc: string, snapshot: Snapshot): Promise<void> {
    this.#check();
    const d = this.#docs.get(doc);
    if (!d) throw new StateError('not_found', `No document "${doc}"`);
    if (snapshot.revision > d.revision)
      throw new StateError('invalid_revision', 'Snapshot is later than the head');
    if (d.snapshots.some((s) => s.revision === snapshot.revision)) return;
    d.snapshots.push(copy(snapshot));
    d.snapshots.sort((a, b) => a.revision - b.revision);
  }

  async compact(doc: string, throughRevision: number): Promise<number> {
    this.#check();
    const d = this.#docs.get(doc);
    if (!d) return 0;
    const keep = d.snapshots.filter((s) => s.revision <= throughRevision).at(-1);
    if (!keep) return 0;
    const before = d.commits.length;
    for (const c of d.commits) if (c.revision <= keep.revision) this.#commitsById.delete(c.commandId);
    d.commits = d.commits.filter((c) => c.revision > keep.revision);
    d.snapshots = d.snapshots.filter((s) => s.revision >= keep.revision);
    d.oldestRevision = Math.max(d.oldestRevision, keep.revision);
    return before - d.commits.length;
  }

  async revisionBefore(doc: string, at: string): Promise<number> {
    this.#check();
    const d = this.#docs.get(doc);
    if (!d) return 0;
    let found = d.oldestRevision;
    for (const c of d.commits) if (c.at < at) found = c.revision;
    return found;
  }

  async readAudit(query: AuditQuery): Promise<AuditRecord[]> {
    this.#check();
    const after = query.afterSeq ?? 0;
    const out: AuditRecord[] = [];
    for (const record of this.#audit) {
      if (record.seq <= after) continue;
      if (query.principal !== undefined && record.principal !== query.principal) continue;
      if (query.command !== undefined && record.command !== query.command) continue;
      if (query.since !== undefined && record.at < query.since) continue;
      out.push(record);
      if (query.limit !== undefined && out.length >= query.limit) break;
    }
    return copy(out);
  }

  async findIdempotency(principal: string, key: string): Promise<IdempotencyRecord | undefined> {
    this.#check();
    const found = this.#idempotency.get(idempotencySlot({ principal, key }));
    return found && copy(found);
  }

  async expireIdempotency(before: string): Promise<number> {
    this.#check();
    let removed = 0;
    for (const [slot, record] of this.#idempotency) {
      if (record.at < before) {
        this.#idempotency.delete(slot);
        removed++;
      }
    }
    return removed;
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    this.#check();
    for (const existing of this.#keys.values()) {
      if (existing.name === key.name)
        throw new StateError('already_exists', `An API key named "${key.name}" exists`);
    }
    this.#keys.set(key.id, copy(key));
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    this.#check();
    for (const key of this.#keys.values()) if (key.hash === hash) return copy(key);
    return undefined;
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    this.#check();
    return copy([...this.#keys.values()]);
  }

  async revokeApiKey(idOrName: string, at: string): Promise<ApiKeyRecord | undefined> {
    this.#check();
    for (const key of this.#keys.values()) {
      if (key.id === idOrName || key.name === idOrName) {
        key.revokedAt ??= at;
        return copy(key);
      }
    }
    return undefined;
  }

  #seal(entry: AuditRecord | CommitRequest['audit']): AuditRecord {
    const last = this.#audit.at(-1);
    const record = sealAuditRecord(copy(entry), (last?.seq ?? 0) + 1, last?.hash ?? GENESIS_HASH);
    this.#audit.push(record);
    return record;
  }

  #check(): void {
    if (!this.#open) throw new Error('the memory store is not open');
  }
}

function idempotencySlot(record: { principal: string; key: string }): string {
  return `${record.principal}\u0000${record.key}`;
}
