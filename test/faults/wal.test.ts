/**
 * The write-ahead log under sustained writes, and the files under a running server: the log stays
 * bounded and is emptied when idle; a log or database file deleted or replaced under the server is
 * noticed, writes stop with a typed error, and no acknowledged commit is lost silently.
 */
import {
  closeSync,
  copyFileSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { createCore, localPrincipal, SqliteStore, type StoreCheckpointEvent } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import counterApp from '../fixtures/counter-app.js';
import { errorCodeOf, httpClient, runCli, startServerProcess, structured } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { probe } from './faults.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const walSize = (db: string) => statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0;

/** The log header's checkpoint sequence number (bytes 12–15, big-endian): one more per rewind. */
function checkpointSequence(db: string): number {
  const header = Buffer.alloc(16);
  const fd = openSync(`${db}-wal`, 'r');
  try {
    readSync(fd, header, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  return header.readUInt32BE(12);
}

async function serverIn(dir: string, config?: object) {
  const args = ['--data-dir', dir];
  if (config) {
    writeFileSync(join(dir, 'coremcp.config.json'), JSON.stringify(config));
    args.push('--config', join(dir, 'coremcp.config.json'));
  }
  const server = await startServerProcess(args);
  cleanups.push(() => server.stop());
  const client = await httpClient(server.url, server.firstKey);
  cleanups.push(() => client.close());
  return { server, client, key: server.firstKey! };
}

describe('the write-ahead log', () => {
  it('stays bounded under sustained writes and is emptied once the writes stop', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const { server, key } = await serverIn(tmp.dir, {
      store: { walLimitMiB: 1 },
      limits: { rate: { perSecond: 100_000, burst: 100_000 } },
    });
    const db = join(tmp.dir, 'coremcp.db');
    let largest = 0;
    let writing = true;
    const sampler = (async () => {
      while (writing) {
        largest = Math.max(largest, walSize(db));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const writers = await Promise.all(Array.from({ length: 4 }, () => httpClient(server.url, key)));
    cleanups.push(() => Promise.all(writers.map((w) => w.close())));
    let written = 0;
    await Promise.all(
      writers.map(async (writer, w) => {
        for (let i = 0; i < 250; i++) {
          const result = await writer.callTool({
            name: 'task.add',
            arguments: { title: `writer ${w} task ${i}`, description: 'x'.repeat(4000) },
          });
          expect(errorCodeOf(result)).toBeUndefined();
          written++;
        }
      }),
    );
    writing = false;
    await sampler;
    expect(written).toBe(1000);
    // 1,000 commits write over 20 MiB of log; the limit keeps it near 1 MiB, plus what writers add
    // between two checkpoints (100 ms apart, longer when the machine is busy).
    expect(largest).toBeGreaterThan(0);
    expect(largest, `largest log ${largest} bytes`).toBeLessThan(8 * 1024 * 1024);
    await waitFor(() => walSize(db) === 0, { message: 'the idle log to be truncated to 0 bytes' });
  });
});

describe('the checkpointer', () => {
  it('rewinds the log in place under sustained writes, and cuts it only once they stop', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'coremcp.db');
    // A checkpoint every 10 ms, so the log passes the 4 MiB limit between two of them by little and
    // never reaches the 16 MiB at which the file is cut at once.
    const store = new SqliteStore({ path, walLimitMiB: 4, checkpointIntervalMs: 10 });
    const core = await createCore({ app: counterApp, store, metrics: true });
    cleanups.push(() => core.close());
    const runs: StoreCheckpointEvent[] = [];
    store.watchCheckpoints((event) => runs.push(event));
    const writer = localPrincipal('writer', ['admin']);
    let previous = 0;
    let largest = 0;
    const shrank: number[] = [];
    const rewinds = new Set<number>();
    // Each commit adds ~30 KiB of log: 2,000 write ~60 MiB through a file that stays under 16 MiB.
    for (let i = 0; i < 2000; i++) {
      const result = await core.execute('counter.bump', {}, { principal: writer });
      expect(result.status).toBe('success');
      const size = walSize(path);
      // Cutting the file (a TRUNCATE, 10–20 ms of writers held off) shows as a smaller file.
      if (size < previous) shrank.push(previous);
      previous = size;
      rewinds.add(checkpointSequence(path));
      largest = Math.max(largest, size);
    }
    expect(shrank, 'the log was cut while writes went on').toEqual([]);
    expect(largest, `largest log ${largest} bytes`).toBeLessThan(16 * 1024 * 1024);
    // Rewound many times: each rewind writes a new log header with the next checkpoint sequence.
    expect(rewinds.size).toBeGreaterThan(5);
    expect(largest).toBeGreaterThan(4 * 1024 * 1024);
    // The worker reports a TRUNCATE after the file is cut: the file can be seen empty before the
    // event arrives, so both are awaited.
    const truncated = () => runs.some((run) => run.mode === 'truncate');
    await waitFor(() => walSize(path) === 0 && truncated(), {
      message: 'the idle log to be truncated to 0 bytes, and the TRUNCATE heard of',
    });
    // Every checkpoint run is heard of, with its mode, its time and the log it found, and RESTARTs
    // only when the live log passes the limit: ~60 MiB through 4 MiB is at most 15 of them. (A
    // RESTART holds writers off for milliseconds. Judged by the file, which keeps its size after a
    // rewind, every 10 ms tick ran one once the file had passed the limit: 40 and more here. The
    // rewinds seen in the header are no measure of it: a writer also rewinds the log itself after a
    // PASSIVE that copied everything, which a slow, loaded machine does often.)
    const modes = (mode: string) => runs.filter((run) => run.mode === mode);
    expect(modes('passive').length).toBeGreaterThan(10);
    expect(modes('restart').length).toBeGreaterThanOrEqual(1);
    expect(modes('restart').length).toBeLessThanOrEqual(24);
    expect(Math.max(...modes('restart').map((run) => run.frames)) * 4120).toBeGreaterThan(4 * 1024 * 1024);
    expect(modes('truncate').length).toBeGreaterThanOrEqual(1);
    for (const run of runs) {
      expect(run.durationMs).toBeGreaterThanOrEqual(0);
      expect(Math.abs(run.startedAt - Date.now())).toBeLessThan(60_000);
    }
    const metrics = await core.metrics!.render();
    expect(metrics).toContain(
      `coremcp_store_checkpoint_duration_seconds_count{mode="passive"} ${modes('passive').length}`,
    );
    expect(metrics).toMatch(/coremcp_store_checkpoint_duration_seconds_count\{mode="restart"\} [1-9]/);
    // In seconds: the histogram's sum is the events' milliseconds over 1,000.
    const sum = /coremcp_store_checkpoint_duration_seconds_sum\{mode="passive"\} (\S+)/.exec(metrics)?.[1];
    const ms = modes('passive').reduce((total, run) => total + run.durationMs, 0);
    expect(Number(sum)).toBeCloseTo(ms / 1000, 6);
  });

  it('starts with the first write, not at open, and the log is still emptied', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'coremcp.db');
    const seeded = await createCore({ app: counterApp, store: new SqliteStore({ path }) });
    await seeded.close();

    const store = new SqliteStore({ path });
    const core = await createCore({ app: counterApp, store });
    cleanups.push(() => core.close());
    // Opening an existing store with its documents declared writes nothing; a command (a read too:
    // its audit record) is a write.
    expect(store.checkpointing).toBe(false);
    const reader = localPrincipal('reader', ['admin']);
    expect(await core.execute('counter.read', {}, { principal: reader })).toMatchObject({
      status: 'success',
    });
    expect(store.checkpointing).toBe(true);
    for (let i = 0; i < 50; i++) await core.execute('counter.bump', {}, { principal: reader });
    expect(store.checkpointing).toBe(true);
    expect(walSize(path)).toBeGreaterThan(0);
    await waitFor(() => walSize(path) === 0, { message: 'the idle log to be truncated to 0 bytes' });
  });
});

/** Commits `count` bumps of the counter, 50 at a time (group commit puts each 50 in one transaction). */
async function bump(core: Awaited<ReturnType<typeof createCore>>, count: number): Promise<void> {
  for (let i = 0; i < count; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, () =>
        core.state.update('counter', (draft: { value: number }) => {
          draft.value += 1;
        }),
      ),
    );
  }
}

