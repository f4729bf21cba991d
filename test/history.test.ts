/**
 * State history: diffs that round-trip, rollback and undo, snapshots and compaction across a restart,
 * optimistic concurrency and idempotency keys over MCP, and the revisions that are refused.
 */
import { join } from 'node:path';
import {
  createCore,
  defineApp,
  defineCommand,
  isCoreMcpError,
  type JsonValue,
  localPrincipal,
  MemoryStore,
  SqliteStore,
  StateManager,
} from 'coremcp';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import taskboard from '../examples/taskboard/app.js';
import { batchEnd } from '../src/store/sqlite.js';
import { errorCodeOf, httpClient, startInProcess, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function codeOf(error: unknown): string | undefined {
  return isCoreMcpError(error) ? error.code : (error as { data?: { code?: string } })?.data?.code;
}

// --- random edits on nested objects and arrays ---------------------------------------------------

type Edit = {
  kind: 'set' | 'delete' | 'push' | 'splice' | 'nest' | 'replaceRoot';
  pick: number;
  key: string;
  value: JsonValue;
  index: number;
};

const keyArb = fc
  .oneof(fc.constantFrom('a', 'b', 'c', 'x/y', 'p~q', '', ' sp ', 'ü'), fc.string({ maxLength: 4 }))
  .filter((k) => k !== '__proto__' && k !== 'constructor' && k !== 'prototype');
const leafArb: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.integer(),
  fc.string({ maxLength: 6 }),
  fc.boolean(),
  fc.constant(null),
  // JSON has no -0 (it reads back as 0), so neither do the generated values.
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
);
const valueArb: fc.Arbitrary<JsonValue> = fc.oneof(
  { weight: 4, arbitrary: leafArb },
  { weight: 1, arbitrary: fc.array(leafArb, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.dictionary(keyArb, leafArb, { maxKeys: 3 }) },
);
const editArb: fc.Arbitrary<Edit> = fc.record({
  kind: fc.constantFrom('set', 'set', 'delete', 'push', 'splice', 'nest', 'replaceRoot'),
  pick: fc.nat(),
  key: keyArb,
  value: valueArb,
  index: fc.nat({ max: 5 }),
});

/** A copy with nothing shared, as JSON on the wire would give (structuredClone keeps shared references). */
function jsonClone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** The paths of every container in a (frozen, plain) value, so an edit can pick one at random. */
function containerPaths(node: JsonValue, path: string[] = [], out: string[][] = []): string[][] {
  if (node !== null && typeof node === 'object') {
    out.push(path);
    for (const [key, child] of Object.entries(node)) containerPaths(child, [...path, key], out);
  }
  return out;
}

/** Applies one random edit, drafting only the objects on the path to its target. */
function applyEdit(draft: Record<string, unknown>, base: JsonValue, raw: Edit): void {
  const edit = { ...raw, value: structuredClone(raw.value) };
  if (edit.kind === 'replaceRoot') {
    if (edit.pick % 50 !== 0) return; // rare: replace every member of the root
    for (const k of Object.keys(draft)) delete draft[k];
    draft.restarted = edit.value;
    return;
  }
  const paths = containerPaths(base);
  let target = draft as Record<string, unknown> | unknown[];
  for (const key of paths[edit.pick % paths.length]!)
    target = (target as Record<string, unknown>)[key] as typeof target;
  if (Array.isArray(target)) {
    if (edit.kind === 'push' || edit.kind === 'set') target.push(edit.value);
    else if (edit.kind === 'splice' || edit.kind === 'delete')
      target.splice(edit.index % (target.length + 1), 1);
    else target.splice(edit.index % (target.length + 1), 0, { [edit.key]: edit.value });
    return;
  }
  if (edit.kind === 'delete')
    delete target[Object.keys(target)[edit.index % Math.max(1, Object.keys(target).length)] ?? edit.key];
  else if (edit.kind === 'nest') target[edit.key] = { [edit.key]: [edit.value, { deep: edit.value }] };
  else if (edit.kind === 'push') target[edit.key] = [edit.value];
  else target[edit.key] = edit.value;
}

describe('diffs', () => {
  it('round-trip over random sequences of 1,000+ commits: patches(from→to) applied to value@from give value@to', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(editArb, { minLength: 1000, maxLength: 1100 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 40, maxLength: 40 }),
        async (edits, ranges) => {
          const store = new MemoryStore();
          await store.open();
          const state = new StateManager(store, { documents: { d: {} }, snapshotEvery: 97 });
          await state.open();
          // Values handed out are frozen and never change, so they serve as the oracle without copies.
          const values: JsonValue[] = [(await state.get('d')).value];
          for (const edit of edits) {
            const base = (await state.get('d')).value;
            const result = await state.update<Record<string, unknown>>('d', (draft) =>
              applyEdit(draft, base, edit),
            );
            if (result.committed) values[result.revision] = (await state.get('d')).value;
          }
          const head = (await state.get('d')).revision;
          expect(head).toBeGreaterThan(500);
          for (const [a, b] of [[0, head], ...ranges] as Array<[number, number]>) {
            const from = Math.min(a % (head + 1), b % (head + 1));
            const to = Math.max(a % (head + 1), b % (head + 1));
            const diff = await state.diff('d', from, to);
            const patched = jsonpatch.applyPatch(
              jsonClone(values[from]),
              jsonClone(diff.patches) as jsonpatch.Operation[],
              true,
              false,
            ).newDocument;
            expect(patched).toEqual(values[to]);
            expect((await state.get('d', { revision: from })).value).toEqual(values[from]);
          }
          // Inverse patches, newest first, walk all the way back.
          const commits = await store.readCommits('d', { after: 0 });
          let back = jsonClone(values[head]!);
          for (let i = commits.length - 1; i >= 0; i--)
            back = jsonpatch.applyPatch(
              back,
              jsonClone(commits[i]!.inverse) as jsonpatch.Operation[],
              true,
              false,
            ).newDocument;
          expect(back).toEqual(values[0]);
          await store.close();
        },
      ),
      // fast-json-patch mutates in place and inserts `add` values by reference, and the edits above put one
      // value at two places (as a handler may): the oracle works on JSON copies, where nothing is shared. Shrinking
      // a 1,000-commit counterexample costs minutes: report the first failure as it is.
      { numRuns: 3, endOnFailure: true },
    );
  });
});

