/**
 * Collections: entries stored one by one keep every change a JSON patch with its inverse, so diffs,
 * rollback and undo stay exact; indexes and counts answer without scans; reads page at one revision;
 * several documents change in one atomic commit; data written before collections existed converts.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  collection,
  createCore,
  defineApp,
  defineCommand,
  defineDocument,
  isCoreMcpError,
  type JsonValue,
  localPrincipal,
  MemoryStore,
  SqliteStore,
  StateManager,
  type Store,
  verifyAuditRecords,
} from 'coremcp';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { encodeIndexValues, valueEnds } from '../src/core/collections.js';
import { verifyHistory } from '../src/core/verify.js';
import { PostgresStore } from '../src/store/postgres.js';
import { MIGRATIONS } from '../src/store/sqlite.js';
import { freshSchema, PG_URL } from './helpers/postgres.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function codeOf(error: unknown): string | undefined {
  return isCoreMcpError(error) ? error.code : undefined;
}

function jsonClone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

interface Item {
  v: number;
  tag: string;
  tags?: string[];
  nested?: { deep: string | number | null };
}

const shelf = defineDocument('shelf', {
  n: 0,
  meta: { label: 'x' } as Record<string, JsonValue>,
  items: collection<Item>({ indexes: { byTag: ['tag', 'v'], byV: ['v'] } }),
});

async function stores(): Promise<Array<{ name: string; make: () => Promise<Store> }>> {
  return [
    { name: 'memory', make: async () => new MemoryStore() },
    {
      name: 'sqlite',
      make: async () => {
        const tmp = tempDir();
        cleanups.push(tmp.remove);
        return new SqliteStore({ path: join(tmp.dir, 'c.db') });
      },
    },
    {
      name: 'postgres',
      make: async () => {
        const fresh = await freshSchema('coll');
        cleanups.push(fresh.drop);
        return new PostgresStore({ url: PG_URL, schema: fresh.schema });
      },
    },
  ];
}

async function manager(store: Store, options: ConstructorParameters<typeof StateManager>[1] = {}) {
  await store.open();
  cleanups.push(() => store.close());
  const state = new StateManager(store, { documents: [shelf], ...options });
  await state.open();
  return state;
}

// --- random operations on a collection mixed with plain members ------------------------------------

type Op =
  | { kind: 'set'; key: string; value: Item }
  | { kind: 'delete'; key: string }
  | { kind: 'bump'; key: string; by: number }
  | { kind: 'tag'; key: string; tag: string }
  | { kind: 'plain'; key: string; value: JsonValue }
  | { kind: 'both'; key: string; by: number };

const entryKey = fc.constantFrom('a', 'b', 'c', 'd', 'x/y', 'p~q', 'ü', ' sp', 'T-10', 'T-9');
const item: fc.Arbitrary<Item> = fc.record(
  {
    v: fc.integer({ min: -5, max: 5 }),
    tag: fc.constantFrom('red', 'blue', ''),
    tags: fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }),
    nested: fc.record({ deep: fc.oneof(fc.integer(), fc.string({ maxLength: 3 }), fc.constant(null)) }),
  },
  { requiredKeys: ['v', 'tag'] },
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: entryKey, value: item }),
  fc.record({ kind: fc.constant('delete' as const), key: entryKey }),
  fc.record({ kind: fc.constant('bump' as const), key: entryKey, by: fc.integer({ min: -2, max: 2 }) }),
  fc.record({
    kind: fc.constant('tag' as const),
    key: entryKey,
    tag: fc.constantFrom('red', 'blue', 'green'),
  }),
  fc.record({
    kind: fc.constant('plain' as const),
    key: fc.constantFrom('label', 'other', 'z'),
    value: fc.oneof(fc.integer(), fc.string({ maxLength: 4 }), fc.constant(null)),
  }),
  fc.record({ kind: fc.constant('both' as const), key: entryKey, by: fc.integer({ min: 1, max: 3 }) }),
);

type Shelf = {
  n: number;
  meta: Record<string, JsonValue>;
  items: {
    get(key: string): Promise<Item | undefined>;
    set(key: string, value: Item): void;
    delete(key: string): void;
  };
};

/** Applies one operation to the draft and to the oracle (a plain JSON value of the whole document). */
async function apply(
  draft: Shelf,
  oracle: { n: number; meta: Record<string, JsonValue>; items: Record<string, Item> },
  o: Op,
) {
  switch (o.kind) {
    case 'set':
      draft.items.set(o.key, jsonClone(o.value));
      oracle.items[o.key] = jsonClone(o.value);
      return;
    case 'delete':
      draft.items.delete(o.key);
      delete oracle.items[o.key];
      return;
    case 'bump': {
      const entry = await draft.items.get(o.key);
      if (!entry) return;
      entry.v += o.by;
      oracle.items[o.key]!.v += o.by;
      return;
    }
    case 'tag': {
      const entry = await draft.items.get(o.key);
      if (!entry) return;
      entry.tag = o.tag;
      entry.tags = [...(entry.tags ?? []), o.tag];
      oracle.items[o.key]!.tag = o.tag;
      oracle.items[o.key]!.tags = [...(oracle.items[o.key]!.tags ?? []), o.tag];
      return;
    }
    case 'plain':
      draft.meta[o.key] = o.value;
      oracle.meta[o.key] = o.value;
      return;
    case 'both': {
      draft.n += o.by;
      oracle.n += o.by;
      const entry = await draft.items.get(o.key);
      if (entry) {
        entry.v += o.by;
        oracle.items[o.key]!.v += o.by;
      } else {
        draft.items.set(o.key, { v: o.by, tag: 'new' });
        oracle.items[o.key] = { v: o.by, tag: 'new' };
      }
    }
  }
}

