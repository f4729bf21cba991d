import { apply, create, current, isDraft } from 'mutative';
import { type Principal, SYSTEM_PRINCIPAL } from './access.js';
import { buildAuditEntry } from './audit.js';
import {
  CollectionDraft,
  CollectionReader,
  checkEntryKey,
  checkPageSize,
  compareKeys,
  decodeCursor,
  EntryCache,
  encodeCursor,
  indexRowsOf,
  OverlayReader,
} from './collections.js';
import { sha256 } from './digest.js';
import {
  type CollectionDefinition,
  type CommitEvent,
  collection,
  commitEvent,
  DEFAULT_DOCUMENT,
  DOCUMENT_ID_PATTERN,
  type DocumentDefinition,
  type DocumentState,
  defineDocument,
  type StateDiff,
} from './document.js';
import { isCoreMcpError, RecoveryError, RevisionConflictError, SetupError, StateError } from './errors.js';
import { findCommand, type RollbackResult, revertTo, type UndoResult, undoCommand } from './history.js';
import { type IdempotencySlot, idempotencyRecord } from './idempotency.js';
import { timeOrderedId } from './ids.js';
import {
  canonicalJson,
  deepFreeze,
  findJsonProblem,
  type JsonLimits,
  type JsonObject,
  type JsonValue,
  unescapePointerToken,
} from './json.js';
import { KeyedMutex } from './mutex.js';
import {
  applyPatch,
  findPatchProblem,
  freezeChanged,
  hashPatch,
  type JsonPatch,
  type JsonPatchOperation,
} from './patch.js';
import { checkResultIsJson } from './results.js';
import type {
  AuditConsent,
  AuditRecord,
  CollectionLayout,
  CommitRecord,
  CommitRequest,
  DocumentChange,
  DocumentInfo,
  IdempotencyRecord,
  LoadedDocument,
  Store,
} from './store.js';
import { CallSignal } from './timeout.js';

export type { CommitEvent, DocumentState, StateDiff } from './document.js';

/** Bounds on documents and the changes made to them. */
export interface StateLimits extends JsonLimits {
  /** Largest serialized document (for a document with collections: its plain part, and each entry). */
  maxBytes: number;
  /** Most commits one diff or history read may span. */
  maxRangeCommits: number;
  /** Most collection entries a whole-value read (`get`) inlines; larger documents are read by page. */
  maxInlineEntries: number;
}

export const DEFAULT_STATE_LIMITS: StateLimits = {
  maxDepth: 64,
  maxStringLength: 1024 * 1024,
  maxCollectionSize: 100_000,
  maxBytes: 16 * 1024 * 1024,
  maxRangeCommits: 10_000,
  maxInlineEntries: 10_000,
};

export interface StateManagerOptions {
  /** Declared documents: `defineDocument` results, or initial values by id. Without any, `default`. */
  documents?: ReadonlyArray<DocumentDefinition<unknown>> | Record<string, JsonValue>;
  limits?: Partial<StateLimits>;
  /** Write a snapshot every this many commits (default 1,000); bounds replay at start-up. */
  snapshotEvery?: number;
  /** Re-runs after losing a commit race to another process, before giving up (default 8). */
  maxConflictRetries?: number;
  /** Collection entries kept in memory across all documents (default 100,000). */
  entryCacheSize?: number;
  clock?: () => Date;
  /** Reports failures that happen off the request path (snapshot writes). */
  onBackgroundError?: (error: unknown, what: string) => void;
  /** Things an operator should know at start (a declaration that no longer matches the store). */
  onWarning?: (message: string, details: JsonObject) => void;
  /**
   * Group commit (default on, when the store has `commitBatch`): concurrent writers of one document
   * each execute on the head the writes before them will make, and their commits go to the store
   * together, in one transaction; each is answered once its commit is durable.
   */
  groupCommit?: boolean;
  /** The most commits one group commit carries (default 64). */
  maxBatch?: number;
}

/** How the group commits went: batches written and the commits they carried. */
export interface GroupCommitStats {
  batches: number;
  commits: number;
  largest: number;
  /** Batches the store refused or failed (their writers retried alone, or got the fault). */
  failed: number;
}

/** A document migration that is due: from the stored version to the declared one, step by step. */
export interface PlannedMigration {
  doc: string;
  from: number;
  to: number;
  /** Each step's patches (from a dry run on a draft of the head): what running it would change. */
  steps: Array<{ to: number; patches: JsonPatch }>;
}

/** Who a history operation runs as, for the audit trail. */
export interface HistoryCallOptions {
  principal?: Principal;
  requestId?: string;
}

/** Keep a commit if it is among the last `keepCommits` or younger than `keepDays`. */
export interface RetentionPolicy {
  keepCommits?: number;
  keepDays?: number;
}

export interface CompactionResult {
  doc: string;
  oldestRevision: number;
  removed: number;
}

/** One page of a document's commit history. */
export interface HistoryPage {
  doc: string;
  head: number;
  oldestRevision: number;
  commits: CommitRecord[];
  /** Pass as `since` to read the next page. */
  next?: number;
}

/** One page of a collection's entries, all at one revision. */
export interface CollectionPage {
  doc: string;
  collection: string;
  revision: number;
  /** Entries at `revision`, in key order. */
  entries: Array<[key: string, value: JsonValue]>;
  /** How many entries the collection holds at head. */
  size: number;
  /** Pass back for the next page, which is read at the same revision; absent on the last page. */
  cursor?: string;
}

/** A document read page by page: its plain members whole, each collection's first page inline. */
export interface DocumentRead {
  doc: string;
  revision: number;
  /** The value, with each collection holding its first page of entries. */
  value: JsonValue;
  /** Collections that did not fit in one page: where to continue. */
  more: Record<string, { size: number; cursor: string }>;
}

/** What a write can reach while it runs: each document's draft, its value before, and patching. */
export interface WriteSession {
  /** The draft of a document the write may change (its collections are `WritableCollection`s). */
  draft(doc: string): unknown;
  /** The document as it was before this write. */
  base(doc: string): DocumentState<unknown>;
  /** Applies RFC 6902 patches coremcp produced (e.g. inverse patches from history) to a document's draft. */
  apply(doc: string, patches: JsonPatch): Promise<void>;
}

/** One attempt's work inside a transaction; may run more than once if another process commits first. */
export type Mutation<R> = (session: WriteSession) => R | Promise<R>;

export interface TransactRequest<R> {
  /** The documents the write may change; the first is its primary document. */
  docs: readonly string[];
  principal: Principal;
  command: string;
  commandId?: string;
  requestId?: string;
  /** The input as it goes into the audit record (already redacted). */
  auditInput?: JsonValue;
  traceparent?: string;
  /** Commit only if the primary document is at this revision; otherwise a `RevisionConflictError`. */
  expectedRevision?: number;
  idempotency?: IdempotencySlot;
  /** Bounds an asynchronous mutation: past it the transaction fails with `timeout`, nothing committed. */
  timeoutMs?: number;
  /** The caller's cancellation and the handler's abort signal. */
  call?: CallSignal;
  /** Runs before each attempt, with the revisions the attempt starts from (the handler's context). */
  mutate: Mutation<R>;
  /** Inspects each document's patches before commit (path rules); throw to refuse. */
  checkPatches?: (doc: string, patches: JsonPatch) => void;
  /**
   * Holds a fence on the documents while it runs (rollback, undo): writers in other processes wait
   * instead of racing it, so it cannot lose to sustained writes.
   */
  exclusive?: boolean;
  /** Commit the primary document at this schema version (a migration step); commits even without patches. */
  setVersion?: number;
  /**
   * Sees every change at once, after the checks, just before the commit; throw to refuse. A
   * `StateError` thrown here is a decision like any other: re-made on a current head first.
   */
  beforeCommit?: (changes: readonly PreviewedChange[]) => void;
  /** Run the mutation and its checks, then return the changes instead of committing them. */
  dryRun?: boolean;
  /** The consent that approved this change, for its audit record. */
  consent?: AuditConsent;
}

/** One document's part of a change before it commits: its revision now and its patches. */
export interface PreviewedChange {
  doc: string;
  revision: number;
  patches: JsonPatch;
}

export interface TransactResult<R> {
  /** The primary document. */
  doc: string;
  /** The primary document's revision after the call: new if it changed, unchanged otherwise. */
  revision: number;
  committed: boolean;
  result: R;
  commandId: string;
  /** The primary document's patches. */
  patches: JsonPatch;
  /** Every document the call changed, with its new revision. */
  changed: Array<{ doc: string; revision: number }>;
  audit: AuditRecord | undefined;
  /** Set when another call with the same idempotency key won the race. */
  duplicate: IdempotencyRecord | undefined;
  /** For a dry run: what would have been committed (empty when nothing would change). */
  preview?: PreviewedChange[];
}

interface CollectionHead {
  definition: CollectionDefinition<unknown>;
  size: number;
}

interface Head {
  readonly doc: string;
  readonly revision: number;
  /** A plain document's whole value; a document with collections: its plain part. Frozen. */
  readonly value: JsonValue;
  oldestRevision: number;
  lastSnapshot: number;
  /** Patch operations committed since the last snapshot: what a restart would replay. */
  opsSinceSnapshot: number;
  /** An upper bound on the serialized size of `value`; recomputed exactly when it crosses the limit. */
  readonly sizeEstimate: number;
  /** Undefined for a plain document. */
  readonly collections: ReadonlyMap<string, CollectionHead> | undefined;
  /** What handlers see as `state`: made on first use. */
  view?: unknown;
  /**
   * A speculative head's entry writes not yet durable, by collection and key (`undefined`: removed):
   * what its readers lay over the store. Only on heads made by group commit; the values equal the
   * store's once those commits are durable, and every head derived later leaves it behind.
   */
  readonly overlay?: ReadonlyMap<string, ReadonlyMap<string, JsonValue | undefined>>;
  /** On a durable head installed by group commit: the speculative head it stands for. */
  readonly from?: Head;
}

/** A commit waiting in the group-commit queue, with what its writer needs once it settles. */
interface QueuedCommit {
  readonly doc: string;
  readonly request: CommitRequest;
  readonly write: FinishedWrite;
  readonly commit: CommitRecord;
  /** The head this commit makes (speculative until the batch is durable). */
  readonly head: Head;
  readonly speculation: Speculation;
  readonly idempotencySlot: string | undefined;
  settle(outcome: QueuedOutcome): void;
}

type QueuedOutcome =
  | { status: 'committed'; audit: AuditRecord }
  /** The batch was refused or its head abandoned: run the write again, alone. */
  | { status: 'retry' }
  | { status: 'fault'; error: unknown };

