/**
 * PostgreSQL beyond the contract suite: two runtimes on one schema (as two instances would be) lose no
 * update and decide on a current head; the audit trail, chained per document, verifies and notices
 * removed records; the LISTEN connection comes back after the server cuts it; bad configurations fail
 * with one clear line. Every test gets its own schema on the real server at 127.0.0.1:5432.
 */
import { spawn } from 'node:child_process';
import { checkAuditHeads, createCore, localPrincipal, verifyAuditRecords } from 'coremcp';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import type { Store } from '../src/core/store.js';
import { openStore, StoreConfigError } from '../src/store/open.js';
import { PG_MIGRATIONS, PostgresStore } from '../src/store/postgres.js';
import counterApp from './fixtures/counter-app.js';
import { FlakyProxy, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js';
import { CLI } from './helpers/servers.js';
import { waitFor, waitForOutput } from './helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function schema(): Promise<string> {
  const fresh = await freshSchema('pgt');
  cleanups.push(fresh.drop);
  return fresh.schema;
}

function store(name: string, options: { pollIntervalMs?: number } = {}): PostgresStore {
  return new PostgresStore({ url: PG_URL, schema: name, ...options });
}

const alice = localPrincipal('alice', ['member']);
const bob = localPrincipal('bob', ['member']);
const admin = localPrincipal('root', ['admin']);

/** Reads the whole trail and checks it as `coremcp audit verify` does; the first problem, or undefined. */
async function verify(s: Store): Promise<string | undefined> {
  const verdict = verifyAuditRecords(await s.readAudit({}));
  if (!verdict.ok) return verdict.reason;
  return checkAuditHeads(verdict.chains ?? new Map(), await s.auditHeads!());
}

describe('two runtimes on one PostgreSQL schema', () => {
  it('lose no update: concurrent bumps through both end at the exact total, revisions gapless', async () => {
    const name = await schema();
    const a = await createCore({ app: counterApp, store: store(name) });
    const b = await createCore({ app: counterApp, store: store(name) });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const perCore = 60;
    // A call that lost the race more often than the runtime retries gets the typed, retryable
    // `conflict_retries_exhausted` (nothing committed): the caller retries it, as a client would.
    let exhausted = 0;
    const bump = async (core: typeof a, who: string) => {
      for (;;) {
        const result = await core.execute('counter.bump', {}, { principal: localPrincipal(who, ['admin']) });
        if (result.status === 'error' && result.error.code === 'conflict_retries_exhausted') {
          exhausted++;
          continue;
        }
        return result;
      }
    };
    const results = await Promise.all(
      [a, b].flatMap((core, c) => Array.from({ length: perCore }, (_, i) => bump(core, `w${c}-${i % 4}`))),
    );
    expect(results.filter((r) => r.status !== 'success')).toEqual([]);
    expect(exhausted).toBeLessThan(2 * perCore);
    const commits = await a.store.readCommits('counter', { after: 0 });
    expect(commits.map((c) => c.revision)).toEqual(Array.from({ length: 2 * perCore }, (_, i) => i + 1));
    const state = await b.state.refresh('counter');
    expect(state).toMatchObject({ revision: 2 * perCore, value: { value: 2 * perCore } });
    expect(await verify(a.store)).toBeUndefined();
  });

  it('claims on B a task just added through A, after B was told it did not exist', async () => {
    const name = await schema();
    const a = await createCore({ app: taskboard, store: store(name) });
    const b = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    for (let i = 0; i < 5; i++) {
      const early = await b.execute('task.claim', { id: `T-${i + 1}` }, { principal: bob });
      expect(early.status === 'error' && early.error.code).toBe('task_not_found');
      const added = await a.execute('task.add', { title: `t${i}` }, { principal: alice });
      if (added.status !== 'success') throw new Error('add failed');
      const id = (added.result as { task: { id: string } }).task.id;
      const claimed = await b.execute('task.claim', { id }, { principal: bob });
      expect(claimed.status === 'success' && claimed.revision).toBe(added.revision + 1);
    }
  });

  it('lets exactly one of many claims racing across both runtimes win', async () => {
    const name = await schema();
    const a = await createCore({ app: taskboard, store: store(name) });
    const b = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const added = await a.execute('task.add', { title: 'prize' }, { principal: alice });
    const id = (added as unknown as { result: { task: { id: string } } }).result.task.id;
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a : b).execute(
          'task.claim',
          { id },
          { principal: localPrincipal(`p${i}`, ['member']) },
        ),
      ),
    );
    expect(claims.filter((c) => c.status === 'success')).toHaveLength(1);
    const refusals = claims.flatMap((c) => (c.status === 'error' ? [c.error.code] : []));
    expect(refusals).toEqual(Array.from({ length: 19 }, () => 'task_already_claimed'));
  });

  it('follows the other runtime’s commits through LISTEN alone (no poll)', async () => {
    const name = await schema();
    const a = await createCore({ app: counterApp, store: store(name, { pollIntervalMs: 0 }) });
    const b = await createCore({ app: counterApp, store: store(name, { pollIntervalMs: 0 }) });
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await b.state.get('counter');
    const stop = b.state.followStore();
    cleanups.push(stop);
    const heard: number[] = [];
    const unsubscribe = b.state.onCommit((event) => heard.push(event.revision));
    cleanups.push(unsubscribe);
    await waitFor(() => (b.store as PostgresStore).listenerPid !== undefined, { message: 'B to LISTEN' });
    for (let i = 0; i < 3; i++) await a.execute('counter.bump', {}, { principal: admin });
    await waitFor(() => heard.includes(3), { message: 'B to hear revision 3 from A' });
    expect(heard).toEqual([1, 2, 3]);
  });
});