describe('collections: history stays exact', () => {
  for (const kind of ['memory', 'sqlite', 'postgres'] as const) {
    it(`diff/apply, inverse, rollback and undo are exact over random operations (${kind})`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(op, { minLength: 1, maxLength: 4 }), { minLength: 150, maxLength: 200 }),
          fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 20, maxLength: 20 }),
          async (commands, ranges) => {
            const store = (await stores()).find((s) => s.name === kind)!;
            const state = await manager(await store.make(), { snapshotEvery: 13, entryCacheSize: 3 });
            const oracle = {
              n: 0,
              meta: { label: 'x' } as Record<string, JsonValue>,
              items: {} as Record<string, Item>,
            };
            const values: unknown[] = [jsonClone(oracle)];
            for (const ops of commands) {
              const next = jsonClone(oracle);
              const result = await state.update<Shelf>('shelf', async (draft) => {
                for (const o of ops) await apply(draft, next, o);
              });
              Object.assign(oracle, next);
              if (result.committed) values[result.revision] = jsonClone(oracle);
              expect((await state.get('shelf')).value).toEqual(oracle);
            }
            const head = (await state.get('shelf')).revision;
            for (let r = 0; r <= head; r++) if (values[r] === undefined) values[r] = values[r - 1]!;
            for (const [a, b] of [[0, head], ...ranges] as Array<[number, number]>) {
              const from = Math.min(a % (head + 1), b % (head + 1));
              const to = Math.max(a % (head + 1), b % (head + 1));
              const diff = await state.diff('shelf', from, to);
              const patched = jsonpatch.applyPatch(
                jsonClone(values[from]),
                jsonClone(diff.patches) as jsonpatch.Operation[],
                true,
                false,
              ).newDocument;
              expect(patched).toEqual(values[to]);
              expect((await state.get('shelf', { revision: from })).value).toEqual(values[from]);
            }
            const commits = await state.store.readCommits('shelf', { after: 0 });
            let back = jsonClone(values[head]!);
            for (let i = commits.length - 1; i >= 0; i--)
              back = jsonpatch.applyPatch(
                back,
                jsonClone(commits[i]!.inverse) as jsonpatch.Operation[],
                true,
                false,
              ).newDocument;
            expect(back).toEqual(values[0]);
            // Rollback to a middle revision, then undo the rollback: exact both ways.
            const middle = Math.floor(head / 2);
            const rolled = await state.rollback('shelf', middle);
            expect((await state.get('shelf')).value).toEqual(values[middle]);
            await state.undo(rolled.commandId);
            expect((await state.get('shelf')).value).toEqual(values[head]);
            // Index counts agree with the entries.
            const byTag = (await state.view('shelf')).value as {
              items: { count(index?: string, prefix?: unknown[]): Promise<number> };
            };
            const entries = Object.values(oracle.items);
            expect(await byTag.items.count()).toBe(entries.length);
            for (const tag of ['red', 'blue', 'new', ''])
              expect(await byTag.items.count('byTag', [tag])).toBe(
                entries.filter((e) => e.tag === tag).length,
              );
          },
        ),
        { numRuns: 4, endOnFailure: true },
      );
    });
  }
});

