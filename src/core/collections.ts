import { create, current } from 'mutative';
import type {
  CollectionDefinition,
  Entry,
  EntryPage,
  IndexValue,
  ListOptions,
  QueryOptions,
} from './document.js';
import { StateError } from './errors.js';
import { deepFreeze, escapePointerToken, FORBIDDEN_KEYS, type JsonValue } from './json.js';
import type { JsonPatchOperation } from './patch.js';
import type { EntryWrite, IndexRow, Store } from './store.js';

/** Entry keys: non-empty strings up to 512 characters, never a prototype-reaching name. */
export const MAX_ENTRY_KEY_LENGTH = 512;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function checkEntryKey(collection: string, key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_ENTRY_KEY_LENGTH) {
    throw new StateError(
      'state_invalid',
      `An entry key of "${collection}" is a string of 1-${MAX_ENTRY_KEY_LENGTH} characters`,
      { details: { collection } },
    );
  }
  if (FORBIDDEN_KEYS.has(key)) {
    throw new StateError('state_invalid', `Key "${key}" is not allowed`, { details: { collection, key } });
  }
  return key;
}

export function checkPageSize(limit: unknown): number {
  if (limit === undefined) return DEFAULT_PAGE_SIZE;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
    throw new StateError('range_too_large', `A page holds 1 to ${MAX_PAGE_SIZE} entries`, {
      details: { limit: MAX_PAGE_SIZE },
    });
  }
  return limit;
}

// --- order-preserving index keys ----------------------------------------------------------------
//
// An index key is its field values encoded so that comparing the strings (as UTF-8 bytes, which is
// code point order: SQLite's BINARY, PostgreSQL's "C" collation, `compareKeys` in memory) orders
// them as tuples: null < false < true < numbers < strings. No NUL characters (PostgreSQL text
// cannot hold them). A string ends with \x01\x01; \x00 and \x01 inside it are escaped.

const TAG_NULL = 'a';
const TAG_FALSE = 'b';
const TAG_TRUE = 'c';
const TAG_NUMBER = 'd';
const TAG_STRING = 'e';
/** Sorts after every tag: the exclusive upper bound of a prefix range. */
const AFTER_PREFIX = '\x7f';

const numberView = new DataView(new ArrayBuffer(8));

function encodeNumber(value: number): string {
  numberView.setFloat64(0, value === 0 ? 0 : value); // -0 and 0 are one key
  let hi = numberView.getUint32(0);
  let lo = numberView.getUint32(4);
  if (hi & 0x80000000) {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
  } else {
    hi = (hi | 0x80000000) >>> 0;
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

export function encodeIndexValues(values: readonly IndexValue[]): string {
  let out = '';
  for (const value of values) {
    if (value === null) out += TAG_NULL;
    else if (value === false) out += TAG_FALSE;
    else if (value === true) out += TAG_TRUE;
    else if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new TypeError('index values are finite numbers');
      out += TAG_NUMBER + encodeNumber(value);
    } else if (typeof value === 'string') {
      // \x01 first: escaping \x00 introduces \x01s that must stay as they are.
      out += `${TAG_STRING}${value.replaceAll('\x01', '\x01\x03').replaceAll('\x00', '\x01\x02')}\x01\x01`;
    } else {
      throw new TypeError('index values are strings, numbers, booleans or null');
    }
  }
  return out;
}

/** Compares strings by code point (UTF-8 byte order), as the SQL stores compare index keys. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      // UTF-16 order differs from code point order only between a surrogate and U+E000..U+FFFF.
      const xs = x >= 0xd800 && x <= 0xdfff;
      const ys = y >= 0xd800 && y <= 0xdfff;
      if (xs !== ys) return xs ? 1 : -1;
      return x - y;
    }
  }
  return a.length - b.length;
}

/** The index keys an entry has, one per index; undefined value (a removed entry) has none. */
export function indexRowsOf(
  definition: CollectionDefinition<unknown>,
  value: JsonValue | undefined,
): IndexRow[] {
  if (value === undefined) return [];
  const rows: IndexRow[] = [];
  for (const [index, fields] of Object.entries(definition.indexes)) {
    const values: IndexValue[] = [];
    for (const tokens of fields) values.push(indexedField(value, tokens, index));
    rows.push([index, encodeIndexValues(values)]);
  }
  return rows;
}

function indexedField(value: JsonValue, tokens: readonly string[], index: string): IndexValue {
  let node: JsonValue | undefined = value;
  for (const token of tokens) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return null;
    node = Object.hasOwn(node, token) ? node[token] : undefined;
  }
  if (node === undefined || node === null) return null;
  if (typeof node === 'object' || (typeof node === 'number' && !Number.isFinite(node))) {
    throw new StateError(
      'state_invalid',
      `Index "${index}" orders by /${tokens.join('/')}, which must hold a string, finite number, boolean or null`,
      { details: { index, field: `/${tokens.map(escapePointerToken).join('/')}` } },
    );
  }
  return node;
}