/** One document's commits on their way to the store, and the head they will make. */
interface Speculation {
  tip: Head;
  readonly members: QueuedCommit[];
  /** Resolves when the last of them settled. */
  readonly idle: Promise<void>;
  readonly done: () => void;
}

/** What the group path of a write hands back instead of a result. */
type Handoff<R> =
  | { handoff: 'solo' }
  | { handoff: 'queued'; outcome: Promise<QueuedOutcome>; result: (audit: AuditRecord) => TransactResult<R> };

const SOLO = { handoff: 'solo' } as const;

const DEFAULT_TIMEOUT_MS = 10_000;
/**
 * A snapshot is also due after this many patch operations, however few commits carried them: a bulk
 * write of 50,000 entries must not make every restart parse it again.
 */
const SNAPSHOT_AFTER_OPS = 20_000;
/** How long an operator action's fence holds at most (it is released as soon as the action ends). */
const FENCE_TTL_MS = 10_000;
/** How long a writer waits behind a fence (or for one) before answering `store_busy`. */
const FENCE_WAIT_MS = 15_000;
/** Lost races after which a write fences its documents for its next attempt. */
const CONTENTION_FENCE_AFTER = 1;
/**
 * How long such a fence holds at most (it is released as soon as the write ends): long enough for a
 * handler's run and one commit, short enough that a process dying with it stalls others briefly.
 */
const CONTENTION_FENCE_TTL_MS = 2000;

// Freezing is done by freezeChanged() on what the commit created, not by walking the whole tree.
const MUTATIVE_OPTIONS = {
  enablePatches: { pathAsArray: false, arrayLengthAssignment: false },
  enableAutoFreeze: false,
} as const;

// mutative's typing of apply() recurses without end through JsonValue; the call is data in, data out.
const applyToDraft = apply as unknown as (
  draft: unknown,
  patch: JsonPatch,
  options: { mutable: true },
) => void;

function checkRevisionArgument(name: string, revision: unknown): number {
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) {
    throw new StateError('invalid_revision', `${name} must be a non-negative integer`, {
      details: { [name]: typeof revision === 'number' ? revision : String(revision) },
    });
  }
  return revision;
}

/** The one refusal of a revision past the head, whatever names it. */
export function laterThanHead(name: string, revision: number, head: number): StateError {
  return new StateError('invalid_revision', `Revision ${revision} is later than the head (${head})`, {
    details: { [name]: revision, head },
  });
}

function toDefinitions(
  documents: StateManagerOptions['documents'],
): Map<string, DocumentDefinition<unknown>> {
  const list = Array.isArray(documents)
    ? (documents as ReadonlyArray<DocumentDefinition<unknown>>)
    : Object.entries((documents ?? {}) as Record<string, JsonValue>).map(([id, initial]) =>
        defineDocument(id, initial),
      );
  const map = new Map<string, DocumentDefinition<unknown>>();
  for (const definition of list.length > 0 ? list : [defineDocument(DEFAULT_DOCUMENT, {})]) {
    if (map.has(definition.id)) throw new TypeError(`document "${definition.id}" is declared twice`);
    map.set(definition.id, definition);
  }
  return map;
}

function layoutOf(collections: Readonly<Record<string, CollectionDefinition<unknown>>>): CollectionLayout {
  const layout: CollectionLayout = {};
  for (const [name, definition] of Object.entries(collections))
    layout[name] = { indexes: definition.indexSpec };
  return layout;
}

/** The collection a patch path lies in, and the rest of the path: `/tasks/T-1/status` → tasks, T-1, /status. */
function splitCollectionPath(
  path: string,
  collections: ReadonlyMap<string, unknown>,
): { collection: string; key: string | undefined; rest: string } | undefined {
  if (path === '') return undefined;
  const end = path.indexOf('/', 1);
  const name = unescapePointerToken(end === -1 ? path.slice(1) : path.slice(1, end));
  if (!collections.has(name)) return undefined;
  if (end === -1) return { collection: name, key: undefined, rest: '' };
  const keyEnd = path.indexOf('/', end + 1);
  const key = unescapePointerToken(keyEnd === -1 ? path.slice(end + 1) : path.slice(end + 1, keyEnd));
  return { collection: name, key, rest: keyEnd === -1 ? '' : path.slice(keyEnd) };
}

function plainOps(
  patches: readonly JsonPatchOperation[],
  collections: ReadonlyMap<string, unknown> | undefined,
) {
  if (!collections || collections.size === 0) return patches as JsonPatch;
  return patches.filter((op) => !splitCollectionPath(op.path, collections));
}

function withoutMembers(value: JsonValue, names: Iterable<string>): JsonValue {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  let out: JsonObject | undefined;
  for (const name of names) {
    if (!Object.hasOwn(value, name)) continue;
    out ??= { ...value };
    delete out[name];
  }
  return out ? deepFreeze(out) : value;
}

/**
 * Documents with integer revisions and a durable history. Every change is a commit carrying forward
 * and inverse RFC 6902 patches, written with its audit record in one store transaction. Plain
 * documents are cached whole; a document's collections are stored entry by entry, cached entry by
 * entry, and read page by page, so a change costs what it touches. Snapshots of the plain parts
 * bound the replay needed to rebuild heads.
 */
export class StateManager {
  readonly store: Store;
  readonly limits: StateLimits;
  readonly #declared: Map<string, DocumentDefinition<unknown>>;
  readonly #heads = new Map<string, Head>();
  readonly #loading = new Map<string, Promise<Head>>();
  readonly #locks = new KeyedMutex();
  readonly #listeners = new Set<(event: CommitEvent) => void>();
  readonly #cache: EntryCache;
  readonly #snapshotEvery: number;
  readonly #maxRetries: number;
  readonly #clock: () => Date;
  readonly #onBackgroundError: (error: unknown, what: string) => void;
  /** Per-key inverse changes since a revision, for paging a collection at that revision. */
  readonly #rewinds = new Map<string, Rewind>();
  /** The schema version of each declared document as stored. */
  readonly #versions = new Map<string, number>();
  readonly #onWarning: (message: string, details: JsonObject) => void;
  #conflicts = 0;
  readonly #groupCommit: boolean;
  readonly #maxBatch: number;
  /** Per document: the commits queued or in flight, and the speculative head after them. */
  readonly #speculations = new Map<string, Speculation>();
  /** Commits waiting for the next batch, in the order they were executed. */
  #queue: QueuedCommit[] = [];
  #flushing = false;
  #flushScheduled = false;
  /** Resolves when the flush in flight ends. */
  #flushed: Promise<void> = Promise.resolve();
  /** Overlay reads (count, list, query on a speculative head) in progress; a flush waits for them. */
  #overlayReads = 0;
  #overlayReadsDone: (() => void) | undefined;
  /** The idempotency slots of queued commits (a second call with one goes alone, after them). */
  readonly #pendingKeys = new Map<string, number>();
  readonly #batchStats: GroupCommitStats = { batches: 0, commits: 0, largest: 0, failed: 0 };
  readonly #batchListeners = new Set<(size: number) => void>();

  constructor(store: Store, options: StateManagerOptions = {}) {
    this.store = store;
    this.limits = { ...DEFAULT_STATE_LIMITS, ...options.limits };
    this.#declared = toDefinitions(options.documents);
    for (const [doc, definition] of this.#declared) {
      const problem = findJsonProblem(definition.initial, this.limits);
      if (problem) throw new TypeError(`initial value of "${doc}" at "${problem.path}": ${problem.problem}`);
    }
    this.#cache = new EntryCache(options.entryCacheSize ?? 100_000);
    this.#snapshotEvery = options.snapshotEvery ?? 1000;
    this.#maxRetries = options.maxConflictRetries ?? 8;
    this.#clock = options.clock ?? (() => new Date());
    this.#onBackgroundError = options.onBackgroundError ?? (() => {});
    this.#onWarning = options.onWarning ?? (() => {});
    this.#groupCommit = options.groupCommit !== false && typeof store.commitBatch === 'function';
    this.#maxBatch = Math.max(1, options.maxBatch ?? 64);
  }

  /** Whether concurrent writers' commits go to the store together (see `groupCommit`). */
  get groupCommit(): boolean {
    return this.#groupCommit;
  }

