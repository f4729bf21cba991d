import { PassThrough } from 'node:stream';
import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import { describe, expect, it } from 'vitest';
import { findMessageProblem } from './guard.js';
import { GuardedStdioTransport, type StdioTransportOptions } from './stdio-transport.js';

/**
 * Feeds `chunks` to the transport, one read each, ends the input and waits for it to close; returns
 * the messages handed on, the lines answered and the errors reported.
 */
async function through(chunks: Buffer[], options: StdioTransportOptions = {}) {
  const input = new PassThrough();
  const answers = new PassThrough();
  const answered: string[] = [];
  answers.on('data', (c: Buffer) => answered.push(c.toString('utf8')));
  const transport = new GuardedStdioTransport(input, answers, options);
  const passed: JSONRPCMessage[] = [];
  const errors: Error[] = [];
  const events: string[] = [];
  transport.onmessage = (message) => {
    passed.push(message);
    events.push('message');
  };
  transport.onerror = (error) => errors.push(error);
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => {
      events.push('close');
      resolve();
    };
  });
  await transport.start();
  for (const chunk of chunks) {
    input.write(chunk);
    // Let the transport take each chunk as a read of its own.
    await new Promise((resolve) => setImmediate(resolve));
  }
  input.end();
  await closed;
  const lines = answered
    .join('')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { passed, answered: lines, errors, events };
}

/** Resolves once `condition` holds, checking each turn of the event loop. */
async function waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}

const ping = (id: number) => Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' })}\n`);

describe('the stdio transport', () => {
  it('passes a line whose multi-byte characters are split across reads through intact', async () => {
    const line = Buffer.from(
      `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'x', params: { t: 'ü 🎉 東' } })}\n`,
    );
    const cut = [
      line.indexOf(Buffer.from('ü')) + 1,
      line.indexOf(Buffer.from('🎉')) + 1,
      line.indexOf(Buffer.from('🎉')) + 3,
    ];
    const chunks = [
      line.subarray(0, cut[0]),
      line.subarray(cut[0], cut[1]),
      line.subarray(cut[1], cut[2]),
      line.subarray(cut[2]),
    ];
    const { passed, answered } = await through(chunks);
    expect(passed).toEqual([{ jsonrpc: '2.0', id: 1, method: 'x', params: { t: 'ü 🎉 東' } }]);
    expect(answered).toEqual([]);
  });

  it('skips an oversized line (answering it) and passes the next one', async () => {
    const big = Buffer.from(`{"id":1,"x":"${'a'.repeat(300)}"}\n`);
    const { passed, answered } = await through([big.subarray(0, 100), big.subarray(100), ping(2)], {
      maxLineBytes: 128,
    });
    expect(passed).toEqual([{ jsonrpc: '2.0', id: 2, method: 'ping' }]);
    expect(answered).toHaveLength(1);
    expect(answered[0]).toMatchObject({ id: null, error: { data: { code: 'payload_too_large' } } });
  });

  it('answers invalid JSON and batches, and lets neither through', async () => {
    const { passed, answered } = await through([
      Buffer.from('{oops\n[{"jsonrpc":"2.0","id":1,"method":"ping"}]\n\n'),
    ]);
    expect(passed).toEqual([]);
    expect(answered).toHaveLength(2);
    expect(answered[0]).toMatchObject({ error: { code: -32700, data: { code: 'parse_error' } } });
    expect(answered[1]).toMatchObject({ error: { data: { code: 'batch_not_supported' } } });
  });

  it('refuses a __proto__ member with its path, and answers a notification carrying one with nothing', async () => {
    const { passed, answered } = await through([
      Buffer.from(
        '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"list":[{"__proto__":{"x":1}}]}}}\n' +
          '{"jsonrpc":"2.0","method":"notifications/x","params":{"constructor":1}}\n',
      ),
      ping(8),
    ]);
    expect(passed).toEqual([{ jsonrpc: '2.0', id: 8, method: 'ping' }]);
    expect(answered).toHaveLength(1);
    expect(answered[0]).toMatchObject({
      id: 7,
      error: {
        data: {
          code: 'invalid_input',
          details: { issues: [{ path: '/params/arguments/list/0/__proto__' }] },
        },
      },
    });
  });

  it('reports JSON that is no JSON-RPC message as an error, as the SDK transport does, and serves on', async () => {
    const { passed, answered, errors } = await through([Buffer.from('{"hello":1}\n'), ping(3)]);
    expect(passed).toEqual([{ jsonrpc: '2.0', id: 3, method: 'ping' }]);
    expect(answered).toEqual([]);
    expect(errors).toHaveLength(1);
  });

  it('takes a last line without its newline and closes only after beforeEnd has run', async () => {
    const input = new PassThrough();
    let release: (() => void) | undefined;
    const transport = new GuardedStdioTransport(input, new PassThrough(), {
      beforeEnd: () =>
        new Promise<void>((resolve) => {
          release = resolve;
        }),
    });
    const events: string[] = [];
    transport.onmessage = (message) => events.push(`message ${(message as { id: number }).id}`);
    const closed = new Promise<void>((resolve) => {
      transport.onclose = () => {
        events.push('close');
        resolve();
      };
    });
    await transport.start();
    input.end('{"jsonrpc":"2.0","id":4,"method":"ping"}');
    await waitUntil(() => release !== undefined);
    // Held in beforeEnd: however many turns pass, the transport stays open.
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
    expect(events).toEqual(['message 4']);
    release!();
    await closed;
    expect(events).toEqual(['message 4', 'close']);
  });

  it('leaves one error listener on its output when another transport takes it over', async () => {
    const output = new PassThrough();
    const first = new GuardedStdioTransport(new PassThrough(), output);
    await first.start();
    await first.close();
    const second = new GuardedStdioTransport(new PassThrough(), output);
    await second.start();
    expect(output.listenerCount('error')).toBe(1);
    await second.close();
  });

  it('writes what it sends as one line of the SDK’s serialization, and refuses to send once closed', async () => {
    const output = new PassThrough();
    const written: string[] = [];
    output.on('data', (c: Buffer) => written.push(c.toString('utf8')));
    const transport = new GuardedStdioTransport(new PassThrough(), output);
    await transport.start();
    await transport.send({ jsonrpc: '2.0', id: 1, result: { text: 'ü' } });
    expect(written.join('')).toBe('{"jsonrpc":"2.0","id":1,"result":{"text":"ü"}}\n');
    await transport.close();
    await expect(transport.send({ jsonrpc: '2.0', id: 2, result: {} })).rejects.toThrow(/closed/);
  });
});

describe('findMessageProblem', () => {
  it('names the path of a forbidden key, escaped, and of nesting too deep', () => {
    expect(findMessageProblem({ a: { 'b/c': { prototype: 1 } } })).toEqual({
      path: '/a/b~1c/prototype',
      problem: 'key "prototype" is not allowed',
    });
    let deep: unknown = 1;
    for (let i = 0; i < 70; i++) deep = [deep];
    expect(findMessageProblem({ x: deep })?.path).toBe(`/x${'/0'.repeat(63)}`);
    expect(findMessageProblem({ a: [1, { b: 'ok' }], c: null })).toBeUndefined();
  });
});
