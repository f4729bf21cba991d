/**
 * Fair shares: one principal flooding 2025-11-25 sessions, `subscriptions/listen` streams or
 * idempotency keys only ever displaces its own, never locks others out.
 */
import { join } from 'node:path';
import { SqliteStore } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { httpClient, startInProcess } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function openLegacySession(url: string, key: string): Promise<string> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 'flood', version: '1' },
      },
    }),
  });
  expect(response.status).toBe(200);
  await response.body?.cancel();
  return response.headers.get('mcp-session-id')!;
}

async function pingSession(url: string, key: string, session: string): Promise<number> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': session,
      'mcp-protocol-version': '2025-11-25',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }),
  });
  await response.body?.cancel();
  return response.status;
}

describe('fair shares', () => {
  it('caps 2025-11-25 sessions per principal: a flood displaces only its own sessions', async () => {
    const server = await startInProcess({ app: taskboard }, { maxSessions: 20, maxSessionsPerPrincipal: 4 });
    cleanups.push(() => server.close());
    const flooder = await server.key('flooder', 'member');
    const other = await server.key('other', 'member');
    const mine = await openLegacySession(server.url, other);
    const flooded: string[] = [];
    for (let i = 0; i < 50; i++) flooded.push(await openLegacySession(server.url, flooder));
    expect(server.http.sessions).toBe(5);
    // The other principal's session survived, and it can open more.
    expect(await pingSession(server.url, other, mine)).toBe(200);
    await openLegacySession(server.url, other);
    // The flooder keeps its four newest.
    expect(await pingSession(server.url, flooder, flooded.at(-1)!)).toBe(200);
    expect(await pingSession(server.url, flooder, flooded[0]!)).toBe(404);
  });

  it('caps open listen streams per principal, refusing the one over its share with 429', async () => {
    const server = await startInProcess({ app: taskboard }, { maxListenStreamsPerPrincipal: 2 });
    cleanups.push(() => server.close());
    const flooder = await httpClient(server.url, await server.key('flooder', 'member'));
    const other = await httpClient(server.url, await server.key('other', 'member'));
    cleanups.push(
      () => flooder.close(),
      () => other.close(),
    );
    const uri = 'coremcp://state/board';
    const streams = [
      await flooder.listen({ resourceSubscriptions: [uri] }),
      await flooder.listen({ resourceSubscriptions: [uri] }),
    ];
    const third = await flooder.listen({ resourceSubscriptions: [uri] }).then(
      (s) => s,
      (error: unknown) => error,
    );
    expect(third).toMatchObject({ data: { status: 429 } });
    expect(JSON.parse((third as { data: { text: string } }).data.text)).toMatchObject({
      error: { data: { code: 'too_many_streams', details: { limit: 2 } } },
    });
    // Others are not affected.
    const theirs = await other.listen({ resourceSubscriptions: [uri] });
    await theirs.close();
    // Closing one frees a slot.
    await streams[0]!.close();
    const again = await flooder.listen({ resourceSubscriptions: [uri] });
    await again.close();
    await streams[1]!.close();
  });

  it("trims a principal's stored idempotency keys to its share, leaving others' alone", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const server = await startInProcess({
      app: taskboard,
      store: new SqliteStore({ path: join(tmp.dir, 's.db') }),
      limits: { idempotencyKeysPerPrincipal: 10 },
    });
    cleanups.push(() => server.close());
    const member = { id: 'flooder', roles: ['member'], via: 'internal' as const };
    const other = { id: 'other', roles: ['member'], via: 'internal' as const };
    await server.core.execute('task.add', { title: 'kept' }, { principal: other, idempotencyKey: 'other-1' });
    for (let i = 0; i < 250; i++)
      await server.core.execute(
        'task.add',
        { title: `t${i}` },
        { principal: member, idempotencyKey: `w-${i}` },
      );
    const store = server.core.store;
    let kept = 0;
    for (let i = 0; i < 250; i++) if (await store.findIdempotency('flooder', `w-${i}`)) kept++;
    // Trimmed every 100 keyed calls: at most the share plus the calls since the last trim.
    expect(kept).toBeLessThanOrEqual(10 + 100);
    expect(await store.findIdempotency('flooder', 'w-249')).toBeDefined();
    expect(await store.findIdempotency('other', 'other-1')).toBeDefined();
  });
});