export interface IndexRange {
  /** Inclusive lower bound of the index key. */
  from: string;
  /** Exclusive upper bound of the index key. */
  to: string;
  /** Continue past this (index key, entry key) in scan order. */
  after?: readonly [string, string];
  limit: number;
  order: 'asc' | 'desc';
}

export function prefixRange(prefix: readonly IndexValue[] | undefined): { from: string; to: string } {
  const from = encodeIndexValues(prefix ?? []);
  return { from, to: from + AFTER_PREFIX };
}

export function checkIndex(
  collection: string,
  definition: CollectionDefinition<unknown>,
  index: unknown,
): string {
  if (typeof index !== 'string' || !Object.hasOwn(definition.indexes, index)) {
    throw new StateError(
      'unknown_index',
      `Collection "${collection}" has no index "${String(index).slice(0, 64)}"`,
      {
        details: { collection, index: String(index).slice(0, 64), indexes: Object.keys(definition.indexes) },
      },
    );
  }
  return index;
}

export function checkPrefix(definition: CollectionDefinition<unknown>, index: string, prefix: unknown) {
  if (prefix === undefined) return undefined;
  const fields = definition.indexes[index]!;
  if (
    !Array.isArray(prefix) ||
    prefix.length > fields.length ||
    !prefix.every((v) => v === null || ['string', 'boolean'].includes(typeof v) || Number.isFinite(v))
  ) {
    throw new StateError(
      'invalid_query',
      `A prefix of index "${index}" is up to ${fields.length} strings, numbers, booleans or nulls`,
      { details: { index } },
    );
  }
  return prefix as IndexValue[];
}

// --- cursors --------------------------------------------------------------------------------------

/** What a cursor remembers: the last position returned, and for state pages the revision read at. */
export interface CursorState {
  /** Entry key of the last entry returned. */
  k: string;
  /** Index key of the last entry returned (index queries). */
  i?: string;
  /** The revision the pages are read at (state pages). */
  r?: number;
  /** The collection (state pages). */
  c?: string;
}

export function encodeCursor(state: CursorState): string {
  return Buffer.from(JSON.stringify(state)).toString('base64url');
}

export function decodeCursor(cursor: unknown, expect: { index?: boolean; revision?: boolean }): CursorState {
  const bad = () =>
    new StateError('invalid_cursor', 'The cursor is not one this server issued for this read', {
      details: { cursor: String(cursor).slice(0, 64) },
    });
  if (
    typeof cursor !== 'string' ||
    cursor.length === 0 ||
    cursor.length > 4096 ||
    !/^[A-Za-z0-9_-]+$/.test(cursor)
  )
    throw bad();
  let state: unknown;
  try {
    state = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw bad();
  const { k, i, r, c } = state as Record<string, unknown>;
  if (typeof k !== 'string' || k.length > MAX_ENTRY_KEY_LENGTH) throw bad();
  if (expect.index ? typeof i !== 'string' : i !== undefined) throw bad();
  if (expect.revision) {
    if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 0 || typeof c !== 'string') throw bad();
  } else if (r !== undefined || c !== undefined) throw bad();
  return state as CursorState;
}

// --- the entry cache ------------------------------------------------------------------------------

const ABSENT = Symbol('absent');
/** Keys per store read when many entries are loaded at once. */
const ENTRY_READ_BATCH = 500;
type Cached = JsonValue | typeof ABSENT;

/**
 * Head values of entries this process has read or written, least recently used evicted first.
 * Values are deeply frozen and shared. A key known not to exist is cached too.
 */
export class EntryCache {
  readonly #map = new Map<string, Cached>();
  readonly #max: number;
  /**
   * Per document, moved whenever cached entries are forgotten for being out of date (another
   * process's commit, a reload): a store read that spans one may have read them as they were.
   */
  readonly #epochs = new Map<string, number>();
  /** Index counts of the same heads (none when entries are not cached either). */
  readonly counts: IndexCounts;