  /** Group commits so far. */
  get batches(): Readonly<GroupCommitStats> {
    return { ...this.#batchStats };
  }

  /** Called with the size of every group commit written. Returns the unsubscribe function. */
  onBatch(listener: (size: number) => void): () => void {
    this.#batchListeners.add(listener);
    return () => this.#batchListeners.delete(listener);
  }

  /**
   * Creates declared documents that do not exist yet, brings stored ones to their declared
   * collections, and (unless `migrate` is false) runs the migrations that are due. A document stored
   * at a newer schema version than declared refuses to open (`document_too_new`).
   */
  async open(options: { migrate?: boolean } = {}): Promise<void> {
    const at = this.#clock().toISOString();
    for (const [doc, definition] of this.#declared) {
      const initialHash = hashValue(definition.initial);
      await this.store.createDocument(doc, definition.initial, at, {
        collections: layoutOf(definition.collections),
        version: definition.version,
        initialHash,
      });
      const loaded = await this.store.loadDocument(doc);
      if (!loaded) continue;
      if (loaded.version > definition.version) {
        throw new SetupError(
          'document_too_new',
          `document "${doc}" is at schema version ${loaded.version}, but this app declares version ${definition.version}: it was written by a newer version of the app; upgrade the app`,
        );
      }
      if (
        loaded.version === definition.version &&
        loaded.initialHash !== undefined &&
        loaded.initialHash !== initialHash
      ) {
        this.#onWarning(
          `document "${doc}" was created from another initial value than the app declares now; a stored document keeps its state (the initial value applies only to new ones): to change stored state, raise its version and add a migration`,
          { doc, version: definition.version },
        );
      }
      // The head comes from the same load when the store already keeps the declared collections.
      if (!(await this.#reconcile(doc, definition, loaded))) {
        const head = this.#headFrom(doc, loaded);
        this.#heads.set(doc, head);
        this.#snapshotIfDue(doc, head);
      }
      this.#versions.set(doc, loaded.version);
    }
    if (options.migrate !== false) await this.migrate();
  }

  /**
   * The document migrations that are due, run (each step its own audited commit, by `principal`,
   * default `system`) or, with `dryRun`, only planned: the first step run on a draft, its patches
   * reported, nothing committed.
   */
  async migrate(options: { dryRun?: boolean; principal?: Principal } = {}): Promise<PlannedMigration[]> {
    const planned: PlannedMigration[] = [];
    for (const [doc, definition] of this.#declared) {
      const from = this.#versions.get(doc) ?? definition.version;
      if (from >= definition.version) continue;
      const plan: PlannedMigration = { doc, from, to: definition.version, steps: [] };
      for (let to = from + 1; to <= definition.version; to++) {
        const step = definition.migrations[to]!;
        const result = await this.transact({
          docs: [doc],
          principal: options.principal ?? SYSTEM_PRINCIPAL,
          command: 'state.migrate',
          auditInput: { doc, from: to - 1, to },
          setVersion: to,
          dryRun: options.dryRun === true,
          mutate: async (session) => {
            await step(session.draft(doc) as never);
          },
        });
        plan.steps.push({ to, patches: result.patches });
        // A dry run leaves the document as it is: later steps would run on the wrong version.
        if (options.dryRun) break;
        this.#versions.set(doc, to);
      }
      planned.push(plan);
    }
    return planned;
  }

  /** The documents declared at construction (the app's, or `default`): a bounded set, for metrics. */
  get declaredDocuments(): string[] {
    return [...this.#declared.keys()];
  }

  /** Commits observed so far that lost a race and were re-run. */
  get conflicts(): number {
    return this.#conflicts;
  }

  /** Called after every commit (own or discovered). Returns the unsubscribe function. */
  onCommit(listener: (event: CommitEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async listDocuments(): Promise<DocumentInfo[]> {
    return this.store.listDocuments();
  }

  /** The names and head sizes of a document's collections (empty for a plain document). */
  async collectionsOf(doc: string): Promise<Record<string, { size: number; indexes: string[] }>> {
    const head = await this.#head(doc, false);
    const out: Record<string, { size: number; indexes: string[] }> = {};
    for (const [name, c] of head.collections ?? [])
      out[name] = { size: c.size, indexes: Object.keys(c.definition.indexes) };
    return out;
  }

  /**
   * The revision and whole value of a document at head, or at `revision`. A document whose
   * collections hold more than `limits.maxInlineEntries` entries is refused with `range_too_large`:
   * read it with `read` and `page`.
   */
  async get<S = JsonValue>(doc: string, options: { revision?: number } = {}): Promise<DocumentState<S>> {
    const head = await this.#head(doc, false);
    const revision =
      options.revision === undefined
        ? head.revision
        : this.#checkReadable(doc, head, checkRevisionArgument('revision', options.revision));
    if (!head.collections) {
      if (revision === head.revision) return { doc, revision, value: head.value as S };
      return { doc, revision, value: (await this.#plainAt(doc, head, revision)) as S };
    }
    let total = 0;
    for (const c of head.collections.values()) total += c.size;
    if (total > this.limits.maxInlineEntries) {
      throw new StateError(
        'range_too_large',
        `Document "${doc}" holds ${total} collection entries; read it page by page`,
        { details: { doc, entries: total, limit: this.limits.maxInlineEntries } },
      );
    }
    const value: JsonObject = { ...((await this.#plainAt(doc, head, revision)) as JsonObject) };
    for (const name of head.collections.keys()) {
      const entries: JsonObject = {};
      let cursor: string | undefined;
      do {
        const page = await this.page(doc, { collection: name, revision, cursor, limit: 1000 });
        for (const [key, entry] of page.entries) entries[key] = entry;
        cursor = page.cursor;
      } while (cursor !== undefined);
      value[name] = entries;
    }
    return { doc, revision, value: deepFreeze(value) as S };
  }

  /**
   * A document read for a client: plain members whole, each collection's first `limit` entries
   * inline, and a cursor per collection that did not fit. The pages after it read at the same revision.
   */
  async read(doc: string, options: { revision?: number; limit?: number } = {}): Promise<DocumentRead> {
    const head = await this.#head(doc, false);
    const revision =
      options.revision === undefined
        ? head.revision
        : this.#checkReadable(doc, head, checkRevisionArgument('revision', options.revision));
    const plain = revision === head.revision ? head.value : await this.#plainAt(doc, head, revision);
    if (!head.collections) return { doc, revision, value: plain, more: {} };
    const value: JsonObject = { ...(plain as JsonObject) };
    const more: DocumentRead['more'] = {};
    for (const name of head.collections.keys()) {
      const page = await this.page(doc, { collection: name, revision, limit: options.limit ?? 1000 });
      value[name] = Object.fromEntries(page.entries);
      if (page.cursor !== undefined) more[name] = { size: page.size, cursor: page.cursor };
    }
    return { doc, revision, value: deepFreeze(value), more };
  }

  /**
   * One page of a collection's entries in key order, at head or at `revision` (within the last
   * `limits.maxRangeCommits` commits). A cursor keeps the revision of the first page.
   */
  async page(
    doc: string,
    options: { collection: string; cursor?: string; limit?: number; revision?: number },
  ): Promise<CollectionPage> {
    const head = await this.#head(doc, false);
    const name = options.collection;
    const collectionHead = head.collections?.get(name);
    if (!collectionHead) {
      throw new StateError(
        'not_found',
        `Document "${doc}" has no collection "${String(name).slice(0, 64)}"`,
        {
          details: { doc, collection: String(name).slice(0, 64) },
        },
      );
    }
    const limit = checkPageSize(options.limit);
    const cursor =
      options.cursor === undefined ? undefined : decodeCursor(options.cursor, { revision: true });
    if (cursor && cursor.c !== name) throw decodeCursorMismatch(options.cursor!);
    const revision = this.#checkReadable(
      doc,
      head,
      cursor?.r ??
        (options.revision === undefined
          ? head.revision
          : checkRevisionArgument('revision', options.revision)),
    );
    const after = cursor?.k;
    const rewind = revision === head.revision ? undefined : await this.#rewind(doc, head, revision);
    const changed = rewind
      ? [...rewind.keys(name)].filter((k) => after === undefined || compareKeys(k, after) > 0)
      : [];
    const rows = await this.store.listEntries(doc, name, { after, limit: limit + changed.length });
    const full = rows.length === limit + changed.length;
    const lastRow = rows.at(-1)?.key;
    const merged = new Map<string, JsonValue | undefined>();
    for (const row of rows) merged.set(row.key, row.value);
    if (rewind) {
      const missing = changed.filter(
        (k) => !merged.has(k) && (!full || (lastRow !== undefined && compareKeys(k, lastRow) < 0)),
      );
      const heads = missing.length > 0 ? await this.store.readEntries(doc, name, missing) : new Map();
      for (const key of missing) merged.set(key, heads.get(key));
      for (const key of changed) {
        if (!merged.has(key)) continue;
        merged.set(key, rewind.valueAt(name, key, merged.get(key)));
      }
    }
    const keys = [...merged.keys()].sort(compareKeys);
    const entries: Array<[string, JsonValue]> = [];
    for (const key of keys) {
      const value = merged.get(key);
      if (value === undefined) continue;
      if (entries.length === limit) break;
      entries.push([key, deepFreeze(value)]);
    }
    const last = entries.at(-1)?.[0];
    const more =
      last !== undefined && (full || keys.filter((k) => merged.get(k) !== undefined).length > limit);
    const page: CollectionPage = { doc, collection: name, revision, entries, size: collectionHead.size };
    if (more) page.cursor = encodeCursor({ k: last, r: revision, c: name });
    return page;
  }

  /** Patches that turn the value at `from` into the value at `to` (default: head). */
  async diff(doc: string, from: number, to?: number): Promise<StateDiff> {
    const head = await this.#head(doc, false);
    checkRevisionArgument('from', from);
    const target = to === undefined ? head.revision : checkRevisionArgument('to', to);
    if (target > head.revision) throw laterThanHead('to', target, head.revision);
    if (from > target) {
      throw new StateError('invalid_revision', '`from` must not be later than `to`', {
        details: { from, to: target },
      });
    }
    if (from === target) return { doc, from, to: target, patches: [], compacted: false };
    if (from < head.oldestRevision) return this.#compactedDiff(doc, head, from, target);
    this.#checkRange(from, target);
    const commits = await this.store.readCommits(doc, { after: from, to: target });
    if (commits.length !== target - from || commits[0]?.revision !== from + 1) {
      // Compaction ran between the head check and the read: answer as for a compacted range.
      return this.#compactedDiff(doc, head, from, target);
    }
    return { doc, from, to: target, patches: concatPatches(commits), compacted: false };
  }

  /**
   * Commits after revision `since`, oldest first, at most `limit`. `next` is the `since` of the next
   * page when there is one. Commits before the retention point are gone; `oldestRevision` says where
   * history starts.
   */
  async history(doc: string, since: number, limit: number): Promise<HistoryPage> {
    const head = await this.#head(doc, false);
    checkRevisionArgument('since', since);
    if (since > head.revision) throw laterThanHead('since', since, head.revision);
    const commits = await this.store.readCommits(doc, { after: since, to: head.revision, limit });
    const last = commits.at(-1);
    const page: HistoryPage = { doc, head: head.revision, oldestRevision: head.oldestRevision, commits };
    if (last && last.revision < head.revision) page.next = last.revision;
    return page;
  }

  /**
   * Changes a document atomically: `mutate` edits a draft, and its changes commit as one revision,
   * or not at all if it throws. Audited as the `system` principal unless one is given.
   */
  async update<S = JsonObject, R = void>(
    doc: string,
    mutate: (draft: S) => R | Promise<R>,
    options: { principal?: Principal; command?: string; expectedRevision?: number } = {},
  ): Promise<TransactResult<R>> {
    return this.transact({
      docs: [doc],
      principal: options.principal ?? SYSTEM_PRINCIPAL,
      command: options.command ?? 'state.update',
      expectedRevision: options.expectedRevision,
      mutate: (session) => mutate(session.draft(doc) as S),
    });
  }

  /**
   * The pipeline's execute-and-commit step. Runs `mutate` on drafts of the heads, checks what it
   * wrote, and commits every changed document's patches + inverse, the audit record (and the
   * idempotency record) in one store transaction. Writers to one document are serialized in this
   * process; if another process commits first, the heads are reloaded and `mutate` runs again, a
   * bounded number of times.
   */
  async transact<R>(request: TransactRequest<R>): Promise<TransactResult<R>> {
    const docs = [...new Set(request.docs)];
    const primary = docs[0];
    if (primary === undefined) throw new TypeError('a write names at least one document');
    for (const doc of docs)
      if (!DOCUMENT_ID_PATTERN.test(doc)) throw new StateError('not_found', `No document "${doc}"`);
    // Group commit: one document, no operator fence, no dry run, no migration step, no expected
    // revision (those stay on the path where each commit goes to the store alone).
    const group =
      this.#groupCommit &&
      docs.length === 1 &&
      !request.exclusive &&
      !request.dryRun &&
      request.setVersion === undefined &&
      request.expectedRevision === undefined;
    if (!group) return this.#transactAlone(request, docs, primary);
    const done = await this.#locks.run(primary, async () => {
      const slot =
        request.idempotency && idempotencySlotOf(request.idempotency.principal, request.idempotency.key);
      if (slot === undefined || !this.#pendingKeys.has(slot)) {
        const handoff = await this.#attempts(request, docs, primary, undefined, true);
        if (!('handoff' in handoff) || handoff.handoff === 'queued') return handoff;
      }
      // Alone, after the commits on their way to the store.
      await this.#drain(primary);
      return this.#attempts(request, docs, primary, undefined, false) as Promise<TransactResult<R>>;
    });
    if (!('handoff' in done)) return done;
    // The document's lock is free again: the next writer executes on the head this commit makes.
    const outcome = await done.outcome;
    if (outcome.status === 'committed') return done.result(outcome.audit);
    if (outcome.status === 'fault') throw outcome.error;
    // The batch did not commit: nothing of it is durable or was seen; run again, alone, as ever.
    return this.#transactAlone(request, docs, primary);
  }

  #transactAlone<R>(
    request: TransactRequest<R>,
    docs: readonly string[],
    primary: string,
  ): Promise<TransactResult<R>> {
    return this.#locks.runAll(docs, async () => {
      for (const doc of docs) await this.#drain(doc);
      if (!request.exclusive)
        return this.#attempts(request, docs, primary, undefined, false) as Promise<TransactResult<R>>;
      // An operator's history action takes a fence, so writers in other processes wait for it
      // instead of winning every race: it succeeds under sustained load.
      const fence = await this.#takeFence(docs);
      try {
        return (await this.#attempts(request, docs, primary, fence, false)) as TransactResult<R>;
      } finally {
        await this.store
          .releaseFence(docs, fence)
          .catch((error: unknown) => this.#onBackgroundError(error, 'releasing a fence'));
      }
    });
  }

  async #takeFence(docs: readonly string[]): Promise<string> {
    const token = timeOrderedId();
    const deadline = Date.now() + FENCE_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      if (await this.store.fence(docs, token, FENCE_TTL_MS)) return token;
      if (Date.now() > deadline) {
        throw new RecoveryError('store_busy', 'Another operator action holds these documents; try again', {
          details: { docs: [...docs] },
        });
      }
      await sleep(Math.min(100, 5 * 2 ** attempt));
    }
  }

  /**
   * Runs a write, retrying lost races. A write that lost twice to another process takes a short
   * fence on its documents (when none is held), so its next attempt cannot lose again: writers in
   * other processes wait behind it instead of starving it under sustained load on one document.
   */
  async #attempts<R>(
    request: TransactRequest<R>,
    docs: readonly string[],
    primary: string,
    fence: string | undefined,
    group: boolean,
  ): Promise<TransactResult<R> | Handoff<R>> {
    let contention: string | undefined;
    try {
      return await this.#attemptLoop(request, docs, primary, fence, group, (token) => {
        contention = token;
      });
    } finally {
      if (contention !== undefined) {
        await this.store
          .releaseFence(docs, contention)
          .catch((error: unknown) => this.#onBackgroundError(error, 'releasing a fence'));
      }
    }
  }

  async #attemptLoop<R>(
    request: TransactRequest<R>,
    docs: readonly string[],
    primary: string,
    fence: string | undefined,
    group: boolean,
    fenced: (token: string) => void,
  ): Promise<TransactResult<R> | Handoff<R>> {
    const commandId = request.commandId ?? timeOrderedId();
    let fencedUntil: number | undefined;
    for (let attempt = 0; ; attempt++) {
      // The group path's first attempt executes on the head the queued commits will make.
      const speculation = group && attempt === 0 ? this.#speculations.get(primary) : undefined;
      const heads = new Map<string, Head>();
      for (const doc of docs)
        heads.set(doc, speculation && doc === primary ? speculation.tip : await this.#head(doc, true));
      const primaryHead = heads.get(primary)!;
      if (request.expectedRevision !== undefined && request.expectedRevision !== primaryHead.revision) {
        // The cached head may be behind another process: compare with the store's before refusing.
        if (await this.#catchUp(heads)) continue;
        throw new RevisionConflictError(primary, request.expectedRevision, primaryHead.revision);
      }
      let value: R;
      let writes: FinishedWrite[];
      let preview: PreviewedChange[] | undefined;
      try {
        const session = new Session(heads, this);
        let result = request.mutate(session) as R | Promise<R>;
        if (result instanceof Promise) {
          const call = request.call ?? new CallSignal(undefined);
          result = await call.bound(result, request.timeoutMs ?? DEFAULT_TIMEOUT_MS);
        }
        const kept = new Map<object, CollectionDraft>();
        value = resolveDrafts(result as R, session, kept, false);
        writes = await session.finish();
        if (kept.size > 0) value = resolveDrafts(value, session, kept, true);
        if (value !== undefined) checkResultIsJson(value, this.limits);
        for (const write of writes) {
          this.#checkWrites(write);
          request.checkPatches?.(write.head.doc, write.patches);
        }
        if (request.beforeCommit || request.dryRun) {
          preview = writes
            .filter((w) => w.patches.length > 0)
            .map((w) => ({ doc: w.head.doc, revision: w.head.revision, patches: w.patches }));
          if (preview.length > 0) request.beforeCommit?.(preview);
        }
      } catch (error) {
        // A decision on a head not yet durable is made again, alone, once the commits before it are.
        if (speculation && isDecision(error)) return SOLO;
        // A refusal never reaches the conditional commit, so nothing else would notice that it was
        // decided on a head another process has moved past: decide again on the current one.
        if (attempt < this.#maxRetries && isDecision(error) && (await this.#catchUp(heads))) continue;
        throw error;
      }
      const changed = writes.filter((w) => w.patches.length > 0);
      if (request.dryRun) {
        // A preview is a decision too: made on a current head.
        if (attempt < this.#maxRetries && (await this.#catchUp(heads))) continue;
        return {
          doc: primary,
          revision: primaryHead.revision,
          committed: false,
          result: value,
          commandId,
          patches: changed.find((w) => w.head.doc === primary)?.patches ?? [],
          changed: [],
          audit: undefined,
          duplicate: undefined,
          preview: preview ?? [],
        };
      }
      // A migration step commits (to record its version) even when it changes nothing.
      if (request.setVersion !== undefined && !changed.some((w) => w.head.doc === primary)) {
        changed.push(
          writes.find((w) => w.head.doc === primary) ?? (await new Session(heads, this).finishOne(primary)),
        );
      }
      if (changed.length === 0) {
        if (speculation) return SOLO;
        // Changing nothing is a decision too (a claim of a task already held): only on a current head.
        if (attempt < this.#maxRetries && (await this.#catchUp(heads))) continue;
        return {
          doc: primary,
          revision: primaryHead.revision,
          committed: false,
          result: value,
          commandId,
          patches: [],
          changed: [],
          audit: undefined,
          duplicate: undefined,
        };
      }
      const at = this.#clock();
      const changes: DocumentChange[] = changed.map((write) => {
        const commit: CommitRecord = {
          doc: write.head.doc,
          revision: write.head.revision + 1,
          commandId,
          command: request.command,
          principal: request.principal.id,
          at: at.toISOString(),
          patches: write.patches,
          inverse: write.inverse,
        };
        if (request.requestId !== undefined) commit.requestId = request.requestId;
        if (request.idempotency) commit.idempotencyKey = request.idempotency.key;
        const change: DocumentChange = { commit, expectedRevision: write.head.revision };
        if (write.entries.length > 0) change.entries = write.entries;
        if (request.setVersion !== undefined && write.head.doc === primary)
          change.version = request.setVersion;
        return change;
      });
      const [first, ...others] = changes;
      const primaryRevision =
        changes.find((c) => c.commit.doc === primary)?.commit.revision ?? primaryHead.revision;
      const commitRequest: CommitRequest = {
        changes,
        audit: buildAuditEntry({
          at,
          requestId: request.requestId ?? commandId,
          principal: request.principal,
          command: request.command,
          input: request.auditInput ?? null,
          outcome: 'ok',
          commandId,
          doc: first!.commit.doc,
          revision: first!.commit.revision,
          patchHash: hashPatch(first!.commit.patches),
          alsoChanged: others.map((c) => ({
            doc: c.commit.doc,
            revision: c.commit.revision,
            patchHash: hashPatch(c.commit.patches),
          })),
          traceparent: request.traceparent,
          consent: request.consent,
        }),
        fence,
        idempotency:
          request.idempotency &&
          idempotencyRecord(request.idempotency, {
            command: request.command,
            doc: primary,
            revision: primaryRevision,
            commandId,
            outcome: 'ok',
            response: (value ?? null) as JsonValue,
            at: at.toISOString(),
          }),
      };
      const committed = (audit: AuditRecord): TransactResult<R> => ({
        doc: primary,
        revision: primaryRevision,
        committed: true,
        result: value,
        commandId,
        patches: changed.find((w) => w.head.doc === primary)?.patches ?? [],
        changed: changes.map((c) => ({ doc: c.commit.doc, revision: c.commit.revision })),
        audit,
        duplicate: undefined,
      });
      if (group && attempt === 0) {
        const queued = this.#enqueue(primaryHead, changed[0]!, commitRequest);
        return queued ? { handoff: 'queued', outcome: queued, result: committed } : SOLO;
      }
      // The heads are installed before anything else runs: no read sees the store ahead of them.
      const counts = this.#cache.counts;
      counts.writeStarted();
      let outcome: Awaited<ReturnType<Store['commit']>>;
      try {
        outcome = await this.store.commit(commitRequest);
        if (outcome.status === 'committed')
          for (const write of changed)
            this.#advance(write, changes.find((c) => c.commit.doc === write.head.doc)!.commit);
      } finally {
        counts.writeEnded();
      }
      if (outcome.status === 'duplicate') {
        return {
          doc: primary,
          revision: outcome.record.revision,
          committed: false,
          result: value,
          commandId,
          patches: [],
          changed: [],
          audit: undefined,
          duplicate: outcome.record,
        };
      }
      if (outcome.status === 'conflict' && outcome.fenced) {
        // An operator action holds the document: wait for it (bounded), it does not count as a lost race.
        fencedUntil ??= Date.now() + FENCE_WAIT_MS;
        if (Date.now() > fencedUntil) {
          throw new RecoveryError('store_busy', 'An operator action holds this document; try again', {
            details: { doc: outcome.doc },
          });
        }
        attempt--;
        await sleep(5 + Math.random() * 20);
        continue;
      }
      if (outcome.status === 'conflict') {
        this.#conflicts++;
        const stale = heads.get(outcome.doc);
        if (stale) await this.#reload(outcome.doc, stale);
        if (request.expectedRevision !== undefined && outcome.doc === primary) {
          throw new RevisionConflictError(primary, request.expectedRevision, outcome.currentRevision);
        }
        if (attempt >= this.#maxRetries) {
          throw new RecoveryError('conflict_retries_exhausted', undefined, {
            details: { attempts: attempt + 1 },
          });
        }
        if (fence === undefined && attempt >= CONTENTION_FENCE_AFTER) {
          const token = timeOrderedId();
          if (await this.store.fence(docs, token, CONTENTION_FENCE_TTL_MS)) {
            fence = token;
            fenced(token);
            continue;
          }
        }
        // Another process keeps winning: back off with jitter (exponential, at most ~50 ms) so the
        // writers interleave instead of colliding again at once.
        if (attempt > 0) await sleep(Math.random() * Math.min(50, 2 ** attempt));
        continue;
      }
      return committed(outcome.audit);
    }
  }

  // --- group commit ------------------------------------------------------------------------------

  /**
   * Queues a one-document commit executed on `base` (the durable head, or the speculative tip), and
   * makes the head it will make the document's speculative tip. Undefined when `base` is no longer
   * the tip (a batch failed meanwhile and abandoned it): the write then runs again, alone.
   */
  #enqueue(base: Head, write: FinishedWrite, request: CommitRequest): Promise<QueuedOutcome> | undefined {
    const doc = base.doc;
    let speculation = this.#speculations.get(doc);
    const current = speculation?.tip ?? this.#heads.get(doc);
    if (current !== base && current?.from !== base) return undefined;
    const commit = request.changes[0]!.commit;
    if (!speculation) {
      let done!: () => void;
      const idle = new Promise<void>((resolve) => {
        done = resolve;
      });
      speculation = { tip: base, members: [], idle, done };
      this.#speculations.set(doc, speculation);
    }
    // The entries still on their way to the store, this write's included: what readers of the new
    // tip lay over the store. Entries whose commits are durable already are read from it.
    let overlay: Map<string, Map<string, JsonValue | undefined>> | undefined;
    if (base.collections) {
      for (const w of [...speculation.members.map((m) => m.write), write]) {
        for (const entry of w.entries) {
          overlay ??= new Map();
          getOrCreate(overlay, entry.collection, () => new Map()).set(entry.key, entry.value);
        }
      }
    }
    const head = this.#nextHead(write, commit, overlay);
    const idem = request.idempotency;
    const slot = idem && idempotencySlotOf(idem.principal, idem.key);
    if (slot !== undefined) this.#pendingKeys.set(slot, (this.#pendingKeys.get(slot) ?? 0) + 1);
    let resolve!: (outcome: QueuedOutcome) => void;
    const promise = new Promise<QueuedOutcome>((r) => {
      resolve = r;
    });
    const member: QueuedCommit = {
      doc,
      request,
      write,
      commit,
      head,
      speculation,
      idempotencySlot: slot,
      settle: resolve,
    };
    speculation.members.push(member);
    speculation.tip = head;
    this.#queue.push(member);
    this.#scheduleFlush();
    return promise;
  }

  /**
   * One flush at a time: writers arriving while one is in flight join the next, so the batch grows
   * with the load. A lone writer waits one turn of the event loop.
   */
  #scheduleFlush(): void {
    if (this.#flushing || this.#flushScheduled || this.#queue.length === 0) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.#flush();
    });
  }

  /**
   * Runs an overlay read while no batch is written: store rows and pending writes are then merged
   * against one durable state (and the entries it caches are not overtaken by a commit).
   */
  async #steadyRead<T>(read: () => Promise<T>): Promise<T> {
    while (this.#flushing) await this.#flushed;
    this.#overlayReads++;
    try {
      return await read();
    } finally {
      if (--this.#overlayReads === 0) this.#overlayReadsDone?.();
    }
  }

  async #flush(): Promise<void> {
    if (this.#flushing || this.#queue.length === 0) return;
    this.#flushing = true;
    let flushed!: () => void;
    this.#flushed = new Promise((resolve) => {
      flushed = resolve;
    });
    // New overlay reads wait for this flush; the ones under way finish first.
    while (this.#overlayReads > 0) {
      await new Promise<void>((resolve) => {
        this.#overlayReadsDone = resolve;
      });
    }
    this.#overlayReadsDone = undefined;
    const batch = this.#queue.splice(0, this.#maxBatch);
    this.#cache.counts.writeStarted();
    try {
      let outcome: Awaited<ReturnType<NonNullable<Store['commitBatch']>>>;
      try {
        outcome = await this.store.commitBatch!(batch.map((m) => m.request));
      } catch (error) {
        this.#abandon(batch, { status: 'fault', error });
        return;
      }
      if (outcome.status !== 'committed') {
        this.#abandon(batch, { status: 'retry' });
        return;
      }
      this.#batchStats.batches++;
      this.#batchStats.commits += batch.length;
      this.#batchStats.largest = Math.max(this.#batchStats.largest, batch.length);
      for (const listener of this.#batchListeners) {
        try {
          listener(batch.length);
        } catch (error) {
          this.#onBackgroundError(error, 'group commit listener');
        }
      }
      // Durable: the heads advance in commit order, then every writer is answered.
      for (const [i, member] of batch.entries()) {
        this.#install(member.write, member.commit, member.head);
        this.#release(member);
        member.settle({ status: 'committed', audit: outcome.audits[i]! });
      }
    } catch (error) {
      // A listener or a head install threw after the batch was durable: the writers still are.
      this.#onBackgroundError(error, 'group commit');
    } finally {
      this.#cache.counts.writeEnded();
      this.#flushing = false;
      flushed();
      this.#scheduleFlush();
    }
  }

  /**
   * A batch failed: nothing of it is durable. Every speculative head is dropped (the queued commits
   * executed on them), the batch's writers get `outcome`, the queued ones run again alone.
   */
  #abandon(batch: readonly QueuedCommit[], outcome: QueuedOutcome): void {
    this.#batchStats.failed++;
    const queued = this.#queue;
    this.#queue = [];
    for (const [doc, speculation] of this.#speculations) {
      this.#speculations.delete(doc);
      speculation.members.length = 0;
      speculation.done();
    }
    for (const member of batch) {
      this.#release(member);
      member.settle(outcome);
    }
    for (const member of queued) {
      this.#release(member);
      member.settle({ status: 'retry' });
    }
  }

