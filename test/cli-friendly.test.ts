/**
 * The CLI for people and scripts: tables with headers (golden), `--json` beside them, `state list`,
 * undo by document and revision, one-line errors with their exit codes, operator actions in the
 * audit chain as the OS user `via: cli`, and a first start that hands agents a least-privilege key.
 */
import { writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { createCore, localPrincipal, SqliteStore } from 'coremcp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { table } from '../src/cli/format.js';
import { errorCodeOf, httpClient, runCli, startServerProcess, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const tmp = tempDir();
const dataDir = ['--data-dir', tmp.dir];
const me = userInfo().username;
afterAll(() => tmp.remove());

beforeAll(async () => {
  const core = await createCore({
    app: taskboard,
    store: new SqliteStore({ path: join(tmp.dir, 'coremcp.db') }),
  });
  const alice = localPrincipal('alice', ['member']);
  for (const title of ['one', 'two', 'three'])
    await core.execute('task.add', { title }, { principal: alice });
  await core.execute('task.claim', { id: 'T-2' }, { principal: alice });
  await core.close();
});

describe('tables', () => {
  it('aligns columns under a header, right-aligns numbers, cuts long cells, and has a line for none', () => {
    const rows = [
      { doc: 'board', revision: 12, note: 'x'.repeat(80) },
      { doc: 'archive', revision: 3, note: 'short' },
    ];
    const columns = [
      { header: 'DOC', value: (r: (typeof rows)[number]) => r.doc },
      { header: 'REVISION', value: (r: (typeof rows)[number]) => String(r.revision), right: true },
      { header: 'NOTE', value: (r: (typeof rows)[number]) => r.note },
    ];
    expect(table(columns, rows, { colour: false })).toBe(
      [
        'DOC      REVISION  NOTE',
        `board          12  ${'x'.repeat(59)}…`,
        'archive         3  short',
        '',
      ].join('\n'),
    );
    expect(table(columns, [], { empty: 'no documents yet' })).toBe('no documents yet\n');
    expect(table(columns, rows, { colour: true }).startsWith('\u001b[1mDOC')).toBe(true);
  });

  it('prints `state list` as a table, and the same facts with --json', async () => {
    const listed = await runCli(['state', 'list', ...dataDir]);
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^DOC +REVISION +SIZE +ENTRIES +LAST CHANGE +BY +COMMAND$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^archive +0 +\d+ B +tasks: 0 +- +- +-$/),
      expect.stringMatching(
        /^board +4 +\d+ B +tasks: 3 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +alice +task\.claim$/,
      ),
    ]);
    const json = JSON.parse((await runCli(['state', 'list', '--json', ...dataDir])).stdout);
    expect(json).toEqual([
      expect.objectContaining({ doc: 'archive', revision: 0, collections: { tasks: 0 } }),
      expect.objectContaining({
        doc: 'board',
        revision: 4,
        collections: { tasks: 3 },
        lastChange: expect.objectContaining({ principal: 'alice', command: 'task.claim' }),
      }),
    ]);
  });

  it('prints history and the audit trail as tables with headers', async () => {
    const history = await runCli(['state', 'history', '--doc', 'board', ...dataDir]);
    const rows = history.stdout.trimEnd().split('\n');
    expect(rows[0]).toBe('board: head 4, history from 0');
    expect(rows[1]).toMatch(/^REVISION +TIME +PRINCIPAL +COMMAND +COMMAND ID +PATHS$/);
    expect(rows[5]).toMatch(/^ +4 +\d{4}-\S+ \S+ +alice +task\.claim +\S+ +\/tasks\/T-2\/status/);
    const audit = await runCli(['audit', 'tail', '--limit', '2', ...dataDir]);
    const lines = audit.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SEQ +TIME +PRINCIPAL +VIA +COMMAND +OUTCOME +DOC@REV$/);
    expect(lines[2]).toMatch(/^ *\d+ +\S+ \S+ +alice +internal +task\.claim +ok +board@4$/);
  });
});

describe('undo by document and revision', () => {
  it('undoes the command that made a revision, audited as the OS user via cli', async () => {
    const undone = await runCli(['state', 'undo', '--doc', 'board', '--revision', '4', ...dataDir]);
    expect(undone.code, undone.stderr).toBe(0);
    expect(JSON.parse(undone.stdout)).toMatchObject({ committed: true, revision: 5 });
    const tail = (await runCli(['audit', 'tail', '--limit', '1', '--json', ...dataDir])).stdout;
    expect(JSON.parse(tail)).toMatchObject({
      command: 'state.undo',
      principal: me,
      via: 'cli',
      outcome: 'ok',
    });
    const missing = await runCli(['state', 'undo', '--doc', 'board', '--revision', '99', ...dataDir]);
    expect([missing.code, missing.stderr]).toEqual([
      2,
      'coremcp: board has no commit at revision 99 (see `state history`)\n',
    ]);
    expect((await runCli(['state', 'undo', ...dataDir])).code).toBe(2);
  });
});

