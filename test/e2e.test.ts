/**
 * End to end: the built CLI (`coremcp serve`) as a child process, real SDK clients over stdio and
 * Streamable HTTP, in both protocol eras, calling every task-board command.
 */
import { spawn } from 'node:child_process';
import type { Client } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI,
  type Era,
  errorCodeOf,
  httpClient,
  runCli,
  type ServerProcess,
  startServerProcess,
  stdioClient,
  structured,
} from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

/** Writes raw JSON-RPC lines to `coremcp serve --stdio` and collects the replies by id. */
async function rawStdio(dataDir: string, messages: Array<object | string>): Promise<Map<number, unknown>> {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--stdio', '--log-level', 'silent', '--data-dir', dataDir],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  const replies = new Map<number, unknown>();
  let buffer = '';
  const expected = messages.filter((m) => (typeof m === 'string' ? m.includes('"id"') : 'id' in m)).length;
  const done = new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const reply = JSON.parse(buffer.slice(0, nl)) as { id?: number };
        buffer = buffer.slice(nl + 1);
        if (typeof reply.id === 'number') replies.set(reply.id, reply);
        if (replies.size === expected) resolve();
      }
    });
  });
  for (const m of messages) child.stdin.write(`${typeof m === 'string' ? m : JSON.stringify(m)}\n`);
  await done;
  child.stdin.end();
  await new Promise((resolve) => child.once('exit', resolve));
  return replies;
}

const TOOLS = [
  'board.archive',
  'board.export',
  'board.settings',
  'state.rollback',
  'state.undo',
  'task.add',
  'task.claim',
  'task.complete',
  'task.list',
  'task.release',
  'task.remove',
];

async function expectTaskBoardTools(client: Client): Promise<void> {
  const { tools } = await client.listTools();
  expect(tools.map((t) => t.name).sort()).toEqual(TOOLS);
  const list = tools.find((t) => t.name === 'task.list')!;
  expect(list.annotations?.readOnlyHint).toBe(true);
  const add = tools.find((t) => t.name === 'task.add')!;
  expect(add.annotations?.readOnlyHint).toBe(false);
  expect(add.inputSchema).toMatchObject({
    type: 'object',
    properties: { title: { type: 'string', minLength: 1, maxLength: 200 } },
    required: ['title'],
    additionalProperties: false,
  });
}

/** Calls every task-board command through `client` and checks results, revisions and refusals. */
async function exerciseTaskBoard(client: Client, me: string): Promise<void> {
  const added = await client.callTool({
    name: 'task.add',
    arguments: { title: 'Write the README', description: 'two commands' },
  });
  expect(added.isError).toBeFalsy();
  const task = structured(added).task as { id: string; status: string; createdBy: string };
  expect(task).toMatchObject({ status: 'open', createdBy: me });
  const revision = added._meta?.['coremcp/revision'] as number;
  expect(revision).toBeGreaterThan(0);

  const listed = await client.callTool({ name: 'task.list', arguments: { status: 'open' } });
  expect((structured(listed).tasks as Array<{ id: string }>).map((t) => t.id)).toContain(task.id);
  expect(listed._meta?.['coremcp/revision']).toBe(revision);

  const claimed = await client.callTool({ name: 'task.claim', arguments: { id: task.id } });
  expect(structured(claimed).task).toMatchObject({ id: task.id, status: 'claimed', assignee: me });
  expect(claimed._meta?.['coremcp/revision']).toBe(revision + 1);

  const released = await client.callTool({ name: 'task.release', arguments: { id: task.id } });
  expect(structured(released).task).toMatchObject({ status: 'open', assignee: null });

  const notMine = await client.callTool({ name: 'task.complete', arguments: { id: task.id } });
  expect(notMine.isError).toBe(true);
  expect(errorCodeOf(notMine)).toBe('not_assignee');

  await client.callTool({ name: 'task.claim', arguments: { id: task.id } });
  const done = await client.callTool({ name: 'task.complete', arguments: { id: task.id, note: 'shipped' } });
  expect(structured(done).task).toMatchObject({ status: 'done', note: 'shipped' });
  expect(done._meta?.['coremcp/revision']).toBe(revision + 4);

  const settings = await client.callTool({ name: 'board.settings', arguments: { wipLimit: 3 } });
  expect(structured(settings)).toEqual({ settings: { wipLimit: 3 } });

  const missing = await client.callTool({ name: 'task.claim', arguments: { id: 'T-999999' } });
  expect(errorCodeOf(missing)).toBe('task_not_found');

  const resource = await client.readResource({ uri: 'coremcp://state/board' });
  const board = JSON.parse((resource.contents[0] as { text: string }).text) as {
    tasks: Record<string, { status: string }>;
  };
  expect(board.tasks[task.id]?.status).toBe('done');
  expect(resource.contents[0]?._meta?.['coremcp/revision']).toBe(revision + 5);
}

