/**
 * `coremcp audit verify` checks the history against the chain, not only the chain against itself: a
 * rewritten patch, audit records deleted from the end while commits still name them, and indexed
 * columns that no longer say what the sealed record says all fail it.
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpClient, runCli, startServerProcess } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';

let source: { dir: string; remove: () => void };
const copies: Array<() => void> = [];

beforeAll(async () => {
  source = tempDir();
  const server = await startServerProcess(['--data-dir', source.dir]);
  const client = await httpClient(server.url, server.firstKey);
  for (let i = 0; i < 6; i++) await client.callTool({ name: 'task.add', arguments: { title: `task ${i}` } });
  await client.callTool({ name: 'task.list', arguments: {} });
  await client.close();
  expect(await server.stop()).toBe(0);
});

afterAll(() => {
  for (const remove of copies) remove();
  source.remove();
});

/** A copy of the populated data folder, changed by `tamper` through SQL. */
function tampered(tamper: (db: Database.Database) => void): string {
  const copy = tempDir();
  copies.push(copy.remove);
  cpSync(source.dir, copy.dir, { recursive: true });
  const db = new Database(join(copy.dir, 'coremcp.db'));
  tamper(db);
  db.close();
  return copy.dir;
}

const verify = (dir: string) => runCli(['audit', 'verify', '--data-dir', dir]);

describe('audit verify', () => {
  it('passes an untouched store, counting the commits it matched', async () => {
    const result = await verify(source.dir);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/audit chain intact: \d+ records, last hash [0-9a-f]{64}; 6 commits match/);
  });

  it("fails when a commit's patch is rewritten in the database", async () => {
    const dir = tampered((db) => {
      const row = db.prepare("SELECT patches FROM commits WHERE doc = 'board' AND revision = 3").get() as {
        patches: string;
      };
      const patches = JSON.parse(row.patches) as Array<Record<string, unknown>>;
      patches.push({ op: 'add', path: '/tampered', value: true });
      db.prepare("UPDATE commits SET patches = ? WHERE doc = 'board' AND revision = 3").run(
        JSON.stringify(patches),
      );
    });
    const result = await verify(dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/commit board@3: its patch is not the one audit record \d+ sealed/);
  });

  it('fails when the newest audit records are deleted while commits still name them', async () => {
    const dir = tampered((db) => {
      const newest = db
        .prepare("SELECT MAX(audit_seq) FROM commits WHERE doc = 'board'")
        .pluck()
        .get() as number;
      db.prepare('DELETE FROM audit WHERE seq >= ?').run(newest - 1);
    });
    const result = await verify(dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/commit board@6: its audit record \d+ is missing/);
  });

  it('fails when an indexed audit column no longer matches the sealed record', async () => {
    const dir = tampered((db) => {
      db.prepare("UPDATE audit SET principal = 'someone-else' WHERE seq = 2").run();
    });
    const result = await verify(dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/audit record 2: its stored columns differ from the sealed record/);
  });
});
