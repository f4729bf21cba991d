import { create, current, isDraft } from 'mutative';
import { type Principal, SYSTEM_PRINCIPAL } from './access.js';
import { DEFAULT_DOCUMENT, DOCUMENT_ID_PATTERN } from './commands.js';
import { RecoveryError, RevisionConflictError, StateError } from './errors.js';
import {
  findCommit,
  type RollbackResult,
  rollbackMutation,
  type UndoResult,
  undoMutation,
} from './history.js';
import { timeOrderedId } from './ids.js';
import { deepFreeze, findJsonProblem, type JsonLimits, type JsonObject, type JsonValue } from './json.js';
import { KeyedMutex } from './mutex.js';
import {
  applyPatch,
  findPatchProblem,
  freezeChanged,
  hashPatch,
  type JsonPatch,
  type JsonPatchOperation,
} from './patch.js';
import type { AuditRecord, CommitRecord, DocumentInfo, IdempotencyRecord, Store } from './store.js';
import { CallSignal } from './timeout.js';

/** Bounds on documents and the changes made to them. */
export interface StateLimits extends JsonLimits {
  /** Largest serialized document. */
  maxBytes: number;
  /** Most commits one diff or history read may span. */
  maxRangeCommits: number;
}

export const DEFAULT_STATE_LIMITS: StateLimits = {
  maxDepth: 64,
  maxStringLength: 1024 * 1024,
  maxCollectionSize: 100_000,
  maxBytes: 16 * 1024 * 1024,
  maxRangeCommits: 10_000,
};

export interface StateManagerOptions {
  /** Declared documents and their initial values. Without any, a `default` document exists. */
  documents?: Record<string, JsonValue>;
  limits?: Partial<StateLimits>;
  /** Write a snapshot every this many commits (default 1,000); bounds replay at start-up. */
  snapshotEvery?: number;
  /** Re-runs after losing a commit race to another process, before giving up (default 8). */
  maxConflictRetries?: number;
  clock?: () => Date;
  /** Reports failures that happen off the request path (snapshot writes). */
  onBackgroundError?: (error: unknown, what: string) => void;
}

/** A document at one revision. The value is deeply frozen and shared: never mutate it. */
export interface DocumentState<S = JsonValue> {
  doc: string;
  revision: number;
  value: S;
}

/** The change between two revisions, as RFC 6902 patches that turn the value at `from` into `to`. */
export interface StateDiff {
  doc: string;
  from: number;
  to: number;
  patches: JsonPatch;
  /**
   * True when `from` lies before the retention point: `patches` is then one `replace` of the whole
   * value at `to`, not the composed history.
   */
  compacted: boolean;
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

/** Published after every commit, in revision order per document. */
export interface CommitEvent {
  doc: string;
  revision: number;
  commandId: string;
  command: string;
  principal: string;
  at: string;
  patches: JsonPatch;
  /** True when the commit was made by another process and discovered on reload. */
  external: boolean;
}

/** One attempt's work inside a transaction; may run more than once if another process commits first. */
export type Mutation<R> = (draft: unknown, base: DocumentState) => R | Promise<R>;

export interface TransactRequest<R> {
  doc: string;
  principal: Principal;
  command: string;
  commandId?: string;
  requestId?: string;
  /** The input as it goes into the audit record (already redacted). */
  auditInput?: JsonValue;
  traceparent?: string;
  /** Commit only if the document is at this revision; otherwise a `RevisionConflictError`. */
  expectedRevision?: number;
  idempotency?: { key: string; fingerprint: string };
  /** Bounds an asynchronous mutation: past it the transaction fails with `timeout`, nothing committed. */
  timeoutMs?: number;
  /** The caller's cancellation and the handler's abort signal. */
  call?: CallSignal;
  mutate: Mutation<R>;
  /** Inspects the patches before commit (path rules); throw to refuse. */
  checkPatches?: (patches: JsonPatch) => void;
}

export interface TransactResult<R> {
  doc: string;
  /** The revision after the call: new if committed, unchanged otherwise. */
  revision: number;
  committed: boolean;
  result: R;
  commandId: string;
  patches: JsonPatch;
  audit: AuditRecord | undefined;
  /** Set when another call with the same idempotency key won the race. */
  duplicate: IdempotencyRecord | undefined;
}

interface Head {
  revision: number;
  value: JsonValue;
  oldestRevision: number;
  lastSnapshot: number;
  /** An upper bound on the serialized size; recomputed exactly when it crosses the limit. */
  sizeEstimate: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

// Freezing is done by freezeChanged() on what the commit created, not by walking the whole tree.
const MUTATIVE_OPTIONS = {
  enablePatches: { pathAsArray: false, arrayLengthAssignment: false },
  enableAutoFreeze: false,
} as const;

function checkRevisionArgument(name: string, revision: unknown): number {
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) {
    throw new StateError('invalid_revision', `${name} must be a non-negative integer`, {
      details: { [name]: typeof revision === 'number' ? revision : String(revision) },
    });
  }
  return revision;
}

/**
 * Documents with integer revisions and a durable history. Every change is a commit carrying forward
 * and inverse RFC 6902 patches, written with its audit record in one store transaction. Heads are
 * cached in memory; snapshots bound the replay needed to rebuild them.
 */
export class StateManager {
  readonly store: Store;
  readonly limits: StateLimits;
  readonly #declared: Map<string, JsonValue>;
  readonly #heads = new Map<string, Head>();
  readonly #loading = new Map<string, Promise<Head>>();
  readonly #locks = new KeyedMutex();
  readonly #listeners = new Set<(event: CommitEvent) => void>();
  readonly #snapshotEvery: number;
  readonly #maxRetries: number;
  readonly #clock: () => Date;
  readonly #onBackgroundError: (error: unknown, what: string) => void;
  #conflicts = 0;