// --- rollback and undo ------------------------------------------------------------------------------

async function boardCore() {
  const tmp = tempDir();
  cleanups.push(tmp.remove);
  const path = join(tmp.dir, 'state.db');
  const core = await createCore({ app: taskboard, store: new SqliteStore({ path }) });
  cleanups.push(() => core.close());
  return { core, path };
}

const alice = localPrincipal('alice', ['member']);

describe('rollback', () => {
  it('restores the value of an earlier revision exactly, as a new audited commit', async () => {
    const { core } = await boardCore();
    const values: JsonValue[] = [];
    let added = 0;
    for (let i = 0; i < 30; i++) {
      const claim = i % 3 === 2;
      if (!claim) added++;
      const principal = localPrincipal(`agent-${i}`, ['member']); // one claim each: under the WIP limit
      const r = await core.execute(
        claim ? 'task.claim' : 'task.add',
        claim ? { id: `T-${added}` } : { title: `t${i}` },
        { principal },
      );
      expect(r.status).toBe('success');
      values.push((await core.state.get('board')).value);
    }
    const rolled = await core.state.rollback('board', 7, { principal: localPrincipal('ops') });
    expect(rolled.result).toEqual({ doc: 'board', from: 30, to: 7, reverted: 23 });
    expect(rolled.revision).toBe(31);
    expect((await core.state.get('board')).value).toEqual(values[6]);
    const [audit] = await core.store.readAudit({ command: 'state.rollback' });
    expect(audit).toMatchObject({
      principal: 'ops',
      outcome: 'ok',
      revision: 31,
      input: { doc: 'board', toRevision: 7 },
    });
    // The rollback is itself undoable: back to where it started.
    await core.state.undo(rolled.commandId);
    expect((await core.state.get('board')).value).toEqual(values[29]);
  });

  it('rolls back 1,000 commits', async () => {
    const { core } = await boardCore();
    for (let i = 0; i < 1000; i++) await core.execute('task.add', { title: `t${i}` }, { principal: alice });
    const started = performance.now();
    const rolled = await core.state.rollback('board', 0);
    const ms = performance.now() - started;
    expect(rolled.result.reverted).toBe(1000);
    expect((await core.state.get('board')).value).toEqual({
      tasks: {},
      nextId: 1,
      settings: { wipLimit: 5 },
    });
    expect(ms).toBeGreaterThan(0);
  });

  it('is a tool only admins see and may call; members are refused', async () => {
    const server = await startInProcess({ app: taskboard });
    cleanups.push(() => server.close());
    // Rollback asks for consent: this admin's client approves what it is shown.
    const admin = await httpClient(server.url, await server.key('root', 'admin'), 'modern', {
      capabilities: { elicitation: {} },
      setup: (client) =>
        client.setRequestHandler('elicitation/create', async () => ({
          action: 'accept' as const,
          content: { approve: true },
        })),
    });
    const member = await httpClient(server.url, await server.key('mia', 'member'));
    cleanups.push(
      () => admin.close(),
      () => member.close(),
    );
    await member.callTool({ name: 'task.add', arguments: { title: 'one' } });
    await member.callTool({ name: 'task.add', arguments: { title: 'two' } });
    expect((await admin.listTools()).tools.map((t) => t.name)).toEqual(
      expect.arrayContaining(['state.rollback', 'state.undo']),
    );
    expect((await member.listTools()).tools.map((t) => t.name)).not.toContain('state.rollback');
    const refused = await member.callTool({
      name: 'state.rollback',
      arguments: { doc: 'board', toRevision: 0 },
    });
    expect(errorCodeOf(refused)).toBe('forbidden');
    const done = await admin.callTool({ name: 'state.rollback', arguments: { doc: 'board', toRevision: 1 } });
    expect(structured(done)).toEqual({ doc: 'board', from: 2, to: 1, reverted: 1 });
    expect(done._meta?.['coremcp/revision']).toBe(3);
  });
});

