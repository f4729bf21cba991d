/**
 * Change notifications carry the document's new revision in `_meta` on every path a follower can
 * take (HTTP and stdio, 2025 `resources/subscribe` and 2026 `subscriptions/listen`, commits made here
 * or by another process), and task notifications travel on `subscriptions/listen` with `taskIds`.
 */
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { localPrincipal, SqliteStore, StateReplica } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import jobApp from './fixtures/job-app.js';
import { type Era, httpClient, startInProcess, stdioClient } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/wait.js';
import { modernResult, TASKS } from './helpers/wire.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const BOARD = 'coremcp://state/board';

type Updated = { uri: string; _meta?: Record<string, unknown> };

/** Follows the board the way the client's era does; returns what it hears. */
async function follow(client: Client, era: Era): Promise<Updated[]> {
  const heard: Updated[] = [];
  client.setNotificationHandler('notifications/resources/updated', (n) => {
    heard.push(n.params as Updated);
  });
  if (era === 'modern') {
    const subscription = await client.listen({ resourceSubscriptions: [BOARD] });
    cleanups.push(() => subscription.close());
  } else {
    await client.subscribeResource({ uri: BOARD });
  }
  return heard;
}

async function addTask(client: Client, title: string): Promise<number> {
  const added = await client.callTool({ name: 'task.add', arguments: { title } });
  return added._meta?.['coremcp/revision'] as number;
}

describe.each<Era>(['modern', 'legacy'])('revision in change notifications (%s)', (era) => {
  it('over HTTP, for this server’s commits and another process’s', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const path = join(tmp.dir, 'coremcp.db');
    const a = await startInProcess({ app: taskboard, store: new SqliteStore({ path }) });
    cleanups.push(() => a.close());
    const b = await startInProcess({ app: taskboard, store: new SqliteStore({ path }) });
    cleanups.push(() => b.close());
    const follower = await httpClient(a.url, await a.key('f', 'admin'), era);
    const writer = await httpClient(b.url, await b.key('w', 'admin'), era);
    cleanups.push(
      () => follower.close(),
      () => writer.close(),
    );
    const heard = await follow(follower, era);
    const local = await addTask(follower, 'here');
    const remote = await addTask(writer, 'elsewhere');
    await waitFor(() => heard.length >= 2, { message: 'two notifications' });
    expect(heard.map((n) => [n.uri, n._meta?.['coremcp/revision'], n._meta?.['coremcp/doc']])).toEqual([
      [BOARD, local, 'board'],
      [BOARD, remote, 'board'],
    ]);
  });

  it('over stdio', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const { client } = await stdioClient(['--data-dir', tmp.dir], era);
    cleanups.push(() => client.close());
    const heard = await follow(client, era);
    const revision = await addTask(client, 'one');
    await waitFor(() => heard.length >= 1, { message: 'a notification over stdio' });
    expect(heard[0]).toMatchObject({
      uri: BOARD,
      _meta: { 'coremcp/revision': revision, 'coremcp/doc': 'board' },
    });
  });

  it('lets a replica know it is behind from the notification alone', async () => {
    const server = await startInProcess({ app: taskboard });
    cleanups.push(() => server.close());
    const client = await httpClient(server.url, await server.key('f', 'admin'), era);
    cleanups.push(() => client.close());
    const replica = new StateReplica(client, { doc: 'board' });
    await replica.watch({ resyncMs: 0 });
    cleanups.push(() => replica.unwatch());
    expect([replica.revision, replica.knownRevision, replica.behind]).toEqual([0, 0, false]);
    // Hold the replica's reads so the notification is all it has.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const read = client.readResource.bind(client);
    client.readResource = (async (...args: Parameters<Client['readResource']>) => {
      await held;
      return read(...args);
    }) as Client['readResource'];
    await server.core.execute('task.add', { title: 'x' }, { principal: localPrincipal('w') });
    await waitFor(() => replica.knownRevision === 1, { message: 'the announced revision' });
    expect([replica.revision, replica.behind]).toEqual([0, true]);
    release();
    await waitFor(() => replica.revision === 1, { message: 'the replica to catch up' });
    expect(replica.behind).toBe(false);
  });
});

/** Reads a listen stream's events as they come. */
async function openListen(url: string, key: string, filter: Record<string, unknown>, capabilities?: object) {
  const controller = new AbortController();
  cleanups.push(() => controller.abort());
  const response = await fetch(url, {
    method: 'POST',
    signal: controller.signal,
    headers: {
      Authorization: `Bearer ${key}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      'MCP-Protocol-Version': '2026-07-28',
      'Mcp-Method': 'subscriptions/listen',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 'listen-1',
      method: 'subscriptions/listen',
      params: {
        notifications: filter,
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' },
          'io.modelcontextprotocol/clientCapabilities': capabilities ?? { extensions: { [TASKS]: {} } },
        },
      },
    }),
  });
  const events: Array<{ method?: string; params?: Record<string, unknown>; error?: { code: number } }> = [];
  if (!response.headers.get('content-type')?.includes('text/event-stream')) {
    return { status: response.status, events: [JSON.parse(await response.text())] };
  }
  void (async () => {
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
        const data = buffer
          .slice(0, end)
          .split('\n')
          .find((l) => l.startsWith('data: '));
        buffer = buffer.slice(end + 2);
        if (data) events.push(JSON.parse(data.slice(6)));
      }
    }
  })();
  return { status: response.status, events };
}

describe('task notifications on subscriptions/listen', () => {
  it('streams the whole task on every change to the principal’s own task ids only', async () => {
    const server = await startInProcess({ app: jobApp });
    cleanups.push(() => server.close());
    const key = await server.key('ada', 'admin');
    const bob = await server.key('bob', 'admin');
    const created = await modernResult(server.url, key, 'tools/call', {
      name: 'job.slow',
      arguments: { steps: 3, stepMs: 300 },
    });
    const taskId = created.taskId as string;
    const theirs = await openListen(server.url, bob, { taskIds: [taskId] });
    const mine = await openListen(server.url, key, { taskIds: [taskId, 'someone-elses'] });
    await waitFor(() => mine.events.length >= 1 && theirs.events.length >= 1, {
      message: 'the acknowledgements',
    });
    expect(mine.events[0]).toMatchObject({
      method: 'notifications/subscriptions/acknowledged',
      params: {
        notifications: { taskIds: [taskId] },
        _meta: { 'io.modelcontextprotocol/subscriptionId': 'listen-1' },
      },
    });
    // Bob's subscription honours nothing, so it is acknowledged empty and closed.
    expect(theirs.events[0]).toMatchObject({ params: { notifications: {} } });
    const done = await waitFor(
      () => mine.events.find((e) => e.method === 'notifications/tasks' && e.params?.status === 'completed'),
      { message: 'the completed task', timeoutMs: 20_000 },
    );
    expect(done.params).toMatchObject({ taskId, result: { structuredContent: { counted: 3 } } });
    const progress = mine.events
      .filter((e) => e.method === 'notifications/tasks')
      .map((e) => e.params?.statusMessage);
    expect(progress).toContain('step 1 of 3');
    expect(theirs.events.some((e) => e.method === 'notifications/tasks')).toBe(false);
  });

  it('refuses task ids from a client without the extension with -32021', async () => {
    const server = await startInProcess({ app: jobApp });
    cleanups.push(() => server.close());
    const refused = await openListen(server.url, await server.key('ada', 'admin'), { taskIds: ['t'] }, {});
    expect(refused.status).toBe(400);
    expect(refused.events[0]).toMatchObject({ error: { code: -32021 } });
  });
});
