/**
 * A disk that fills up and a file system that is read-only, on a real tmpfs: writes fail with typed
 * codes, reads keep answering, /readyz names the failing check, and the server recovers without a
 * restart when space is freed.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { errorCodeOf, httpClient, runCli, startServerProcess, structured } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { probe, smallDisk } from './faults.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Fills the file system holding `path` to the last byte. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  try {
    for (const size of [1 << 20, 1 << 16, 1 << 12, 512]) {
      const chunk = Buffer.alloc(size, 1);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
}

async function metric(url: string, key: string, name: string): Promise<number> {
  const res = await fetch(new URL('/metrics', url), { headers: { authorization: `Bearer ${key}` } });
  const line = (await res.text()).split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('a full disk', () => {
  it('fails writes with storage_full, answers reads, says so on /readyz, and writes again once space is freed', async () => {
    const disk = smallDisk(8);
    cleanups.push(disk.remove);
    const dataDir = join(disk.dir, 'data');
    const server = await startServerProcess(['--data-dir', dataDir]);
    cleanups.push(() => server.stop());
    const key = server.firstKey!;
    const client = await httpClient(server.url, key);
    cleanups.push(() => client.close());
    expect(
      errorCodeOf(await client.callTool({ name: 'task.add', arguments: { title: 'kept' } })),
    ).toBeUndefined();
    // Wait for the idle checkpoint to empty the log, so the next commit must grow a file.
    await waitFor(
      async () => (await import('node:fs')).statSync(join(dataDir, 'coremcp.db-wal')).size === 0,
      {
        message: 'the write-ahead log to be truncated when idle',
      },
    );

    const filler = join(disk.dir, 'filler');
    fill(filler);
    const big = 'written-to-a-full-disk';
    const failed = await client.callTool({ name: 'task.add', arguments: { title: big } });
    expect(errorCodeOf(failed)).toBe('storage_full');
    // Until a probe succeeds, further writes fail fast, naming the fault.
    const again = await client.callTool({ name: 'task.add', arguments: { title: big } });
    expect(['storage_full', 'circuit_open']).toContain(errorCodeOf(again));

    const ready = await probe(server.url, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks?.store_write?.detail).toMatch(/storage_full|circuit_open/);
    expect((await probe(server.url, '/healthz')).status).toBe(200);

    const list = await client.callTool({ name: 'task.list', arguments: {} });
    expect(errorCodeOf(list)).toBeUndefined();
    expect((structured(list).tasks as unknown[]).length).toBe(1);
    expect(
      await metric(server.url, key, 'coremcp_audit_unrecorded_total{command="task.list"}'),
    ).toBeGreaterThan(0);
    expect(await metric(server.url, key, 'coremcp_store_faults_total{kind="full"}')).toBeGreaterThan(0);

    rmSync(filler);
    const freed = performance.now();
    const after = await waitFor(
      async () => {
        const result = await client.callTool({ name: 'task.add', arguments: { title: 'after' } });
        return errorCodeOf(result) === undefined && result;
      },
      { message: 'a write to succeed once space was freed' },
    );
    expect(performance.now() - freed).toBeLessThan(1000);
    expect((structured(after).task as { id: string }).id).toBe('T-2');
    expect((await probe(server.url, '/readyz')).status).toBe(200);
    expect(await metric(server.url, key, 'coremcp_store_recoveries_total{kind="full"}')).toBeGreaterThan(0);
    // How long writes failed, from the first failure to the first write that worked again.
    const down = await metric(server.url, key, 'coremcp_recovery_duration_seconds');
    expect(down).toBeGreaterThan(0);
    expect(down).toBeLessThan(60);
    expect(await metric(server.url, key, 'coremcp_store_fault_duration_seconds_count{kind="full"}')).toBe(1);

    await client.close();
    expect(await server.stop()).toBe(0);
    const verify = await runCli(['audit', 'verify', '--data-dir', dataDir]);
    expect(verify.code).toBe(0);
    const board = await runCli(['state', 'get', '--doc', 'board', '--data-dir', dataDir]);
    expect(board.stdout).not.toContain(big);
  });
});

describe('a read-only file system', () => {
  it('refuses to start with one line naming store_read_only, and starts once it is writable again', async () => {
    const disk = smallDisk(8);
    cleanups.push(disk.remove);
    const dataDir = join(disk.dir, 'data');
    const first = await startServerProcess(['--data-dir', dataDir]);
    const key = first.firstKey!;
    const client = await httpClient(first.url, key);
    await client.callTool({ name: 'task.add', arguments: { title: 'kept' } });
    await client.close();
    expect(await first.stop()).toBe(0);

    disk.remount('ro');
    const refused = await runCli(['serve', '--http', '127.0.0.1:0', '--data-dir', dataDir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/^coremcp: store_read_only: /);
    expect(refused.stderr).not.toMatch(/cmcp_/);

    disk.remount('rw');
    const second = await startServerProcess(['--data-dir', dataDir]);
    cleanups.push(() => second.stop());
    expect(second.firstKey).toBeUndefined();
    const again = await httpClient(second.url, key);
    cleanups.push(() => again.close());
    const list = await again.callTool({ name: 'task.list', arguments: {} });
    expect((structured(list).tasks as unknown[]).length).toBe(1);
  });
});

describe('a database made read-only under the running server', () => {
  it('fails writes with store_read_only, answers reads, and writes again once it is writable', async () => {
    // An immutable file (chattr +i) refuses writes even through descriptors already open; tmpfs has no
    // such flag, so this runs in the temporary folder (ext4 here).
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const server = await startServerProcess(['--data-dir', tmp.dir]);
    cleanups.push(() => server.stop());
    const key = server.firstKey!;
    const client = await httpClient(server.url, key);
    cleanups.push(() => client.close());
    expect(
      errorCodeOf(await client.callTool({ name: 'task.add', arguments: { title: 'kept' } })),
    ).toBeUndefined();
    const files = ['coremcp.db', 'coremcp.db-wal'].map((f) => join(tmp.dir, f));
    execFileSync('chattr', ['+i', ...files]);
    let immutable = true;
    cleanups.push(() => {
      if (immutable) execFileSync('chattr', ['-i', ...files]);
    });

    const refused = await client.callTool({ name: 'task.add', arguments: { title: 'refused' } });
    expect(errorCodeOf(refused)).toBe('store_read_only');
    const ready = await probe(server.url, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks?.store_write?.detail).toMatch(/store_read_only|circuit_open/);
    const list = await client.callTool({ name: 'task.list', arguments: {} });
    expect(errorCodeOf(list)).toBeUndefined();
    expect((structured(list).tasks as unknown[]).length).toBe(1);

    execFileSync('chattr', ['-i', ...files]);
    immutable = false;
    await waitFor(
      async () =>
        errorCodeOf(await client.callTool({ name: 'task.add', arguments: { title: 'after' } })) === undefined,
      { message: 'a write to succeed once the files were writable again' },
    );
    expect((await probe(server.url, '/readyz')).status).toBe(200);
    expect(await metric(server.url, key, 'coremcp_store_faults_total{kind="read_only"}')).toBeGreaterThan(0);
    await client.close();
    expect(await server.stop()).toBe(0);
    const board = await runCli(['state', 'get', '--doc', 'board', '--data-dir', tmp.dir]);
    expect(board.stdout).not.toContain('refused');
  });
});