describe('the audit trail chained per document', () => {
  it('chains each document’s commits on its own and attempts on chains of their own', async () => {
    const name = await schema();
    const core = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => core.close());
    await core.execute('task.add', { title: 'one' }, { principal: alice });
    await core.execute('task.list', {}, { principal: alice });
    await core.execute('task.claim', { id: 'T-9' }, { principal: alice });
    await core.execute('task.add', { title: 'two' }, { principal: alice });
    const records = await core.store.readAudit({});
    const commits = records.filter((r) => r.chain === 'doc:board');
    expect(commits.map((r) => [r.link, r.revision])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect(commits[1]!.prevHash).toBe(commits[0]!.hash);
    expect(records.filter((r) => r.chain?.startsWith('attempts:'))).toHaveLength(2);
    expect(await verify(core.store)).toBeUndefined();
  });

  it('notices the newest records of a document’s chain removed, and a whole chain removed', async () => {
    const name = await schema();
    const core = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => core.close());
    for (let i = 0; i < 3; i++) await core.execute('task.add', { title: `t${i}` }, { principal: alice });
    await core.execute('task.list', {}, { principal: alice });
    expect(await verify(core.store)).toBeUndefined();

    await pgQuery(`DELETE FROM "${name}".audit WHERE chain = 'doc:board' AND link = 3`);
    expect(await verify(core.store)).toMatch(/chain "doc:board" ends at link 2 but the store recorded 3/);
    await pgQuery(`DELETE FROM "${name}".audit WHERE chain = 'doc:board'`);
    expect(await verify(core.store)).toMatch(/chain "doc:board" ends at link 0/);
  });

  it('notices the records that changed no document removed', async () => {
    const name = await schema();
    const core = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => core.close());
    await core.execute('task.add', { title: 'one' }, { principal: alice });
    await core.execute('task.list', {}, { principal: alice });
    await pgQuery(`DELETE FROM "${name}".audit WHERE chain LIKE 'attempts:%'`);
    expect(await verify(core.store)).toMatch(/chain "attempts:\d" ends at link 0 but the store recorded 1/);
  });

  it('keeps the attempt chains whole under many concurrent writers on two handles', async () => {
    const name = await schema();
    const one = store(name);
    const two = store(name);
    await one.open();
    await two.open();
    cleanups.push(
      () => one.close(),
      () => two.close(),
    );
    const audit = { at: '2026-01-01T00:00:00.000Z', requestId: 'r', principal: 'p', via: 'test', input: {} };
    await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        (i % 2 === 0 ? one : two).recordAttempt({ audit: { ...audit, command: `q${i}`, outcome: 'ok' } }),
      ),
    );
    const records = await one.readAudit({});
    expect(records).toHaveLength(120);
    expect(new Set(records.map((r) => r.command)).size).toBe(120);
    expect(await verify(one)).toBeUndefined();
  });

  it('notices a record changed in place', async () => {
    const name = await schema();
    const core = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => core.close());
    await core.execute('task.add', { title: 'one' }, { principal: alice });
    await core.execute('task.add', { title: 'two' }, { principal: alice });
    await pgQuery(
      `UPDATE "${name}".audit SET record = replace(record, '"principal":"alice"', '"principal":"mallory"') WHERE link = 1`,
    );
    expect(await verify(core.store)).toBe('hash does not match the record content');
  });

  it('names the rows whose indexed columns differ from the sealed record, and proves it can write', async () => {
    const name = await schema();
    const core = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => core.close());
    await core.execute('task.add', { title: 'one' }, { principal: alice });
    await core.execute('task.add', { title: 'two' }, { principal: alice });
    await core.store.probeWrite!();
    expect(await core.store.auditColumnMismatches!()).toEqual([]);
    // A filter by principal would now miss alice's second record: the chain itself is intact.
    const [second] = await pgQuery<{ seq: string }>(
      `UPDATE "${name}".audit SET principal = 'mallory' WHERE chain = 'doc:board' AND link = 2 RETURNING seq`,
    );
    expect(await verify(core.store)).toBeUndefined();
    expect(await core.store.auditColumnMismatches!()).toEqual([Number(second!.seq)]);
  });
});

