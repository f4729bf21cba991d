/**
 * Message framing at the byte level, on a real `coremcp serve --stdio` process and over HTTP: UTF-8
 * split across reads arrives whole, an oversized line is answered and skipped while the server goes on,
 * invalid JSON is answered, and JSON-RPC batches are refused whole with nothing in them run.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { CLI, startInProcess } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Raw {
  child: ChildProcessWithoutNullStreams;
  write(bytes: Buffer | string): void;
  /** The next JSON-RPC message the server writes (in order). */
  next(): Promise<Record<string, unknown>>;
  request(method: string, params: object): Promise<Record<string, unknown>>;
}

async function rawStdio(): Promise<Raw> {
  const tmp = tempDir();
  cleanups.push(tmp.remove);
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--stdio', '--log-level', 'warn', '--data-dir', tmp.dir],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  let buffer = '';
  const messages: Array<Record<string, unknown>> = [];
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
      messages.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
      buffer = buffer.slice(nl + 1);
    }
  });
  let id = 0;
  const raw: Raw = {
    child,
    write: (bytes) => child.stdin.write(bytes),
    next: async () => {
      await waitFor(() => messages.length > 0, { message: 'a message from the server' });
      return messages.shift()!;
    },
    request: async (method, params) => {
      const mine = ++id;
      raw.write(`${JSON.stringify({ jsonrpc: '2.0', id: mine, method, params })}\n`);
      for (;;) {
        const message = await raw.next();
        if (message.id === mine) return message;
      }
    },
  };
  await raw.request('initialize', {
    protocolVersion: '2025-11-25',
    capabilities: {},
    clientInfo: { name: 'raw', version: '1' },
  });
  raw.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
  return raw;
}

function revisionOf(response: Record<string, unknown>): number {
  const result = response.result as { _meta?: Record<string, unknown> };
  return result._meta?.['coremcp/revision'] as number;
}

describe('stdio framing', () => {
  it('keeps a multi-byte character split across two reads intact', async () => {
    const raw = await rawStdio();
    const title = 'Grüße, 東京 🎉 naïve';
    const line = Buffer.from(
      `${JSON.stringify({ jsonrpc: '2.0', id: 100, method: 'tools/call', params: { name: 'task.add', arguments: { title } } })}\n`,
    );
    // Cut inside the four bytes of the emoji and inside a two-byte character (the guard's unit test
    // makes each piece a read of its own; a pipe may join them).
    const emoji = line.indexOf(Buffer.from('🎉'));
    const umlaut = line.indexOf(Buffer.from('ü'));
    raw.write(line.subarray(0, umlaut + 1));
    await new Promise((resolve) => setImmediate(resolve));
    raw.write(line.subarray(umlaut + 1, emoji + 2));
    await new Promise((resolve) => setImmediate(resolve));
    raw.write(line.subarray(emoji + 2));
    let response: Record<string, unknown>;
    do response = await raw.next();
    while (response.id !== 100);
    const task = (response.result as { structuredContent: { task: { title: string } } }).structuredContent
      .task;
    expect(task.title).toBe(title);
  });

  it('answers an oversized line with payload_too_large and goes on serving', async () => {
    const raw = await rawStdio();
    const huge = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"task.add","arguments":{"title":"${'x'.repeat(5 * 1024 * 1024)}"}}}\n`;
    // In pieces, as a pipe delivers it.
    for (let i = 0; i < huge.length; i += 256 * 1024) raw.write(huge.slice(i, i + 256 * 1024));
    const refused = await raw.next();
    expect(refused).toMatchObject({ id: null, error: { data: { code: 'payload_too_large' } } });
    const after = await raw.request('tools/call', { name: 'task.add', arguments: { title: 'still here' } });
    expect(after.result).toMatchObject({ structuredContent: { task: { title: 'still here' } } });
    expect(revisionOf(after)).toBe(1);
  });

  it('answers invalid JSON with parse_error, and refuses a batch whole, running nothing in it', async () => {
    const raw = await rawStdio();
    raw.write('{"jsonrpc":"2.0","id":1,"method":\n');
    expect(await raw.next()).toMatchObject({
      id: null,
      error: { code: -32700, data: { code: 'parse_error' } },
    });
    const call = (id: number, title: string) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'task.add', arguments: { title } },
    });
    raw.write(`${JSON.stringify([call(2, 'a'), call(3, 'b')])}\n`);
    expect(await raw.next()).toMatchObject({ id: null, error: { data: { code: 'batch_not_supported' } } });
    raw.write('[]\n');
    expect(await raw.next()).toMatchObject({ id: null, error: { data: { code: 'batch_not_supported' } } });
    const added = await raw.request('tools/call', { name: 'task.add', arguments: { title: 'single' } });
    expect(revisionOf(added)).toBe(1); // neither batched call ran
  });
});

describe('HTTP batches', () => {
  it('refuses a JSON array body with 400 batch_not_supported, in both eras, running nothing', async () => {
    const server = await startInProcess({ app: taskboard });
    cleanups.push(() => server.close());
    const key = await server.key('admin', 'admin');
    const call = (id: number) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: {
        name: 'task.add',
        arguments: { title: `b${id}` },
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    });
    for (const body of [
      [call(1), call(2)],
      [],
      [{ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }],
    ]) {
      const response = await fetch(server.url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({
        id: null,
        error: { data: { code: 'batch_not_supported' } },
      });
    }
    expect((await server.core.state.get('board')).revision).toBe(0);
  });
});