describe('compaction', () => {
  it('has the log rewound as it deletes: a large limit does not let the file grow with it', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'coremcp.db');
    // A limit the deletes never reach: only compaction's own checkpoints rewind the log.
    const store = new SqliteStore({ path, walLimitMiB: 64 });
    const core = await createCore({ app: counterApp, store });
    cleanups.push(() => core.close());
    await bump(core, 40_000);
    await waitFor(() => walSize(path) === 0, { message: 'the log to be emptied before compacting' });
    const runs: StoreCheckpointEvent[] = [];
    store.watchCheckpoints((event) => runs.push(event));
    const { removed } = await core.state.compact('counter', { keepCommits: 10 });
    expect(removed).toBe(39_990);
    // Deleting them writes ~12 MiB of log. Compaction paused for a checkpoint after each ~16 ms of
    // it, and each rewound the log (without them, the file grew to hold all of it: ~19 MB for
    // 60,000 commits). RESTART reports the frames the log held when rewound.
    const restarts = runs.filter((run) => run.mode === 'restart');
    expect(restarts.length).toBeGreaterThanOrEqual(3);
    const rewound = restarts.reduce((frames, run) => frames + run.frames, 0) * 4120;
    expect(walSize(path), `log file after ${rewound} bytes rewound`).toBeLessThan(rewound / 2);
    expect((await core.state.read('counter')).value).toEqual({ value: 40_000 });
  });

  it('runs to the end from the CLI, whose process has nothing else alive while it waits for a checkpoint', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const core = await createCore({
      app: counterApp,
      store: new SqliteStore({ path: join(tmp.dir, 'coremcp.db') }),
    });
    await bump(core, 40_000);
    await core.close();
    const compacted = await runCli([
      'state',
      'compact',
      '--doc',
      'counter',
      '--keep-commits',
      '10',
      '--data-dir',
      tmp.dir,
    ]);
    expect(compacted.stderr).toBe('');
    expect(compacted.code).toBe(0);
    expect(JSON.parse(compacted.stdout)).toMatchObject({
      doc: 'counter',
      oldestRevision: 39_990,
      removed: 39_990,
    });
  });
});