describe('collections: index counts kept between calls', () => {
  it('knows where each encoded value of an index key ends', () => {
    const values = ['a\u0001\u0001b\u0000', 3, null, true, '', false, -2.5];
    const ends = [0];
    for (let i = 1; i <= values.length; i++) ends.push(encodeIndexValues(values.slice(0, i)).length);
    expect(valueEnds(encodeIndexValues(values))).toEqual(ends);
    expect(valueEnds('')).toEqual([0]);
  });

  const forEachStore = async (
    run: (make: () => Promise<Store>, second: (first: Store) => Promise<Store>) => Promise<void>,
  ) => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const fresh = await freshSchema('counts');
    cleanups.push(fresh.drop);
    // A second connection to the same data, as another process or instance has.
    await run(
      async () => new MemoryStore(),
      async (first) => first,
    );
    await run(
      async () => new SqliteStore({ path: join(tmp.dir, 'counts.db') }),
      async () => new SqliteStore({ path: join(tmp.dir, 'counts.db') }),
    );
    await run(
      async () => new PostgresStore({ url: PG_URL, schema: fresh.schema }),
      async () => new PostgresStore({ url: PG_URL, schema: fresh.schema }),
    );
  };

  it('stay right through commits, concurrent ones, rollback, undo and another process’s commits', async () => {
    await forEachStore(async (make, second) => {
      const store = await make();
      const state = await manager(store);
      const oracle = new Map<string, Item>();
      const tags = ['red', 'blue', 'green'];
      await state.update<Shelf>('shelf', (draft) => {
        for (let i = 0; i < 30; i++) {
          const item = { v: i % 5, tag: tags[i % 3]! };
          draft.items.set(`k${i}`, item);
          oracle.set(`k${i}`, item);
        }
      });
      const prefixes: Array<[string, unknown[] | undefined]> = [
        ['byTag', undefined],
        ['byTag', ['red']],
        ['byTag', ['blue']],
        ['byTag', ['red', 3]],
        ['byTag', ['green', 0]],
        ['byV', [4]],
        ['byV', [7]],
      ];
      const expected = (index: string, prefix: unknown[] | undefined) =>
        [...oracle.values()].filter((item) => {
          const fields = index === 'byTag' ? [item.tag, item.v] : [item.v];
          return (prefix ?? []).every((value, i) => fields[i] === value);
        }).length;
      const check = async (manager: StateManager, when: string) => {
        const items = (
          (await manager.view('shelf')).value as { items: import('coremcp').ReadableCollection<Item> }
        ).items;
        for (const [index, prefix] of prefixes)
          expect(
            await items.count(index, prefix as never),
            `${when}: ${index} ${JSON.stringify(prefix)}`,
          ).toBe(expected(index, prefix));
      };
      await check(state, 'first read');
      const byRevision = new Map<number, Map<string, Item>>();
      for (let step = 0; step < 40; step++) {
        const key = `k${(step * 7) % 34}`;
        const before = oracle.get(key);
        const { revision } = await state.update<Shelf>('shelf', async (draft) => {
          if (step % 5 === 4 && before) {
            draft.items.delete(key);
            oracle.delete(key);
          } else if (before && step % 2 === 0) {
            const entry = (await draft.items.get(key))!;
            entry.tag = tags[(tags.indexOf(before.tag) + 1) % 3]!;
            oracle.set(key, { ...before, tag: entry.tag });
          } else if (before) {
            const entry = (await draft.items.get(key))!;
            entry.v = (before.v + 3) % 8;
            oracle.set(key, { ...before, v: entry.v });
          } else {
            const item = { v: step % 8, tag: tags[step % 3]! };
            draft.items.set(key, item);
            oracle.set(key, item);
          }
        });
        byRevision.set(revision, new Map(oracle));
        await check(state, `after step ${step}`);
      }
      // Writers at once: one group commit (or a few), each moving an entry to another tag.
      await Promise.all(
        [...oracle.keys()].slice(0, 16).map((key) =>
          state.update<Shelf>('shelf', async (draft) => {
            const entry = (await draft.items.get(key))!;
            entry.tag = 'blue';
            oracle.set(key, { ...oracle.get(key)!, tag: 'blue' });
          }),
        ),
      );
      await check(state, 'after concurrent writers');
      const afterConcurrent = new Map(oracle);
      const target = [...byRevision.keys()][20]!;
      const rolled = await state.rollback('shelf', target);
      oracle.clear();
      for (const [k, v] of byRevision.get(target)!) oracle.set(k, v);
      await check(state, 'after rollback');
      await state.undo(rolled.commandId);
      oracle.clear();
      for (const [k, v] of afterConcurrent) oracle.set(k, v);
      await check(state, 'after undo');
      // Another process commits: this one's counts follow once its head does.
      const otherStore = await second(store);
      if (otherStore !== store) {
        await otherStore.open();
        cleanups.push(() => otherStore.close());
      }
      const other = new StateManager(otherStore, { documents: [shelf] });
      await other.open();
      await other.update<Shelf>('shelf', async (draft) => {
        for (const key of [...oracle.keys()].slice(0, 5)) {
          draft.items.delete(key);
          oracle.delete(key);
        }
        draft.items.set('elsewhere', { v: 4, tag: 'red' });
        oracle.set('elsewhere', { v: 4, tag: 'red' });
      });
      await state.refresh('shelf');
      await check(state, 'after another process committed');
      // …and when it writes on without being told (its commit conflicts, then reloads).
      await other.update<Shelf>('shelf', (draft) => {
        draft.items.set('elsewhere2', { v: 4, tag: 'red' });
        oracle.set('elsewhere2', { v: 4, tag: 'red' });
      });
      await state.update<Shelf>('shelf', (draft) => {
        draft.items.set('here', { v: 7, tag: 'green' });
        oracle.set('here', { v: 7, tag: 'green' });
      });
      await check(state, 'after writing past another process’s commit');
    });
  });
});