describe('undo', () => {
  it('applies the inverse of one commit when nothing later touched its paths', async () => {
    const { core } = await boardCore();
    await core.execute('task.add', { title: 'one' }, { principal: alice });
    const two = await core.execute('task.add', { title: 'two' }, { principal: alice });
    await core.execute('task.claim', { id: 'T-1' }, { principal: alice });
    expect(two.status).toBe('success');
    if (two.status !== 'success') return;
    const undone = await core.state.undo(two.commandId);
    expect(undone.result).toEqual({ doc: 'board', undone: two.commandId, revision: 2 });
    const { value } = await core.state.get<{ tasks: Record<string, unknown>; nextId: number }>('board');
    expect(Object.keys(value.tasks)).toEqual(['T-1']);
  });

  it('refuses with undo_conflict, naming the later commits, when they touched the same paths', async () => {
    const { core } = await boardCore();
    const add = await core.execute('task.add', { title: 'one' }, { principal: alice });
    const claim = await core.execute('task.claim', { id: 'T-1' }, { principal: alice });
    if (add.status !== 'success' || claim.status !== 'success') throw new Error('setup failed');
    const error = await core.state.undo(add.commandId).catch((e: unknown) => e);
    expect(codeOf(error)).toBe('undo_conflict');
    expect(
      (error as { details: { conflicts: Array<{ commandId: string }> } }).details.conflicts.map(
        (c) => c.commandId,
      ),
    ).toContain(claim.commandId);
    expect((await core.state.get('board')).revision).toBe(2);
  });

  it('treats a change anywhere in an array as touching the whole array', async () => {
    const core = await createCore({
      app: defineApp({
        name: 'lists',
        documents: { l: { items: [] as string[] } },
        commands: [
          defineCommand({
            name: 'push',
            description: 'push',
            doc: 'l',
            input: z.object({ v: z.string() }),
            handler: ({ input, draft }) => {
              (draft as unknown as { items: string[] }).items.push(input.v);
            },
          }),
        ],
      }),
    });
    cleanups.push(() => core.close());
    const first = await core.execute('push', { v: 'a' }, { principal: alice });
    await core.execute('push', { v: 'b' }, { principal: alice });
    if (first.status !== 'success') throw new Error('setup failed');
    expect(codeOf(await core.state.undo(first.commandId).catch((e: unknown) => e))).toBe('undo_conflict');
  });

  it('answers an unknown command id with not_found', async () => {
    const { core } = await boardCore();
    expect(
      codeOf(await core.state.undo('01234567-0000-7000-8000-000000000000').catch((e: unknown) => e)),
    ).toBe('not_found');
  });
});

// --- snapshots, compaction, restart ------------------------------------------------------------------