  #release(member: QueuedCommit): void {
    const slot = member.idempotencySlot;
    if (slot !== undefined) {
      const left = (this.#pendingKeys.get(slot) ?? 1) - 1;
      if (left > 0) this.#pendingKeys.set(slot, left);
      else this.#pendingKeys.delete(slot);
    }
    const { speculation } = member;
    const at = speculation.members.indexOf(member);
    if (at !== -1) speculation.members.splice(at, 1);
    if (speculation.members.length === 0 && this.#speculations.get(member.doc) === speculation) {
      this.#speculations.delete(member.doc);
      speculation.done();
    }
  }

  /** Resolves once no commit to `doc` is queued or in flight. Call holding the document's lock. */
  async #drain(doc: string): Promise<void> {
    for (;;) {
      const speculation = this.#speculations.get(doc);
      if (!speculation) return;
      await speculation.idle;
    }
  }

  /**
   * Returns a document to its value at `toRevision` with a new, audited commit (history is kept; the
   * rollback itself can be undone). Reverting needs every commit after `toRevision`:
   * `revision_compacted` when they are gone.
   */
  async rollback(
    doc: string,
    toRevision: number,
    options: HistoryCallOptions = {},
  ): Promise<TransactResult<RollbackResult>> {
    return this.transact({
      docs: [doc],
      principal: options.principal ?? SYSTEM_PRINCIPAL,
      command: 'state.rollback',
      auditInput: { doc, toRevision },
      requestId: options.requestId,
      exclusive: true,
      mutate: (session) =>
        revertTo(this.store, doc, toRevision, session.base(doc).revision, (patches) =>
          session.apply(doc, patches),
        ),
    });
  }

  /**
   * Undoes one command by applying the inverse of each commit it made, as new commits; refused with
   * `undo_conflict` (naming the later commits) when later commits changed the same paths.
   */
  async undo(commandId: string, options: HistoryCallOptions = {}): Promise<TransactResult<UndoResult>> {
    const targets = await findCommand(this.store, commandId);
    return this.transact({
      docs: targets.map((t) => t.doc),
      principal: options.principal ?? SYSTEM_PRINCIPAL,
      command: 'state.undo',
      auditInput: { commandId },
      requestId: options.requestId,
      exclusive: true,
      mutate: (session) => undoCommand(this.store, targets, session),
    });
  }

  /**
   * Applies a retention policy: commits that are both older than `keepDays` and not among the last
   * `keepCommits` are removed, after a snapshot at the new oldest revision. Reads of earlier revisions
   * then fail with `revision_compacted`; diffs from them become one whole-value replace.
   */
  async compact(doc: string, policy: RetentionPolicy): Promise<CompactionResult> {
    for (const [name, value] of Object.entries(policy)) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 0))
        throw new TypeError(`retention ${name} must be a non-negative integer`);
    }
    if (policy.keepCommits === undefined && policy.keepDays === undefined) {
      throw new TypeError('a retention policy needs keepCommits or keepDays (or both)');
    }
    const head = await this.#head(doc, false);
    let through = head.revision;
    if (policy.keepCommits !== undefined) through = Math.min(through, head.revision - policy.keepCommits);
    if (policy.keepDays !== undefined) {
      const cutoff = new Date(this.#clock().getTime() - policy.keepDays * 86_400_000).toISOString();
      through = Math.min(through, await this.store.revisionBefore(doc, cutoff));
    }
    if (through <= head.oldestRevision) return { doc, oldestRevision: head.oldestRevision, removed: 0 };
    await this.store.writeSnapshot(doc, {
      revision: through,
      value: await this.#plainAt(doc, head, through),
    });
    // The store removes commits in bounded batches, yielding between them: writers keep going.
    const removed = await this.store.compact(doc, through);
    const now = this.#heads.get(doc);
    if (now) {
      now.oldestRevision = Math.max(now.oldestRevision, through);
      now.lastSnapshot = Math.max(now.lastSnapshot, through);
    }
    this.#rewinds.clear();
    return { doc, oldestRevision: through, removed };
  }

  /**
   * Follows commits other processes make to the store (when the store can tell): cached heads catch up
   * and their commits are published like this process's own, so subscribers hear about a CLI
   * rollback too. Returns the stop function.
   */
  followStore(): () => void {
    const watch = this.store.watchExternalChanges?.bind(this.store);
    if (!watch) return () => {};
    return watch(() => {
      for (const doc of this.#heads.keys()) {
        this.refresh(doc).catch((error: unknown) =>
          this.#onBackgroundError(error, `refreshing "${doc}" after an external commit`),
        );
      }
    });
  }

  /** Writes a snapshot of the head's plain value now. Returns its revision. */
  async snapshot(doc: string): Promise<number> {
    const head = await this.#head(doc, false);
    await this.store.writeSnapshot(doc, { revision: head.revision, value: head.value });
    if (head.revision >= head.lastSnapshot) {
      head.lastSnapshot = head.revision;
      head.opsSinceSnapshot = 0;
    }
    return head.revision;
  }

  /** Forgets cached heads and entries (they reload from the store on next use). */
  invalidate(doc?: string): void {
    if (doc === undefined) {
      for (const d of this.#heads.keys()) this.#cache.evictDocument(d);
      this.#heads.clear();
    } else {
      this.#heads.delete(doc);
      this.#cache.evictDocument(doc);
    }
    this.#rewinds.clear();
  }

  /** Brings a cached head up to date with commits other processes made; emits their events. */
  async refresh(doc: string): Promise<DocumentState> {
    if (!this.#heads.has(doc)) return this.get(doc);
    // The head is read under the lock: a refresh queued behind another starts where that one ended,
    // so refreshes that overlap (one per change notification) publish each commit once.
    const next = await this.#locks.run(doc, async () => {
      // After this process's own commits on their way to the store: they are not another's.
      await this.#drain(doc);
      const head = this.#heads.get(doc);
      return head ? this.#reload(doc, head) : undefined;
    });
    if (!next) return this.get(doc);
    return { doc, revision: next.revision, value: next.value };
  }

  /** The handler-facing value of a document at head: plain, or its plain part with its collections. */
  async view(doc: string): Promise<DocumentState<unknown>> {
    const head = await this.#head(doc, false);
    return { doc, revision: head.revision, value: this.viewOf(head) };
  }

  // --- internals shared with the write session ---------------------------------------------------

  /** @internal */
  viewOf(head: Head): unknown {
    if (!head.collections) return head.value;
    head.view ??= collectionFacade(head.value, this.readersOf(head), false);
    return head.view;
  }

  /** @internal */
  readersOf(head: Head): Map<string, CollectionReader> {
    const readers = new Map<string, CollectionReader>();
    for (const [name, c] of head.collections ?? []) {
      const place = { doc: head.doc, name, definition: c.definition, size: c.size };
      const pending = head.overlay?.get(name);
      readers.set(
        name,
        pending
          ? new OverlayReader(this.store, this.#cache, place, pending, (read) => this.#steadyRead(read))
          : new CollectionReader(this.store, this.#cache, place),
      );
    }
    return readers;
  }

  // --- internals -------------------------------------------------------------------------------

  #checkWrites(write: FinishedWrite): void {
    // Sizes are the document's business (below); here each written value is checked for shape.
    const problem = findPatchProblem(write.patches, { ...this.limits, maxBytes: Number.POSITIVE_INFINITY });
    if (problem) {
      throw new StateError(
        'state_invalid',
        `The command wrote an invalid value at "${problem.path}": ${problem.problem}`,
        { details: { path: problem.path, problem: problem.problem } },
      );
    }
    write.size = this.#checkSize(write.head, write.plain, write.plainPatches);
    for (const entry of write.entries) {
      if (entry.value === undefined) continue;
      const bytes = jsonSize(entry.value);
      if (bytes > this.limits.maxBytes) {
        throw new StateError(
          'state_too_large',
          `Entry "${entry.key}" of "${entry.collection}" would be ${bytes} bytes; the limit is ${this.limits.maxBytes}`,
          { details: { collection: entry.collection, key: entry.key, bytes, limit: this.limits.maxBytes } },
        );
      }
    }
  }

  #checkSize(head: Head, next: JsonValue, patches: JsonPatch): number {
    let estimate = head.sizeEstimate;
    for (const op of patches) estimate += op.path.length + ('value' in op ? jsonSize(op.value) : 0) + 16;
    if (estimate <= this.limits.maxBytes) return estimate;
    const exact = jsonSize(next);
    if (exact > this.limits.maxBytes) {
      throw new StateError(
        'state_too_large',
        `The document would be ${exact} bytes; the limit is ${this.limits.maxBytes}`,
        { details: { bytes: exact, limit: this.limits.maxBytes } },
      );
    }
    return exact;
  }

  #checkRange(from: number, to: number): void {
    if (to - from > this.limits.maxRangeCommits) {
      throw new StateError(
        'range_too_large',
        `A diff may span at most ${this.limits.maxRangeCommits} commits`,
        {
          details: { from, to, limit: this.limits.maxRangeCommits },
        },
      );
    }
  }

  /**
   * Brings cached heads up to the store's: true when one was behind (and is now reloaded), so the
   * decision made on it must be made again. One cheap read per document; only refusals and no-op
   * writes pay it, commits are checked by the store's conditional write.
   */
  async #catchUp(heads: Map<string, Head>): Promise<boolean> {
    let behind = false;
    for (const [doc, head] of heads) {
      if ((await this.store.headRevision(doc)) === head.revision) continue;
      behind = true;
      heads.set(doc, await this.#reload(doc, head));
    }
    return behind;
  }

  /** Installs the head a commit made, updates the entry cache and publishes the commit. */
  #advance(write: FinishedWrite, commit: CommitRecord): void {
    this.#install(write, commit, this.#nextHead(write, commit, undefined));
  }

  /** Once `commit` is durable: `head` becomes the document's, its entries cached, the commit published. */
  #install(write: FinishedWrite, commit: CommitRecord, speculative: Head): void {
    // Readers of the durable head read the store alone: the overlay stays with the writers' head.
    const head: Head = speculative.overlay
      ? { ...speculative, view: undefined, overlay: undefined, from: speculative }
      : speculative;
    // A compaction or snapshot since a queued head was made moved these on the head it follows.
    const before = this.#heads.get(head.doc);
    if (before && before !== head) {
      head.oldestRevision = Math.max(head.oldestRevision, before.oldestRevision);
      head.lastSnapshot = Math.max(head.lastSnapshot, before.lastSnapshot);
    }
    for (const entry of write.entries) {
      this.#cache.store(EntryCache.key(head.doc, entry.collection, entry.key), entry.value);
    }
    this.#cache.counts.apply(head.doc, write.entries);
    this.#heads.set(head.doc, head);
    this.#emit(commitEvent(commit, false));
    this.#snapshotIfDue(head.doc, head);
  }

  /** The head a commit makes (installed by `#install` once the commit is durable). */
  #nextHead(write: FinishedWrite, commit: CommitRecord, overlay: Head['overlay']): Head {
    const { head } = write;
    let collections = head.collections;
    if (collections && write.entries.length > 0) {
      const next = new Map(collections);
      for (const [name, delta] of write.sizeDeltas) {
        const c = next.get(name)!;
        next.set(name, { definition: c.definition, size: c.size + delta });
      }
      collections = next;
    }
    const newHead: Head = {
      doc: head.doc,
      revision: commit.revision,
      value: write.plain,
      oldestRevision: head.oldestRevision,
      lastSnapshot: head.lastSnapshot,
      opsSinceSnapshot: head.opsSinceSnapshot + commit.patches.length,
      sizeEstimate: write.size,
      collections,
      ...(overlay ? { overlay } : {}),
    };
    return newHead;
  }

  async #compactedDiff(doc: string, head: Head, from: number, to: number): Promise<StateDiff> {
    this.#checkReadable(doc, head, to);
    const { value } = await this.get(doc, { revision: to });
    return { doc, from, to, patches: [{ op: 'replace', path: '', value }], compacted: true };
  }

  #checkReadable(doc: string, head: Head, revision: number): number {
    if (revision > head.revision) throw laterThanHead('revision', revision, head.revision);
    if (revision < head.oldestRevision) {
      throw new StateError(
        'revision_compacted',
        `Revision ${revision} of "${doc}" was compacted; the oldest readable is ${head.oldestRevision}`,
        { details: { revision, oldestRevision: head.oldestRevision } },
      );
    }
    return revision;
  }

  /** The plain value (for a document with collections: its plain part) at a past revision. */
  async #plainAt(doc: string, head: Head, revision: number): Promise<JsonValue> {
    if (revision === head.revision) return head.value;
    const snapshot = await this.store.readSnapshot(doc, revision);
    if (!snapshot) {
      throw new StateError('revision_compacted', `Revision ${revision} of "${doc}" is no longer kept`, {
        details: { revision },
      });
    }
    const names = head.collections?.keys() ?? [];
    const base = withoutMembers(deepFreeze(snapshot.value), names);
    if (snapshot.revision === revision) return base;
    const commits = await this.store.readCommits(doc, { after: snapshot.revision, to: revision });
    return applyPatch(base, plainOps(concatPatches(commits), head.collections));
  }

  /** How to take a collection's head entries back to `revision`: the inverse of every later commit. */
  async #rewind(doc: string, head: Head, revision: number): Promise<Rewind> {
    const id = `${doc}@${revision}`;
    let rewind = this.#rewinds.get(id);
    if (rewind && rewind.upTo === head.revision) return rewind;
    if (head.revision - revision > this.limits.maxRangeCommits) {
      throw new StateError(
        'range_too_large',
        `Pages at revision ${revision} are read through the ${this.limits.maxRangeCommits} commits after it; the head is ${head.revision}`,
        { details: { revision, head: head.revision, limit: this.limits.maxRangeCommits } },
      );
    }
    const from = rewind?.upTo ?? revision;
    const commits = await this.store.readCommits(doc, { after: from, to: head.revision });
    if (
      commits.length !== head.revision - from ||
      (commits.length > 0 && commits[0]!.revision !== from + 1)
    ) {
      throw new StateError(
        'revision_compacted',
        `History after revision ${revision} of "${doc}" was compacted`,
        {
          details: { revision, oldestRevision: head.oldestRevision },
        },
      );
    }
    rewind = (rewind ?? new Rewind(revision)).extend(commits, head.collections!, head.revision);
    this.#rewinds.set(id, rewind);
    if (this.#rewinds.size > 16) this.#rewinds.delete(this.#rewinds.keys().next().value!);
    return rewind;
  }

  async #head(doc: string, forWrite: boolean): Promise<Head> {
    const cached = this.#heads.get(doc);
    if (cached) return cached;
    let loading = this.#loading.get(doc);
    if (!loading) {
      loading = this.#load(doc, forWrite).finally(() => this.#loading.delete(doc));
      this.#loading.set(doc, loading);
    }
    if (!forWrite) return loading;
    // A concurrent reader's load does not create the document; a writer's must.
    return loading.catch((error: unknown) => {
      if (error instanceof StateError && error.code === 'not_found') return this.#load(doc, true);
      throw error;
    });
  }

  async #load(doc: string, createIfMissing: boolean): Promise<Head> {
    let loaded = await this.store.loadDocument(doc);
    if (!loaded) {
      const definition = this.#declared.get(doc);
      if (definition === undefined && !createIfMissing)
        throw new StateError('not_found', `No document "${doc}"`, { details: { doc } });
      await this.store.createDocument(doc, definition?.initial ?? {}, this.#clock().toISOString(), {
        collections: definition ? layoutOf(definition.collections) : {},
        version: definition?.version ?? 1,
        initialHash: hashValue(definition?.initial ?? {}),
      });
      loaded = await this.store.loadDocument(doc);
      if (!loaded) throw new RecoveryError('store_unavailable', `Document "${doc}" vanished after creation`);
    }
    const head = this.#headFrom(doc, loaded);
    this.#cache.headLoaded(doc);
    this.#heads.set(doc, head);
    this.#snapshotIfDue(doc, head);
    return head;
  }

  #headFrom(doc: string, loaded: LoadedDocument): Head {
    const declared = this.#declared.get(doc)?.collections ?? {};
    let collections: Map<string, CollectionHead> | undefined;
    for (const [name, stored] of Object.entries(loaded.collections)) {
      collections ??= new Map();
      const definition = Object.hasOwn(declared, name)
        ? declared[name]!
        : collection({ indexes: stored.indexes as never });
      collections.set(name, { definition, size: stored.size });
    }
    const base = withoutMembers(deepFreeze(loaded.snapshot.value), collections?.keys() ?? []);
    const value = applyPatch(base, plainOps(concatPatches(loaded.commits), collections));
    return {
      doc,
      revision: loaded.revision,
      value,
      oldestRevision: loaded.oldestRevision,
      lastSnapshot: loaded.snapshot.revision,
      opsSinceSnapshot: loaded.commits.reduce((n, c) => n + c.patches.length, 0),
      sizeEstimate: jsonSize(value),
      collections,
    };
  }

  /**
   * Brings a stored document to the collections its declaration names, keeping its value: members
   * that became collections move into entries, collections no longer declared fold back into the
   * plain value, and indexes whose fields changed are rebuilt. True when it changed the store.
   */
  async #reconcile(
    doc: string,
    definition: DocumentDefinition<unknown>,
    loaded: LoadedDocument,
  ): Promise<boolean> {
    const stored = loaded.collections;
    const declared = definition.collections;
    const same =
      Object.keys(stored).length === Object.keys(declared).length &&
      Object.entries(declared).every(
        ([name, c]) =>
          Object.hasOwn(stored, name) &&
          canonicalJson(stored[name]!.indexes as unknown as JsonValue) ===
            canonicalJson(c.indexSpec as unknown as JsonValue),
      );
    if (same) return false;
    const staleHead = this.#headFrom(doc, { ...loaded, collections: stored });
    let plain = staleHead.value as JsonObject;
    if (plain === null || typeof plain !== 'object' || Array.isArray(plain)) {
      throw new TypeError(
        `document "${doc}" holds ${JSON.stringify(plain)?.slice(0, 40)}, not an object: it cannot have collections`,
      );
    }
    plain = { ...plain };
    const entries: Record<string, Array<{ key: string; value: JsonValue; index: [string, string][] }>> = {};
    const indexRows: Record<string, Array<{ key: string; index: [string, string][] }>> = {};
    for (const [name, c] of Object.entries(declared)) {
      if (Object.hasOwn(stored, name)) {
        if (
          canonicalJson(stored[name]!.indexes as unknown as JsonValue) ===
          canonicalJson(c.indexSpec as unknown as JsonValue)
        )
          continue;
        indexRows[name] = (await this.#allEntries(doc, name)).map(({ key, value }) => ({
          key,
          index: indexRowsOf(c, value),
        }));
        continue;
      }
      const member = plain[name];
      delete plain[name];
      if (member === undefined) {
        entries[name] = [];
        continue;
      }
      if (member === null || typeof member !== 'object' || Array.isArray(member)) {
        throw new TypeError(
          `document "${doc}" holds a ${Array.isArray(member) ? 'list' : typeof member} at "${name}", which the app declares a collection: it needs an object of entries`,
        );
      }
      entries[name] = Object.entries(member).map(([key, value]) => {
        checkEntryKey(name, key);
        return { key, value, index: indexRowsOf(c, value) };
      });
    }
    for (const name of Object.keys(stored)) {
      if (Object.hasOwn(declared, name)) continue;
      plain[name] = Object.fromEntries(
        (await this.#allEntries(doc, name)).map(({ key, value }) => [key, value]),
      );
    }
    this.#cache.counts.writeStarted();
    try {
      await this.store.restructure({
        doc,
        revision: loaded.revision,
        plain,
        layout: layoutOf(declared),
        entries,
        indexRows,
      });
      this.invalidate(doc);
    } finally {
      this.#cache.counts.writeEnded();
    }
    return true;
  }

  async #allEntries(doc: string, name: string): Promise<Array<{ key: string; value: JsonValue }>> {
    const out: Array<{ key: string; value: JsonValue }> = [];
    let after: string | undefined;
    for (;;) {
      const rows = await this.store.listEntries(doc, name, { after, limit: 1000 });
      out.push(...rows);
      if (rows.length < 1000) return out;
      after = rows.at(-1)!.key;
    }
  }

  /** Folds in commits made elsewhere since `head`; falls back to a full load after compaction. */
  async #reload(doc: string, head: Head): Promise<Head> {
    const commits = await this.store.readCommits(doc, { after: head.revision });
    if (commits.length > 0 && commits[0]!.revision !== head.revision + 1) return this.#fullReload(doc);
    // Their index rows are not known here: the counts are read again.
    if (commits.length > 0) this.#cache.counts.evictDocument(doc);
    const patches = concatPatches(commits);
    let collections = head.collections;
    if (collections) {
      const sizes = new Map<string, number>();
      for (const op of patches) {
        const at = splitCollectionPath(op.path, collections);
        if (!at) continue;
        // A change to a whole collection at once (only from history older than collections) reloads all.
        if (at.key === undefined) return this.#fullReload(doc);
        this.#cache.evict(doc, EntryCache.key(doc, at.collection, at.key));
        if (at.rest !== '' || op.op === 'replace') continue;
        sizes.set(at.collection, (sizes.get(at.collection) ?? 0) + (op.op === 'add' ? 1 : -1));
      }
      if (sizes.size > 0) {
        const next = new Map(collections);
        for (const [name, delta] of sizes)
          next.set(name, { ...next.get(name)!, size: next.get(name)!.size + delta });
        collections = next;
      }
    }
    const value = applyPatch(head.value, plainOps(patches, collections));
    const last = commits.at(-1);
    const next: Head = {
      ...head,
      view: undefined,
      overlay: undefined,
      from: undefined,
      revision: last?.revision ?? head.revision,
      value,
      opsSinceSnapshot: head.opsSinceSnapshot + patches.length,
      sizeEstimate: head.sizeEstimate + jsonSize(patches as unknown as JsonValue),
      collections,
    };
    this.#heads.set(doc, next);
    for (const commit of commits) this.#emit(commitEvent(commit, true));
    return next;
  }

  async #fullReload(doc: string): Promise<Head> {
    this.invalidate(doc);
    return this.#head(doc, false);
  }

  #snapshotIfDue(doc: string, head: Head): void {
    if (
      head.revision - head.lastSnapshot >= this.#snapshotEvery ||
      head.opsSinceSnapshot >= SNAPSHOT_AFTER_OPS
    )
      this.#scheduleSnapshot(doc, head);
  }

  #scheduleSnapshot(doc: string, head: Head): void {
    head.lastSnapshot = head.revision;
    head.opsSinceSnapshot = 0;
    const snapshot = { revision: head.revision, value: head.value };
    setImmediate(() => {
      this.store.writeSnapshot(doc, snapshot).catch((error: unknown) => {
        head.lastSnapshot = 0;
        this.#onBackgroundError(error, `snapshot of "${doc}" at revision ${snapshot.revision}`);
      });
    });
  }

  #emit(event: CommitEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#onBackgroundError(error, `commit listener for "${event.doc}"`);
      }
    }
  }
}

