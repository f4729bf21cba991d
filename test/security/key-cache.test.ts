/**
 * API-key lookups are cached, and a revoked key is refused from the next request on, wherever it was
 * revoked: through the same `ApiKeys`, through another connection to the file, by `coremcp keys
 * revoke` in another process while a server runs, or by plain SQL (within the 250 ms change poll);
 * on PostgreSQL from the moment the revoking commit's notification is heard, and never from the
 * cache while the LISTEN connection is down.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ApiKeys, MemoryStore, SqliteStore } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../src/security/apikeys.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { freshSchema } from '../helpers/postgres.js';
import { httpClient, MODERN, runCli, startServerProcess } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A store that counts the key lookups that reach it. */
class CountingStore extends SqliteStore {
  lookups = 0;
  override async findApiKeyByHash(hash: string) {
    this.lookups++;
    return super.findApiKeyByHash(hash);
  }
}

async function sqliteKeys() {
  const tmp = tempDir();
  cleanups.push(tmp.remove);
  const path = join(tmp.dir, 'coremcp.db');
  const store = new CountingStore({ path });
  await store.open();
  cleanups.push(() => store.close());
  return { path, store, keys: new ApiKeys(store) };
}

/** A key of an SQLite store, authenticated twice: the second time from the cache. */
async function cachedKey() {
  const setup = await sqliteKeys();
  const { key } = await setup.keys.create('agent', 'member');
  expect(await setup.keys.authenticate(key)).toMatchObject({ ok: true });
  expect(await setup.keys.authenticate(key)).toMatchObject({ ok: true });
  expect(setup.store.lookups).toBe(1);
  return { ...setup, key };
}

