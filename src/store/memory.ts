import { GENESIS_HASH, sealAuditRecord } from '../core/audit.js';
import { compareKeys, type IndexRange } from '../core/collections.js';
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
  CreateOptions,
  CredentialStore,
  DocumentInfo,
  IdempotencyRecord,
  IndexedEntry,
  LoadedDocument,
  RestructureRequest,
  Snapshot,
  Store,
  StoredEntry,
  TaskRecord,
} from '../core/store.js';

interface MemoryDocument {
  revision: number;
  oldestRevision: number;
  createdAt: string;
  commits: CommitRecord[];
  snapshots: Snapshot[];
  collections: Map<string, MemoryCollection>;
  version: number;
  initialHash: string | undefined;
}

/** Rows kept sorted, found by binary search: keys in code point order, index rows by (ikey, key). */
class SortedRows<T> {
  readonly rows: T[] = [];
  constructor(readonly compare: (a: T, b: T) => number) {}

  /** The first position whose row is not before `probe`. */
  lowerBound(probe: T): number {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compare(this.rows[mid]!, probe) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(row: T): void {
    const at = this.lowerBound(row);
    if (at < this.rows.length && this.compare(this.rows[at]!, row) === 0) return;
    this.rows.splice(at, 0, row);
  }

  remove(row: T): void {
    const at = this.lowerBound(row);
    if (at < this.rows.length && this.compare(this.rows[at]!, row) === 0) this.rows.splice(at, 1);
  }
}

type IndexEntryRow = readonly [ikey: string, key: string];
const compareIndexRows = (a: IndexEntryRow, b: IndexEntryRow) =>
  compareKeys(a[0], b[0]) || compareKeys(a[1], b[1]);

interface MemoryCollection {
  indexes: Record<string, readonly string[]>;
  entries: Map<string, JsonValue>;
  keys: SortedRows<string>;
  rows: Map<string, SortedRows<IndexEntryRow>>;
}

function newCollection(indexes: Record<string, readonly string[]>): MemoryCollection {
  const rows = new Map<string, SortedRows<IndexEntryRow>>();
  for (const name of Object.keys(indexes)) rows.set(name, new SortedRows(compareIndexRows));
  return { indexes: copy(indexes), entries: new Map(), keys: new SortedRows(compareKeys), rows };
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
  readonly #commitsById = new Map<string, CommitRecord[]>();
  readonly #audit: AuditRecord[] = [];
  readonly #idempotency = new Map<string, IdempotencyRecord>();
  readonly #keys = new Map<string, ApiKeyRecord>();
  #keysEpoch = 0;
  readonly #secrets = new Map<string, string>();
  readonly #fences = new Map<string, { token: string; until: number }>();
  readonly #sequences = new Map<string, number>();
  /** Consumed ids and when each may be forgotten. */
  readonly #consumed = new Map<string, string>();
  readonly #tasks = new Map<string, TaskRecord>();
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

  async createDocument(
    doc: string,
    initial: JsonValue,
    at: string,
    options: CreateOptions = {},
  ): Promise<boolean> {
    const layout = options.collections ?? {};
    this.#check();
    if (this.#docs.has(doc)) return false;
    const collections = new Map<string, MemoryCollection>();
    for (const [name, { indexes }] of Object.entries(layout)) collections.set(name, newCollection(indexes));
    this.#docs.set(doc, {
      revision: 0,
      oldestRevision: 0,
      createdAt: at,
      commits: [],
      snapshots: [{ revision: 0, value: copy(initial) }],
      collections,
      version: options.version ?? 1,
      initialHash: options.initialHash,
    });
    return true;
  }

  async headRevision(doc: string): Promise<number> {
    this.#check();
    return this.#docs.get(doc)?.revision ?? 0;
  }

  async restructure(request: RestructureRequest): Promise<void> {
    this.#check();
    const d = this.#docs.get(request.doc);
    if (!d) throw new StateError('not_found', `No document "${request.doc}"`);
    if (d.revision !== request.revision)
      throw new StateError('revision_conflict', 'The document moved on during a restructure');
    const next = new Map<string, MemoryCollection>();
    for (const [name, { indexes }] of Object.entries(request.layout)) {
      const kept = d.collections.get(name);
      const entries = request.entries?.[name];
      const rows = request.indexRows?.[name];
      if (kept && !entries && !rows) {
        next.set(name, kept);
        continue;
      }
      const c = newCollection(indexes);
      if (entries) {
        for (const entry of entries) {
          c.entries.set(entry.key, copy(entry.value));
          c.keys.insert(entry.key);
          for (const [index, ikey] of entry.index) c.rows.get(index)?.insert([ikey, entry.key]);
        }
      } else if (kept) {
        for (const [key, value] of kept.entries) {
          c.entries.set(key, value);
          c.keys.insert(key);
        }
        for (const row of rows ?? [])
          for (const [index, ikey] of row.index) c.rows.get(index)?.insert([ikey, row.key]);
      }
      next.set(name, c);
    }
    d.collections = next;
    d.snapshots = d.snapshots.filter((s) => s.revision !== request.revision);
    d.snapshots.push({ revision: request.revision, value: copy(request.plain) });
    d.snapshots.sort((a, b) => a.revision - b.revision);
  }