describe('files changed under a running server', () => {
  it('notices a deleted log, stops writes with store_corrupt, and keeps every acknowledged commit', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const { server, client, key } = await serverIn(tmp.dir);
    const db = join(tmp.dir, 'coremcp.db');
    const acknowledged: string[] = [];
    const add = async (title: string) => {
      const result = await client.callTool({ name: 'task.add', arguments: { title } });
      if (errorCodeOf(result) === undefined)
        acknowledged.push((structured(result).task as { id: string }).id);
      return errorCodeOf(result);
    };
    for (let i = 0; i < 5; i++) expect(await add(`before ${i}`)).toBeUndefined();

    rmSync(`${db}-wal`);
    // Writes go on until the server notices; then they stop, typed.
    const code = await waitFor(
      async () => {
        const outcome = await add('racing the check');
        return outcome !== undefined && outcome;
      },
      { message: 'writes to stop after the log was deleted' },
    );
    expect(code).toBe('store_corrupt');
    const ready = await probe(server.url, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks?.store_write?.detail).toMatch(/store_corrupt/);
    expect((await probe(server.url, '/healthz')).status).toBe(200);
    expect(server.stderr()).toMatch(/write-ahead log .* was replaced or deleted under the server/);

    await client.close();
    expect(await server.stop()).toBe(0);
    const restarted = await startServerProcess(['--data-dir', tmp.dir]);
    cleanups.push(() => restarted.stop());
    const again = await httpClient(restarted.url, key);
    cleanups.push(() => again.close());
    const list = await again.callTool({ name: 'task.list', arguments: {} });
    const ids = (structured(list).tasks as Array<{ id: string }>).map((t) => t.id);
    expect(ids).toEqual(expect.arrayContaining(acknowledged));
    expect(acknowledged.length).toBeGreaterThanOrEqual(5);
  });

  it('notices a replaced database file and stops writes with store_corrupt', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const { server, client } = await serverIn(tmp.dir);
    const db = join(tmp.dir, 'coremcp.db');
    expect(
      errorCodeOf(await client.callTool({ name: 'task.add', arguments: { title: 'one' } })),
    ).toBeUndefined();
    copyFileSync(db, `${db}.copy`);
    renameSync(`${db}.copy`, db);
    // At once, before any periodic check could run: the commit itself looks first.
    const first = await client.callTool({ name: 'task.add', arguments: { title: 'lost?' } });
    expect(errorCodeOf(first)).toBe('store_corrupt');
    const ready = await waitFor(
      async () => {
        const report = await probe(server.url, '/readyz');
        return report.status === 503 && report;
      },
      { message: '/readyz to go unready after the file was replaced' },
    );
    expect(ready.body.checks?.store_write?.detail).toMatch(/store_corrupt/);
    const refused = await client.callTool({ name: 'task.add', arguments: { title: 'two' } });
    expect(errorCodeOf(refused)).toBe('store_corrupt');
    expect((await probe(server.url, '/healthz')).status).toBe(200);
  });
});
