import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { guardStdin } from './guard.js';

/** Feeds `chunks` through the guard, one read each, and returns what reaches the SDK and what was answered. */
async function through(chunks: Buffer[], maxLineBytes?: number) {
  const input = new PassThrough();
  const answers = new PassThrough();
  const answered: string[] = [];
  answers.on('data', (c: Buffer) => answered.push(c.toString('utf8')));
  const guarded = guardStdin(input, answers, maxLineBytes === undefined ? {} : { maxLineBytes });
  const passed: Buffer[] = [];
  guarded.on('data', (c: Buffer) => passed.push(c));
  const ended = new Promise((resolve) => guarded.on('end', resolve));
  for (const chunk of chunks) {
    input.write(chunk);
    // Let the guard take each chunk as a read of its own.
    await new Promise((resolve) => setImmediate(resolve));
  }
  input.end();
  await ended;
  return { passed: Buffer.concat(passed).toString('utf8'), answered: answered.join('') };
}

describe('the stdio guard', () => {
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
    expect(passed).toBe(line.toString('utf8'));
    expect(passed).not.toContain('\uFFFD');
    expect(answered).toBe('');
  });

  it('skips an oversized line (answering it) and passes the next one', async () => {
    const big = Buffer.from(`{"id":1,"x":"${'a'.repeat(300)}"}\n`);
    const next = Buffer.from('{"jsonrpc":"2.0","id":2,"method":"ping"}\n');
    const { passed, answered } = await through([big.subarray(0, 100), big.subarray(100), next], 128);
    expect(passed).toBe(next.toString('utf8'));
    expect(JSON.parse(answered)).toMatchObject({ id: null, error: { data: { code: 'payload_too_large' } } });
  });

  it('answers invalid JSON and batches, and lets neither through', async () => {
    const { passed, answered } = await through([
      Buffer.from('{oops\n[{"jsonrpc":"2.0","id":1,"method":"ping"}]\n\n'),
    ]);
    expect(passed).toBe('');
    const [parse, batch] = answered
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(parse).toMatchObject({ error: { code: -32700, data: { code: 'parse_error' } } });
    expect(batch).toMatchObject({ error: { data: { code: 'batch_not_supported' } } });
  });
});
