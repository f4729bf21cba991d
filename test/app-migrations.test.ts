/**
 * The Migration Guide in practice: a document's schema version moves with audited migration commits
 * (at start, or by `coremcp migrate`, which can show the diff first); older command inputs are
 * upgraded; a store or document written by something newer refuses to start with one clear line; a
 * changed initial value is reported instead of silently ignored.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { createCore, isCoreMcpError, localPrincipal, SqliteStore, verifyAuditRecords } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import v1 from './fixtures/profile-v1.js';
import v2 from './fixtures/profile-v2.js';
import { runCli } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const V1 = fileURLToPath(new URL('./fixtures/profile-v1.ts', import.meta.url));
const V2 = fileURLToPath(new URL('./fixtures/profile-v2.ts', import.meta.url));
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const alice = localPrincipal('alice', ['admin']);

async function seeded() {
  const tmp = tempDir();
  cleanups.push(tmp.remove);
  const path = join(tmp.dir, 'coremcp.db');
  const core = await createCore({ app: v1, store: new SqliteStore({ path }) });
  await core.execute('person.add', { id: 'ada', name: 'Ada Lovelace' }, { principal: alice });
  await core.execute('person.add', { id: 'alan', name: 'Alan Turing' }, { principal: alice });
  await core.close();
  return { tmp, path };
}

describe('document migrations', () => {
  it('run once at start as audited commits, and move the stored version', async () => {
    const { path } = await seeded();
    const core = await createCore({ app: v2, store: new SqliteStore({ path }) });
    cleanups.push(() => core.close());
    const { value, revision } = await core.state.get('profiles');
    expect(value).toEqual({
      people: { ada: { first: 'Ada', last: 'Lovelace' }, alan: { first: 'Alan', last: 'Turing' } },
    });
    expect(revision).toBe(3);
    const [commit] = await core.store.readCommits('profiles', { after: 2 });
    expect(commit).toMatchObject({ command: 'state.migrate', principal: 'system' });
    const audit = await core.store.readAudit({ command: 'state.migrate' });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      input: { doc: 'profiles', from: 1, to: 2 },
      outcome: 'ok',
      revision: 3,
    });
    expect(verifyAuditRecords(await core.store.readAudit({})).ok).toBe(true);
    // The step can be undone like any commit: history keeps the value before it.
    expect((await core.state.get('profiles', { revision: 2 })).value).toMatchObject({
      people: { ada: { name: 'Ada Lovelace' } },
    });
    await core.close();
    const again = await createCore({ app: v2, store: new SqliteStore({ path }) });
    cleanups.push(() => again.close());
    expect((await again.state.get('profiles')).revision).toBe(3);
  });

  it('`coremcp migrate --dry-run` prints the diff and commits nothing; `coremcp migrate` applies it', async () => {
    const { tmp } = await seeded();
    const dry = await runCli(['migrate', V2, '--dry-run', '--data-dir', tmp.dir]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/profiles: version 1 → 2 \(dry run: nothing committed\)/);
    expect(dry.stdout).toMatch(/add \/people\/ada\/first = "Ada"/);
    expect(dry.stdout).toMatch(/remove \/people\/ada\/name/);
    const before = JSON.parse(
      (await runCli(['state', 'get', '--doc', 'profiles', '--data-dir', tmp.dir])).stdout,
    );
    expect(before.revision).toBe(2);
    const applied = await runCli(['migrate', V2, '--json', '--data-dir', tmp.dir]);
    expect(applied.code).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({
      dryRun: false,
      migrations: [{ doc: 'profiles', from: 1, to: 2 }],
    });
    const after = JSON.parse(
      (await runCli(['state', 'get', '--doc', 'profiles', '--data-dir', tmp.dir])).stdout,
    );
    expect(after).toMatchObject({
      revision: 3,
      value: { people: { ada: { first: 'Ada', last: 'Lovelace' } } },
    });
    expect((await runCli(['migrate', V2, '--data-dir', tmp.dir])).stdout).toMatch(/nothing to migrate/);
    // Run from the CLI, the migration is the operator's commit.
    const audit = await runCli([
      'audit',
      'tail',
      '--command',
      'state.migrate',
      '--json',
      '--data-dir',
      tmp.dir,
    ]);
    expect(JSON.parse(audit.stdout.trim().split('\n').at(-1)!)).toMatchObject({
      principal: (await import('node:os')).userInfo().username,
      via: 'cli',
      outcome: 'ok',
    });
  });

  it('refuses to start an older app on a document a newer one migrated, with one line and exit 1', async () => {
    const { path, tmp } = await seeded();
    const upgraded = await createCore({ app: v2, store: new SqliteStore({ path }) });
    await upgraded.close();
    const error = await createCore({ app: v1, store: new SqliteStore({ path }) }).catch((e: unknown) => e);
    expect(isCoreMcpError(error) && error.code).toBe('document_too_new');
    const served = await runCli(['serve', V1, '--http', '127.0.0.1:0', '--data-dir', tmp.dir]);
    expect(served.code).toBe(1);
    expect(served.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^coremcp: document_too_new: document "profiles" is at schema version 2, but this app declares version 1/,
      ),
    ]);
  });

  it('refuses a database written by a newer coremcp, with one line and exit 1', async () => {
    const { path, tmp } = await seeded();
    const db = new Database(path);
    db.prepare("UPDATE meta SET value = '999' WHERE key = 'schema_version'").run();
    db.close();
    const error = await new SqliteStore({ path }).open().catch((e: unknown) => e);
    expect(isCoreMcpError(error) && error.code).toBe('store_too_new');
    const listed = await runCli(['keys', 'list', '--data-dir', tmp.dir]);
    expect(listed.code).toBe(1);
    expect(listed.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^coremcp: store_too_new: database schema version 999 is newer than this coremcp knows/,
      ),
    ]);
  });

  it('tells the operator at start when an existing document was created from another initial value', async () => {
    const { path } = await seeded();
    const { defineApp, defineDocument } = await import('coremcp');
    const changed = defineApp({
      name: 'profiles',
      documents: [defineDocument('profiles', { people: {}, newMember: true })],
      commands: [],
    });
    const warnings: string[] = [];
    const logger = {
      error() {},
      info() {},
      debug() {},
      warn(_fields: Record<string, unknown>, message?: string) {
        warnings.push(message ?? '');
      },
      child() {
        return logger;
      },
      isLevelEnabled: () => true,
    };
    const core = await createCore({ app: changed, store: new SqliteStore({ path }), logger });
    cleanups.push(() => core.close());
    expect(warnings.some((w) => /document "profiles" was created from another initial value/.test(w))).toBe(
      true,
    );
    expect((await core.state.get('profiles')).value).not.toHaveProperty('newMember');
  });
});

describe('command versions', () => {
  it('upgrades an older client’s input, by shape or by the version it names, and still refuses bad input', async () => {
    const core = await createCore({ app: v2 });
    cleanups.push(() => core.close());
    const old = await core.execute('person.add', { id: 'ada', name: 'Ada Lovelace' }, { principal: alice });
    expect(old.status).toBe('success');
    const named = await core.execute(
      'person.add',
      { id: 'alan', name: 'Alan Turing' },
      { principal: alice, meta: { 'coremcp/command-version': 1 } },
    );
    expect(named.status).toBe('success');
    const current = await core.execute(
      'person.add',
      { id: 'grace', first: 'Grace', last: 'Hopper' },
      { principal: alice },
    );
    expect(current.status).toBe('success');
    expect((await core.state.get('profiles')).value).toEqual({
      people: {
        ada: { first: 'Ada', last: 'Lovelace' },
        alan: { first: 'Alan', last: 'Turing' },
        grace: { first: 'Grace', last: 'Hopper' },
      },
    });
    const bad = await core.execute('person.add', { id: 'x', nom: 'y' }, { principal: alice });
    expect(bad.status === 'error' && bad.error.code).toBe('invalid_input');
    // The audit keeps what the client sent.
    const audit = await core.store.readAudit({ command: 'person.add' });
    expect(audit[0]?.input).toEqual({ id: 'ada', name: 'Ada Lovelace' });
  });
});