describe.each<Era>(['legacy', 'modern'])('task board over Streamable HTTP, %s era', (era) => {
  const tmp = tempDir();
  let server: ServerProcess;
  let client: Client;

  beforeAll(async () => {
    server = await startServerProcess(['--data-dir', tmp.dir]);
    expect(server.firstKey).toMatch(/^cmcp_/);
    client = await httpClient(server.url, server.firstKey, era);
  });

  afterAll(async () => {
    await client?.close();
    await server?.stop();
    tmp.remove();
  });

  it('negotiates the expected protocol era', () => {
    expect(client.getNegotiatedProtocolVersion()).toBe(era === 'modern' ? '2026-07-28' : '2025-11-25');
  });

  it('lists the task-board tools with JSON Schemas and annotations', async () => {
    await expectTaskBoardTools(client);
  });

  it('runs every task-board command', async () => {
    await exerciseTaskBoard(client, 'admin');
  });

  it('lists documents as resources, with the revision in _meta', async () => {
    const { resources } = await client.listResources();
    expect(resources.map((r) => r.uri)).toEqual(['coremcp://state/archive', 'coremcp://state/board']);
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates.map((t) => t.name)).toEqual([
      'state',
      'state-entries',
      'state-diff',
      'state-history',
    ]);
  });
});

describe.each<Era>(['legacy', 'modern'])('task board over stdio, %s era', (era) => {
  const tmp = tempDir();
  let client: Client;
  let stderr: () => string;

  beforeAll(async () => {
    ({ client, stderr } = await stdioClient(['--data-dir', tmp.dir], era));
  });

  afterAll(async () => {
    await client?.close();
    tmp.remove();
  });

  it('lists tools and runs every task-board command as the local user', async () => {
    await expectTaskBoardTools(client);
    const { stdout } = await runCli(['keys', 'list', '--json', '--data-dir', tmp.dir]);
    expect(JSON.parse(stdout)).toEqual([]);
    const whoami = (await import('node:os')).userInfo().username;
    await exerciseTaskBoard(client, whoami);
    expect(stderr()).not.toMatch(/cmcp_/);
  });

  it('refuses a __proto__ member at the stdio edge with invalid_input, changing nothing', async () => {
    // The SDK client strips such members itself, so the raw protocol is written to the server's stdin.
    const replies = await rawStdio(tmp.dir, [
      {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-11-25',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"task.add","arguments":{"title":"x","__proto__":{"polluted":true}}}}',
      { jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri: 'coremcp://state/board' } },
    ]);
    expect(replies.get(2)).toMatchObject({
      error: {
        code: -32602,
        data: { code: 'invalid_input', details: { issues: [{ path: '/params/arguments/__proto__' }] } },
      },
    });
    const board = JSON.parse(
      (replies.get(3) as { result: { contents: Array<{ text: string }> } }).result.contents[0]!.text,
    );
    expect(Object.values(board.tasks).some((t) => (t as { title: string }).title === 'x')).toBe(false);
  });
});