describe('collections: cached entries and counts against slow store reads', () => {
  /**
   * Two managers on one store, as two processes or instances are; the first one's entry and count
   * reads are answered only when `release` is called, as a store across a network answers late.
   */
  async function slowReads() {
    const shared = new MemoryStore();
    let hold: Promise<void> | undefined;
    let release = () => {};
    const slow = new Proxy(shared, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (typeof value !== 'function') return value;
        if (prop !== 'readEntries' && prop !== 'countIndex') return value.bind(target);
        return async (...args: unknown[]) => {
          const answer = await value.apply(target, args);
          await hold;
          return answer;
        };
      },
    }) as Store;
    const a = await manager(slow);
    const b = new StateManager(shared, { documents: [shelf] });
    await b.open();
    const items = async () =>
      ((await a.view('shelf')).value as { items: import('coremcp').ReadableCollection<Item> }).items;
    return {
      a,
      b,
      items,
      hold: () => {
        hold = new Promise<void>((resolve) => {
          release = () => {
            hold = undefined;
            resolve();
          };
        });
      },
      release: () => release(),
    };
  }

  it('does not cache an entry a read found before another process changed it', async () => {
    const { a, b, items, hold, release } = await slowReads();
    await a.update<Shelf>('shelf', (draft) => draft.items.set('k', { v: 1, tag: 'red' }));
    a.invalidate('shelf');
    const before = await items();
    hold();
    const read = before.get('k');
    await b.update<Shelf>('shelf', async (draft) => {
      (await draft.items.get('k'))!.v = 2;
    });
    // The reload forgets the entry the other process changed, while the read is still out.
    await a.refresh('shelf');
    release();
    expect((await read)?.v).toBe(1);
    expect((await (await items()).get('k'))?.v).toBe(2);
  });

  it('does not keep a count read from an old head while the head reloaded', async () => {
    const { a, b, items, hold, release } = await slowReads();
    await a.update<Shelf>('shelf', (draft) => draft.items.set('k', { v: 1, tag: 'red' }));
    const old = await items();
    expect(await old.count('byTag', ['red'])).toBe(1);
    a.invalidate('shelf');
    hold();
    const read = old.count('byTag', ['red']);
    await b.update<Shelf>('shelf', (draft) => draft.items.set('k2', { v: 2, tag: 'red' }));
    // The head loads afresh (with the other process's commit) while the old reader's count is out.
    expect((await a.get('shelf')).revision).toBe(2);
    release();
    expect(await read).toBe(1);
    expect(await (await items()).count('byTag', ['red'])).toBe(2);
  });
});