  constructor(max: number) {
    this.#max = Math.max(0, max);
    this.counts = new IndexCounts(this.#max === 0 ? 0 : Math.min(this.#max, MAX_CACHED_COUNTS));
  }

  static key(doc: string, collection: string, key: string): string {
    return `${doc}\u0000${collection}\u0000${key}`;
  }

  /** The cached value, `null`-able JSON; `undefined` when not cached, `ABSENT` when known missing. */
  lookup(id: string): Cached | undefined {
    const value = this.#map.get(id);
    if (value === undefined) return undefined;
    // Refresh its place in the LRU order.
    this.#map.delete(id);
    this.#map.set(id, value);
    return value;
  }

  store(id: string, value: JsonValue | undefined): void {
    if (this.#max === 0) return;
    this.#map.delete(id);
    this.#map.set(id, value === undefined ? ABSENT : value);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value;
      if (oldest !== undefined) this.#map.delete(oldest);
    }
  }

  /** Taken before a store read of a document's entries, for `fill`. */
  readToken(doc: string): number {
    return this.#epochs.get(doc) ?? 0;
  }

  /**
   * Caches an entry a store read found, unless it is no longer news: the read spanned a forgetting
   * of the document's entries (it may have read them before the change that caused it), or the key
   * was cached meanwhile (a commit installed since the read began has the newer value).
   */
  fill(doc: string, token: number, id: string, value: JsonValue | undefined): void {
    if (this.readToken(doc) !== token || this.#map.has(id)) return;
    this.store(id, value);
  }

  /** Forgets an entry another process changed. */
  evict(doc: string, id: string): void {
    this.#outdated(doc);
    this.#map.delete(id);
  }

  /** Forgets every entry and index count of one document. */
  evictDocument(doc: string): void {
    this.#outdated(doc);
    const prefix = `${doc}\u0000`;
    for (const id of this.#map.keys()) if (id.startsWith(prefix)) this.#map.delete(id);
    this.counts.evictDocument(doc);
  }

  /**
   * A document's head was (re)loaded from the store: reads made from earlier heads while it loaded
   * may have read entries and counts older than it, and are not cached.
   */
  headLoaded(doc: string): void {
    this.#outdated(doc);
    this.counts.evictDocument(doc);
  }

  #outdated(doc: string): void {
    this.#epochs.set(doc, this.readToken(doc) + 1);
  }

  get size(): number {
    return this.#map.size;
  }
}

export { ABSENT };

/** Index ranges whose counts are kept at once; past it they are all forgotten (and read again). */
const MAX_CACHED_COUNTS = 10_000;

/**
 * Counts of index prefixes at the installed heads, so a handler's `count` (a WIP limit, a quota) is
 * not a store read on every call. A count is read from the store once, then kept current by every
 * commit this process installs: each index row a commit removes or adds moves the counts of the
 * prefixes it falls under, found from the row's own key, so a commit costs the same however many
 * counts are kept. A count read while one of this process's writes is between the store and its
 * install (the store then holds rows the heads do not) is used but not kept. Commits of other
 * processes forget the document's counts when the head follows them, as they do its entries.
 */
export class IndexCounts {
  /** `doc \0 collection \0 index` → encoded prefix → count. */
  readonly #counts = new Map<string, Map<string, number>>();
  readonly #max: number;
  #size = 0;
  /** Writes whose rows may be in the store before their heads are installed. */
  #writing = 0;
  /** Moves on every write start and end and every eviction: a read that spans one is not kept. */
  #generation = 0;

  constructor(max: number) {
    this.#max = max;
  }

  static #id(doc: string, collection: string, index: string): string {
    return `${doc}\u0000${collection}\u0000${index}`;
  }

  lookup(doc: string, collection: string, index: string, prefix: string): number | undefined {
    return this.#counts.get(IndexCounts.#id(doc, collection, index))?.get(prefix);
  }

  /** Taken before a store read; undefined when what it reads could not be kept. */
  readToken(): number | undefined {
    return this.#max === 0 || this.#writing > 0 ? undefined : this.#generation;
  }

  /** Keeps a count read from the store, if nothing changed while it was read. */
  keep(
    token: number | undefined,
    doc: string,
    collection: string,
    index: string,
    prefix: string,
    count: number,
  ): void {
    if (token === undefined || token !== this.#generation || this.#writing > 0) return;
    if (this.#size >= this.#max) this.#clear();
    const id = IndexCounts.#id(doc, collection, index);
    let counts = this.#counts.get(id);
    if (!counts) {
      counts = new Map();
      this.#counts.set(id, counts);
    }
    if (!counts.has(prefix)) this.#size++;
    counts.set(prefix, count);
  }

  /** A write of this process is about to reach the store. */
  writeStarted(): void {
    this.#writing++;
    this.#generation++;
  }

  /** …and its heads are installed (or it wrote nothing). */
  writeEnded(): void {
    this.#writing--;
    this.#generation++;
  }

  /** Moves the kept counts by a commit's index rows, as its head is installed. */
  apply(doc: string, writes: readonly EntryWrite[]): void {
    if (this.#size === 0) return;
    for (const write of writes) {
      for (const [index, ikey] of write.indexRemove) this.#move(doc, write.collection, index, ikey, -1);
      for (const [index, ikey] of write.indexAdd) this.#move(doc, write.collection, index, ikey, 1);
    }
  }

  evictDocument(doc: string): void {
    this.#generation++;
    const prefix = `${doc}\u0000`;
    for (const [id, counts] of this.#counts) {
      if (!id.startsWith(prefix)) continue;
      this.#size -= counts.size;
      this.#counts.delete(id);
    }
  }

  #move(doc: string, collection: string, index: string, ikey: string, by: number): void {
    const counts = this.#counts.get(IndexCounts.#id(doc, collection, index));
    if (!counts) return;
    // The prefixes a key falls under end where one of its encoded values does.
    for (const end of valueEnds(ikey)) {
      const prefix = ikey.slice(0, end);
      const count = counts.get(prefix);
      if (count !== undefined) counts.set(prefix, count + by);
    }
  }

  #clear(): void {
    this.#counts.clear();
    this.#size = 0;
  }
}

/** Where each value of an encoded index key ends, from 0 (the empty prefix) to the key's length. */
export function valueEnds(ikey: string): number[] {
  const ends = [0];
  let i = 0;
  while (i < ikey.length) {
    const tag = ikey[i++];
    if (tag === TAG_NUMBER) i += 16;
    else if (tag === TAG_STRING) {
      // Up to the \x01\x01 that ends the string; \x01\x02 and \x01\x03 are escapes inside it.
      while (i < ikey.length) {
        const pair = ikey.charCodeAt(i) === 1;
        i += pair ? 2 : 1;
        if (pair && ikey.charCodeAt(i - 1) === 1) break;
      }
    }
    ends.push(Math.min(i, ikey.length));
  }
  return ends;
}

// --- reading a collection at head -----------------------------------------------------------------

export type CollectionStore = Pick<Store, 'readEntries' | 'listEntries' | 'queryIndex' | 'countIndex'>;

/** Where a collection lives, and how big it is at the revision being read. */
export interface CollectionPlace {
  doc: string;
  name: string;
  definition: CollectionDefinition<unknown>;
  /** Entries at this revision. */
  size: number;
}

/** A collection at head, read through the cache from the store. */
export class CollectionReader {
  readonly #store: CollectionStore;
  readonly #cache: EntryCache;
  readonly place: CollectionPlace;

  constructor(store: CollectionStore, cache: EntryCache, place: CollectionPlace) {
    this.#store = store;
    this.#cache = cache;
    this.place = place;
  }

  async get(key: string): Promise<JsonValue | undefined> {
    const { doc, name } = this.place;
    checkEntryKey(name, key);
    const id = EntryCache.key(doc, name, key);
    const cached = this.#cache.lookup(id);
    if (cached !== undefined) return cached === ABSENT ? undefined : cached;
    const token = this.#cache.readToken(doc);
    const found = (await this.#store.readEntries(doc, name, [key])).get(key);
    const value = found === undefined ? undefined : deepFreeze(found);
    this.#cache.fill(doc, token, id, value);
    return value;
  }

  async has(key: string): Promise<boolean> {
    return (await this.get(key)) !== undefined;
  }

  /** Several entries: those not cached in one store read per `ENTRY_READ_BATCH` keys. */
  async getMany(keys: readonly string[]): Promise<Map<string, JsonValue | undefined>> {
    const { doc, name } = this.place;
    const out = new Map<string, JsonValue | undefined>();
    const missing: string[] = [];
    for (const key of keys) {
      checkEntryKey(name, key);
      const cached = this.#cache.lookup(EntryCache.key(doc, name, key));
      if (cached === undefined) missing.push(key);
      else out.set(key, cached === ABSENT ? undefined : cached);
    }
    for (let i = 0; i < missing.length; i += ENTRY_READ_BATCH) {
      const batch = missing.slice(i, i + ENTRY_READ_BATCH);
      const token = this.#cache.readToken(doc);
      const found = await this.#store.readEntries(doc, name, batch);
      for (const key of batch) {
        const stored = found.get(key);
        const value = stored === undefined ? undefined : deepFreeze(stored);
        this.#cache.fill(doc, token, EntryCache.key(doc, name, key), value);
        out.set(key, value);
      }
    }
    return out;
  }

  async count(index?: string, prefix?: readonly IndexValue[]): Promise<number> {
    if (index === undefined) return this.place.size;
    const { doc, name, definition } = this.place;
    checkIndex(name, definition, index);
    const range = prefixRange(checkPrefix(definition, index, prefix));
    const counts = this.#cache.counts;
    const kept = counts.lookup(doc, name, index, range.from);
    if (kept !== undefined) return kept;
    const token = counts.readToken();
    const count = await this.#store.countIndex(doc, name, index, range);
    counts.keep(token, doc, name, index, range.from, count);
    return count;
  }

  async list(options: ListOptions = {}): Promise<EntryPage<JsonValue>> {
    const limit = checkPageSize(options.limit);
    const after = options.cursor === undefined ? undefined : decodeCursor(options.cursor, {}).k;
    const rows = await this.#store.listEntries(this.place.doc, this.place.name, { after, limit });
    return listPage(rows, limit);
  }

  async query(index: string, options: QueryOptions = {}): Promise<EntryPage<JsonValue>> {
    const { doc, name, definition } = this.place;
    checkIndex(name, definition, index);
    const limit = checkPageSize(options.limit);
    const range = prefixRange(checkPrefix(definition, index, options.prefix));
    const cursor = options.cursor === undefined ? undefined : decodeCursor(options.cursor, { index: true });
    const rows = await this.#store.queryIndex(doc, name, index, {
      ...range,
      after: cursor && [cursor.i!, cursor.k],
      limit,
      order: options.order ?? 'asc',
    });
    return queryPage(rows, limit);
  }
}

/**
 * A collection as it will be once commits still on their way to the store are durable (group
 * commit): their entry writes (`undefined`: removed) laid over the durable entries, which are read
 * as ever. Only a writer executing on a speculative head reads through one; the entries never reach
 * the shared cache before their commit is durable.
 */
export class OverlayReader extends CollectionReader {
  readonly #values: ReadonlyMap<string, JsonValue | undefined>;
  readonly #durable: CollectionReader;
  readonly #steady: <T>(read: () => Promise<T>) => Promise<T>;