function decodeCursorMismatch(cursor: string): StateError {
  return new StateError('invalid_cursor', 'The cursor belongs to another collection', {
    details: { cursor: cursor.slice(0, 64) },
  });
}

/**
 * The inverse changes of the commits after a revision, per collection entry, newest first: applied
 * to an entry's head value they give its value at that revision.
 */
class Rewind {
  readonly revision: number;
  upTo: number;
  readonly #ops = new Map<string, Map<string, JsonPatchOperation[]>>();

  constructor(revision: number) {
    this.revision = revision;
    this.upTo = revision;
  }

  /** Adds commits after `upTo` (ascending): their inverses go before the ones already held. */
  extend(commits: readonly CommitRecord[], collections: ReadonlyMap<string, unknown>, head: number): this {
    const added = new Map<string, Map<string, JsonPatchOperation[]>>();
    for (let i = commits.length - 1; i >= 0; i--) {
      for (const op of commits[i]!.inverse) {
        const at = splitCollectionPath(op.path, collections);
        if (!at) continue;
        if (at.key === undefined)
          throw new StateError(
            'revision_compacted',
            'This history replaced a whole collection; read the document whole',
          );
        const byKey = getOrCreate(added, at.collection, () => new Map<string, JsonPatchOperation[]>());
        getOrCreate(byKey, at.key, () => []).push({ ...op, path: at.rest });
      }
    }
    for (const [name, byKey] of added) {
      const mine = getOrCreate(this.#ops, name, () => new Map<string, JsonPatchOperation[]>());
      for (const [key, ops] of byKey) mine.set(key, [...ops, ...(mine.get(key) ?? [])]);
    }
    this.upTo = head;
    return this;
  }

  keys(collection: string): Iterable<string> {
    return this.#ops.get(collection)?.keys() ?? [];
  }

  valueAt(collection: string, key: string, headValue: JsonValue | undefined): JsonValue | undefined {
    let value = headValue;
    for (const op of this.#ops.get(collection)?.get(key) ?? []) {
      if (op.path === '') value = op.op === 'remove' ? undefined : op.value;
      else if (value !== undefined) value = applyPatch(deepFreeze(value), [op]);
    }
    return value;
  }
}

/** What one document's part of a write amounts to. */
interface FinishedWrite {
  head: Head;
  patches: JsonPatch;
  inverse: JsonPatch;
  /** The new plain value (the whole value of a plain document). */
  plain: JsonValue;
  plainPatches: JsonPatch;
  entries: import('./store.js').EntryWrite[];
  sizeDeltas: Array<[collection: string, delta: number]>;
  size: number;
}

/**
 * One attempt of a write: drafts made on first use, per document and per collection entry, turned
 * into patches, inverse patches and entry writes when the handler is done.
 */
class Session implements WriteSession {
  readonly #heads: ReadonlyMap<string, Head>;
  readonly #state: StateManager;
  readonly #docs = new Map<string, DocumentWrite>();

