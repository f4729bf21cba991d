import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/helpers/tmp.js';
import { MemoryStore } from '../store/memory.js';
import { SqliteStore } from '../store/sqlite.js';
import { isCoreMcpError } from './errors.js';
import { StateManager } from './state.js';
import type { Store } from './store.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function manager(
  options: ConstructorParameters<typeof StateManager>[1] = {},
  store: Store = new MemoryStore(),
) {
  await store.open();
  cleanups.push(() => store.close());
  const state = new StateManager(store, { documents: { d: { n: 0, items: [] } }, ...options });
  await state.open();
  return state;
}

function codeOf(error: unknown): string | undefined {
  return isCoreMcpError(error) ? error.code : undefined;
}

describe('StateManager.update', () => {
  it('commits a change as the next revision with forward and inverse patches', async () => {
    const state = await manager();
    const result = await state.update<{ n: number }, string>('d', (draft) => {
      draft.n = 5;
      return 'done';
    });
    expect(result).toMatchObject({
      revision: 1,
      committed: true,
      result: 'done',
      patches: [{ op: 'replace', path: '/n', value: 5 }],
    });
    const [commit] = await state.store.readCommits('d', { after: 0 });
    expect(commit?.inverse).toEqual([{ op: 'replace', path: '/n', value: 0 }]);
    expect((await state.get('d')).value).toEqual({ n: 5, items: [] });
  });

  it('leaves the state untouched when the mutation throws', async () => {
    const state = await manager();
    await expect(
      state.update<{ n: number }>('d', (draft) => {
        draft.n = 99;
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await state.get('d')).toEqual({ doc: 'd', revision: 0, value: { n: 0, items: [] } });
    expect(await state.store.readCommits('d', { after: 0 })).toEqual([]);
  });

  it('commits nothing when nothing changed', async () => {
    const state = await manager();
    const result = await state.update<{ n: number }>('d', (draft) => {
      draft.n = 0;
    });
    expect(result).toMatchObject({ committed: false, revision: 0 });
  });

  it('refuses values that are not plain JSON, naming the path', async () => {
    const state = await manager();
    for (const bad of [undefined, Number.NaN, new Date(), () => 1]) {
      const error = await state
        .update<Record<string, unknown>>('d', (draft) => {
          draft.bad = bad;
        })
        .catch((e: unknown) => e);
      expect(codeOf(error)).toBe('state_invalid');
      expect((error as { details: { path: string } }).details.path).toBe('/bad');
    }
    expect((await state.get('d')).revision).toBe(0);
  });

  it('hands out deeply frozen values that later commits never change', async () => {
    const state = await manager();
    const before = await state.get<{ n: number; items: number[] }>('d');
    await state.update<{ items: number[] }>('d', (draft) => {
      draft.items.push(1);
    });
    expect(Object.isFrozen(before.value)).toBe(true);
    expect(before.value.items).toEqual([]);
    const after = await state.get<{ items: number[] }>('d');
    expect(Object.isFrozen(after.value.items)).toBe(true);
    expect(() => {
      (after.value.items as number[]).push(2);
    }).toThrow(TypeError);
  });

  it('lets a result contain parts of the draft', async () => {
    const state = await manager();
    const result = await state.update<{ items: Array<{ id: number }> }, { item: { id: number } }>(
      'd',
      (draft) => {
        draft.items.push({ id: 1 });
        const item = draft.items[0]!;
        item.id = 2;
        return { item };
      },
    );
    expect(result.result).toEqual({ item: { id: 2 } });
  });

  it('refuses a document over the size limit', async () => {
    const state = await manager({ limits: { maxBytes: 1000 } });
    const error = await state
      .update<{ big?: string }>('d', (draft) => {
        draft.big = 'x'.repeat(2000);
      })
      .catch((e: unknown) => e);
    expect(codeOf(error)).toBe('state_too_large');
    expect((await state.get('d')).revision).toBe(0);
  });

  it('serializes writers to one document in arrival order', async () => {
    const state = await manager();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        state.update<{ items: number[] }>('d', async (draft) => {
          await new Promise((resolve) => setTimeout(resolve, i % 3));
          draft.items.push(i);
        }),
      ),
    );
    const { revision, value } = await state.get<{ items: number[] }>('d');
    expect(revision).toBe(50);
    expect(value.items).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('commits only at the expected revision', async () => {
    const state = await manager();
    await state.update<{ n: number }>('d', (draft) => {
      draft.n = 1;
    });
    const error = await state
      .update<{ n: number }>(
        'd',
        (draft) => {
          draft.n = 2;
        },
        { expectedRevision: 0 },
      )
      .catch((e: unknown) => e);
    expect(codeOf(error)).toBe('revision_conflict');
    expect((error as { details: unknown }).details).toEqual({
      doc: 'd',
      expectedRevision: 0,
      currentRevision: 1,
    });
  });
});

describe('StateManager across processes sharing one SQLite file', () => {
  it('reloads and re-runs when another writer committed first, losing no update', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 's.db');
    const a = await manager({}, new SqliteStore({ path }));
    const b = await manager({}, new SqliteStore({ path }));
    await a.get('d');
    await b.get('d');
    for (let i = 0; i < 20; i++) {
      await (i % 2 ? a : b).update<{ n: number }>('d', (draft) => {
        draft.n += 1;
      });
    }
    expect((await a.refresh('d')).value).toMatchObject({ n: 20 });
    expect(a.conflicts + b.conflicts).toBeGreaterThan(0);
    expect((await b.refresh('d')).revision).toBe(20);
  });
});

describe('reading history', () => {
  it('reads any past revision and diffs between revisions', async () => {
    const state = await manager({ snapshotEvery: 3 });
    for (let i = 1; i <= 7; i++) {
      await state.update<{ n: number }>('d', (draft) => {
        draft.n = i;
      });
    }
    await new Promise((resolve) => setImmediate(resolve));
    for (let r = 0; r <= 7; r++)
      expect((await state.get<{ n: number }>('d', { revision: r })).value.n).toBe(r);
    const diff = await state.diff('d', 2, 5);
    expect(diff).toMatchObject({ from: 2, to: 5, compacted: false });
    expect(diff.patches).toHaveLength(3);
  });

  it('refuses negative, fractional, non-numeric and future revisions with invalid_revision', async () => {
    const state = await manager();
    for (const revision of [-1, 1.5, Number.NaN, '2' as unknown as number, 99]) {
      expect(codeOf(await state.get('d', { revision }).catch((e: unknown) => e))).toBe('invalid_revision');
    }
    expect(codeOf(await state.diff('d', 3).catch((e: unknown) => e))).toBe('invalid_revision');
  });

  it('answers unknown documents with not_found', async () => {
    const state = await manager();
    expect(codeOf(await state.get('nope').catch((e: unknown) => e))).toBe('not_found');
  });
});
