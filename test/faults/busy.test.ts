/**
 * Another process holds the SQLite write lock (a backup, the CLI, a second writer): writes wait for it
 * asynchronously, a bounded time, then fail `store_busy`; the server keeps answering meanwhile, and
 * writes work again as soon as the lock is released.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../../examples/taskboard/app.js';
import { createCore, localPrincipal, SqliteStore } from '../../src/index.js';
import { errorCodeOf, httpClient, runCli, startServerProcess, structured } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { holdWriteLock, probe } from './faults.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('a foreign write lock', () => {
  it('fails writes with store_busy within the wait allowed, keeps /healthz answering, reads working, and recovers on release', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const server = await startServerProcess(['--data-dir', tmp.dir]);
    cleanups.push(() => server.stop());
    const client = await httpClient(server.url, server.firstKey);
    cleanups.push(() => client.close());
    expect(
      errorCodeOf(await client.callTool({ name: 'task.add', arguments: { title: 'before' } })),
    ).toBeUndefined();

    const lock = await holdWriteLock(join(tmp.dir, 'coremcp.db'));
    cleanups.push(() => lock.release());

    const started = performance.now();
    const write = client.callTool({ name: 'task.add', arguments: { title: 'during' } });
    // While the write waits for the lock, the process answers at once: nothing waits synchronously.
    let waiting = true;
    const healthTimes: number[] = [];
    void write.finally(() => {
      waiting = false;
    });
    while (waiting) {
      const health = await probe(server.url, '/healthz');
      expect(health.status).toBe(200);
      healthTimes.push(health.ms);
    }
    const failed = await write;
    const waitedMs = performance.now() - started;
    expect(errorCodeOf(failed)).toBe('store_busy');
    expect(waitedMs).toBeGreaterThan(1500);
    // One bounded wait for the commit; the failure's audit record does not wait a second time.
    expect(waitedMs).toBeLessThan(3500);
    expect(healthTimes.length).toBeGreaterThan(5);
    expect(Math.max(...healthTimes)).toBeLessThan(250);

    const ready = await probe(server.url, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks?.store_write?.status).toBe('unhealthy');
    expect(ready.body.checks?.store_write?.detail).toMatch(/store_busy|circuit_open/);
    expect(ready.body.checks?.store?.status).toBe('healthy');

    // Reads answer while the lock is held (their audit records are logged and counted instead).
    const list = await client.callTool({ name: 'task.list', arguments: {} });
    expect(errorCodeOf(list)).toBeUndefined();
    expect((structured(list).tasks as unknown[]).length).toBe(1);

    await lock.release();
    const released = performance.now();
    const after = await waitFor(
      async () => {
        const result = await client.callTool({ name: 'task.add', arguments: { title: 'after' } });
        return errorCodeOf(result) === undefined && result;
      },
      { message: 'a write to succeed after the lock was released' },
    );
    expect(performance.now() - released).toBeLessThan(1000);
    expect((structured(after).task as { id: string }).id).toBe('T-2');
    expect((await probe(server.url, '/readyz')).status).toBe(200);
    expect(server.stderr()).not.toMatch(/\n\s+at /);

    await client.close();
    expect(await server.stop()).toBe(0);
    // The refused write changed nothing and every record is chained.
    const verify = await runCli(['audit', 'verify', '--data-dir', tmp.dir]);
    expect(verify.code).toBe(0);
    const board = await runCli(['state', 'get', '--doc', 'board', '--data-dir', tmp.dir]);
    expect(JSON.stringify(JSON.parse(board.stdout))).not.toContain('during');
  });

  it('lets a snapshot give up on the lock without opening the circuit for the calls behind it', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'coremcp.db');
    const store = new SqliteStore({ path, busyWaitMs: 100 });
    const core = await createCore({ app: taskboard, store });
    cleanups.push(() => core.close());
    const principal = localPrincipal('agent');
    const added = await core.execute('task.add', { title: 'one' }, { principal });
    expect(added.status).toBe('success');
    const head = await core.state.read('board');

    const lock = await holdWriteLock(path);
    cleanups.push(() => lock.release());
    // A snapshot is optional work: it waits for the lock like a write, then fails, typed.
    await expect(
      store.writeSnapshot('board', { revision: head.revision, value: { wipLimit: 5 } }),
    ).rejects.toMatchObject({ code: 'store_busy' });
    await lock.release();
    // Nothing it met counts against the store: the next call commits at once, no circuit_open.
    const next = await core.execute('task.add', { title: 'two' }, { principal });
    expect(next.status).toBe('success');
  });
});