describe('collections: reads', () => {
  it('pages a collection at one revision while writers go on, and reaches every entry once', async () => {
    const state = await manager(new MemoryStore());
    await state.update<Shelf>('shelf', (draft) => {
      for (let i = 0; i < 250; i++)
        draft.items.set(`k${String(i).padStart(3, '0')}`, { v: i, tag: i % 2 ? 'red' : 'blue' });
    });
    const first = await state.page('shelf', { collection: 'items', limit: 100 });
    expect(first.revision).toBe(1);
    expect(first.entries).toHaveLength(100);
    // Writers change entries on both sides of the cursor, add and remove some.
    await state.update<Shelf>('shelf', async (draft) => {
      (await draft.items.get('k150'))!.v = -1;
      draft.items.delete('k200');
      draft.items.set('k120x', { v: 999, tag: 'late' });
      (await draft.items.get('k010'))!.v = -2;
    });
    const seen = new Map(first.entries);
    let cursor = first.cursor;
    while (cursor) {
      const page = await state.page('shelf', { collection: 'items', cursor, limit: 100 });
      expect(page.revision).toBe(1);
      for (const [key, value] of page.entries) {
        expect(seen.has(key)).toBe(false);
        seen.set(key, value);
      }
      cursor = page.cursor;
    }
    expect(seen.size).toBe(250);
    expect(seen.get('k150')).toEqual({ v: 150, tag: 'blue' });
    expect(seen.has('k200')).toBe(true);
    expect(seen.has('k120x')).toBe(false);
    // At head, the same read sees the writes.
    const headRead = await state.read('shelf', { limit: 1000 });
    expect(headRead.revision).toBe(2);
    expect((headRead.value as unknown as { items: Record<string, Item> }).items.k150).toEqual({
      v: -1,
      tag: 'blue',
    });
  });

  it('answers index queries in order, page by page, with prefixes and in reverse', async () => {
    const state = await manager(new MemoryStore());
    await state.update<Shelf>('shelf', (draft) => {
      for (let i = 0; i < 30; i++) draft.items.set(`k${i}`, { v: i % 10, tag: i < 20 ? 'red' : 'blue' });
    });
    const { value } = await state.view('shelf');
    const items = (value as { items: import('coremcp').ReadableCollection<Item> }).items;
    const red: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await items.query('byTag', { prefix: ['red'], limit: 7, ...(cursor ? { cursor } : {}) });
      red.push(...page.entries.map((e) => e.value.v));
      cursor = page.cursor;
    } while (cursor);
    expect(red).toEqual([...red].sort((a, b) => a - b));
    expect(red).toHaveLength(20);
    const desc = await items.query('byV', { order: 'desc', limit: 3 });
    expect(desc.entries.map((e) => e.value.v)).toEqual([9, 9, 9]);
    expect(await items.count('byTag', ['blue'])).toBe(10);
    expect(await items.count('byTag', ['red', 3])).toBe(2);
  });

  it('reads the stored entries a bulk write replaces in batches, not one store read per entry', async () => {
    const store = new MemoryStore();
    const state = await manager(store);
    await state.update<Shelf>('shelf', (draft) => {
      for (let i = 0; i < 600; i += 2) draft.items.set(`k${i}`, { v: i, tag: 'red' });
    });
    let reads = 0;
    const readEntries = store.readEntries.bind(store);
    store.readEntries = async (doc, coll, keys) => {
      reads++;
      return readEntries(doc, coll, keys);
    };
    const result = await state.update<Shelf>('shelf', (draft) => {
      for (let i = 0; i < 1200; i++) draft.items.set(`k${i}`, { v: i, tag: 'blue' });
    });
    // The 300 stored are cached since they were written; the 900 new are looked up, 500 per read.
    expect(reads).toBe(2);
    // Replaced entries and new ones still tell apart.
    const patches = result.patches;
    expect(patches.filter((p) => p.op === 'replace')).toHaveLength(300);
    expect(patches.filter((p) => p.op === 'add')).toHaveLength(900);
  });

  it('shows a handler its own changes in gets, counts and queries before it commits', async () => {
    const state = await manager(new MemoryStore());
    await state.update<Shelf>('shelf', (draft) => {
      draft.items.set('a', { v: 1, tag: 'red' });
      draft.items.set('b', { v: 2, tag: 'red' });
    });
    const seen = await state.update<Shelf, unknown>('shelf', async (draft) => {
      const items = draft.items as unknown as import('coremcp').WritableCollection<Item>;
      (await items.get('a'))!.tag = 'blue';
      items.set('c', { v: 0, tag: 'red' });
      items.delete('b');
      return {
        red: await items.count('byTag', ['red']),
        blue: await items.count('byTag', ['blue']),
        size: await items.count(),
        redKeys: (await items.query('byTag', { prefix: ['red'] })).entries.map((e) => e.key),
        list: (await items.list()).entries.map((e) => e.key),
        hasB: await items.has('b'),
      };
    });
    expect(seen.result).toEqual({ red: 1, blue: 1, size: 2, redKeys: ['c'], list: ['a', 'c'], hasB: false });
  });

  it('returns the drafts a handler hands back as the values the write gave them', async () => {
    const state = await manager(new MemoryStore());
    await state.update<Shelf>('shelf', (draft) => {
      draft.items.set('a', { v: 1, tag: 'red', tags: ['x'], nested: { deep: 1 } });
      draft.items.set('b', { v: 2, tag: 'red' });
      draft.items.set('c', { v: 3, tag: 'red' });
    });
    const out = await state.update<Shelf, unknown>('shelf', async (draft) => {
      const items = draft.items as unknown as import('coremcp').WritableCollection<Item>;
      const a = (await items.get('a'))!;
      a.v = 10;
      a.nested!.deep = 'changed';
      const b = (await items.get('b'))!; // read, not changed
      const c = (await items.get('c'))!;
      c.v = 30;
      items.set('c', { v: 31, tag: 'blue' }); // the draft of c is left behind by the replacement
      a.tags!.push('after'); // changed after being put in the result below: the result shows it
      return { a, again: [a], tags: a.tags, b, c, n: draft.n };
    });
    const result = out.result as Record<string, unknown>;
    const a = { v: 10, tag: 'red', tags: ['x', 'after'], nested: { deep: 'changed' } };
    expect(result).toEqual({
      a,
      again: [a],
      tags: ['x', 'after'],
      b: { v: 2, tag: 'red' },
      c: { v: 30, tag: 'red' },
      n: 0,
    });
    // What the handler returned is what was committed, and stays so: the stored value cannot be
    // changed through the result.
    expect(Object.isFrozen(result.a)).toBe(true);
    expect(() => {
      (result.a as Item).v = 99;
    }).toThrow(TypeError);
    const stored = await state.update<Shelf, unknown>('shelf', async (draft) => {
      const items = draft.items as unknown as import('coremcp').WritableCollection<Item>;
      return { a: await items.get('a'), c: await items.get('c') };
    });
    expect(stored.result).toEqual({ a, c: { v: 31, tag: 'blue' } });
  });

  it('refuses oversized pages, altered cursors and undeclared indexes with typed errors, changing nothing', async () => {
    const state = await manager(new MemoryStore());
    await state.update<Shelf>('shelf', (draft) => {
      for (let i = 0; i < 5; i++) draft.items.set(`k${i}`, { v: i, tag: 'red' });
    });
    const error = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: unknown) => codeOf(e),
      );
    expect(await error(state.page('shelf', { collection: 'items', limit: 5000 }))).toBe('range_too_large');
    expect(await error(state.page('shelf', { collection: 'items', limit: 0 }))).toBe('range_too_large');
    expect(await error(state.page('shelf', { collection: 'items', cursor: 'not a cursor!' }))).toBe(
      'invalid_cursor',
    );
    expect(
      await error(
        state.page('shelf', { collection: 'items', cursor: Buffer.from('{"k":1}').toString('base64url') }),
      ),
    ).toBe('invalid_cursor');
    expect(await error(state.page('shelf', { collection: 'nope' }))).toBe('not_found');
    const { value } = await state.view('shelf');
    const items = (value as { items: import('coremcp').ReadableCollection<Item> }).items;
    expect(await error(items.query('byColour'))).toBe('unknown_index');
    expect(await error(items.count('byColour', ['x']))).toBe('unknown_index');
    expect(await error(items.query('byTag', { prefix: ['a', 1, 'too many'] }))).toBe('invalid_query');
    expect(await error(items.query('byTag', { prefix: [{ no: 1 }] as never }))).toBe('invalid_query');
    expect(await error(items.get('__proto__'))).toBe('state_invalid');
    const written = await state
      .update<Shelf>('shelf', (draft) => {
        draft.items.set('bad', { v: Number.NaN, tag: 'x' });
      })
      .catch((e: unknown) => e);
    expect(codeOf(written)).toBe('state_invalid');
    const objectInIndex = await state
      .update<Shelf>('shelf', (draft) => {
        draft.items.set('bad', { v: 1, tag: { colour: 'red' } as unknown as string });
      })
      .catch((e: unknown) => e);
    expect(codeOf(objectInIndex)).toBe('state_invalid');
    expect((await state.get('shelf')).revision).toBe(1);
  });

  it('refuses to inline a document whose collections exceed the limit, and reads it page by page', async () => {
    const state = await manager(new MemoryStore(), { limits: { maxInlineEntries: 10 } });
    await state.update<Shelf>('shelf', (draft) => {
      for (let i = 0; i < 25; i++) draft.items.set(`k${i}`, { v: i, tag: 'red' });
    });
    expect(codeOf(await state.get('shelf').catch((e: unknown) => e))).toBe('range_too_large');
    const read = await state.read('shelf', { limit: 10 });
    expect(Object.keys((read.value as { items: object }).items)).toHaveLength(10);
    expect(read.more.items).toMatchObject({ size: 25 });
  });
});

