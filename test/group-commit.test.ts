/**
 * Group commit on real SQLite files: concurrent writers of one document execute on the head the
 * commits before them will make, their commits go to the store in one transaction, and nobody is
 * answered, notified or shown a value before it is durable; a failed batch loses nothing that was
 * seen and writes nothing.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Principal, SYSTEM_PRINCIPAL } from '../src/core/access.js';
import { verifyAuditRecords } from '../src/core/audit.js';
import { collection, defineDocument } from '../src/core/document.js';
import { CommandError, isCoreMcpError, RecoveryError } from '../src/core/errors.js';
import { idempotencySlot } from '../src/core/idempotency.js';
import type { JsonValue } from '../src/core/json.js';
import { type CommitEvent, StateManager, type StateManagerOptions } from '../src/core/state.js';
import type { BatchOutcome, CommitRequest, Store } from '../src/core/store.js';
import { verifyHistory } from '../src/core/verify.js';
import { PostgresStore } from '../src/store/postgres.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { freshSchema, PG_URL } from './helpers/postgres.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const counter = defineDocument('counter', { n: 0, log: [] as number[] });
const board = defineDocument('board', {
  done: 0,
  tasks: collection<{ n: number; status: string }>({ indexes: { byStatus: ['status'] } }),
});

/** Where the state lives: a function making another handle on it (another process's, as it were). */
type Place = () => Store;

function sqlitePath(): string {
  const tmp = tempDir();
  cleanups.push(() => tmp.remove());
  return join(tmp.dir, 'state.db');
}

const backends: Record<string, () => Promise<Place>> = {
  sqlite: async () => {
    const path = sqlitePath();
    return () => new SqliteStore({ path });
  },
  postgres: async () => {
    const { schema, drop } = await freshSchema('group');
    cleanups.push(drop);
    return () => new PostgresStore({ url: PG_URL, schema, pollIntervalMs: 0 });
  },
};

async function open(
  place: Place,
  options: StateManagerOptions = {},
  wrap: (store: Store) => Store = (s) => s,
): Promise<{ state: StateManager; store: Store; events: CommitEvent[] }> {
  const store = place();
  await store.open();
  cleanups.push(() => store.close());
  const state = new StateManager(wrap(store), { documents: [counter, board], ...options });
  await state.open();
  const events: CommitEvent[] = [];
  state.onCommit((event) => events.push(event));
  return { state, store, events };
}

/** The store with `commitBatch` replaced (the rest reaches the original object). */
function withBatch(
  store: Store,
  commitBatch: (requests: readonly CommitRequest[], real: Store) => Promise<BatchOutcome>,
): Store {
  return new Proxy(store, {
    get(target, property) {
      if (property === 'commitBatch')
        return (requests: readonly CommitRequest[]) => commitBatch(requests, target);
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const increment = (state: StateManager, by = 1) =>
  state.update<{ n: number; log: number[] }, number>('counter', (draft) => {
    draft.n += by;
    draft.log.push(draft.n);
    return draft.n;
  });

async function expectIntact(store: Store, doc: string, commits: number) {
  const audit = await store.readAudit({});
  expect(verifyAuditRecords(audit)).toMatchObject({ ok: true });
  const history = await verifyHistory(store, doc);
  expect(history.problems).toEqual([]);
  const loaded = await store.loadDocument(doc);
  expect(loaded?.revision).toBe(commits);
  const revisions = (await store.readCommits(doc, { after: 0 })).map((c) => c.revision);
  expect(revisions).toEqual(Array.from({ length: commits }, (_, i) => i + 1));
}

/** Every commit event names a commit the store holds, at that revision, by that command. */
async function expectEventsDurable(store: Store, events: readonly CommitEvent[]) {
  for (const event of events) {
    const [stored] = await store.readCommits(event.doc, { after: event.revision - 1, to: event.revision });
    expect(stored?.commandId).toBe(event.commandId);
  }
}

describe('group commit (SQLite durability)', () => {
  for (const durability of ['normal', 'full'] as const) {
    it(`answers 48 concurrent writers of one document from batches, gapless (${durability})`, async () => {
      const path = sqlitePath();
      const store = new SqliteStore({ path, durability });
      await store.open();
      cleanups.push(() => store.close());
      const state = new StateManager(store, { documents: [counter, board] });
      await state.open();
      const events: CommitEvent[] = [];
      state.onCommit((event) => events.push(event));
      const results = await Promise.all(Array.from({ length: 48 }, () => increment(state)));
      expect(results.every((r) => r.committed)).toBe(true);
      // Each writer saw the writes before it: results are 1..48, each at its own revision.
      expect(results.map((r) => r.result).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 48 }, (_, i) => i + 1),
      );
      for (const r of results) expect(r.revision).toBe(r.result);
      expect((await state.get<{ n: number }>('counter')).value.n).toBe(48);
      await expectIntact(store, 'counter', 48);
      await expectEventsDurable(store, events);
      expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 48 }, (_, i) => i + 1));
      expect(state.batches.commits).toBe(48);
      expect(state.batches.largest).toBeGreaterThan(1);
      expect(state.batches.batches).toBeLessThan(48);
      // A fresh manager on the file reads the same state back.
      const again = new StateManager(new SqliteStore({ path }), { documents: [counter, board] });
      await again.store.open();
      cleanups.push(() => again.store.close());
      await again.open();
      expect((await again.get<{ n: number; log: number[] }>('counter')).value).toEqual({
        n: 48,
        log: Array.from({ length: 48 }, (_, i) => i + 1),
      });
    });
  }
});