  async readEntries(
    doc: string,
    collection: string,
    keys: readonly string[],
  ): Promise<Map<string, JsonValue>> {
    this.#check();
    const c = this.#docs.get(doc)?.collections.get(collection);
    const out = new Map<string, JsonValue>();
    if (!c) return out;
    for (const key of keys) {
      const value = c.entries.get(key);
      if (value !== undefined) out.set(key, copy(value));
    }
    return out;
  }

  async listEntries(
    doc: string,
    collection: string,
    range: { after?: string; limit: number },
  ): Promise<StoredEntry[]> {
    this.#check();
    const c = this.#docs.get(doc)?.collections.get(collection);
    if (!c) return [];
    let at = range.after === undefined ? 0 : c.keys.lowerBound(range.after);
    if (range.after !== undefined && c.keys.rows[at] === range.after) at++;
    return c.keys.rows.slice(at, at + range.limit).map((key) => ({ key, value: copy(c.entries.get(key)!) }));
  }

  async queryIndex(
    doc: string,
    collection: string,
    index: string,
    range: IndexRange,
  ): Promise<IndexedEntry[]> {
    this.#check();
    const c = this.#docs.get(doc)?.collections.get(collection);
    const rows = c?.rows.get(index);
    if (!c || !rows) return [];
    const out: IndexedEntry[] = [];
    const inRange = (row: IndexEntryRow) =>
      compareKeys(row[0], range.from) >= 0 && compareKeys(row[0], range.to) < 0;
    if (range.order === 'asc') {
      let at = rows.lowerBound(range.after ? [range.after[0], range.after[1]] : [range.from, '']);
      if (range.after && at < rows.rows.length && compareIndexRows(rows.rows[at]!, range.after) === 0) at++;
      for (; at < rows.rows.length && out.length < range.limit; at++) {
        const row = rows.rows[at]!;
        if (compareKeys(row[0], range.to) >= 0) break;
        if (!inRange(row)) continue;
        out.push({ ikey: row[0], key: row[1], value: copy(c.entries.get(row[1])!) });
      }
    } else {
      let at =
        (range.after ? rows.lowerBound([range.after[0], range.after[1]]) : rows.lowerBound([range.to, ''])) -
        1;
      for (; at >= 0 && out.length < range.limit; at--) {
        const row = rows.rows[at]!;
        if (compareKeys(row[0], range.from) < 0) break;
        if (!inRange(row)) continue;
        out.push({ ikey: row[0], key: row[1], value: copy(c.entries.get(row[1])!) });
      }
    }
    return out;
  }

  async countIndex(
    doc: string,
    collection: string,
    index: string,
    range: { from: string; to: string },
  ): Promise<number> {
    this.#check();
    const rows = this.#docs.get(doc)?.collections.get(collection)?.rows.get(index);
    if (!rows) return 0;
    return rows.lowerBound([range.to, '']) - rows.lowerBound([range.from, '']);
  }