// --- several documents in one command -----------------------------------------------------------------

const inbox = defineDocument('inbox', { items: collection<Item>() });
const outbox = defineDocument('outbox', { moved: 0, items: collection<Item>() });

const moveApp = defineApp({
  name: 'move',
  documents: [inbox, outbox],
  commands: [
    defineCommand({
      name: 'item.put',
      description: 'put',
      doc: inbox,
      input: z.object({ key: z.string(), v: z.number() }),
      handler: ({ input, draft }) => {
        draft.items.set(input.key, { v: input.v, tag: 'in' });
      },
    }),
    defineCommand({
      name: 'item.move',
      description: 'move an item from the inbox to the outbox; fail: throw after writing both',
      doc: inbox,
      also: [outbox],
      input: z.object({ key: z.string(), fail: z.boolean().optional() }),
      handler: async ({ input, draft, draftOf }) => {
        const entry = await draft.items.get(input.key);
        if (!entry) return { moved: false };
        const out = draftOf(outbox);
        out.items.set(input.key, { ...entry, tag: 'out' });
        out.moved += 1;
        draft.items.delete(input.key);
        if (input.fail) throw new Error('failed after writing both documents');
        return { moved: true };
      },
    }),
  ],
  roles: {
    mover: { commands: ['item.put', 'item.move'], documents: { inbox: ['read', 'write'] } },
  },
});

