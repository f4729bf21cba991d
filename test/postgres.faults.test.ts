/**
 * PostgreSQL going away under a running server: a TCP proxy between the server and the real
 * PostgreSQL stops accepting and cuts every connection, then comes back on the same port. Calls in
 * the outage get a typed error in bounded time (never a hang, never a stack), `/readyz` turns 503, and
 * both recover by themselves.
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { PostgresStore } from '../src/store/postgres.js';
import { FlakyProxy, freshSchema, PG_URL } from './helpers/postgres.js';
import { errorCodeOf, httpClient, startInProcess } from './helpers/servers.js';
import { waitFor } from './helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('PostgreSQL unreachable under a running server', () => {
  it('answers calls with a typed error in bounded time, turns /readyz 503, and recovers by itself', async () => {
    const fresh = await freshSchema('faults');
    cleanups.push(fresh.drop);
    const proxy = new FlakyProxy();
    await proxy.up();
    cleanups.push(() => proxy.down());
    const store = new PostgresStore({
      url: proxy.url(),
      schema: fresh.schema,
      connectTimeoutMs: 1000,
      statementTimeoutMs: 2000,
    });
    const server = await startInProcess({ app: taskboard, store });
    cleanups.push(() => server.close());
    const client = await httpClient(server.url, await server.key('w', 'admin'));
    cleanups.push(() => client.close());
    const ready = async () => (await fetch(new URL('/readyz', server.url))).status;
    const add = () => client.callTool({ name: 'task.add', arguments: { title: 't' } });

    expect(await ready()).toBe(200);
    expect((await add()).isError).toBeFalsy();

    await proxy.down();
    const started = Date.now();
    // The edge authenticates through the store first, so the refusal may come before MCP: a 503 whose
    // JSON-RPC error carries the code. Either way the client gets a typed code and no internals.
    const refused = await add().then(
      (result) => ({ code: errorCodeOf(result), text: JSON.stringify(result) }),
      (error: Error) => ({ code: /"code":"([a-z_]+)"/.exec(error.message)?.[1], text: error.message }),
    );
    const tookMs = Date.now() - started;
    expect(['store_unavailable', 'circuit_open']).toContain(refused.code);
    expect(refused.text).not.toMatch(/\.(ts|js):\d+|ECONNREFUSED|127\.0\.0\.1|Connection terminated/);
    expect(tookMs).toBeLessThan(10_000);
    await waitFor(async () => (await ready()) === 503, {
      message: '/readyz to answer 503',
      timeoutMs: 15_000,
    });

    await proxy.up();
    await waitFor(async () => (await ready()) === 200, { message: '/readyz to recover', timeoutMs: 30_000 });
    await waitFor(async () => !(await add().catch(() => ({ isError: true }))).isError, {
      message: 'writes to work again',
      timeoutMs: 30_000,
    });
  }, 90_000);

  it('answers store_busy when a statement outlasts statement_timeout (a row held by another session)', async () => {
    const fresh = await freshSchema('faults');
    cleanups.push(fresh.drop);
    const store = new PostgresStore({ url: PG_URL, schema: fresh.schema, statementTimeoutMs: 500 });
    const server = await startInProcess({ app: taskboard, store });
    cleanups.push(() => server.close());
    const client = await httpClient(server.url, await server.key('w', 'admin'));
    cleanups.push(() => client.close());
    expect((await client.callTool({ name: 'task.add', arguments: { title: 'a' } })).isError).toBeFalsy();
    const holder = new pg.Client({ connectionString: PG_URL });
    await holder.connect();
    cleanups.push(() => holder.end());
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM "${fresh.schema}".documents WHERE doc = 'board' FOR UPDATE`);
    const started = Date.now();
    const busy = await client.callTool({ name: 'task.add', arguments: { title: 'b' } });
    expect(errorCodeOf(busy)).toBe('store_busy');
    expect(Date.now() - started).toBeLessThan(5000);
    await holder.query('ROLLBACK');
    expect((await client.callTool({ name: 'task.add', arguments: { title: 'c' } })).isError).toBeFalsy();
  });
});