describe.each(Object.keys(backends))('group commit (%s)', (backend) => {
  const place = () => backends[backend]!();

  it('answers 32 concurrent writers of one document from batches, gapless', async () => {
    const { state, store, events } = await open(await place());
    const results = await Promise.all(Array.from({ length: 32 }, () => increment(state)));
    expect(results.every((r) => r.committed)).toBe(true);
    for (const r of results) expect(r.revision).toBe(r.result);
    expect((await state.get<{ n: number }>('counter')).value.n).toBe(32);
    await expectIntact(store, 'counter', 32);
    await expectEventsDurable(store, events);
    expect(state.batches.largest).toBeGreaterThan(1);
  });

  it('batches writers of collection entries that read them by key', async () => {
    const { state, store, events } = await open(await place());
    type Tasks = {
      get(key: string): Promise<{ n: number; status: string } | undefined>;
      set(key: string, value: JsonValue): void;
    };
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        state.transact({
          docs: ['board'],
          principal: SYSTEM_PRINCIPAL,
          command: 'board.bump',
          mutate: async (session) => {
            const tasks = (session.draft('board') as { tasks: Tasks }).tasks;
            const shared = await tasks.get('shared');
            if (shared) shared.n += 1;
            else tasks.set('shared', { n: 1, status: 'open' });
            tasks.set(`T-${i}`, { n: i, status: 'open' });
            return shared ? shared.n : 1;
          },
        }),
      ),
    );
    expect(results.map((r) => r.result).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 24 }, (_, i) => i + 1),
    );
    expect(state.batches.largest).toBeGreaterThan(1);
    expect((await store.readEntries('board', 'tasks', ['shared'])).get('shared')).toEqual({
      n: 24,
      status: 'open',
    });
    expect(await state.collectionsOf('board')).toMatchObject({ tasks: { size: 25 } });
    await expectIntact(store, 'board', 24);
    await expectEventsDurable(store, events);
  });

  it('tells a replaced entry from a new one when writers set the same keys unread on queued heads', async () => {
    const { state, store } = await open(await place());
    type Tasks = { set(key: string, value: JsonValue): void };
    // Each writer replaces the same three entries without reading them (a bulk write's path: the
    // stored values are loaded together), so only the first writer adds them.
    await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        state.transact({
          docs: ['board'],
          principal: SYSTEM_PRINCIPAL,
          command: 'board.bulk',
          mutate: (session) => {
            const tasks = (session.draft('board') as { tasks: Tasks }).tasks;
            for (const key of ['a', 'b', 'c']) tasks.set(key, { n: i, status: 'open' });
          },
        }),
      ),
    );
    expect(state.batches.largest).toBeGreaterThan(1);
    expect(await state.collectionsOf('board')).toMatchObject({ tasks: { size: 3 } });
    const commits = await store.readCommits('board', { after: 0 });
    const adds = commits.flatMap((c) => c.patches).filter((p) => p.op === 'add');
    expect(adds).toHaveLength(3);
    await expectIntact(store, 'board', 16);
  });

  it('lets writers read the collection entries, sizes and index counts the queued commits write', async () => {
    const { state, store } = await open(await place());
    const writers = Array.from({ length: 32 }, (_, i) =>
      state.transact({
        docs: ['board'],
        principal: SYSTEM_PRINCIPAL,
        command: 'board.work',
        mutate: async (session) => {
          const draft = session.draft('board') as {
            done: number;
            tasks: {
              get(key: string): Promise<{ n: number; status: string } | undefined>;
              set(key: string, value: JsonValue): void;
              count(index?: string, prefix?: unknown[]): Promise<number>;
              list(options?: { limit?: number }): Promise<{ entries: Array<{ key: string }> }>;
              query(index: string, options?: { prefix?: unknown[] }): Promise<{ entries: unknown[] }>;
            };
          };
          // One shared entry every writer increments, and one entry of its own.
          const shared = await draft.tasks.get('shared');
          if (shared) shared.n += 1;
          else draft.tasks.set('shared', { n: 1, status: 'open' });
          const before = await draft.tasks.count();
          const doneBefore = await draft.tasks.count('byStatus', ['done']);
          const listed = (await draft.tasks.list({ limit: 1000 })).entries.length;
          const queried = (await draft.tasks.query('byStatus', { prefix: ['done'] })).entries.length;
          draft.tasks.set(`T-${i}`, { n: i, status: 'done' });
          draft.done += 1;
          return { before, doneBefore, listed, queried, done: draft.done };
        },
      }),
    );
    const results = await Promise.all(writers);
    // On SQLite a batch is written synchronously, so overlay reads (count, list, query) rarely wait
    // for one; on PostgreSQL they wait for the flush in flight, and such writers batch less.
    if (backend === 'sqlite') expect(state.batches.largest).toBeGreaterThan(1);
    const seen = results.map((r) => r.result).sort((a, b) => a.done - b.done);
    seen.forEach((r, k) => {
      // The k-th writer saw the k tasks of the writers before it, and `shared`.
      expect(r).toEqual({
        before: k + 1,
        doneBefore: k,
        listed: k + 1,
        queried: k,
        done: k + 1,
      });
    });
    expect(await state.collectionsOf('board')).toMatchObject({ tasks: { size: 33 } });
    const page = await state.page('board', { collection: 'tasks', limit: 1000 });
    expect(Object.fromEntries(page.entries).shared).toEqual({ n: 32, status: 'open' });
    expect(await store.countIndex('board', 'tasks', 'byStatus', { from: '', to: '\uffff' })).toBe(33);
    await expectIntact(store, 'board', 32);
  });

  it('pays no wait for a lone caller, and commits alone with groupCommit off', async () => {
    const on = await open(await place());
    const one = await increment(on.state);
    expect(one).toMatchObject({ committed: true, revision: 1, result: 1 });
    expect(on.state.batches).toMatchObject({ batches: 1, commits: 1, largest: 1 });

    const off = await open(await place(), { groupCommit: false });
    expect(off.state.groupCommit).toBe(false);
    const results = await Promise.all(Array.from({ length: 16 }, () => increment(off.state)));
    expect(results.map((r) => r.revision).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 16 }, (_, i) => i + 1),
    );
    expect(off.state.batches.batches).toBe(0);
    await expectIntact(off.store, 'counter', 16);
  });

  it('runs a refusal decided on a queued head again on the durable one: exactly one claim wins', async () => {
    const { state, store } = await open(await place());
    const claim = (who: string) =>
      state.update<{ owner?: string }, string>('counter', (draft) => {
        if (draft.owner !== undefined) throw new CommandError('taken', `held by ${draft.owner}`);
        draft.owner = who;
        return who;
      });
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => claim(`p${i}`)));
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const o of outcomes)
      if (o.status === 'rejected') expect(isCoreMcpError(o.reason) && o.reason.code).toBe('taken');
    await expectIntact(store, 'counter', 1);
  });

  it('rolls back a batch another process beat, shows its values to no one, and reruns its writers', async () => {
    const path = await place();
    const other = await open(path, { groupCommit: false });
    const seenByReaders: number[] = [];
    let sneaked = false;
    let self: StateManager | undefined;
    const { state, store, events } = await open(path, {}, (s) =>
      withBatch(s, async (requests, real) => {
        if (!sneaked) {
          sneaked = true;
          // Between enqueue and flush: readers see only the durable head, and another process commits.
          seenByReaders.push((await self!.get<{ n: number }>('counter')).value.n);
          seenByReaders.push((await self!.page('board', { collection: 'tasks' })).entries.length);
          await increment(other.state, 1000);
        }
        return real.commitBatch!(requests);
      }),
    );
    self = state;
    const addTask = (i: number) =>
      state.transact({
        docs: ['board'],
        principal: SYSTEM_PRINCIPAL,
        command: 'board.add',
        mutate: (session) => {
          const draft = session.draft('board') as { tasks: { set(key: string, value: JsonValue): void } };
          draft.tasks.set(`T-${i}`, { n: i, status: 'open' });
        },
      });
    const [results, added] = await Promise.all([
      Promise.all(Array.from({ length: 16 }, () => increment(state))),
      Promise.all(Array.from({ length: 8 }, (_, i) => addTask(i))),
    ]);
    expect(results.every((r) => r.committed)).toBe(true);
    expect(added.every((r) => r.committed)).toBe(true);
    expect(state.batches.failed).toBe(1);
    // Nothing of the queued commits (plain values, collection entries) was readable before the flush.
    expect(seenByReaders).toEqual([0, 0]);
    expect((await state.page('board', { collection: 'tasks' })).entries).toHaveLength(8);
    await expectIntact(store, 'board', 8);
    // Every writer ran again on the head the other process made: nothing of the refused batch is lost or doubled.
    expect((await state.get<{ n: number }>('counter')).value.n).toBe(1016);
    expect(results.map((r) => r.result).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 16 }, (_, i) => 1001 + i),
    );
    await expectIntact(store, 'counter', 17);
    // The listener heard only durable commits (the other process's arrives as an external one).
    await expectEventsDurable(store, events);
    expect(events.filter((e) => !e.external)).toHaveLength(24);
  });

  it('fails every writer of a batch the store faults on, and rolls the head back to the durable one', async () => {
    const path = await place();
    let calls = 0;
    const { state, store, events } = await open(path, { maxBatch: 4 }, (s) =>
      withBatch(s, async (requests, real) => {
        calls++;
        if (calls === 2) {
          // In flight a while (writers queue behind it), then the store fails.
          await new Promise((resolve) => setTimeout(resolve, 30));
          throw new RecoveryError('store_unavailable', 'disk gone');
        }
        return real.commitBatch!(requests);
      }),
    );
    await increment(state); // batch 1: durable at revision 1
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, () => increment(state)));
    const failed = outcomes.filter((o) => o.status === 'rejected');
    const ok = outcomes.filter((o) => o.status === 'fulfilled');
    // The faulted batch (at most maxBatch writers) got the typed fault; the writers queued behind it ran again.
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.length).toBeLessThanOrEqual(4);
    for (const o of failed)
      expect(o.status === 'rejected' && isCoreMcpError(o.reason) && o.reason.code).toBe('store_unavailable');
    expect(ok.length).toBe(12 - failed.length);
    const committed = 1 + ok.length;
    expect((await state.get<{ n: number }>('counter')).value.n).toBe(committed);
    expect(ok.map((o) => (o.status === 'fulfilled' ? o.value.result : 0)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: ok.length }, (_, i) => i + 2),
    );
    await expectIntact(store, 'counter', committed);
    await expectEventsDurable(store, events);
    expect(events).toHaveLength(committed);
    // The document goes on from the durable head.
    expect((await increment(state)).revision).toBe(committed + 1);
  });

  it('answers the second of two calls with one idempotency key as the duplicate, as without group commit', async () => {
    for (const groupCommit of [true, false]) {
      const { state, store } = await open(await place(), { groupCommit });
      const principal: Principal = { ...SYSTEM_PRINCIPAL, id: 'alice' };
      const call = (n: number) =>
        state.transact({
          docs: ['counter'],
          principal,
          command: 'counter.add',
          idempotency: idempotencySlot('alice', 'key-1', 'counter.add', { n: 1 }),
          mutate: (session) => {
            const draft = session.draft('counter') as { n: number };
            draft.n += 1;
            return { n: draft.n, call: n };
          },
        });
      const [first, second, third] = await Promise.all([call(1), call(2), increment(state)]);
      expect(first).toMatchObject({ committed: true, revision: 1, duplicate: undefined });
      expect(second).toMatchObject({ committed: false, revision: 1, changed: [], patches: [] });
      expect(second.duplicate).toMatchObject({
        principal: 'alice',
        key: 'key-1',
        revision: 1,
        commandId: first.commandId,
        response: { n: 1, call: 1 },
      });
      expect(second.duplicate).toEqual(await store.findIdempotency('alice', 'key-1'));
      expect(third.committed).toBe(true);
      // The second waited for the first's batch instead of failing it.
      expect(state.batches.failed).toBe(0);
      expect((await state.get<{ n: number }>('counter')).value.n).toBe(2);
      await expectIntact(store, 'counter', 2);
    }
  });
});