describe('several documents in one command', () => {
  it('commits both documents atomically with one audit record, or neither when the handler throws', async () => {
    for (const { make } of await stores()) {
      const core = await createCore({ app: moveApp, store: await make() });
      cleanups.push(() => core.close());
      const alice = localPrincipal('alice', ['admin']);
      await core.execute('item.put', { key: 'a', v: 1 }, { principal: alice });
      const moved = await core.execute('item.move', { key: 'a' }, { principal: alice });
      expect(moved).toMatchObject({ status: 'success', doc: 'inbox', revision: 2, committed: true });
      expect(moved.status === 'success' && moved.changed).toEqual([
        { doc: 'inbox', revision: 2 },
        { doc: 'outbox', revision: 1 },
      ]);
      expect((await core.state.get('inbox')).value).toEqual({ items: {} });
      expect((await core.state.get('outbox')).value).toEqual({
        moved: 1,
        items: { a: { v: 1, tag: 'out' } },
      });
      const audit = await core.store.readAudit({});
      const record = audit.find((r) => r.command === 'item.move')!;
      expect(record).toMatchObject({
        doc: 'inbox',
        revision: 2,
        alsoChanged: [{ doc: 'outbox', revision: 1 }],
      });
      expect(verifyAuditRecords(audit).ok).toBe(true);

      await core.execute('item.put', { key: 'b', v: 2 }, { principal: alice });
      const failed = await core.execute('item.move', { key: 'b', fail: true }, { principal: alice });
      expect(failed.status).toBe('error');
      expect((await core.state.get('inbox')).value).toEqual({ items: { b: { v: 2, tag: 'in' } } });
      expect((await core.state.get('outbox')).value).toEqual({
        moved: 1,
        items: { a: { v: 1, tag: 'out' } },
      });
      expect((await core.state.get('outbox')).revision).toBe(1);

      // Undo of the move puts both documents back, in one commit of each.
      const undone = await core.state.undo((moved as { commandId: string }).commandId);
      expect(undone.changed.map((c) => c.doc).sort()).toEqual(['inbox', 'outbox']);
      expect((await core.state.get('outbox')).value).toEqual({ moved: 0, items: {} });
      expect((await core.state.get('inbox')).value).toEqual({
        items: { a: { v: 1, tag: 'in' }, b: { v: 2, tag: 'in' } },
      });
    }
  });

  it('needs write access to every document it changes', async () => {
    const core = await createCore({ app: moveApp });
    cleanups.push(() => core.close());
    const mover = localPrincipal('m', ['mover']);
    await core.execute('item.put', { key: 'a', v: 1 }, { principal: mover });
    const refused = await core.execute('item.move', { key: 'a' }, { principal: mover });
    expect(refused.status === 'error' && refused.publicError).toMatchObject({
      code: 'forbidden',
      details: { doc: 'outbox', action: 'write' },
    });
    expect((await core.state.get('outbox')).revision).toBe(0);
  });

  it('re-runs on a conflict in any of its documents, losing no update', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'm.db');
    const a = await createCore({ app: moveApp, store: new SqliteStore({ path }) });
    const b = await createCore({ app: moveApp, store: new SqliteStore({ path }) });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const alice = localPrincipal('alice', ['admin']);
    for (let i = 0; i < 20; i++) await a.execute('item.put', { key: `k${i}`, v: i }, { principal: alice });
    // b's heads are stale: every move from b conflicts first on the inbox, then succeeds.
    b.state.invalidate();
    await b.state.get('inbox');
    await a.execute('item.put', { key: 'late', v: 99 }, { principal: alice });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? a : b).execute('item.move', { key: `k${i}` }, { principal: alice }),
      ),
    );
    const bad = results.filter((r) => !(r.status === 'success' && (r.result as { moved: boolean }).moved));
    expect(bad.map((r) => (r.status === 'success' ? r.result : r))).toEqual([]);
    expect(
      results.every((r) => r.status === 'success' && r.result && (r.result as { moved: boolean }).moved),
    ).toBe(true);
    a.state.invalidate();
    expect((await a.state.get('outbox')).value).toMatchObject({ moved: 20 });
    expect(Object.keys(((await a.state.get('inbox')).value as { items: object }).items)).toEqual(['late']);
  });
});