/**
 * A transaction that drew its audit sequence number and wrote its record, still open: a record
 * with a lower `seq` than what commits after it, until `commit()`.
 */
async function lateRecord(name: string): Promise<{ seq: number; commit: () => Promise<void> }> {
  const late = new pg.Client({ connectionString: PG_URL });
  await late.connect();
  cleanups.push(() => late.end().catch(() => {}));
  await late.query('BEGIN');
  const [row] = (await late.query(`SELECT nextval('"${name}".audit_seq')::int AS seq`)).rows;
  const seq = row.seq as number;
  const at = new Date().toISOString();
  const record = { seq, at, chain: 'attempts:late', link: 1, principal: 'late', command: 'late.write' };
  await late.query(
    `INSERT INTO "${name}".audit (seq, chain, link, at, principal, command, hash, record)
     VALUES ($1, 'attempts:late', 1, $2, 'late', 'late.write', 'h', $3)`,
    [seq, at, JSON.stringify(record)],
  );
  return {
    seq,
    commit: async () => {
      await late.query('COMMIT');
    },
  };
}

describe('following the audit trail', () => {
  it('passes no record by that becomes readable after one with a higher seq', async () => {
    const name = await schema();
    const core = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => core.close());
    await core.execute('task.add', { title: 'before' }, { principal: alice });
    const follow = core.store.followAudit!.bind(core.store);
    let { cursor } = await follow({}, undefined);
    const late = await lateRecord(name);
    await core.execute('task.add', { title: 'after' }, { principal: alice });
    const after = late.seq + 1;
    // Paging by seq shows the trap: `after` is readable, `late` not yet.
    expect((await core.store.readAudit({ afterSeq: late.seq - 1 })).map((r) => r.seq)).toEqual([after]);
    const held = await follow({}, cursor);
    expect(held.records).toEqual([]); // `after` waits for the open transaction
    cursor = held.cursor;
    await late.commit();
    const seen: number[] = [];
    await waitFor(
      async () => {
        const page = await follow({}, cursor);
        cursor = page.cursor;
        seen.push(...page.records.map((r) => r.seq));
        return seen.includes(after);
      },
      { timeoutMs: 20_000, message: () => `the follower saw ${JSON.stringify(seen)}` },
    );
    expect(seen).toEqual([late.seq, after]);
    // A cursor from this store only.
    await expect(follow({}, 'not-a-cursor')).rejects.toThrow(/not an audit cursor/);
  });

  it('`audit tail --follow` prints the late record and the one after it, each once', async () => {
    const name = await schema();
    const url = `${PG_URL}?schema=${name}`;
    const core = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => core.close());
    await core.execute('task.add', { title: 'before' }, { principal: alice });
    const tail = spawn(process.execPath, [CLI, 'audit', 'tail', '--follow', '--json', '--store', url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => {
      tail.kill('SIGTERM');
    });
    let out = '';
    tail.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const seqs = () =>
      out
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => (JSON.parse(line) as { seq: number }).seq);
    await waitForOutput(tail.stdout, () => out, '"task.add"', { timeoutMs: 20_000 });
    const late = await lateRecord(name);
    await core.execute('task.add', { title: 'after' }, { principal: alice });
    await late.commit();
    await waitFor(() => seqs().includes(late.seq) && seqs().includes(late.seq + 1), {
      timeoutMs: 20_000,
      message: () => `audit tail printed ${JSON.stringify(seqs())}`,
    });
    const printed = seqs();
    expect(printed.slice(-2)).toEqual([late.seq, late.seq + 1]);
    expect(new Set(printed).size).toBe(printed.length);
  });
});

