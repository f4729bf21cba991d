/**
 * Three `coremcp serve` processes on one PostgreSQL schema, as a cluster behind a load balancer would
 * be, driven by real SDK clients spread over them: 10,000 increments of one counter from 48 clients end
 * at exactly 10,000 gapless commits and an audit trail that verifies; a 50-way claim race on one task
 * has exactly one winner and 49 typed refusals naming it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/client';
import { createCore, localPrincipal } from 'coremcp';
import { afterAll, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { PostgresStore } from '../src/store/postgres.js';
import { freshSchema } from './helpers/postgres.js';
import {
  errorCodeOf,
  httpClient,
  runCli,
  type ServerProcess,
  startServerProcess,
  structured,
} from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const COUNTER_APP = fileURLToPath(new URL('./fixtures/counter-app.ts', import.meta.url));
const INSTANCES = 3;

const tmp = tempDir();
const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  tmp.remove();
});

/** A fresh schema with `INSTANCES` servers of `app` on it (the rate limit out of reach: one key, many calls). */
async function cluster(prefix: string, app: string[]): Promise<{ url: string; servers: ServerProcess[] }> {
  const fresh = await freshSchema(prefix);
  cleanups.push(fresh.drop);
  const config = join(tmp.dir, `${prefix}.config.json`);
  writeFileSync(config, JSON.stringify({ limits: { rate: { perSecond: 100_000, burst: 1_000_000 } } }));
  // Migrations run once, by the first instance; the others start on a schema that is already there.
  const first = await startServerProcess([...app, '--store', fresh.url, '--config', config], {
    cwd: tmp.dir,
  });
  const rest = await Promise.all(
    Array.from({ length: INSTANCES - 1 }, () =>
      startServerProcess([...app, '--store', fresh.url, '--config', config], { cwd: tmp.dir }),
    ),
  );
  const servers = [first, ...rest];
  cleanups.push(() => Promise.all(servers.map((s) => s.stop())));
  return { url: fresh.url, servers };
}

async function clientOf(server: ServerProcess, key: string): Promise<Client> {
  const client = await httpClient(server.url, key);
  cleanups.push(() => client.close().catch(() => {}));
  return client;
}

describe('three instances on one PostgreSQL schema', () => {
  it('count 10,000 increments from 48 clients exactly: 10,000 gapless commits, the audit verifies', async () => {
    const { url, servers } = await cluster('cnt', [COUNTER_APP]);
    const made = await runCli(['keys', 'create', '--name', 'counter', '--role', 'admin', '--store', url], {
      cwd: tmp.dir,
    });
    expect(made.code, made.stderr).toBe(0);
    const key = made.stdout.trim();
    const clients = await Promise.all(
      Array.from({ length: 48 }, (_, i) => clientOf(servers[i % INSTANCES]!, key)),
    );
    const total = 10_000;
    let issued = 0;
    let resent = 0;
    await Promise.all(
      clients.map(async (client) => {
        while (issued < total) {
          issued++;
          for (;;) {
            const result = await client.callTool({ name: 'counter.bump', arguments: {} });
            if (!result.isError) break;
            // Typed and retryable, nothing committed: what a client does with it is send it again.
            expect(errorCodeOf(result)).toBe('conflict_retries_exhausted');
            resent++;
          }
        }
      }),
    );
    for (const server of servers) {
      const read = await (await clientOf(server, key)).callTool({ name: 'counter.read', arguments: {} });
      expect(structured(read).value).toBe(total);
    }
    const store = new PostgresStore({ url });
    await store.open();
    try {
      const commits = await store.readCommits('counter', { after: 0, limit: total + 10 });
      expect(commits).toHaveLength(total);
      expect(commits.every((c, i) => c.revision === i + 1)).toBe(true);
    } finally {
      await store.close();
    }
    const verified = await runCli(['audit', 'verify', '--store', url], { cwd: tmp.dir });
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/audit trail intact/);
    // Calls sent again are rare: a writer that lost a race fences the document for its next attempt.
    expect(resent).toBeLessThan(total / 10);
  }, 600_000);

  it('let exactly one of 50 agents claiming one task at once win; 49 are refused naming the holder', async () => {
    const { url, servers } = await cluster('race', []);
    // The task and 50 member keys, written through a runtime of its own on the same schema.
    const setup = await createCore({ app: taskboard, store: new PostgresStore({ url }) });
    const keys: Array<{ name: string; key: string }> = [];
    try {
      await setup.execute(
        'task.add',
        { title: 'contested' },
        { principal: localPrincipal('root', ['admin']) },
      );
      for (let i = 0; i < 50; i++) {
        const name = `agent-${i}`;
        keys.push({ name, key: (await setup.keys!.create(name, 'member')).key });
      }
    } finally {
      await setup.close();
    }
    const clients = await Promise.all(keys.map(({ key }, i) => clientOf(servers[i % INSTANCES]!, key)));
    const results = await Promise.all(
      clients.map((client) => client.callTool({ name: 'task.claim', arguments: { id: 'T-1' } })),
    );
    const winners = results.filter((r) => !r.isError);
    expect(winners).toHaveLength(1);
    const holder = (structured(winners[0]).task as { assignee: string }).assignee;
    expect(keys.map((k) => k.name)).toContain(holder);
    const refused = results.filter((r) => r.isError);
    expect(refused).toHaveLength(49);
    for (const r of refused) {
      expect(errorCodeOf(r)).toBe('task_already_claimed');
      expect((structured(r).error as { details?: { holder?: string } }).details?.holder).toBe(holder);
    }
  }, 300_000);
});