// --- existing data directories ------------------------------------------------------------------------

describe('data written before collections', () => {
  it('converts a schema-2 board whose tasks were a plain map, keeping its value, history and revision', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'old.db');
    const old = new Database(path);
    old.exec('CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    old.exec(MIGRATIONS[0]!);
    old.exec(MIGRATIONS[1]!);
    old.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', '2')").run();
    old
      .prepare(
        "INSERT INTO documents (doc, oldest_revision, created_at) VALUES ('board', 0, '2026-01-01T00:00:00.000Z')",
      )
      .run();
    old
      .prepare("INSERT INTO snapshots (doc, revision, value) VALUES ('board', 0, ?)")
      .run(JSON.stringify({ tasks: {}, nextId: 1, settings: { wipLimit: 5 } }));
    const task = (id: string) => ({
      id,
      title: `t ${id}`,
      description: '',
      status: 'open',
      assignee: null,
      createdBy: 'alice',
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      note: null,
    });
    const insert = old.prepare(
      `INSERT INTO commits (doc, revision, command_id, command, principal, at, patches, inverse) VALUES ('board', ?, ?, 'task.add', 'alice', '2026-01-01T00:00:00.000Z', ?, ?)`,
    );
    for (let r = 1; r <= 3; r++) {
      insert.run(
        r,
        `00000000-0000-7000-8000-00000000000${r}`,
        JSON.stringify([
          { op: 'replace', path: '/nextId', value: r + 1 },
          { op: 'add', path: `/tasks/T-${r}`, value: task(`T-${r}`) },
        ]),
        JSON.stringify([
          { op: 'replace', path: '/nextId', value: r },
          { op: 'remove', path: `/tasks/T-${r}` },
        ]),
      );
    }
    old.close();

    const { default: taskboard } = await import('../examples/taskboard/app.js');
    const core = await createCore({ app: taskboard, store: new SqliteStore({ path }) });
    cleanups.push(() => core.close());
    const head = await core.state.get<{ tasks: Record<string, { status: string }>; nextId: number }>('board');
    expect(head.revision).toBe(3);
    expect(Object.keys(head.value.tasks)).toEqual(['T-1', 'T-2', 'T-3']);
    expect(head.value.nextId).toBe(4);
    expect((await core.state.get('board', { revision: 1 })).value).toMatchObject({
      nextId: 2,
      tasks: { 'T-1': {} },
    });
    const member = localPrincipal('bob', ['member']);
    const claimed = await core.execute('task.claim', { id: 'T-2' }, { principal: member });
    expect(claimed).toMatchObject({ status: 'success', revision: 4 });
    const listed = await core.execute('task.list', { status: 'open' }, { principal: member });
    expect(
      listed.status === 'success' &&
        (listed.result as { tasks: Array<{ id: string }> }).tasks.map((t) => t.id),
    ).toEqual(['T-1', 'T-3']);
    const rolled = await core.state.rollback('board', 0);
    expect(rolled.committed).toBe(true);
    expect((await core.state.get('board')).value).toEqual({
      tasks: {},
      nextId: 1,
      settings: { wipLimit: 5 },
    });
    const collections = await core.state.collectionsOf('board');
    expect(collections.tasks?.size).toBe(0);
    // The history replays against the snapshots, the restructured one included (state verify).
    const verified = await verifyHistory(core.store, 'board');
    expect(verified.problems).toEqual([]);
    expect(verified.commits).toBe(5);
  });
});