/** Commits revision 1 of document `d` straight through the store; the outcome's status. */
async function commitFirst(writer: Store): Promise<string> {
  const commit = {
    doc: 'd',
    revision: 1,
    commandId: 'c1',
    command: 'x',
    principal: 'p',
    at: '2026-01-01T00:00:00.000Z',
    patches: [{ op: 'add' as const, path: '/a', value: 1 }],
    inverse: [{ op: 'remove' as const, path: '/a' }],
  };
  const audit = {
    at: commit.at,
    requestId: 'r',
    principal: 'p',
    via: 'test',
    command: 'x',
    input: {},
    outcome: 'ok',
  };
  return (await writer.commit({ changes: [{ commit, expectedRevision: 0 }], audit })).status;
}

describe('the LISTEN connection', () => {
  it('reconnects after the server terminates it, and the watcher hears commits again', async () => {
    const name = await schema();
    const watched = store(name, { pollIntervalMs: 0 });
    const writer = store(name);
    await watched.open();
    await writer.open();
    cleanups.push(
      () => watched.close(),
      () => writer.close(),
    );
    await writer.createDocument('d', {}, '2026-01-01T00:00:00.000Z');
    let calls = 0;
    cleanups.push(watched.watchExternalChanges(() => calls++));
    await waitFor(() => watched.listenerPid !== undefined, { message: 'the LISTEN connection' });
    const first = watched.listenerPid!;
    const killed = await pgQuery<{ killed: boolean }>('SELECT pg_terminate_backend($1) AS killed', [first]);
    expect(killed[0]?.killed).toBe(true);
    await waitFor(() => watched.listenerPid !== undefined && watched.listenerPid !== first, {
      message: 'a new LISTEN connection',
    });
    // Reconnecting alone tells the watcher to catch up; then notifications flow again.
    await waitFor(() => calls > 0, { message: 'the watcher told to catch up after the reconnect' });
    const before = calls;
    expect(await commitFirst(writer)).toBe('committed');
    await waitFor(() => calls > before, { message: 'the watcher to hear a commit on the new connection' });
  });
});

