/**
 * What survives and what races: state and revision across a server restart, and 50 clients claiming
 * one task at once over HTTP.
 */
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { ApiKeys, SqliteStore, verifyAuditRecords } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import { errorCodeOf, httpClient, runCli, startServerProcess, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function readBoard(client: Client): Promise<{ revision: number; value: unknown }> {
  const result = await client.readResource({ uri: 'coremcp://state/board' });
  const content = result.contents[0] as { text: string; _meta: Record<string, unknown> };
  return { revision: content._meta['coremcp/revision'] as number, value: JSON.parse(content.text) };
}

describe('persistence', () => {
  it('keeps state and revision across a restart of the server process, and prints the first key only once', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const first = await startServerProcess(['--data-dir', tmp.dir]);
    const key = first.firstKey!;
    expect(key).toMatch(/^cmcp_/);
    const client = await httpClient(first.url, key);
    for (const title of ['one', 'two', 'three'])
      await client.callTool({ name: 'task.add', arguments: { title } });
    await client.callTool({ name: 'task.claim', arguments: { id: 'T-2' } });
    const before = await readBoard(client);
    expect(before.revision).toBe(4);
    await client.close();
    expect(await first.stop()).toBe(0);

    const second = await startServerProcess(['--data-dir', tmp.dir]);
    cleanups.push(() => second.stop());
    expect(second.firstKey).toBeUndefined();
    expect(second.stderr()).not.toMatch(/cmcp_/);
    const again = await httpClient(second.url, key);
    cleanups.push(() => again.close());
    expect(await readBoard(again)).toEqual(before);

    const next = await again.callTool({ name: 'task.add', arguments: { title: 'four' } });
    expect(next._meta?.['coremcp/revision']).toBe(5);
    expect((structured(next).task as { id: string }).id).toBe('T-4');

    const cli = await runCli(['state', 'get', '--doc', 'board', '--data-dir', tmp.dir]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ doc: 'board', revision: 5 });
  });
});

describe('concurrency', () => {
  it('50 clients claiming one task at once over HTTP: 1 success, 49 task_already_claimed, one commit', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const server = await startServerProcess(['--data-dir', tmp.dir]);
    cleanups.push(() => server.stop());

    // Keys are made beside the running server, on the same SQLite file, as `coremcp keys create` does.
    const store = new SqliteStore({ path: join(tmp.dir, 'coremcp.db') });
    await store.open();
    cleanups.push(() => store.close());
    const keys = new ApiKeys(store);
    const agents = await Promise.all(
      Array.from({ length: 50 }, (_, i) => keys.create(`agent-${i}`, 'member')),
    );

    const admin = await httpClient(server.url, server.firstKey);
    cleanups.push(() => admin.close());
    const added = await admin.callTool({ name: 'task.add', arguments: { title: 'contended' } });
    const id = (structured(added).task as { id: string }).id;
    const revisionBefore = added._meta?.['coremcp/revision'] as number;

    // Half the agents speak the 2025-11-25 protocol, half 2026-07-28.
    const clients = await Promise.all(
      agents.map((a, i) => httpClient(server.url, a.key, i % 2 === 0 ? 'legacy' : 'modern')),
    );
    cleanups.push(() => Promise.all(clients.map((c) => c.close())));
    const results = await Promise.all(
      clients.map((c) => c.callTool({ name: 'task.claim', arguments: { id } })),
    );

    const winners = results.filter((r) => !r.isError);
    const losers = results.filter((r) => r.isError);
    expect(winners).toHaveLength(1);
    expect(losers).toHaveLength(49);
    const holder = (structured(winners[0]).task as { assignee: string }).assignee;
    for (const loser of losers) {
      expect(errorCodeOf(loser)).toBe('task_already_claimed');
      expect((structured(loser).error as { details: { holder: string } }).details.holder).toBe(holder);
    }

    const history = await admin.readResource({
      uri: `coremcp://state/board/history?since=${revisionBefore}`,
    });
    const commits = JSON.parse((history.contents[0] as { text: string }).text).commits as Array<{
      command: string;
      principal: string;
    }>;
    expect(commits).toEqual([expect.objectContaining({ command: 'task.claim', principal: holder })]);

    const audit = (await store.readAudit({ command: 'task.claim' })).map((r) => r.outcome);
    expect(audit.filter((o) => o === 'ok')).toHaveLength(1);
    expect(audit.filter((o) => o === 'task_already_claimed')).toHaveLength(49);
    expect(verifyAuditRecords(await store.readAudit({})).ok).toBe(true);
  });
});