  constructor(heads: ReadonlyMap<string, Head>, state: StateManager) {
    this.#heads = heads;
    this.#state = state;
  }

  #write(doc: string): DocumentWrite {
    let write = this.#docs.get(doc);
    if (!write) {
      const head = this.#heads.get(doc);
      if (!head) throw new TypeError(`this write did not declare document "${doc}"`);
      write = new DocumentWrite(head, this.#state);
      this.#docs.set(doc, write);
    }
    return write;
  }

  draft(doc: string): unknown {
    return this.#write(doc).draft();
  }

  /** The collection whose live entry draft `value` is, if it is one. */
  ownerOfDraft(value: object): CollectionDraft | undefined {
    for (const write of this.#docs.values()) {
      const owner = write.ownerOfDraft(value);
      if (owner) return owner;
    }
    return undefined;
  }

  base(doc: string): DocumentState<unknown> {
    const head = this.#heads.get(doc);
    if (!head) throw new TypeError(`this write did not declare document "${doc}"`);
    return { doc, revision: head.revision, value: this.#state.viewOf(head) };
  }

  apply(doc: string, patches: JsonPatch): Promise<void> {
    return this.#write(doc).apply(patches);
  }

  async finish(): Promise<FinishedWrite[]> {
    const out: FinishedWrite[] = [];
    for (const write of this.#docs.values()) out.push(await write.finish());
    return out;
  }

  /** One document's (possibly empty) write, for a commit that must happen without changes. */
  finishOne(doc: string): Promise<FinishedWrite> {
    return this.#write(doc).finish();
  }
}

class DocumentWrite {
  readonly head: Head;
  readonly #state: StateManager;
  #plain:
    | { draft: unknown; finalize: () => [JsonValue, JsonPatchOperation[], JsonPatchOperation[]] }
    | undefined;
  readonly #collections = new Map<string, CollectionDraft>();
  #facade: unknown;

  constructor(head: Head, state: StateManager) {
    this.head = head;
    this.#state = state;
  }

  /** The collection whose live entry draft `value` is, if it is one. */
  ownerOfDraft(value: object): CollectionDraft | undefined {
    for (const collection of this.#collections.values()) if (collection.ownsDraft(value)) return collection;
    return undefined;
  }

  #plainDraft(): unknown {
    if (!this.#plain) {
      const base = this.head.value;
      if (base === null || typeof base !== 'object') {
        throw new StateError(
          'state_invalid',
          `Document "${this.head.doc}" holds a ${base === null ? 'null' : typeof base}, which cannot be drafted`,
        );
      }
      const [draft, finalize] = create(base as object, MUTATIVE_OPTIONS);
      this.#plain = {
        draft,
        finalize: finalize as unknown as () => [JsonValue, JsonPatchOperation[], JsonPatchOperation[]],
      };
    }
    return this.#plain.draft;
  }

  #collection(name: string): CollectionDraft {
    let draft = this.#collections.get(name);
    if (!draft) {
      draft = new CollectionDraft(this.#state.readersOf(this.head).get(name)!);
      this.#collections.set(name, draft);
    }
    return draft;
  }

  draft(): unknown {
    if (!this.head.collections) return this.#plainDraft();
    this.#facade ??= collectionFacade(
      this.#plainDraft(),
      {
        get: (name: string) => (this.head.collections!.has(name) ? this.#collection(name) : undefined),
      },
      true,
    );
    return this.#facade;
  }

  async apply(patches: JsonPatch): Promise<void> {
    const collections = this.head.collections;
    const plain: JsonPatch = [];
    for (const op of patches) {
      const at = collections && splitCollectionPath(op.path, collections);
      if (!at) {
        plain.push(op);
        continue;
      }
      if (plain.length > 0) applyToDraft(this.#plainDraft(), plain.splice(0), { mutable: true });
      const target = this.#collection(at.collection);
      if (at.key === undefined) {
        // A whole collection replaced at once (history older than collections): entry by entry.
        if (
          op.op === 'remove' ||
          op.value === null ||
          typeof op.value !== 'object' ||
          Array.isArray(op.value)
        )
          throw new StateError(
            'state_invalid',
            `A patch replaced collection "${at.collection}" with a non-object`,
          );
        let cursor: string | undefined;
        do {
          const page = await target.list({ cursor, limit: 1000 });
          for (const { key } of page.entries) if (!Object.hasOwn(op.value, key)) target.delete(key);
          cursor = page.cursor;
        } while (cursor);
        for (const [key, value] of Object.entries(op.value)) target.set(key, value);
        continue;
      }
      if (at.rest === '') {
        if (op.op === 'remove') target.delete(at.key);
        else target.set(at.key, op.value);
        continue;
      }
      const entry = await target.get(at.key);
      if (entry === undefined)
        throw new StateError(
          'state_invalid',
          `A patch addressed entry "${at.key}" of "${at.collection}", which does not exist`,
        );
      applyToDraft(entry, [{ ...op, path: at.rest }], { mutable: true });
    }
    if (plain.length > 0) applyToDraft(this.#plainDraft(), plain, { mutable: true });
  }

  async finish(): Promise<FinishedWrite> {
    let plain = this.head.value;
    let plainPatches: JsonPatch = [];
    let plainInverse: JsonPatch = [];
    if (this.#plain) {
      const [next, patches, inverse] = this.#plain.finalize();
      plain = next;
      plainPatches = normalizePatch(patches);
      plainInverse = normalizePatch(inverse);
      freezeChanged(plain, plainPatches);
    }
    const patches: JsonPatch = [...plainPatches];
    const inverse: JsonPatch = [...plainInverse];
    const entries: import('./store.js').EntryWrite[] = [];
    const sizeDeltas: Array<[string, number]> = [];
    for (const [name, draft] of this.#collections) {
      const changes = await draft.finish();
      for (const op of changes.patches) patches.push(op);
      for (const op of changes.inverse) inverse.push(op);
      for (const write of changes.writes) {
        if (write.value !== undefined) write.value = deepFreeze(write.value);
        entries.push(write);
      }
      if (changes.sizeDelta !== 0) sizeDeltas.push([name, changes.sizeDelta]);
    }
    return {
      head: this.head,
      patches,
      inverse,
      plain,
      plainPatches,
      entries,
      sizeDeltas,
      size: this.head.sizeEstimate,
    };
  }
}

/**
 * A document with collections as handlers see it: the plain part's members as they are, and each
 * collection's name giving its collection object. Assigning a collection member is refused.
 */
function collectionFacade(
  target: unknown,
  collections: { get(name: string): unknown },
  writable: boolean,
): unknown {
  return new Proxy(target as object, {
    get(object, property, receiver) {
      if (typeof property === 'string') {
        const found = collections.get(property);
        if (found !== undefined) return found;
      }
      return Reflect.get(object, property, receiver === undefined ? object : object);
    },
    set(object, property, value) {
      if (typeof property === 'string' && collections.get(property) !== undefined)
        throw new TypeError(
          `"${property}" is a collection: change its entries with set(), delete() and get()`,
        );
      if (!writable) return false;
      return Reflect.set(object, property, value);
    },
    deleteProperty(object, property) {
      if (typeof property === 'string' && collections.get(property) !== undefined)
        throw new TypeError(`"${property}" is a collection: remove its entries with delete()`);
      return writable ? Reflect.deleteProperty(object, property) : false;
    },
  });
}

/**
 * A handler may return parts of its draft (`return { task }`); drafts die when the write finishes.
 * Before it finishes, an entry's draft is kept (added to `kept`) and any other draft is copied while
 * still alive; once `finished`, each kept draft becomes the entry's finished value. Only containers
 * holding drafts are copied.
 */
function resolveDrafts<T>(
  value: T,
  session: Session,
  kept: Map<object, CollectionDraft>,
  finished: boolean,
): T {
  if (value === null || typeof value !== 'object') return value;
  // First: a finished draft is a revoked proxy, which throws on any other look.
  const owner = kept.get(value);
  if (owner) return finished ? (owner.finishedDraft(value) as T) : value;
  if (isDraft(value)) {
    const collection = session.ownerOfDraft(value);
    if (!collection) return current(value as object) as T;
    kept.set(value, collection);
    return value;
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const resolved = resolveDrafts(value[i], session, kept, finished);
      if (resolved === value[i]) continue;
      out ??= [...value];
      out[i] = resolved;
    }
    return (out ?? value) as T;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  let out: Record<string, unknown> | undefined;
  for (const [key, child] of Object.entries(value)) {
    const resolved = resolveDrafts(child, session, kept, finished);
    if (resolved === child) continue;
    out ??= { ...(value as Record<string, unknown>) };
    out[key] = resolved;
  }
  return (out ?? value) as T;
}

/** An outcome the handler or the rules decided on the state (not a timeout, a cancel or a bug). */
function isDecision(error: unknown): boolean {
  return (
    isCoreMcpError(error) &&
    error.spec.expose &&
    error.code !== 'timeout' &&
    error.code !== 'cancelled' &&
    error.spec.family !== 'recovery'
  );
}

function idempotencySlotOf(principal: string, key: string): string {
  return `${principal}\u0000${key}`;
}

function hashValue(value: JsonValue): string {
  return sha256(canonicalJson(value));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
  }
  return value;
}

function concatPatches(commits: readonly CommitRecord[]): JsonPatch {
  if (commits.length === 1) return commits[0]!.patches;
  const out: JsonPatch = [];
  for (const commit of commits) for (const op of commit.patches) out.push(op);
  return out;
}

function normalizePatch(patch: JsonPatchOperation[]): JsonPatch {
  for (const op of patch) {
    // mutative gives a root replacement an array path even in string-path mode.
    if (typeof op.path !== 'string') op.path = '';
  }
  return patch;
}

function jsonSize(value: JsonValue): number {
  return JSON.stringify(value)?.length ?? 0;
}