describe('snapshots and compaction', () => {
  it('keep value and revision across a restart; reads and diffs before the retention point behave as documented', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'state.db');
    let core = await createCore({ app: taskboard, store: new SqliteStore({ path }), snapshotEvery: 25 });
    for (let i = 0; i < 200; i++) await core.execute('task.add', { title: `t${i}` }, { principal: alice });
    const before = await core.state.get('board');
    const at150 = await core.state.get('board', { revision: 150 });
    const compacted = await core.state.compact('board', { keepCommits: 60 });
    expect(compacted).toEqual({ doc: 'board', oldestRevision: 140, removed: 140 });
    await core.close();

    core = await createCore({ app: taskboard, store: new SqliteStore({ path }), snapshotEvery: 25 });
    cleanups.push(() => core.close());
    expect(await core.state.get('board')).toEqual(before);
    expect(await core.state.get('board', { revision: 150 })).toEqual(at150);
    const old = await core.state.get('board', { revision: 100 }).catch((e: unknown) => e);
    expect(codeOf(old)).toBe('revision_compacted');
    expect((old as { details: { oldestRevision: number } }).details.oldestRevision).toBe(140);
    const across = await core.state.diff('board', 100);
    expect(across).toMatchObject({
      from: 100,
      to: 200,
      compacted: true,
      patches: [{ op: 'replace', path: '', value: before.value }],
    });
    const within = await core.state.diff('board', 150);
    expect(within.compacted).toBe(false);
    expect(within.patches).toHaveLength(100); // each task.add: the task, and nextId
    const next = await core.execute('task.add', { title: 'after' }, { principal: alice });
    expect(next.status === 'success' && next.revision).toBe(201);
    expect(codeOf(await core.state.rollback('board', 100).catch((e: unknown) => e))).toBe(
      'revision_compacted',
    );
  });

  it('removes commits of megabytes as well as small ones, batch by batch, and keeps what it should', async () => {
    const { core } = await boardCore();
    // Every fourth commit writes ~5 MB of notes (its patch; its inverse is the next commit's).
    for (let i = 0; i < 24; i++) {
      await core.state.update('board', (draft: { settings: Record<string, unknown> }) => {
        draft.settings.notes =
          i % 4 === 0 ? Array.from({ length: 5 }, (_, n) => `${i}.${n}`.padEnd(1_000_000, 'x')) : [`${i}`];
      });
    }
    const head = await core.state.get('board');
    const { oldestRevision, removed } = await core.state.compact('board', { keepCommits: 5 });
    expect(oldestRevision).toBe(head.revision - 5);
    expect(removed).toBe(oldestRevision);
    const page = await core.state.history('board', oldestRevision, 100);
    expect(page.commits.map((commit) => commit.revision)).toEqual(
      Array.from({ length: head.revision - oldestRevision }, (_, n) => oldestRevision + 1 + n),
    );
    expect(await core.state.get('board')).toEqual(head);
    const before = await core.state.get('board', { revision: oldestRevision - 1 }).catch((e: unknown) => e);
    expect(codeOf(before)).toBe('revision_compacted');
  });

  it('cuts a compaction batch where its commits pass the byte budget, the first one whatever its size', () => {
    expect(batchEnd([], 10)).toBeUndefined();
    expect(batchEnd([[7, 50]], 10)).toBe(7);
    expect(
      batchEnd(
        [
          [1, 3],
          [2, 3],
          [3, 3],
          [4, 3],
        ],
        10,
      ),
    ).toBe(3);
    expect(
      batchEnd(
        [
          [1, 3],
          [2, 30],
          [3, 3],
        ],
        10,
      ),
    ).toBe(1);
    expect(
      batchEnd(
        [
          [1, 3],
          [2, 7],
          [3, 1],
        ],
        10,
      ),
    ).toBe(2);
  });

  it('keeps commits younger than keepDays even beyond keepCommits', async () => {
    const { core } = await boardCore();
    for (let i = 0; i < 30; i++) await core.execute('task.add', { title: `t${i}` }, { principal: alice });
    expect(await core.state.compact('board', { keepCommits: 5, keepDays: 1 })).toMatchObject({
      removed: 0,
      oldestRevision: 0,
    });
    await expect(core.state.compact('board', {})).rejects.toThrow(/keepCommits or keepDays/);
  });
});

// --- optimistic concurrency and idempotency over MCP --------------------------------------------------