  constructor(store: Store, options: StateManagerOptions = {}) {
    this.store = store;
    this.limits = { ...DEFAULT_STATE_LIMITS, ...options.limits };
    const declared = options.documents ?? {};
    this.#declared = new Map(
      Object.entries(Object.keys(declared).length > 0 ? declared : { [DEFAULT_DOCUMENT]: {} }),
    );
    for (const [doc, initial] of this.#declared) {
      if (!DOCUMENT_ID_PATTERN.test(doc))
        throw new TypeError(`document id "${doc}" must match ${DOCUMENT_ID_PATTERN}`);
      const problem = findJsonProblem(initial, this.limits);
      if (problem) throw new TypeError(`initial value of "${doc}" at "${problem.path}": ${problem.problem}`);
    }
    this.#snapshotEvery = options.snapshotEvery ?? 1000;
    this.#maxRetries = options.maxConflictRetries ?? 8;
    this.#clock = options.clock ?? (() => new Date());
    this.#onBackgroundError = options.onBackgroundError ?? (() => {});
  }

  /** Creates declared documents that do not exist yet. */
  async open(): Promise<void> {
    const at = this.#clock().toISOString();
    for (const [doc, initial] of this.#declared) await this.store.createDocument(doc, initial, at);
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

  /** The revision and value of a document at head, or at `revision`. */
  async get<S = JsonValue>(doc: string, options: { revision?: number } = {}): Promise<DocumentState<S>> {
    const head = await this.#head(doc, false);
    if (options.revision === undefined || options.revision === head.revision) {
      return { doc, revision: head.revision, value: head.value as S };
    }
    const revision = this.#checkReadable(doc, head, checkRevisionArgument('revision', options.revision));
    return { doc, revision, value: (await this.#valueAt(doc, revision)) as S };
  }

  /** Patches that turn the value at `from` into the value at `to` (default: head). */
  async diff(doc: string, from: number, to?: number): Promise<StateDiff> {
    const head = await this.#head(doc, false);
    checkRevisionArgument('from', from);
    const target = to === undefined ? head.revision : checkRevisionArgument('to', to);
    if (target > head.revision) {
      throw new StateError(
        'invalid_revision',
        `Revision ${target} is later than the head (${head.revision})`,
        {
          details: { to: target, head: head.revision },
        },
      );
    }
    if (from > target) {
      throw new StateError('invalid_revision', '`from` must not be later than `to`', {
        details: { from, to: target },
      });
    }
    if (from === target) return { doc, from, to: target, patches: [], compacted: false };
    if (from < head.oldestRevision) return this.#compactedDiff(doc, head, from, target);
    if (target - from > this.limits.maxRangeCommits) {
      throw new StateError(
        'range_too_large',
        `A diff may span at most ${this.limits.maxRangeCommits} commits`,
        {
          details: { from, to: target, limit: this.limits.maxRangeCommits },
        },
      );
    }
    const commits = await this.store.readCommits(doc, { after: from, to: target });
    if (commits.length !== target - from || commits[0]?.revision !== from + 1) {
      // Compaction ran between the head check and the read: answer as for a compacted range.
      return this.#compactedDiff(doc, head, from, target);
    }
    const patches: JsonPatch = [];
    for (const commit of commits) for (const op of commit.patches) patches.push(op);
    return { doc, from, to: target, patches, compacted: false };
  }

  /**
   * Commits after revision `since`, oldest first, at most `limit`. `next` is the `since` of the next
   * page when there is one. Commits before the retention point are gone; `oldestRevision` says where
   * history starts.
   */
  async history(doc: string, since: number, limit: number): Promise<HistoryPage> {
    const head = await this.#head(doc, false);
    checkRevisionArgument('since', since);
    if (since > head.revision) {
      throw new StateError(
        'invalid_revision',
        `Revision ${since} is later than the head (${head.revision})`,
        {
          details: { since, head: head.revision },
        },
      );
    }
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
      doc,
      principal: options.principal ?? SYSTEM_PRINCIPAL,
      command: options.command ?? 'state.update',
      expectedRevision: options.expectedRevision,
      mutate: (draft) => mutate(draft as S),
    });
  }

  /**
   * The pipeline's execute-and-commit step. Runs `mutate` on a draft of the head, checks what it
   * wrote, and commits patches + inverse + audit record (+ idempotency record) in one store
   * transaction. Writers to one document are serialized in this process; if another process commits
   * first, the head is reloaded and `mutate` runs again, a bounded number of times.
   */
  async transact<R>(request: TransactRequest<R>): Promise<TransactResult<R>> {
    const { doc } = request;
    if (!DOCUMENT_ID_PATTERN.test(doc)) throw new StateError('not_found', `No document "${doc}"`);
    return this.#locks.run(doc, async () => {
      const commandId = request.commandId ?? timeOrderedId();
      for (let attempt = 0; ; attempt++) {
        const head = await this.#head(doc, true);
        if (request.expectedRevision !== undefined && request.expectedRevision !== head.revision) {
          throw new RevisionConflictError(doc, request.expectedRevision, head.revision);
        }
        const base: DocumentState = { doc, revision: head.revision, value: head.value };
        const [next, patches, inverse, result] = await this.#runMutation(base, request);
        this.#checkWrites(patches, result);
        freezeChanged(next, patches);
        request.checkPatches?.(patches);
        if (patches.length === 0) {
          return {
            doc,
            revision: head.revision,
            committed: false,
            result,
            commandId,
            patches,
            audit: undefined,
            duplicate: undefined,
          };
        }
        const size = this.#checkSize(head, next, patches);
        const at = this.#clock().toISOString();
        const revision = head.revision + 1;
        const commit: CommitRecord = {
          doc,
          revision,
          commandId,
          command: request.command,
          principal: request.principal.id,
          at,
          patches,
          inverse,
        };
        if (request.requestId !== undefined) commit.requestId = request.requestId;
        if (request.idempotency) commit.idempotencyKey = request.idempotency.key;
        const outcome = await this.store.commit({
          commit,
          expectedRevision: head.revision,
          audit: {
            at,
            requestId: request.requestId ?? commandId,
            principal: request.principal.id,
            via: request.principal.via,
            command: request.command,
            input: request.auditInput ?? null,
            outcome: 'ok',
            doc,
            revision,
            commandId,
            patchHash: hashPatch(patches),
            ...(request.traceparent === undefined ? {} : { traceparent: request.traceparent }),
          },
          idempotency: request.idempotency && {
            principal: request.principal.id,
            key: request.idempotency.key,
            fingerprint: request.idempotency.fingerprint,
            command: request.command,
            doc,
            revision,
            commandId,
            outcome: 'ok',
            response: result as JsonValue,
            at,
          },
        });
        if (outcome.status === 'duplicate') {
          return {
            doc,
            revision: outcome.record.revision,
            committed: false,
            result,
            commandId,
            patches: [],
            audit: undefined,
            duplicate: outcome.record,
          };
        }
        if (outcome.status === 'conflict') {
          this.#conflicts++;
          await this.#reload(doc, head);
          if (request.expectedRevision !== undefined) {
            throw new RevisionConflictError(doc, request.expectedRevision, outcome.currentRevision);
          }
          if (attempt >= this.#maxRetries) {
            throw new RecoveryError('conflict_retries_exhausted', undefined, {
              details: { attempts: attempt + 1 },
            });
          }
          continue;
        }
        const newHead: Head = {
          revision,
          value: next,
          oldestRevision: head.oldestRevision,
          lastSnapshot: head.lastSnapshot,
          sizeEstimate: size,
        };
        this.#heads.set(doc, newHead);
        this.#emit({
          doc,
          revision,
          commandId,
          command: request.command,
          principal: request.principal.id,
          at,
          patches,
          external: false,
        });
        if (revision - newHead.lastSnapshot >= this.#snapshotEvery) this.#scheduleSnapshot(doc, newHead);
        return {
          doc,
          revision,
          committed: true,
          result,
          commandId,
          patches,
          audit: outcome.audit,
          duplicate: undefined,
        };
      }
    });
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
      doc,
      principal: options.principal ?? SYSTEM_PRINCIPAL,
      command: 'state.rollback',
      auditInput: { doc, toRevision },
      ...(options.requestId === undefined ? {} : { requestId: options.requestId }),
      mutate: rollbackMutation(this, doc, toRevision),
    });
  }

  /**
   * Undoes one commit by applying its inverse as a new commit; refused with `undo_conflict` (naming the
   * later commits) when later commits changed the same paths.
   */
  async undo(commandId: string, options: HistoryCallOptions = {}): Promise<TransactResult<UndoResult>> {
    const target = await findCommit(this, commandId);
    return this.transact({
      doc: target.doc,
      principal: options.principal ?? SYSTEM_PRINCIPAL,
      command: 'state.undo',
      auditInput: { commandId },
      ...(options.requestId === undefined ? {} : { requestId: options.requestId }),
      mutate: undoMutation(this, target),
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
    return this.#locks.run(doc, async () => {
      const head = await this.#head(doc, false);
      let through = head.revision;
      if (policy.keepCommits !== undefined) through = Math.min(through, head.revision - policy.keepCommits);
      if (policy.keepDays !== undefined) {
        const cutoff = new Date(this.#clock().getTime() - policy.keepDays * 86_400_000).toISOString();
        through = Math.min(through, await this.store.revisionBefore(doc, cutoff));
      }
      if (through <= head.oldestRevision) return { doc, oldestRevision: head.oldestRevision, removed: 0 };
      await this.store.writeSnapshot(doc, { revision: through, value: await this.#valueAt(doc, through) });
      const removed = await this.store.compact(doc, through);
      head.oldestRevision = through;
      head.lastSnapshot = Math.max(head.lastSnapshot, through);
      return { doc, oldestRevision: through, removed };
    });
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

  /** Writes a snapshot of the head now. Returns its revision. */
  async snapshot(doc: string): Promise<number> {
    const head = await this.#head(doc, false);
    await this.store.writeSnapshot(doc, { revision: head.revision, value: head.value });
    head.lastSnapshot = Math.max(head.lastSnapshot, head.revision);
    return head.revision;
  }

  /** Forgets cached heads (they reload from the store on next use). */
  invalidate(doc?: string): void {
    if (doc === undefined) this.#heads.clear();
    else this.#heads.delete(doc);
  }

  /** Brings a cached head up to date with commits other processes made; emits their events. */
  async refresh(doc: string): Promise<DocumentState> {
    const head = this.#heads.get(doc);
    if (!head) return this.get(doc);
    const next = await this.#locks.run(doc, () => this.#reload(doc, head));
    return { doc, revision: next.revision, value: next.value };
  }

  // --- internals -------------------------------------------------------------------------------

  async #runMutation<R>(
    base: DocumentState,
    request: TransactRequest<R>,
  ): Promise<[JsonValue, JsonPatch, JsonPatch, R]> {
    let result!: R;
    const produced = create(
      base.value as object,
      (draft) => {
        const out = request.mutate(draft, base);
        if (out instanceof Promise) {
          return out.then((value) => {
            result = resolveDrafts(value);
          });
        }
        result = resolveDrafts(out);
        return undefined;
      },
      MUTATIVE_OPTIONS,
    ) as unknown;
    let triple: [object, JsonPatchOperation[], JsonPatchOperation[]];
    if (produced instanceof Promise) {
      const call = request.call ?? new CallSignal(undefined);
      triple = await call.bound(produced, request.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    } else {
      triple = produced as [object, JsonPatchOperation[], JsonPatchOperation[]];
    }
    return [triple[0] as JsonValue, normalizePatch(triple[1]), normalizePatch(triple[2]), result];
  }

  #checkWrites(patches: JsonPatch, result: unknown): void {
    // Sizes are the document's business (#checkSize); here each written value is checked for shape.
    const problem = findPatchProblem(patches, { ...this.limits, maxBytes: Number.POSITIVE_INFINITY });
    if (problem) {
      throw new StateError(
        'state_invalid',
        `The command wrote an invalid value at "${problem.path}": ${problem.problem}`,
        {
          details: { path: problem.path, problem: problem.problem },
        },
      );
    }
    if (result !== undefined) {
      const resultProblem = findJsonProblem(result, this.limits);
      if (resultProblem) {
        throw new StateError(
          'state_invalid',
          `The command returned a result that is not plain JSON at "${resultProblem.path}": ${resultProblem.problem}`,
          {
            details: { path: `result${resultProblem.path}`, problem: resultProblem.problem },
          },
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
        {
          details: { bytes: exact, limit: this.limits.maxBytes },
        },
      );
    }
    return exact;
  }

  async #compactedDiff(doc: string, head: Head, from: number, to: number): Promise<StateDiff> {
    this.#checkReadable(doc, head, to);
    const value = to === head.revision ? head.value : await this.#valueAt(doc, to);
    return { doc, from, to, patches: [{ op: 'replace', path: '', value }], compacted: true };
  }

  #checkReadable(doc: string, head: Head, revision: number): number {
    if (revision > head.revision) {
      throw new StateError(
        'invalid_revision',
        `Revision ${revision} is later than the head (${head.revision})`,
        {
          details: { revision, head: head.revision },
        },
      );
    }
    if (revision < head.oldestRevision) {
      throw new StateError(
        'revision_compacted',
        `Revision ${revision} of "${doc}" was compacted; the oldest readable is ${head.oldestRevision}`,
        {
          details: { revision, oldestRevision: head.oldestRevision },
        },
      );
    }
    return revision;
  }

  async #valueAt(doc: string, revision: number): Promise<JsonValue> {
    const snapshot = await this.store.readSnapshot(doc, revision);
    if (!snapshot) {
      throw new StateError('revision_compacted', `Revision ${revision} of "${doc}" is no longer kept`, {
        details: { revision },
      });
    }
    if (snapshot.revision === revision) return deepFreeze(snapshot.value);
    const commits = await this.store.readCommits(doc, { after: snapshot.revision, to: revision });
    return applyPatch(deepFreeze(snapshot.value), concatPatches(commits));
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
      const initial = this.#declared.get(doc);
      if (initial === undefined && !createIfMissing)
        throw new StateError('not_found', `No document "${doc}"`, { details: { doc } });
      await this.store.createDocument(doc, initial ?? {}, this.#clock().toISOString());
      loaded = await this.store.loadDocument(doc);
      if (!loaded) throw new RecoveryError('store_unavailable', `Document "${doc}" vanished after creation`);
    }
    const value = applyPatch(deepFreeze(loaded.snapshot.value), concatPatches(loaded.commits));
    const head: Head = {
      revision: loaded.revision,
      value,
      oldestRevision: loaded.oldestRevision,
      lastSnapshot: loaded.snapshot.revision,
      sizeEstimate: jsonSize(value),
    };
    this.#heads.set(doc, head);
    if (head.revision - head.lastSnapshot >= this.#snapshotEvery) this.#scheduleSnapshot(doc, head);
    return head;
  }

  /** Folds in commits made elsewhere since `head`; falls back to a full load after compaction. */
  async #reload(doc: string, head: Head): Promise<Head> {
    const commits = await this.store.readCommits(doc, { after: head.revision });
    if (commits.length > 0 && commits[0]!.revision !== head.revision + 1) {
      this.#heads.delete(doc);
      return this.#head(doc, false);
    }
    const patches = concatPatches(commits);
    const value = applyPatch(head.value, patches);
    const size = head.sizeEstimate + jsonSize(patches as unknown as JsonValue);
    const last = commits.at(-1);
    const next: Head = { ...head, revision: last?.revision ?? head.revision, value, sizeEstimate: size };
    this.#heads.set(doc, next);
    for (const commit of commits) {
      this.#emit({
        doc,
        revision: commit.revision,
        commandId: commit.commandId,
        command: commit.command,
        principal: commit.principal,
        at: commit.at,
        patches: commit.patches,
        external: true,
      });
    }
    return next;
  }

  #scheduleSnapshot(doc: string, head: Head): void {
    head.lastSnapshot = head.revision;
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

/**
 * A handler may return parts of its draft (`return { task }`); drafts die when the recipe ends, so
 * they are turned into plain values while still alive. Only containers holding drafts are copied.
 */
function resolveDrafts<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (isDraft(value)) return current(value as object) as T;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const resolved = resolveDrafts(value[i]);
      if (resolved === value[i]) continue;
      out ??= [...value];
      out[i] = resolved;
    }
    return (out ?? value) as T;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  let out: Record<string, unknown> | undefined;
  for (const [key, child] of Object.entries(value)) {
    const resolved = resolveDrafts(child);
    if (resolved === child) continue;
    out ??= { ...(value as Record<string, unknown>) };
    out[key] = resolved;
  }
  return (out ?? value) as T;
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
