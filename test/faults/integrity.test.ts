/**
 * A database file that cannot be trusted is refused at start with one typed line and exit 1: empty,
 * truncated, not a database, or damaged inside. An empty file is never taken for a first start.
 */
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { httpClient, runCli, startServerProcess } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A data folder with a few commits, the server stopped (the log checkpointed into the file). */
async function populated(): Promise<{ dir: string; db: string }> {
  const tmp = tempDir();
  cleanups.push(tmp.remove);
  const server = await startServerProcess(['--data-dir', tmp.dir]);
  const client = await httpClient(server.url, server.firstKey);
  for (let i = 0; i < 40; i++)
    await client.callTool({ name: 'task.add', arguments: { title: `task ${i} ${'x'.repeat(150)}` } });
  await client.close();
  expect(await server.stop()).toBe(0);
  const db = join(tmp.dir, 'coremcp.db');
  expect(existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0).toBe(0);
  return { dir: tmp.dir, db };
}

async function refusedStart(dir: string) {
  const db = join(dir, 'coremcp.db');
  const before = readFileSync(db);
  const result = await runCli(['serve', '--http', '127.0.0.1:0', '--data-dir', dir]);
  expect(result.code).toBe(1);
  // The refusal changed nothing: not a byte of the file, and no log or key beside it.
  expect(readFileSync(db).equals(before)).toBe(true);
  // One line, typed, no stack, no new admin key.
  expect(result.stderr.trim().split('\n'), result.stderr).toHaveLength(1);
  expect(result.stderr).not.toMatch(/\n\s+at |cmcp_/);
  return result.stderr;
}

describe('integrity at start', () => {
  it('refuses an empty database file instead of minting a new admin key over it', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const db = join(tmp.dir, 'coremcp.db');
    writeFileSync(db, '');
    expect(await refusedStart(tmp.dir)).toMatch(/^coremcp: store_corrupt: .*is empty \(0 bytes\)/);
    expect(statSync(db).size).toBe(0);
  });

  it('refuses a truncated database file', async () => {
    const { dir, db } = await populated();
    const size = statSync(db).size;
    truncateSync(db, Math.floor(size / 2) - 100);
    expect(await refusedStart(dir)).toMatch(/^coremcp: store_corrupt: .*truncated/);
  });

  it('refuses a file that is not a database', async () => {
    const { dir, db } = await populated();
    const bytes = readFileSync(db);
    bytes.write('not a database!!', 0, 'latin1');
    writeFileSync(db, bytes);
    expect(await refusedStart(dir)).toMatch(/^coremcp: store_corrupt: .*not a SQLite database/);
  });

  it('refuses a database damaged inside, and state verify names the damage', async () => {
    const { dir, db } = await populated();
    const pageSize = readFileSync(db).readUInt16BE(16);
    const pages = statSync(db).size / pageSize;
    const fd = openSync(db, 'r+');
    // Scribble over every page but the first (the header and the schema stay readable).
    for (let page = 1; page < pages; page++)
      writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, page * pageSize + 8);
    closeSync(fd);
    expect(await refusedStart(dir)).toMatch(/^coremcp: store_corrupt: /);
    const verify = await runCli(['state', 'verify', '--data-dir', dir]);
    expect(verify.code).toBe(1);
    expect(verify.stderr).toMatch(/store_corrupt|integrity/);
  });
});

describe('state verify', () => {
  it('passes a healthy store, and names a missing revision and a rewritten patch', async () => {
    const { dir, db } = await populated();
    expect((await runCli(['state', 'snapshot', '--doc', 'board', '--data-dir', dir])).code).toBe(0);
    const healthy = await runCli(['state', 'verify', '--data-dir', dir]);
    expect(healthy.stderr).toBe('');
    expect(healthy.code).toBe(0);
    expect(healthy.stdout).toMatch(/integrity \(quick_check\): ok/);
    expect(healthy.stdout).toMatch(/board: revisions 0\.\.40, 40 commits and 2 snapshots replayed: ok/);

    const sqlite = new Database(db);
    // A patch rewritten in place: the commit at 40 now also adds a member it never added.
    const row = sqlite.prepare("SELECT patches FROM commits WHERE doc = 'board' AND revision = 40").get() as {
      patches: string;
    };
    const rewritten = [...JSON.parse(row.patches), { op: 'add', path: '/tampered', value: true }];
    sqlite
      .prepare("UPDATE commits SET patches = ? WHERE doc = 'board' AND revision = 40")
      .run(JSON.stringify(rewritten));
    sqlite.prepare("DELETE FROM commits WHERE doc = 'board' AND revision = 20").run();
    sqlite.close();

    const broken = await runCli(['state', 'verify', '--data-dir', dir]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/board: revision 20 is missing/);
    expect(broken.stderr).toMatch(/board: the snapshot at revision 40 differs from the replayed history/);
  });
});