describe('over MCP', () => {
  it('expected revision: two clients race with the same expected revision; one wins, the other gets revision_conflict', async () => {
    const server = await startInProcess({ app: taskboard });
    cleanups.push(() => server.close());
    const a = await httpClient(server.url, await server.key('a', 'member'), 'legacy');
    const b = await httpClient(server.url, await server.key('b', 'member'), 'modern');
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const head = (await server.core.state.get('board')).revision;
    const call = (c: typeof a, title: string) =>
      c.callTool({ name: 'task.add', arguments: { title }, _meta: { 'coremcp/expected-revision': head } });
    const [ra, rb] = await Promise.all([call(a, 'from a'), call(b, 'from b')]);
    const results = [ra, rb];
    expect(results.filter((r) => !r.isError)).toHaveLength(1);
    const loser = results.find((r) => r.isError)!;
    expect(structured(loser).error).toMatchObject({
      code: 'revision_conflict',
      details: { expectedRevision: head, currentRevision: head + 1 },
    });
    expect((await server.core.state.get('board')).revision).toBe(head + 1);
  });

  it('idempotency key sent 20 times at once: one commit, 20 equal results; still one after a restart', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'state.db');
    let server = await startInProcess({ app: taskboard, store: new SqliteStore({ path }) });
    const key = await server.key('agent', 'member');
    const clients = await Promise.all(Array.from({ length: 4 }, () => httpClient(server.url, key)));
    const send = (i: number) =>
      clients[i % clients.length]!.callTool({
        name: 'task.add',
        arguments: { title: 'exactly once' },
        _meta: { 'coremcp/idempotency-key': 'order-42' },
      });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => send(i)));
    expect(results.every((r) => !r.isError)).toBe(true);
    expect(
      new Set(
        results.map((r) =>
          JSON.stringify([
            r.structuredContent,
            r._meta?.['coremcp/revision'],
            r._meta?.['coremcp/command-id'],
          ]),
        ),
      ).size,
    ).toBe(1);
    expect(results.filter((r) => r._meta?.['coremcp/replayed'] === true)).toHaveLength(19);
    await Promise.all(clients.map((c) => c.close()));
    await server.close();

    server = await startInProcess({ app: taskboard, store: new SqliteStore({ path }) });
    cleanups.push(() => server.close());
    const again = await httpClient(server.url, key);
    cleanups.push(() => again.close());
    const repeat = await again.callTool({
      name: 'task.add',
      arguments: { title: 'exactly once' },
      _meta: { 'coremcp/idempotency-key': 'order-42' },
    });
    expect(repeat.structuredContent).toEqual(results[0]!.structuredContent);
    expect(repeat._meta?.['coremcp/replayed']).toBe(true);
    const { value, revision } = await server.core.state.get<{ tasks: Record<string, unknown> }>('board');
    expect(Object.keys(value.tasks)).toHaveLength(1);
    expect(revision).toBe(1);
    const reused = await again.callTool({
      name: 'task.add',
      arguments: { title: 'different' },
      _meta: { 'coremcp/idempotency-key': 'order-42' },
    });
    expect(errorCodeOf(reused)).toBe('idempotency_key_reused');
  });
});

describe('refused revisions and ranges', () => {
  it('answers bad revisions, unknown documents and oversized ranges with typed errors', async () => {
    const server = await startInProcess({ app: taskboard, limits: { state: { maxRangeCommits: 5 } } });
    cleanups.push(() => server.close());
    const client = await httpClient(server.url, await server.key('root', 'admin'));
    cleanups.push(() => client.close());
    for (let i = 0; i < 8; i++) await client.callTool({ name: 'task.add', arguments: { title: `t${i}` } });
    const read = (uri: string) =>
      client.readResource({ uri }).then(
        () => undefined,
        (e: unknown) => codeOf(e),
      );
    for (const from of ['-1', '1.5', 'abc', '', '1e3'])
      expect(await read(`coremcp://state/board/diff?from=${from}`)).toBe('invalid_revision');
    expect(await read('coremcp://state/board/diff?from=99')).toBe('invalid_revision');
    expect(await read('coremcp://state/board?revision=99')).toBe('invalid_revision');
    expect(await read('coremcp://state/board/diff?from=1')).toBe('range_too_large');
    expect(await read('coremcp://state/board/diff?from=4')).toBeUndefined();
    expect(await read('coremcp://state/nope')).toBe('not_found');
    expect(await read('coremcp://state/board/history?limit=5000')).toBe('range_too_large');
    for (const bad of [-1, 1.5, '3', null]) {
      const r = await client.callTool({
        name: 'task.add',
        arguments: { title: 'x' },
        _meta: { 'coremcp/expected-revision': bad },
      });
      expect(errorCodeOf(r)).toBe('invalid_revision');
    }
    for (const bad of ['x'.repeat(256), 42, { k: 1 }, '']) {
      const r = await client.callTool({
        name: 'task.add',
        arguments: { title: 'x' },
        _meta: { 'coremcp/idempotency-key': bad },
      });
      expect(errorCodeOf(r)).toBe('invalid_input');
    }
    expect((await server.core.state.get('board')).revision).toBe(8);
  });
});