describe('API-key lookups', () => {
  it('are cached per key, with one principal object, until the key is revoked', async () => {
    const { store, keys } = await sqliteKeys();
    const { key } = await keys.create('agent', 'member');
    const other = await keys.create('other', 'member');
    const first = await keys.authenticate(key);
    expect(first).toMatchObject({ ok: true, principal: { id: 'agent', roles: ['member'] } });
    for (let i = 0; i < 20; i++) expect(await keys.authenticate(key)).toBe(first);
    expect(await keys.authenticate(other.key)).toMatchObject({ ok: true, principal: { id: 'other' } });
    expect(store.lookups).toBe(2);
    // Made-up keys are looked up every time and never remembered.
    const madeUp = `cmcp_${'a'.repeat(12)}_${'b'.repeat(43)}`;
    expect(await keys.authenticate(madeUp)).toEqual({ ok: false, reason: 'unknown_key' });
    expect(await keys.authenticate(madeUp)).toEqual({ ok: false, reason: 'unknown_key' });
    expect(store.lookups).toBe(4);

    await keys.revoke('agent');
    expect(await keys.authenticate(key)).toEqual({ ok: false, reason: 'revoked_key' });
    expect(await keys.isActive(hashApiKey(key))).toBe(false);
    // The other key is looked up again once (any key change moves the epoch), then cached again.
    expect(await keys.authenticate(other.key)).toMatchObject({ ok: true });
    const before = store.lookups;
    expect(await keys.authenticate(other.key)).toMatchObject({ ok: true });
    expect(store.lookups).toBe(before);
  });

  it('see a revocation through another connection to the file at the next request', async () => {
    const { path, keys, key } = await cachedKey();
    const elsewhere = new SqliteStore({ path });
    await elsewhere.open();
    cleanups.push(() => elsewhere.close());
    await new ApiKeys(elsewhere).revoke('agent');
    // No wait: the marker file the other connection rewrote is looked at on every request.
    expect(await keys.authenticate(key)).toEqual({ ok: false, reason: 'revoked_key' });
  });

  it('see a key revoked with plain SQL within the change poll', async () => {
    const { path, keys, key } = await cachedKey();
    const db = new Database(path);
    db.prepare("UPDATE api_keys SET revoked_at = '2026-12-03T00:00:00.000Z' WHERE name = 'agent'").run();
    db.close();
    await waitFor(async () => !(await keys.authenticate(key)).ok, {
      message: 'the key revoked with SQL to be refused',
    });
    expect(await keys.authenticate(key)).toEqual({ ok: false, reason: 'revoked_key' });
  });

  it('on PostgreSQL, end when the revoking commit is heard on LISTEN, and are not cached while it is down', async () => {
    const fresh = await freshSchema('keys');
    cleanups.push(fresh.drop);
    class CountingPostgres extends PostgresStore {
      lookups = 0;
      override async findApiKeyByHash(hash: string) {
        this.lookups++;
        return super.findApiKeyByHash(hash);
      }
    }
    const b = new CountingPostgres({ url: fresh.url, pollIntervalMs: 0 });
    await b.open();
    cleanups.push(() => b.close());
    const a = new PostgresStore({ url: fresh.url, pollIntervalMs: 0 });
    await a.open();
    cleanups.push(() => a.close());
    const onA = new ApiKeys(a);
    const onB = new ApiKeys(b);
    const { key } = await onA.create('agent', 'member');
    // Until B's LISTEN connection is up, every request looks its key up.
    expect(await onB.authenticate(key)).toMatchObject({ ok: true });
    await waitFor(() => b.listenerPid !== undefined, { message: "B's LISTEN connection" });
    expect(await onB.authenticate(key)).toMatchObject({ ok: true });
    const looked = b.lookups;
    for (let i = 0; i < 10; i++) expect(await onB.authenticate(key)).toMatchObject({ ok: true });
    expect(b.lookups).toBe(looked);

    await onA.revoke('agent');
    // The notification leaves with A's commit; B refuses from the moment its LISTEN connection hears it.
    await waitFor(async () => !(await onB.authenticate(key)).ok, { message: 'B to refuse the revoked key' });
    expect(await onB.authenticate(key)).toEqual({ ok: false, reason: 'revoked_key' });

    // Without a LISTEN connection nothing is served from the cache: a revocation would go unheard.
    const deaf = new CountingPostgres({
      url: fresh.url,
      pollIntervalMs: 0,
      listenUrl: 'postgres://127.0.0.1:9/none',
    });
    await deaf.open();
    cleanups.push(() => deaf.close());
    const onDeaf = new ApiKeys(deaf);
    const other = await onA.create('other', 'member');
    for (let i = 0; i < 5; i++) expect(await onDeaf.authenticate(other.key)).toMatchObject({ ok: true });
    expect(deaf.lookups).toBe(5);
    expect(deaf.listenerPid).toBeUndefined();
  });

  it('are cached on a memory store too, and a revocation ends them', async () => {
    const store = new MemoryStore();
    await store.open();
    const keys = new ApiKeys(store);
    const { key } = await keys.create('agent', 'member');
    const first = await keys.authenticate(key);
    expect(await keys.authenticate(key)).toBe(first);
    await keys.revoke('agent');
    expect(await keys.authenticate(key)).toEqual({ ok: false, reason: 'revoked_key' });
  });

  it('let a running server refuse a key revoked by `coremcp keys revoke` in another process, at once', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const created = await runCli([
      'keys',
      'create',
      '--name',
      'agent',
      '--role',
      'member',
      '--data-dir',
      tmp.dir,
    ]);
    expect(created.code, created.stderr).toBe(0);
    const key = created.stdout.trim();
    const server = await startServerProcess(['--data-dir', tmp.dir]);
    cleanups.push(() => server.stop());
    const client = await httpClient(server.url, key);
    cleanups.push(() => client.close());
    // Twice: the second is answered from the cache.
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    const revoked = await runCli(['keys', 'revoke', 'agent', '--data-dir', tmp.dir]);
    expect(revoked.code, revoked.stderr).toBe(0);
    // No wait: the very next request is refused.
    await expect(client.listTools()).rejects.toThrow(/401|unauthenticated|revoked/i);
    const refused = await fetch(server.url, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
        'MCP-Protocol-Version': MODERN,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    expect(refused.status).toBe(401);
  });
});