describe('operator actions in the audit chain', () => {
  it('records keys create and revoke, snapshot and compact as the OS user via cli, and the chain verifies', async () => {
    expect((await runCli(['keys', 'create', '--name', 'bot', '--role', 'viewer', ...dataDir])).code).toBe(0);
    expect((await runCli(['keys', 'revoke', 'bot', ...dataDir])).code).toBe(0);
    expect((await runCli(['keys', 'revoke', 'bot-that-is-not', ...dataDir])).code).toBe(2);
    expect((await runCli(['state', 'snapshot', '--doc', 'board', ...dataDir])).code).toBe(0);
    expect(
      (await runCli(['state', 'compact', '--doc', 'board', '--keep-commits', '100', ...dataDir])).code,
    ).toBe(0);
    const records = (await runCli(['audit', 'tail', '--limit', '5', '--json', ...dataDir])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.map((r) => [r.command, r.outcome, r.principal, r.via])).toEqual([
      ['admin.keys.create', 'ok', me, 'cli'],
      ['admin.keys.revoke', 'ok', me, 'cli'],
      ['admin.keys.revoke', 'failed', me, 'cli'],
      ['state.snapshot', 'ok', me, 'cli'],
      ['state.compact', 'ok', me, 'cli'],
    ]);
    // The key itself is never in the audit trail, only its name and role.
    expect(JSON.stringify(records)).not.toMatch(/cmcp_/);
    const verified = await runCli(['audit', 'verify', ...dataDir]);
    expect([verified.code, verified.stdout]).toEqual([
      0,
      expect.stringMatching(/^audit chain intact: \d+ records/),
    ]);
  });
});

describe('errors', () => {
  it('says what is wrong in one line, without a stack, with the documented exit codes', async () => {
    const missingApp = await runCli(['serve', './no-such-app.ts', ...dataDir]);
    expect([missingApp.code, missingApp.stderr]).toEqual([
      2,
      'coremcp: no such app module: ./no-such-app.ts\n',
    ]);
    const config = join(tmp.dir, 'broken.json');
    writeFileSync(config, '{ "roles": ');
    const badConfig = await runCli(['keys', 'list', '--config', config, ...dataDir]);
    expect(badConfig.code).toBe(2);
    expect(badConfig.stderr).toMatch(/^coremcp: \S+broken\.json is not valid JSON: [^\n]+\n$/);
    const unknown = await runCli(['keys', 'list', '--config', join(tmp.dir, 'none.json'), ...dataDir]);
    expect([unknown.code, unknown.stderr]).toEqual([
      2,
      `coremcp: no such config file: ${join(tmp.dir, 'none.json')}\n`,
    ]);
    expect((await runCli(['state', 'get', '--revision', 'x', ...dataDir])).code).toBe(2);
    expect((await runCli(['state', 'get', ...dataDir])).stderr).toBe(
      'coremcp: several documents exist (archive, board): name one with --doc\n',
    );
  });

  it('says a port is in use in one line and a hint, exit 1; --debug adds the stack', async () => {
    const first = await startServerProcess(['--data-dir', tempDir().dir]);
    try {
      const port = new URL(first.url).port;
      const other = tempDir();
      const busy = await runCli([
        'serve',
        '--http',
        `127.0.0.1:${port}`,
        '--log-level',
        'silent',
        '--data-dir',
        other.dir,
      ]);
      expect(busy.code).toBe(1);
      expect(busy.stderr.slice(busy.stderr.indexOf('coremcp: 127'))).toBe(
        `coremcp: 127.0.0.1:${port} is already in use\nhint: stop the process listening there, or choose another port with --http [host:]port\n`,
      );
      const debug = await runCli([
        'serve',
        '--http',
        `127.0.0.1:${port}`,
        '--log-level',
        'silent',
        '--data-dir',
        other.dir,
        '--debug',
      ]);
      expect(debug.stderr).toMatch(/EADDRINUSE[\s\S]*\n +at /);
      other.remove();
    } finally {
      await first.stop();
    }
  });
});

describe('first start', () => {
  it('creates an admin key and an agent key, and the client configuration it prints carries the agent key', async () => {
    const fresh = tempDir();
    const server = await startServerProcess(['--data-dir', fresh.dir]);
    try {
      expect(server.firstKey).toMatch(/^cmcp_/);
      expect(server.agentKey).toMatch(/^cmcp_/);
      const printed = JSON.parse(/\n(\{\n[\s\S]*?\n\})\n/.exec(server.stderr())![1]!);
      expect(printed.mcpServers['coremcp-taskboard'].headers.Authorization).toBe(`Bearer ${server.agentKey}`);
      const keys = JSON.parse((await runCli(['keys', 'list', '--json', '--data-dir', fresh.dir])).stdout);
      expect(keys.map((k: { name: string; role: string }) => [k.name, k.role])).toEqual([
        ['admin', 'admin'],
        ['agent', 'member'],
      ]);
      const agent = await httpClient(server.url, server.agentKey);
      try {
        const listed = (await agent.listTools()).tools;
        const tools = listed.map((t) => t.name);
        expect(tools).toContain('task.add');
        expect(tools).not.toContain('state.rollback');
        // A member's path rules deny /settings/** on the board: the tool says so before anyone calls it.
        expect(listed.find((t) => t.name === 'board.settings')?.description).toMatch(
          /You may not change \/settings\/\*\* in "board": such a call is refused as forbidden\.\)$/,
        );
        expect(listed.find((t) => t.name === 'task.list')?.description).not.toMatch(/may not change/);
        const settings = await agent.callTool({ name: 'board.settings', arguments: { wipLimit: 3 } });
        expect(errorCodeOf(settings)).toBe('forbidden');
        expect(
          structured(await agent.callTool({ name: 'task.add', arguments: { title: 'hi' } })).task,
        ).toBeDefined();
        const refused = await agent.callTool({
          name: 'state.rollback',
          arguments: { doc: 'board', toRevision: 0 },
        });
        expect(errorCodeOf(refused)).toMatch(/forbidden|unknown_command|not_found/);
      } finally {
        await agent.close();
      }
    } finally {
      await server.stop();
      fresh.remove();
    }
  });
});
