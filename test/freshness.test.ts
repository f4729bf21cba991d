/**
 * Decisions on a current head: two runtimes on one data directory (as two `coremcp serve` processes
 * would be) never refuse, or answer "nothing to do", on a head the other has moved past — and never
 * store such a refusal for an idempotency key.
 */
import { join } from 'node:path';
import { createCore, localPrincipal, SqliteStore } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function twoOnOneFile() {
  const tmp = tempDir();
  cleanups.push(tmp.remove);
  const path = join(tmp.dir, 'state.db');
  const a = await createCore({ app: taskboard, store: new SqliteStore({ path }) });
  const b = await createCore({ app: taskboard, store: new SqliteStore({ path }) });
  cleanups.push(
    () => a.close(),
    () => b.close(),
  );
  return { a, b };
}

const alice = localPrincipal('alice', ['member']);
const bob = localPrincipal('bob', ['member']);

describe('decisions on a current head', () => {
  it('claims on B a task just added through A (B never follows the store here)', async () => {
    const { a, b } = await twoOnOneFile();
    for (let i = 0; i < 20; i++) {
      // B asks first: the task does not exist yet, and B's cache now says so.
      const early = await b.execute('task.claim', { id: `T-${i + 1}` }, { principal: bob });
      expect(early.status === 'error' && early.error.code).toBe('task_not_found');
      const added = await a.execute('task.add', { title: `t${i}` }, { principal: alice });
      if (added.status !== 'success') throw new Error('add failed');
      const id = (added.result as { task: { id: string } }).task.id;
      const claimed = await b.execute('task.claim', { id }, { principal: bob });
      expect(claimed.status === 'success' ? 'ok' : claimed.status === 'error' && claimed.error.code).toBe(
        'ok',
      );
      expect(claimed.status === 'success' && claimed.revision).toBe(added.revision + 1);
      const released = await b.execute('task.release', { id }, { principal: bob });
      expect(released.status).toBe('success');
    }
  });

  it('decides a no-op on a current head: a claim that changes nothing on a stale head is refused on the current one', async () => {
    const { a, b } = await twoOnOneFile();
    const added = await a.execute('task.add', { title: 'x' }, { principal: alice });
    const id = (added as unknown as { result: { task: { id: string } } }).result.task.id;
    // Bob claims through B (B caches the task as held by bob), then releases it through A, and
    // alice claims it through A.
    expect((await b.execute('task.claim', { id }, { principal: bob })).status).toBe('success');
    expect((await a.execute('task.release', { id }, { principal: bob })).status).toBe('success');
    expect((await a.execute('task.claim', { id }, { principal: alice })).status).toBe('success');
    // On B's stale head bob still holds it, and claiming again changes nothing; on the current one
    // alice holds it.
    const claimed = await b.execute('task.claim', { id }, { principal: bob });
    expect(claimed.status === 'error' && claimed.publicError).toMatchObject({
      code: 'task_already_claimed',
      details: { holder: 'alice' },
    });
  });

  it('never stores an idempotent refusal decided on a stale head', async () => {
    const { a, b } = await twoOnOneFile();
    const early = await b.execute('task.claim', { id: 'T-1' }, { principal: bob });
    expect(early.status === 'error' && early.error.code).toBe('task_not_found');
    const added = await a.execute('task.add', { title: 'x' }, { principal: alice });
    const id = (added as unknown as { result: { task: { id: string } } }).result.task.id;
    expect(id).toBe('T-1');
    const first = await b.execute('task.claim', { id }, { principal: bob, idempotencyKey: 'claim-1' });
    expect(first.status).toBe('success');
    const again = await b.execute('task.claim', { id }, { principal: bob, idempotencyKey: 'claim-1' });
    expect(again).toMatchObject({ status: 'success', replayed: true });
  });

  it('checks an expected revision against the store, not a stale cache', async () => {
    const { a, b } = await twoOnOneFile();
    await b.state.get('board');
    const added = await a.execute('task.add', { title: 'x' }, { principal: alice });
    const head = (added as { revision: number }).revision;
    const next = await b.execute('task.add', { title: 'y' }, { principal: bob, expectedRevision: head });
    expect(next).toMatchObject({ status: 'success', revision: head + 1 });
    const stale = await b.execute('task.add', { title: 'z' }, { principal: bob, expectedRevision: head });
    expect(stale.status === 'error' && stale.error.code).toBe('revision_conflict');
  });
});
