import type { Draft } from 'mutative';
import { deepFreeze, FORBIDDEN_KEYS, findJsonProblem, type JsonObject, type JsonValue } from './json.js';
import type { JsonPatch } from './patch.js';
import type { CommitRecord } from './store.js';

/** Document ids: they appear in resource URIs, so they stay URI-safe. */
export const DOCUMENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export const DEFAULT_DOCUMENT = 'default';

/** Collection and index names: short identifiers. */
const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

const COLLECTION_BRAND = Symbol.for('coremcp.collection');

/** A value an index orders by: what an indexed field of an entry may hold. */
export type IndexValue = string | number | boolean | null;

/** A field an index orders by: a top-level member of the entry, or a JSON Pointer into it. */
export type IndexField<E> = (keyof E & string) | `/${string}`;

export interface CollectionSpec<E> {
  /**
   * Secondary indexes, by name: the entry fields each orders by, most significant first. A handler
   * asks `count(index, prefix)` and `query(index, { prefix })` with values for the leading fields.
   * Indexed fields hold strings, numbers, booleans or null (a missing field counts as null).
   */
  indexes?: Record<string, ReadonlyArray<IndexField<E>>>;
}

/**
 * A keyed set of entries kept at a top-level member of a document (`tasks`, `messages`). Its entries
 * are stored one by one, so reading, adding, changing or removing one costs the same at a million
 * entries as at a hundred. In the document's JSON value (reads, patches, history, path rules) it is
 * an object from key to entry, as if it were a plain member.
 */
export interface CollectionDefinition<E = JsonObject> {
  readonly [COLLECTION_BRAND]: true;
  /** Index name → JSON Pointer tokens of each field. */
  readonly indexes: Readonly<Record<string, ReadonlyArray<readonly string[]>>>;
  /** The declared index fields as written, for the store's record of what it built. */
  readonly indexSpec: Readonly<Record<string, readonly string[]>>;
  /** Phantom member carrying the entry type; never set. */
  readonly entryType?: E;
}

/** Declares a collection; place it in a document's initial value: `{ tasks: collection<Task>() }`. */
export function collection<E = JsonObject>(spec: CollectionSpec<E> = {}): CollectionDefinition<E> {
  const indexes: Record<string, ReadonlyArray<readonly string[]>> = {};
  const indexSpec: Record<string, readonly string[]> = {};
  for (const [name, fields] of Object.entries(spec.indexes ?? {})) {
    if (!NAME_PATTERN.test(name)) throw new TypeError(`index name "${name}" must match ${NAME_PATTERN}`);
    if (!Array.isArray(fields) || fields.length === 0 || fields.length > 8) {
      throw new TypeError(`index "${name}" needs 1 to 8 fields`);
    }
    const parsed = (fields as readonly string[]).map((field) => {
      if (typeof field !== 'string' || field.length === 0 || field.length > 256)
        throw new TypeError(`index "${name}": a field is a member name or a JSON Pointer`);
      const tokens = field.startsWith('/')
        ? field
            .slice(1)
            .split('/')
            .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
        : [field];
      for (const token of tokens)
        if (FORBIDDEN_KEYS.has(token)) throw new TypeError(`index "${name}": "${token}" is not allowed`);
      return Object.freeze(tokens);
    });
    indexes[name] = Object.freeze(parsed);
    indexSpec[name] = Object.freeze([...(fields as readonly string[])]);
  }
  return Object.freeze({
    [COLLECTION_BRAND]: true as const,
    indexes: Object.freeze(indexes),
    indexSpec: Object.freeze(indexSpec),
  });
}

export function isCollectionDefinition(value: unknown): value is CollectionDefinition<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[COLLECTION_BRAND] === true
  );
}

/** A migration: changes a stored document from the version before to the one it is keyed by. */
export type DocumentMigration<S> = (draft: DocumentDraft<S>) => void | Promise<void>;

export interface DocumentOptions<S> {
  /**
   * The document's schema version (default 1). A stored document at an older version is brought up
   * to it by `migrations` at start (or by `coremcp migrate`); one at a newer version refuses to start.
   */
  version?: number;
  /**
   * By the version each brings the document to: `{ 2: (draft) => { draft.settings.maxTitle = 200 } }`.
   * Every step from 2 to `version` is needed. Each runs once per stored document, as its own audited
   * commit (`state.migrate`, by `system`). A document created now starts at `version` from `initial`.
   */
  migrations?: Record<number, DocumentMigration<S>>;
}

/** A named document with its initial value; `S` types the drafts and views of commands bound to it. */
export interface DocumentDefinition<S = JsonObject> {
  readonly id: string;
  /** The initial value without its collections (they start empty). */
  readonly initial: JsonValue;
  /** The document's collections, by member name. Empty for a plain document. */
  readonly collections: Readonly<Record<string, CollectionDefinition<unknown>>>;
  /** The schema version the app declares (1 unless raised with migrations). */
  readonly version: number;
  readonly migrations: Readonly<Record<number, DocumentMigration<unknown>>>;
  /** Phantom member carrying the document type; never set. */
  readonly shape?: S;
}

/**
 * Declares a document. The initial value is what it holds at revision 0; members made with
 * `collection()` are collections, which start empty. `options.version` and `options.migrations`
 * change documents already stored.
 */
