/**
 * Live changes: replicas following documents over HTTP in both eras while writers commit; lost
 * notifications; who may follow; commits from other processes (the CLI) reaching followers.
 */
import { join } from 'node:path';
import { Client, type JSONRPCMessage, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { type ReplicaChange, SqliteStore, StateReplica } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { type Era, httpClient, MODERN, runCli, startInProcess } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A client whose transport drops every `notifications/resources/updated` that `drop` selects. */
async function lossyClient(
  url: string,
  key: string,
  era: Era,
  drop: (n: number) => boolean,
): Promise<{ client: Client; dropped: () => number }> {
  const client = new Client(
    { name: 'lossy', version: '1' },
    { versionNegotiation: { mode: era === 'modern' ? { pin: MODERN } : 'legacy' } },
  );
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  const deliver = transport.onmessage!;
  let seen = 0;
  let dropped = 0;
  transport.onmessage = (message: JSONRPCMessage) => {
    if ('method' in message && message.method === 'notifications/resources/updated' && drop(seen++)) {
      dropped++;
      return;
    }
    deliver(message);
  };
  return { client, dropped: () => dropped };
}

async function serverWithWriters(writers: number) {
  const tmp = tempDir();
  cleanups.push(tmp.remove);
  const server = await startInProcess({
    app: taskboard,
    store: new SqliteStore({ path: join(tmp.dir, 'state.db') }),
  });
  cleanups.push(() => server.close());
  const keys = await Promise.all(
    Array.from({ length: writers }, (_, i) => server.key(`writer-${i}`, 'member')),
  );
  return { server, keys, tmp };
}

async function write(url: string, keys: string[], total: number): Promise<void> {
  const clients = await Promise.all(keys.map((k) => httpClient(url, k)));
  try {
    const per = total / clients.length;
    await Promise.all(
      clients.map(async (client, w) => {
        for (let i = 0; i < per; i++) {
          const r = await client.callTool({
            name: 'task.add',
            arguments: { title: `w${w}-${i}`, description: 'x'.repeat(i % 7) },
          });
          if (r.isError) throw new Error(JSON.stringify(r.structuredContent));
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

describe.each<Era>(['modern', 'legacy'])('a replica following over HTTP (%s era)', (era) => {
  it('ends deep-equal to the server, at the same revision, after 8 writers make 1,000 commits', async () => {
    const { server, keys } = await serverWithWriters(8);
    const viewer = await httpClient(server.url, await server.key('follower', 'viewer'), era);
    cleanups.push(() => viewer.close());
    const replica = new StateReplica(viewer, { doc: 'board' });
    const changes: ReplicaChange[] = [];
    replica.on('change', (change) => {
      changes.push(change);
      expect(change.revision).toBeGreaterThan(change.previousRevision);
    });
    await replica.watch({ resyncMs: 0 });
    cleanups.push(() => replica.unwatch());

    await write(server.url, keys, 1000);
    const head = await server.core.state.get('board');
    expect(head.revision).toBe(1000);
    await until(() => replica.revision === head.revision);
    expect(replica.get()).toEqual(head.value);
    expect(changes.length).toBeGreaterThan(1);
    expect(changes.every((c) => c.method === 'diff' || c.previousRevision === -1)).toBe(true);
  });

  it('repairs gaps when notifications are lost on the way', async () => {
    const { server, keys } = await serverWithWriters(8);
    const { client, dropped } = await lossyClient(
      server.url,
      await server.key('follower', 'viewer'),
      era,
      // Two of every three notifications are lost, then the rest arrive: each delivered one must bring
      // the replica across the revisions it never heard of. No periodic resync to fall back on.
      (n) => n % 3 !== 0 && n < 350,
    );
    cleanups.push(() => client.close());
    const replica = new StateReplica(client, { doc: 'board' });
    await replica.watch({ resyncMs: 0 });
    cleanups.push(() => replica.unwatch());

    await write(server.url, keys, 400);
    const head = await server.core.state.get('board');
    await until(() => replica.revision === head.revision);
    expect(replica.get()).toEqual(head.value);
    expect(dropped()).toBeGreaterThan(0);
  });
});

describe('a replica of a large collection', () => {
  it('loads 100,000 entries page by page, follows 8 writers by diff, and ends deep-equal', async () => {
    const { server, keys } = await serverWithWriters(8);
    await server.core.state.update(
      'board',
      (draft: { nextId: number; tasks: { set(id: string, task: object): void } }) => {
        draft.nextId = 100_001;
        for (let i = 1; i <= 100_000; i++) {
          const at = new Date(1_700_000_000_000 + i).toISOString();
          draft.tasks.set(`T-${i}`, {
            id: `T-${i}`,
            title: `seeded ${i}`,
            description: '',
            status: 'open',
            assignee: null,
            createdBy: 'seed',
            createdAt: at,
            updatedAt: at,
            note: null,
          });
        }
      },
    );
    await server.core.execute(
      'board.settings',
      { wipLimit: 100 },
      {
        principal: { id: 'root', roles: ['admin'], via: 'internal' },
      },
    );
    const viewer = await httpClient(server.url, await server.key('follower', 'viewer'));
    cleanups.push(() => viewer.close());
    const replica = new StateReplica(viewer, { doc: 'board' });
    const methods: string[] = [];
    replica.on('change', (change) => methods.push(change.method));
    await replica.watch({ resyncMs: 0 });
    cleanups.push(() => replica.unwatch());
    expect(Object.keys(replica.get<{ tasks: object }>()!.tasks)).toHaveLength(100_000);

    const clients = await Promise.all(keys.map((k) => httpClient(server.url, k)));
    cleanups.push(() => Promise.all(clients.map((c) => c.close())));
    await Promise.all(
      clients.map(async (client, w) => {
        for (let i = 0; i < 25; i++) {
          const id = `T-${1 + ((w * 7919 + i * 104_729) % 100_000)}`;
          const claimed = await client.callTool({ name: 'task.claim', arguments: { id } });
          if (!claimed.isError && i % 2 === 0)
            await client.callTool({ name: 'task.complete', arguments: { id, note: `w${w}` } });
          else if (!claimed.isError) await client.callTool({ name: 'task.release', arguments: { id } });
          const added = await client.callTool({ name: 'task.add', arguments: { title: `w${w}-${i}` } });
          if (added.isError) throw new Error(JSON.stringify(added.structuredContent));
        }
      }),
    );
    const head = await server.core.state.read('board', { limit: 1 });
    await until(() => replica.revision === head.revision);
    // The server's value, assembled page by page at the head revision.
    const expected = { ...(head.value as Record<string, unknown>), tasks: {} as Record<string, unknown> };
    let cursor: string | undefined;
    do {
      const page = await server.core.state.page('board', {
        collection: 'tasks',
        revision: head.revision,
        cursor,
        limit: 1000,
      });
      for (const [key, value] of page.entries) expected.tasks[key] = value;
      cursor = page.cursor;
    } while (cursor);
    expect(Object.keys(expected.tasks)).toHaveLength(100_200);
    expect(replica.get()).toEqual(expected);
    expect(methods[0]).toBe('full');
    expect(methods.slice(1).every((m) => m === 'diff')).toBe(true);
  }, 120_000);
});

describe('who may follow', () => {
  it('refuses to let a principal without the follow action subscribe, in both eras', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const server = await startInProcess({
      app: taskboard,
      store: new SqliteStore({ path: join(tmp.dir, 's.db') }),
      roles: { reader: { queries: true, documents: { '*': ['read'] } } },
    });
    cleanups.push(() => server.close());
    const key = await server.key('reader', 'reader');
    for (const era of ['legacy', 'modern'] as const) {
      const client = await httpClient(server.url, key, era);
      cleanups.push(() => client.close());
      const replica = new StateReplica(client, { doc: 'board' });
      await expect(replica.watch()).rejects.toMatchObject(
        era === 'legacy' ? { data: { code: 'forbidden' } } : {},
      );
      expect(replica.watching).toBe(false);
      await replica.sync();
      expect(replica.revision).toBe(0);
    }
  });
});

describe('commits from other processes', () => {
  it('reach followers: a CLI rollback is published like any commit', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'coremcp.db');
    const server = await startInProcess({ app: taskboard, store: new SqliteStore({ path }) });
    cleanups.push(() => server.close());
    const admin = await httpClient(server.url, await server.key('admin', 'admin'));
    cleanups.push(() => admin.close());
    for (const title of ['a', 'b', 'c']) await admin.callTool({ name: 'task.add', arguments: { title } });
    const replica = new StateReplica(admin, { doc: 'board' });
    await replica.watch({ resyncMs: 0 });
    cleanups.push(() => replica.unwatch());
    expect(replica.revision).toBe(3);

    const cli = await runCli(['state', 'rollback', '--doc', 'board', '--to', '1', '--data-dir', tmp.dir]);
    expect(cli.code).toBe(0);
    await until(() => replica.revision === 4);
    expect(Object.keys(replica.get<{ tasks: object }>()!.tasks)).toEqual(['T-1']);
    expect((await server.core.state.get('board')).revision).toBe(4);
  });
});