describe('the LISTEN connection behind a pooler', () => {
  it('goes to listenUrl: with the pool’s way to PostgreSQL cut, the watcher still hears commits', async () => {
    const name = await schema();
    const pooler = new FlakyProxy();
    await pooler.up();
    cleanups.push(() => pooler.down());
    const watched = new PostgresStore({
      url: pooler.url(),
      listenUrl: PG_URL,
      schema: name,
      pollIntervalMs: 0,
    });
    const writer = store(name);
    await watched.open();
    await writer.open();
    cleanups.push(
      () => watched.close(),
      () => writer.close(),
    );
    await writer.createDocument('d', {}, '2026-01-01T00:00:00.000Z');
    let calls = 0;
    cleanups.push(watched.watchExternalChanges(() => calls++));
    await waitFor(() => watched.listenerPid !== undefined, { message: 'the LISTEN connection' });
    const listener = watched.listenerPid;
    await pooler.down();
    const before = calls;
    expect(await commitFirst(writer)).toBe('committed');
    await waitFor(() => calls > before, {
      message: 'the watcher to hear the commit over its direct connection',
    });
    expect(watched.listenerPid).toBe(listener);
  });
});

describe('configuration', () => {
  it('opens PostgreSQL for a postgres:// URL, in the schema the URL names', async () => {
    const name = await schema();
    const opened = openStore({ dataDir: '/nonexistent', url: `${PG_URL}?schema=${name}` });
    expect(opened.kind).toBe('postgres');
    expect((opened as PostgresStore).schema).toBe(name);
    await opened.open();
    cleanups.push(() => opened.close());
    expect(await opened.schemaStatus!()).toEqual({
      version: PG_MIGRATIONS.length,
      expected: PG_MIGRATIONS.length,
    });
  });

  it('migrates a schema of the first version in place: its audit records follow like new ones', async () => {
    const name = await schema();
    const core = await createCore({ app: taskboard, store: store(name) });
    await core.execute('task.add', { title: 'old' }, { principal: alice });
    await core.close();
    // Back to version 1, as an older coremcp left it.
    await pgQuery(
      `ALTER TABLE "${name}".audit DROP COLUMN tx; UPDATE "${name}".meta SET value = '1' WHERE key = 'schema_version'`,
    );
    const again = await createCore({ app: taskboard, store: store(name) });
    cleanups.push(() => again.close());
    expect(await again.store.schemaStatus!()).toEqual({ version: 2, expected: PG_MIGRATIONS.length });
    await again.execute('task.add', { title: 'new' }, { principal: alice });
    const page = await again.store.followAudit!({}, '0:0');
    expect(page.records.map((r) => r.seq)).toEqual((await again.store.readAudit({})).map((r) => r.seq));
    expect(await verify(again.store)).toBeUndefined();
  });

  it('refuses a schema written by a newer coremcp, in one line', async () => {
    const name = await schema();
    const first = store(name);
    await first.open();
    await first.close();
    await pgQuery(`UPDATE "${name}".meta SET value = '99' WHERE key = 'schema_version'`);
    const again = store(name);
    const error = await again.open().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'store_too_new' });
  });

  it('reports an unreachable server as store_unavailable and bad names as configuration errors', async () => {
    const unreachable = new PostgresStore({
      url: 'postgres://postgres@127.0.0.1:1/test',
      connectTimeoutMs: 2000,
    });
    expect(await unreachable.open().catch((e: unknown) => e)).toMatchObject({ code: 'store_unavailable' });
    const noDb = new PostgresStore({ url: 'postgres://postgres@127.0.0.1:5432/no_such_db_here' });
    expect(await noDb.open().catch((e: unknown) => e)).toBeInstanceOf(StoreConfigError);
    expect(() => new PostgresStore({ url: PG_URL, schema: 'Bad-Name' })).toThrow(StoreConfigError);
  });
});