  async loadDocument(doc: string): Promise<LoadedDocument | undefined> {
    this.#check();
    const d = this.#docs.get(doc);
    if (!d) return undefined;
    const snapshot = d.snapshots.at(-1)!;
    const collections: LoadedDocument['collections'] = {};
    for (const [name, c] of d.collections)
      collections[name] = { size: c.entries.size, indexes: copy(c.indexes) };
    return {
      doc,
      revision: d.revision,
      oldestRevision: d.oldestRevision,
      snapshot: copy(snapshot),
      commits: copy(d.commits.filter((c) => c.revision > snapshot.revision)),
      collections,
      version: d.version,
      ...(d.initialHash === undefined ? {} : { initialHash: d.initialHash }),
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

  async readCommand(commandId: string): Promise<CommitRecord[]> {
    this.#check();
    return copy(this.#commitsById.get(commandId) ?? []);
  }

  async commit(request: CommitRequest): Promise<CommitOutcome> {
    this.#check();
    const docs: MemoryDocument[] = [];
    for (const { commit, expectedRevision } of request.changes) {
      const d = this.#docs.get(commit.doc);
      if (!d) throw new StateError('not_found', `No document "${commit.doc}"`);
      const fence = this.#fences.get(commit.doc);
      if (fence && fence.until > Date.now() && fence.token !== request.fence) {
        return { status: 'conflict', doc: commit.doc, currentRevision: d.revision, fenced: true };
      }
      if (d.revision !== expectedRevision || commit.revision !== expectedRevision + 1) {
        return { status: 'conflict', doc: commit.doc, currentRevision: d.revision };
      }
      docs.push(d);
    }
    if (request.idempotency) {
      const existing = this.#idempotency.get(idempotencySlot(request.idempotency));
      if (existing) return { status: 'duplicate', record: copy(existing) };
    }
    const audit = this.#seal(request.audit);
    request.changes.forEach(({ commit, entries, version }, i) => {
      const d = docs[i]!;
      if (version !== undefined) d.version = version;
      const stored = copy({ ...commit, auditSeq: audit.seq });
      d.commits.push(stored);
      d.revision = commit.revision;
      const byCommand = this.#commitsById.get(commit.commandId) ?? [];
      byCommand.push(stored);
      this.#commitsById.set(commit.commandId, byCommand);
      for (const write of entries ?? []) {
        const c = d.collections.get(write.collection);
        if (!c)
          throw new StateError(
            'not_found',
            `Document "${commit.doc}" has no collection "${write.collection}"`,
          );
        for (const [index, ikey] of write.indexRemove) c.rows.get(index)?.remove([ikey, write.key]);
        if (write.value === undefined) {
          c.entries.delete(write.key);
          c.keys.remove(write.key);
        } else {
          if (!c.entries.has(write.key)) c.keys.insert(write.key);
          c.entries.set(write.key, copy(write.value));
        }
        for (const [index, ikey] of write.indexAdd) c.rows.get(index)?.insert([ikey, write.key]);
      }
    });
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
    for (const c of d.commits) {
      if (c.revision > keep.revision) continue;
      const rest = (this.#commitsById.get(c.commandId) ?? []).filter((other) => other.doc !== doc);
      if (rest.length > 0) this.#commitsById.set(c.commandId, rest);
      else this.#commitsById.delete(c.commandId);
    }
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

  async fence(docs: readonly string[], token: string, ttlMs: number): Promise<boolean> {
    this.#check();
    const now = Date.now();
    for (const doc of docs) {
      const held = this.#fences.get(doc);
      if (held && held.until > now && held.token !== token) return false;
    }
    for (const doc of docs) this.#fences.set(doc, { token, until: now + ttlMs });
    return true;
  }

  async releaseFence(docs: readonly string[], token: string): Promise<void> {
    this.#check();
    for (const doc of docs) if (this.#fences.get(doc)?.token === token) this.#fences.delete(doc);
  }

  async nextSequence(name: string, floor: number): Promise<number> {
    this.#check();
    const next = Math.max((this.#sequences.get(name) ?? 0) + 1, floor);
    this.#sequences.set(name, next);
    return next;
  }

  async secret(name: string, create: () => string): Promise<string> {
    this.#check();
    let value = this.#secrets.get(name);
    if (value === undefined) {
      value = create();
      this.#secrets.set(name, value);
    }
    return value;
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

  async trimIdempotency(principal: string, keep: number): Promise<number> {
    this.#check();
    const mine = [...this.#idempotency].filter(([, r]) => r.principal === principal);
    if (mine.length <= keep) return 0;
    mine.sort((a, b) => (a[1].at < b[1].at ? 1 : a[1].at > b[1].at ? -1 : 0));
    for (const [slot] of mine.slice(keep)) this.#idempotency.delete(slot);
    return mine.length - keep;
  }

  async consumeOnce(id: string, expiresAt: string): Promise<boolean> {
    this.#check();
    if (this.#consumed.has(id)) return false;
    this.#consumed.set(id, expiresAt);
    return true;
  }

  async expireConsumed(before: string): Promise<number> {
    this.#check();
    let removed = 0;
    for (const [id, expiresAt] of this.#consumed) {
      if (expiresAt < before) {
        this.#consumed.delete(id);
        removed++;
      }
    }
    return removed;
  }

  async createTask(task: TaskRecord): Promise<void> {
    this.#check();
    if (this.#tasks.has(task.taskId))
      throw new StateError('already_exists', `A task "${task.taskId}" exists`);
    this.#tasks.set(task.taskId, copy(task));
  }

  async readTask(taskId: string): Promise<TaskRecord | undefined> {
    this.#check();
    const task = this.#tasks.get(taskId);
    return task && copy(task);
  }

  async updateTask(task: TaskRecord): Promise<boolean> {
    this.#check();
    const stored = this.#tasks.get(task.taskId);
    if (!stored || stored.version !== task.version - 1) return false;
    this.#tasks.set(task.taskId, copy(task));
    return true;
  }

  async expireTasks(before: string): Promise<number> {
    this.#check();
    let removed = 0;
    for (const [id, task] of this.#tasks) {
      if (task.expiresAt !== undefined && task.expiresAt < before) {
        this.#tasks.delete(id);
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
    this.#keysEpoch++;
  }

  /** Only this process sees a memory store: the epoch moves with its own key changes. */
  credentialsEpoch(): number {
    return this.#keysEpoch;
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
        this.#keysEpoch++;
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
