/**
 * Two `coremcp serve` processes on one data directory, both writing one document as fast as they
 * can: neither starves the other's writes into `conflict_retries_exhausted`, and every acknowledged
 * commit is there afterwards, once.
 */

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { afterEach, describe, expect, it } from 'vitest';
import { errorCodeOf, httpClient, startServerProcess, structured } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('two servers on one data directory', () => {
  it('both keep writing one document under sustained load from the other', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const config = join(tmp.dir, 'coremcp.config.json');
    writeFileSync(config, JSON.stringify({ limits: { rate: { perSecond: 100_000, burst: 100_000 } } }));
    const a = await startServerProcess(['--data-dir', tmp.dir, '--config', config]);
    cleanups.push(() => a.stop());
    const key = a.firstKey!;
    const b = await startServerProcess(['--data-dir', tmp.dir, '--config', config]);
    cleanups.push(() => b.stop());
    const clients: Array<[string, Client]> = [];
    for (const [name, url] of [
      ['a1', a.url],
      ['a2', a.url],
      ['a3', a.url],
      ['b1', b.url],
    ] as const) {
      const client = await httpClient(url, key);
      cleanups.push(() => client.close());
      clients.push([name, client]);
    }
    const failures: string[] = [];
    const ids: string[] = [];
    await Promise.all(
      clients.map(async ([name, client]) => {
        for (let i = 0; i < 250; i++) {
          const result = await client.callTool({ name: 'task.add', arguments: { title: `${name} ${i}` } });
          const code = errorCodeOf(result);
          if (code) failures.push(`${name}: ${code}`);
          else ids.push((structured(result).task as { id: string }).id);
        }
      }),
    );
    expect(failures).toEqual([]);
    expect(new Set(ids).size).toBe(1000);
    const [, reader] = clients[0]!;
    let listed = 0;
    let cursor: string | undefined;
    do {
      const page = structured(
        await reader.callTool({
          name: 'task.list',
          arguments: { limit: 1000, ...(cursor ? { cursor } : {}) },
        }),
      );
      listed += (page.tasks as unknown[]).length;
      cursor = page.nextCursor as string | undefined;
    } while (cursor);
    expect(listed).toBe(1000);
  });
});
