/**
 * Operator actions that win: a CLI rollback and undo succeed while four clients keep writing to the
 * same document through a server in another process, and task ids are never handed out twice after
 * a rollback.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { httpClient, runCli, startServerProcess, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('operator actions under load', () => {
  it('rolls back and undoes from the CLI while 4 clients write, and never reuses a task id', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const config = join(tmp.dir, 'config.json');
    writeFileSync(config, JSON.stringify({ limits: { rate: { perSecond: 100_000, burst: 100_000 } } }));
    const server = await startServerProcess(['--data-dir', tmp.dir, '--config', config]);
    cleanups.push(() => server.stop());
    const clients = await Promise.all([0, 1, 2, 3].map(() => httpClient(server.url, server.firstKey!)));
    cleanups.push(() => Promise.all(clients.map((c) => c.close())));
    const ids = new Set<string>();
    let writing = true;
    let added = 0;
    const writers = clients.map(async (client, w) => {
      while (writing) {
        const result = await client.callTool({ name: 'task.add', arguments: { title: `w${w}` } });
        if (result.isError) throw new Error(JSON.stringify(result.structuredContent));
        const { id } = structured(result).task as { id: string };
        expect(ids.has(id), `id ${id} handed out twice`).toBe(false);
        ids.add(id);
        added++;
      }
    });
    try {
      await waitFor(() => added >= 40, { message: '40 tasks added' });
      for (let round = 0; round < 3; round++) {
        const rolled = await runCli([
          'state',
          'rollback',
          '--doc',
          'board',
          '--to',
          '5',
          '--data-dir',
          tmp.dir,
        ]);
        expect(rolled.stderr).not.toMatch(/conflict_retries_exhausted/);
        expect(rolled.code).toBe(0);
        const history = await runCli([
          'state',
          'history',
          '--doc',
          'board',
          '--limit',
          '500',
          '--json',
          '--data-dir',
          tmp.dir,
        ]);
        const commits = (
          JSON.parse(history.stdout) as { commits: Array<{ command: string; commandId: string }> }
        ).commits;
        const rollback = commits.filter((c) => c.command === 'state.rollback').at(-1)!;
        const undone = await runCli(['state', 'undo', rollback.commandId, '--data-dir', tmp.dir]);
        // Undo may meet later commits to the same tasks (undo_conflict is a refusal, not a lost race).
        expect(undone.stderr).not.toMatch(/conflict_retries_exhausted|store_busy/);
        const before = added;
        await waitFor(() => added >= before + 20, { message: 'writers to go on after the undo' });
      }
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    expect(ids.size).toBe(added);
  });
});
