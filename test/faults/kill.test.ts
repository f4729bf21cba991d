/**
 * `kill -9` in the middle of sustained writes: after a restart every acknowledged commit is there,
 * the audit chain matches the history, and the store verifies.
 */

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { afterEach, describe, expect, it } from 'vitest';
import { errorCodeOf, httpClient, runCli, startServerProcess, structured } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('kill -9 mid-write', () => {
  it('loses no acknowledged commit, and the restarted store verifies', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const config = join(tmp.dir, 'coremcp.config.json');
    writeFileSync(config, JSON.stringify({ limits: { rate: { perSecond: 100_000, burst: 100_000 } } }));
    const server = await startServerProcess(['--data-dir', tmp.dir, '--config', config]);
    const key = server.firstKey!;
    const clients: Client[] = [];
    for (let i = 0; i < 3; i++) {
      const client = await httpClient(server.url, key);
      cleanups.push(() => client.close().catch(() => {}));
      clients.push(client);
    }
    const acknowledged: string[] = [];
    let killed = false;
    const writers = clients.map(async (client, w) => {
      for (let i = 0; !killed; i++) {
        try {
          const result = await client.callTool(
            { name: 'task.add', arguments: { title: `w${w} ${i}` } },
            { timeout: 5000 },
          );
          if (errorCodeOf(result) === undefined)
            acknowledged.push((structured(result).task as { id: string }).id);
        } catch {
          return; // the connection went with the process
        }
      }
    });
    await waitFor(() => acknowledged.length >= 150, { message: '150 acknowledged writes' });
    const exited = new Promise((resolve) => server.child.once('exit', (_code, signal) => resolve(signal)));
    server.child.kill('SIGKILL');
    killed = true;
    expect(await exited).toBe('SIGKILL');
    await Promise.all(writers);

    const restarted = await startServerProcess(['--data-dir', tmp.dir, '--config', config]);
    cleanups.push(() => restarted.stop());
    const reader = await httpClient(restarted.url, key);
    cleanups.push(() => reader.close());
    const listed = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = structured(
        await reader.callTool({
          name: 'task.list',
          arguments: { limit: 1000, ...(cursor ? { cursor } : {}) },
        }),
      );
      for (const task of page.tasks as Array<{ id: string }>) listed.add(task.id);
      cursor = page.nextCursor as string | undefined;
    } while (cursor);
    expect(acknowledged.filter((id) => !listed.has(id))).toEqual([]);
    await reader.close();
    expect(await restarted.stop()).toBe(0);
    expect((await runCli(['audit', 'verify', '--data-dir', tmp.dir])).code).toBe(0);
    const verified = await runCli(['state', 'verify', '--data-dir', tmp.dir]);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
  });
});