  /**
   * `steady` runs a read while no batch is being written: a count, list or query merges store rows
   * with the pending writes, which is right only if none of them becomes durable halfway through.
   */
  constructor(
    store: CollectionStore,
    cache: EntryCache,
    place: CollectionPlace,
    values: ReadonlyMap<string, JsonValue | undefined>,
    steady: <T>(read: () => Promise<T>) => Promise<T>,
  ) {
    super(store, cache, place);
    this.#values = values;
    this.#durable = new CollectionReader(store, cache, place);
    this.#steady = steady;
  }

  /**
   * The pending writes as a draft over the durable entries: its reads merge them like a handler's.
   * A fresh one per read: a draft remembers the durable values it loaded, which a batch made durable
   * since would have outdated.
   */
  get #overlay(): CollectionDraft {
    const draft = new CollectionDraft(this.#durable);
    for (const [key, value] of this.#values) {
      if (value === undefined) draft.delete(key);
      else draft.set(key, value);
    }
    return draft;
  }

  override async get(key: string): Promise<JsonValue | undefined> {
    checkEntryKey(this.place.name, key);
    if (this.#values.has(key)) return this.#values.get(key);
    return super.get(key);
  }

  override async getMany(keys: readonly string[]): Promise<Map<string, JsonValue | undefined>> {
    const durable = await super.getMany(keys.filter((key) => !this.#values.has(key)));
    const out = new Map<string, JsonValue | undefined>();
    for (const key of keys) out.set(key, this.#values.has(key) ? this.#values.get(key) : durable.get(key));
    return out;
  }

  override async count(index?: string, prefix?: readonly IndexValue[]): Promise<number> {
    // The speculative size already counts the pending writes.
    if (index === undefined) return this.place.size;
    return this.#steady(() => this.#overlay.count(index, prefix));
  }

  override async list(options: ListOptions = {}): Promise<EntryPage<JsonValue>> {
    return this.#steady(() => this.#overlay.list(options));
  }

  override async query(index: string, options: QueryOptions = {}): Promise<EntryPage<JsonValue>> {
    return this.#steady(() => this.#overlay.query(index, options));
  }
}

function listPage(rows: Array<{ key: string; value: JsonValue }>, limit: number): EntryPage<JsonValue> {
  const entries = rows.map((row) => ({ key: row.key, value: deepFreeze(row.value) }));
  const last = entries.at(-1);
  return rows.length === limit && last ? { entries, cursor: encodeCursor({ k: last.key }) } : { entries };
}

function queryPage(
  rows: Array<{ ikey: string; key: string; value: JsonValue }>,
  limit: number,
): EntryPage<JsonValue> {
  const entries = rows.map((row) => ({ key: row.key, value: deepFreeze(row.value) }));
  const last = rows.at(-1);
  return rows.length === limit && last
    ? { entries, cursor: encodeCursor({ k: last.key, i: last.ikey }) }
    : { entries };
}

// --- a collection inside a write ------------------------------------------------------------------

const MUTATIVE_OPTIONS = {
  enablePatches: { pathAsArray: false, arrayLengthAssignment: false },
  enableAutoFreeze: false,
} as const;

interface Pending {
  key: string;
  /** The entry at the base revision; loaded on first need. */
  base: JsonValue | undefined;
  baseLoaded: boolean;
  /** Set by set()/delete(): the entry was replaced as a whole (undefined value: removed). */
  replaced: boolean;
  /** The replacement value, when replaced. */
  value: JsonValue | undefined;
  /** A draft over the current value (base, or the replacement), made by get(). */
  draft: object | undefined;
  finalize: (() => [JsonValue, JsonPatchOperation[], JsonPatchOperation[]]) | undefined;
  /** What the draft became when the write finished (frozen once the write is). */
  final?: JsonValue;
}

/** What one collection's changes amount to when a write finishes. */
export interface CollectionChanges {
  patches: JsonPatchOperation[];
  inverse: JsonPatchOperation[];
  writes: EntryWrite[];
  /** New head values, for the cache (undefined: removed). */
  values: Array<[key: string, value: JsonValue | undefined]>;
  sizeDelta: number;
}

/**
 * A collection as a write handler sees it: reads go to the base revision (through the reader),
 * overlaid with the handler's own changes; changes are recorded per entry and become patches,
 * inverse patches and entry writes when the command finishes. Cost follows what is touched.
 */
export class CollectionDraft {
  readonly #reader: CollectionReader;
  readonly #pending = new Map<string, Pending>();
  /**
   * Entries by their draft. A handler that returns an entry's draft (`return { task }`) gets the
   * entry's finished value in its result: copying a live draft through its proxy (mutative's
   * `current`) costs ~20 µs for a task of ten fields, more than the rest of the write's drafting.
   * (A map of this write's, not a module-wide WeakMap: those entries outlive young-generation GCs.)
   */
  readonly #byDraft = new Map<object, Pending>();

  constructor(reader: CollectionReader) {
    this.#reader = reader;
  }

  get #name(): string {
    return this.#reader.place.name;
  }

  #entry(key: string): Pending {
    checkEntryKey(this.#name, key);
    let entry = this.#pending.get(key);
    if (!entry) {
      entry = {
        key,
        base: undefined,
        baseLoaded: false,
        replaced: false,
        value: undefined,
        draft: undefined,
        finalize: undefined,
      };
      this.#pending.set(key, entry);
    }
    return entry;
  }

  async #loadBase(entry: Pending): Promise<void> {
    if (entry.baseLoaded) return;
    entry.base = await this.#reader.get(entry.key);
    entry.baseLoaded = true;
  }

  /** Loads the stored value of every pending entry not loaded yet, in batches (a bulk write's `set`s). */
  async #loadBases(): Promise<void> {
    const unloaded = [...this.#pending.values()].filter((entry) => !entry.baseLoaded);
    if (unloaded.length < 2) return;
    const values = await this.#reader.getMany(unloaded.map((entry) => entry.key));
    for (const entry of unloaded) {
      if (entry.baseLoaded) continue;
      entry.base = values.get(entry.key);
      entry.baseLoaded = true;
    }
  }

  async get(key: string): Promise<object | undefined> {
    const entry = this.#entry(key);
    if (entry.draft) return entry.draft;
    let source: JsonValue | undefined;
    if (entry.replaced) source = entry.value;
    else {
      await this.#loadBase(entry);
      if (entry.draft) return entry.draft; // another get() raced this one across the await
      source = entry.base;
    }
    if (source === undefined) return undefined;
    if (source === null || typeof source !== 'object') {
      throw new StateError('state_invalid', `Entry "${key}" of "${this.#name}" is not an object or array`, {
        details: { collection: this.#name, key },
      });
    }
    const [draft, finalize] = create(source as object, MUTATIVE_OPTIONS);
    entry.draft = draft;
    entry.finalize = finalize as unknown as Pending['finalize'];
    this.#byDraft.set(draft, entry);
    return entry.draft;
  }

  /** Whether `value` is the live draft of one of this collection's entries. */
  ownsDraft(value: object): boolean {
    return this.#byDraft.get(value)?.draft === value;
  }

  /** The value an entry's draft became when the write finished (after `finish`). */
  finishedDraft(draft: object): JsonValue {
    const entry = this.#byDraft.get(draft);
    if (!entry || !('final' in entry))
      throw new Error('An entry draft was resolved before its write finished');
    return entry.final as JsonValue;
  }

  async has(key: string): Promise<boolean> {
    return (await this.#currentValue(this.#entry(key))) !== undefined;
  }

  set(key: string, value: JsonValue): void {
    const entry = this.#entry(key);
    entry.replaced = true;
    entry.value = value === undefined ? null : deepFreeze(value);
    entry.draft = undefined;
    entry.finalize = undefined;
  }

  delete(key: string): void {
    const entry = this.#entry(key);
    entry.replaced = true;
    entry.value = undefined;
    entry.draft = undefined;
    entry.finalize = undefined;
  }

  async count(index?: string, prefix?: readonly IndexValue[]): Promise<number> {
    const base = await this.#reader.count(index, prefix);
    if (this.#pending.size === 0) return base;
    const range =
      index === undefined
        ? undefined
        : prefixRange(checkPrefix(this.#reader.place.definition, index, prefix));
    let delta = 0;
    await this.#loadBases();
    for (const entry of this.#pending.values()) {
      await this.#loadBase(entry);
      const now = await this.#currentValue(entry);
      delta += Number(this.#inRange(now, index, range)) - Number(this.#inRange(entry.base, index, range));
    }
    return base + delta;
  }

  #inRange(
    value: JsonValue | undefined,
    index: string | undefined,
    range: { from: string; to: string } | undefined,
  ) {
    if (value === undefined) return false;
    if (index === undefined || !range) return true;
    const ikey = this.#indexKey(value, index);
    return compareKeys(ikey, range.from) >= 0 && compareKeys(ikey, range.to) < 0;
  }

  #indexKey(value: JsonValue, index: string): string {
    for (const [name, ikey] of indexRowsOf(this.#reader.place.definition, value))
      if (name === index) return ikey;
    return '';
  }

  async list(options: ListOptions = {}): Promise<EntryPage<JsonValue>> {
    const limit = checkPageSize(options.limit);
    const after = options.cursor === undefined ? undefined : decodeCursor(options.cursor, {}).k;
    const isAfter = (key: string) => after === undefined || compareKeys(key, after) > 0;
    return this.#overlay(
      (extra) => this.#reader.list({ ...options, limit: Math.min(MAX_PAGE_SIZE, limit + extra) }),
      (entry) => (isAfter(entry.key) ? [entry.key] : undefined),
      (a, b) => compareKeys(a[0]!, b[0]!),
      limit,
      (row) => ({ k: row.key }),
    );
  }

  async query(index: string, options: QueryOptions = {}): Promise<EntryPage<JsonValue>> {
    const { definition } = this.#reader.place;
    checkIndex(this.#name, definition, index);
    const limit = checkPageSize(options.limit);
    const range = prefixRange(checkPrefix(definition, index, options.prefix));
    const cursor = options.cursor === undefined ? undefined : decodeCursor(options.cursor, { index: true });
    const sign = options.order === 'desc' ? -1 : 1;
    const position = (a: readonly string[], b: readonly string[]) =>
      sign * (compareKeys(a[0]!, b[0]!) || compareKeys(a[1]!, b[1]!));
    return this.#overlay(
      (extra) => this.#reader.query(index, { ...options, limit: Math.min(MAX_PAGE_SIZE, limit + extra) }),
      (entry, value) => {
        const ikey = this.#indexKey(value, index);
        if (compareKeys(ikey, range.from) < 0 || compareKeys(ikey, range.to) >= 0) return undefined;
        if (cursor && position([ikey, entry.key], [cursor.i!, cursor.k]) <= 0) return undefined;
        return [ikey, entry.key];
      },
      position,
      limit,
      (row) => ({ k: row.key, i: this.#indexKey(row.value as JsonValue, index) }),
    );
  }

  /**
   * Merges the handler's own changes into a page read from the base: entries it changed are dropped
   * from the base rows and re-placed by their current value. Reads `limit + changed` base rows so the
   * page stays full when some drop out.
   */
  async #overlay(
    read: (extra: number) => Promise<EntryPage<JsonValue>>,
    placeOf: (entry: Pending, value: JsonValue) => string[] | undefined,
    compare: (a: readonly string[], b: readonly string[]) => number,
    limit: number,
    cursorOf: (row: Entry<JsonValue>) => { k: string; i?: string },
  ): Promise<EntryPage<JsonValue>> {
    if (this.#pending.size === 0) {
      return read(0);
    }
    const extra = this.#pending.size;
    const page = await read(extra);
    const baseFull = page.cursor !== undefined;
    const rows: Array<{ at: string[]; entry: Entry<JsonValue> }> = [];
    for (const entry of page.entries) {
      if (this.#pending.has(entry.key)) continue;
      rows.push({
        at: placeOf({ key: entry.key } as Pending, entry.value as JsonValue) ?? [entry.key],
        entry,
      });
    }
    const lastBase = rows.at(-1)?.at;
    for (const pending of this.#pending.values()) {
      const value = await this.#currentValue(pending);
      if (value === undefined) continue;
      const at = placeOf(pending, value);
      if (!at) continue;
      // Past the last base row of a full page, the base has rows this page did not read.
      if (baseFull && lastBase && compare(at, lastBase) > 0) continue;
      rows.push({ at, entry: { key: pending.key, value: deepFreeze(structuredClone(value)) } });
    }
    rows.sort((a, b) => compare(a.at, b.at));
    const entries = rows.slice(0, limit).map((r) => r.entry);
    const last = entries.at(-1);
    const more = rows.length > limit || baseFull;
    return more && last ? { entries, cursor: encodeCursor(cursorOf(last)) } : { entries };
  }

  async #currentValue(entry: Pending): Promise<JsonValue | undefined> {
    if (entry.draft) return current(entry.draft as object) as JsonValue;
    if (entry.replaced) return entry.value;
    await this.#loadBase(entry);
    return entry.base;
  }

  /** Turns the recorded changes into patches (paths under `/<collection>/<key>`) and entry writes. */
  async finish(): Promise<CollectionChanges> {
    const { definition } = this.#reader.place;
    const prefix = `/${escapePointerToken(this.#name)}/`;
    const changes: CollectionChanges = { patches: [], inverse: [], writes: [], values: [], sizeDelta: 0 };
    await this.#loadBases();
    for (const entry of this.#pending.values()) {
      await this.#loadBase(entry);
      const path = prefix + escapePointerToken(entry.key);
      let next: JsonValue | undefined;
      if (entry.finalize && !entry.replaced) {
        const [value, patches, inverse] = entry.finalize();
        entry.final = value;
        if (patches.length === 0) continue;
        next = value;
        for (const op of patches)
          changes.patches.push({ ...op, path: path + (typeof op.path === 'string' ? op.path : '') });
        for (const op of inverse)
          changes.inverse.push({ ...op, path: path + (typeof op.path === 'string' ? op.path : '') });
      } else if (entry.replaced) {
        next = entry.finalize ? (entry.finalize()[0] as JsonValue) : entry.value;
        if (entry.finalize) entry.final = next;
        if (next === undefined && entry.base === undefined) continue;
        if (next === undefined) {
          changes.patches.push({ op: 'remove', path });
          changes.inverse.push({ op: 'add', path, value: entry.base! });
        } else if (entry.base === undefined) {
          changes.patches.push({ op: 'add', path, value: next });
          changes.inverse.push({ op: 'remove', path });
        } else {
          changes.patches.push({ op: 'replace', path, value: next });
          changes.inverse.push({ op: 'replace', path, value: entry.base });
        }
      } else continue;
      const before = indexRowsOf(definition, entry.base);
      const after = indexRowsOf(definition, next);
      changes.writes.push({
        collection: this.#name,
        key: entry.key,
        ...(next === undefined ? {} : { value: next }),
        existed: entry.base !== undefined,
        indexRemove: before.filter(([i, k]) => !after.some(([j, l]) => i === j && k === l)),
        indexAdd: after.filter(([i, k]) => !before.some(([j, l]) => i === j && k === l)),
      });
      changes.values.push([entry.key, next]);
      changes.sizeDelta += Number(next !== undefined) - Number(entry.base !== undefined);
    }
    return changes;
  }
}
