/** The CLI as users run it: help, exit codes (0 ok, 1 failure, 2 usage), keys and state commands. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCore, localPrincipal, SqliteStore } from 'coremcp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { httpClient, runCli, type ServerProcess, startServerProcess } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const tmp = tempDir();
const dataDir = ['--data-dir', tmp.dir];
afterAll(() => tmp.remove());

describe('help and usage', () => {
  it.each([
    [[]],
    [['serve']],
    [['keys']],
    [['keys', 'create']],
    [['keys', 'list']],
    [['keys', 'revoke']],
    [['state']],
    [['state', 'get']],
    [['state', 'history']],
  ])('prints help for %j and exits 0', async (args) => {
    const { code, stdout } = await runCli([...args, '--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: coremcp/);
  });

  it('exits 2 on unknown commands, unknown options and missing required options', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    expect((await runCli(['state', 'get', '--nope'])).code).toBe(2);
    expect((await runCli(['keys', 'create', '--name', 'x'])).code).toBe(2);
  });

  it('exits 2 on malformed option values, with a one-line reason', async () => {
    const bad = await runCli(['state', 'get', '--revision', '-3', ...dataDir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--revision must be an integer/);
    expect((await runCli(['serve', '--http', 'not-a-port', ...dataDir])).code).toBe(2);
    expect((await runCli(['serve', '--http', '0.0.0.0:0', '--no-auth', ...dataDir])).stderr).toMatch(
      /only allowed on a loopback/,
    );
  });

  it('exits 2 when the app module is missing or exports no app', async () => {
    expect((await runCli(['serve', './no-such-app.ts', ...dataDir])).code).toBe(2);
    const notAnApp = join(tmp.dir, 'not-an-app.mjs');
    writeFileSync(notAnApp, 'export default { name: "fake" };\n');
    const result = await runCli(['serve', notAnApp, ...dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/export default defineApp/);
  });
});

describe('keys', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServerProcess(dataDir);
  });
  afterAll(async () => {
    await server.stop();
  });

  it('creates a key, printing it alone on stdout, that authenticates as its name', async () => {
    const { code, stdout, stderr } = await runCli([
      'keys',
      'create',
      '--name',
      'agent-7',
      '--role',
      'member',
      ...dataDir,
    ]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^cmcp_[a-z0-9]{12}_[A-Za-z0-9_-]{43}\n$/);
    expect(stderr).toMatch(/agent-7/);
    const client = await httpClient(server.url, stdout.trim());
    const added = await client.callTool({ name: 'task.add', arguments: { title: 'by agent 7' } });
    expect((added.structuredContent as { task: { createdBy: string } }).task.createdBy).toBe('agent-7');
    await client.close();
  });

  it('refuses a duplicate name (exit 1) and an unknown role or a bad name (exit 2)', async () => {
    expect((await runCli(['keys', 'create', '--name', 'agent-7', '--role', 'member', ...dataDir])).code).toBe(
      1,
    );
    expect((await runCli(['keys', 'create', '--name', 'x', '--role', 'superuser', ...dataDir])).code).toBe(2);
    expect(
      (await runCli(['keys', 'create', '--name', 'bad name!', '--role', 'member', ...dataDir])).code,
    ).toBe(2);
  });

  it('lists keys without their hashes, and revokes by name so they stop working', async () => {
    const listed = JSON.parse((await runCli(['keys', 'list', '--json', ...dataDir])).stdout) as Array<
      Record<string, unknown>
    >;
    expect(listed.map((k) => k.name).sort()).toEqual(['admin', 'agent', 'agent-7']);
    expect(listed.every((k) => !('hash' in k))).toBe(true);
    const key = (
      await runCli(['keys', 'create', '--name', 'short-lived', '--role', 'viewer', ...dataDir])
    ).stdout.trim();
    const revoked = await runCli(['keys', 'revoke', 'short-lived', ...dataDir]);
    expect(revoked.code).toBe(0);
    const response = await fetch(server.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
    });
    expect(response.status).toBe(401);
    expect((await runCli(['keys', 'list', ...dataDir])).stdout).toMatch(
      /\n\S+ +short-lived +viewer +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\d{4}-\d\d-\d\d /,
    );
    expect((await runCli(['keys', 'revoke', 'nobody', ...dataDir])).code).toBe(2);
  });
});

describe('serve', () => {
  it('answers under the loopback address it was told to bind, e.g. 127.0.0.2', async () => {
    const other = tempDir();
    const server = await startServerProcess(['--http', '127.0.0.2:0', '--no-auth', '--data-dir', other.dir]);
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+\/mcp$/);
      const client = await httpClient(server.url, undefined);
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      await client.close();
    } finally {
      await server.stop();
      other.remove();
    }
  });
});

describe('store URLs', () => {
  it('reports an unreachable PostgreSQL in one line, exit 1, without its password, from --store, the environment or the config', async () => {
    const viaFlag = await runCli([
      'state',
      'get',
      '--store',
      'postgres://app:secret@127.0.0.1:1/app',
      ...dataDir,
    ]);
    const viaEnv = await runCli(['keys', 'list', ...dataDir], {
      env: { COREMCP_STORE_URL: 'postgresql://app:secret@127.0.0.1:1/app' },
    });
    const config = join(tmp.dir, 'postgres.config.json');
    writeFileSync(config, JSON.stringify({ store: { url: 'postgres://app:secret@127.0.0.1:1/app' } }));
    const viaConfig = await runCli(['serve', '--config', config, ...dataDir]);
    for (const result of [viaFlag, viaEnv, viaConfig]) {
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /^coremcp: store_unavailable: cannot reach PostgreSQL at 127\.0\.0\.1:1\/app: [^\n]*\n$/,
      );
      expect(result.stderr).not.toContain('secret');
    }
  });

  it('refuses a URL of an unknown kind without showing its password', async () => {
    const result = await runCli(['audit', 'verify', '--store', 'mysql://root:hunter2@db/app', ...dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unsupported store URL "mysql:\/\/root:\*\*\*@db\/app"/);
    expect(result.stderr).not.toContain('hunter2');
  });
});

describe('state', () => {
  it('prints a document and its history; unknown documents exit 1 with not_found', async () => {
    const ambiguous = await runCli(['state', 'get', ...dataDir]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/several documents exist \(archive, board\)/);
    const got = await runCli(['state', 'get', '--doc', 'board', ...dataDir]);
    expect(got.code).toBe(0);
    const board = JSON.parse(got.stdout) as { doc: string; revision: number };
    expect(board.doc).toBe('board');
    expect(board.revision).toBeGreaterThan(0);
    const history = await runCli(['state', 'history', '--doc', 'board', '--limit', '5', ...dataDir]);
    expect(history.code).toBe(0);
    expect(history.stdout).toMatch(/task\.add/);
    // Two more tasks, so the board's tasks need more than one page of one.
    const core = await createCore({
      app: taskboard,
      store: new SqliteStore({ path: join(tmp.dir, 'coremcp.db') }),
    });
    for (const title of ['second', 'third'])
      await core.execute('task.add', { title }, { principal: localPrincipal('seed', ['member']) });
    await core.close();
    const firstPage = await runCli(['state', 'get', '--doc', 'board', '--limit', '1', ...dataDir]);
    const read = JSON.parse(firstPage.stdout) as {
      value: { tasks: object };
      more: { tasks?: { cursor: string; size: number } };
    };
    expect(Object.keys(read.value.tasks)).toHaveLength(1);
    expect(read.more.tasks?.size).toBeGreaterThanOrEqual(3);
    {
      const next = await runCli([
        'state',
        'get',
        '--doc',
        'board',
        '--collection',
        'tasks',
        '--cursor',
        read.more.tasks!.cursor,
        '--limit',
        '1',
        ...dataDir,
      ]);
      expect(next.code).toBe(0);
      const page = JSON.parse(next.stdout) as { entries: Array<[string, unknown]>; revision: number };
      expect(page.entries).toHaveLength(1);
      expect(page.entries[0]![0]).not.toBe(Object.keys(read.value.tasks)[0]);
    }
    const badCursor = await runCli([
      'state',
      'get',
      '--doc',
      'board',
      '--collection',
      'tasks',
      '--cursor',
      'x!',
      ...dataDir,
    ]);
    expect(badCursor.code).toBe(1);
    expect(badCursor.stderr).toMatch(/invalid_cursor/);
    const missing = await runCli(['state', 'get', '--doc', 'nope', ...dataDir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not_found/);
  });
});