export function defineDocument<S>(
  id: string,
  initial: S,
  options: DocumentOptions<S> = {},
): DocumentDefinition<S> {
  if (!DOCUMENT_ID_PATTERN.test(id)) {
    throw new TypeError(`document id "${id}" must match ${DOCUMENT_ID_PATTERN}`);
  }
  const version = options.version ?? 1;
  if (!Number.isSafeInteger(version) || version < 1)
    throw new TypeError(`document "${id}": version must be a positive integer`);
  const migrations = options.migrations ?? {};
  for (const key of Object.keys(migrations)) {
    const to = Number(key);
    if (!Number.isSafeInteger(to) || to < 2 || to > version)
      throw new TypeError(
        `document "${id}": a migration is keyed by the version it brings to, 2 to ${version}, not ${key}`,
      );
    if (typeof migrations[to] !== 'function')
      throw new TypeError(`document "${id}": migration ${to} must be a function`);
  }
  for (let to = 2; to <= version; to++) {
    if (!migrations[to])
      throw new TypeError(`document "${id}" is at version ${version} but has no migration to version ${to}`);
  }
  const collections: Record<string, CollectionDefinition<unknown>> = {};
  let plain: unknown = initial;
  if (typeof initial === 'object' && initial !== null && !Array.isArray(initial)) {
    const rest: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(initial)) {
      if (!isCollectionDefinition(value)) {
        rest[key] = value;
        continue;
      }
      if (!NAME_PATTERN.test(key))
        throw new TypeError(`collection name "${key}" in document "${id}" must match ${NAME_PATTERN}`);
      collections[key] = value;
    }
    plain = rest;
  }
  const problem = findJsonProblem(plain);
  if (problem)
    throw new TypeError(`initial value of document "${id}" at "${problem.path}": ${problem.problem}`);
  return Object.freeze({
    id,
    initial: deepFreeze(structuredClone(plain)) as JsonValue,
    collections: Object.freeze(collections),
    version,
    migrations: Object.freeze({ ...migrations }) as Readonly<Record<number, DocumentMigration<unknown>>>,
  });
}

// --- what handlers see --------------------------------------------------------------------------

/** One entry of a collection page. */
export interface Entry<E> {
  key: string;
  value: Readonly<E>;
}

/** A page of entries; pass `cursor` back for the next one (absent on the last page). */
export interface EntryPage<E> {
  entries: Array<Entry<E>>;
  cursor?: string;
}

export interface ListOptions {
  /** From a previous page's `cursor`. */
  cursor?: string;
  /** Entries per page: 1 to 1,000 (default 100). */
  limit?: number;
}

export interface QueryOptions extends ListOptions {
  /** Values for the index's leading fields: only entries matching them. */
  prefix?: readonly IndexValue[];
  /** Index order (default) or its reverse. */
  order?: 'asc' | 'desc';
}

/** A collection as a query, or a write command's `state`, sees it: read-only. */
export interface ReadableCollection<E> {
  get(key: string): Promise<Readonly<E> | undefined>;
  has(key: string): Promise<boolean>;
  /** How many entries the collection holds, or the index holds under `prefix`. */
  count(index?: string, prefix?: readonly IndexValue[]): Promise<number>;
  /** Entries in key order. */
  list(options?: ListOptions): Promise<EntryPage<E>>;
  /** Entries in the order of an index, optionally only those under a prefix of its fields. */
  query(index: string, options?: QueryOptions): Promise<EntryPage<E>>;
}

/**
 * A collection in a write command's draft. `get` returns a draft of the entry: change it in place.
 * Reads see the command's own changes.
 */
export interface WritableCollection<E> extends Omit<ReadableCollection<E>, 'get'> {
  get(key: string): Promise<Draft<E> | undefined>;
  /** Adds or replaces an entry. */
  set(key: string, value: E): void;
  /** Removes an entry (nothing happens if there is none). */
  delete(key: string): void;
}

type CollectionKeys<S> = {
  [K in keyof S]-?: S[K] extends CollectionDefinition<unknown> ? K : never;
}[keyof S];

type EntryOf<C> = C extends CollectionDefinition<infer E> ? E : never;

/** What a write handler's `draft` is for a document of type `S`: its collections become `WritableCollection`s. */
export type DocumentDraft<S> = [CollectionKeys<S>] extends [never]
  ? Draft<S>
  : Draft<Omit<S, CollectionKeys<S>>> & {
      readonly [K in CollectionKeys<S>]: WritableCollection<EntryOf<S[K]>>;
    };

/** What a handler's `state` is for a document of type `S`: frozen, its collections `ReadableCollection`s. */
export type DocumentView<S> = [CollectionKeys<S>] extends [never]
  ? Readonly<S>
  : Readonly<Omit<S, CollectionKeys<S>>> & {
      readonly [K in CollectionKeys<S>]: ReadableCollection<EntryOf<S[K]>>;
    };

// --- state as the state manager reports it ------------------------------------------------------

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

/** Published after every commit, in revision order per document. */
export type CommitEvent = Pick<
  CommitRecord,
  'doc' | 'revision' | 'commandId' | 'command' | 'principal' | 'at' | 'patches'
> & {
  /** True when the commit was made by another process and discovered on reload. */
  external: boolean;
};

export function commitEvent(commit: CommitRecord, external: boolean): CommitEvent {
  const { doc, revision, commandId, command, principal, at, patches } = commit;
  return { doc, revision, commandId, command, principal, at, patches, external };
}
