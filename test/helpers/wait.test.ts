import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { deferred, waitFor, waitForOutput } from './wait.js';

describe('waitFor', () => {
  it('resolves with the first truthy value of the probe', async () => {
    let calls = 0;
    expect(await waitFor(() => ++calls >= 3 && calls, { intervalMs: 1 })).toBe(3);
  });

  it('fails at the deadline, saying what it waited for', async () => {
    await expect(waitFor(() => false, { timeoutMs: 30, intervalMs: 5, message: 'the moon' })).rejects.toThrow(
      'gave up after 30 ms waiting for the moon',
    );
  });

  it('fails at once when the probe throws', async () => {
    let calls = 0;
    await expect(
      waitFor(() => {
        calls++;
        throw new Error('broken probe');
      }),
    ).rejects.toThrow('broken probe');
    expect(calls).toBe(1);
  });
});

describe('waitForOutput', () => {
  function accumulating() {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    return { stream, read: () => text };
  }

  it('resolves when a later chunk completes the match, and at once when the text is already there', async () => {
    const { stream, read } = accumulating();
    const waiting = waitForOutput(stream, read, /request 42 failed/);
    stream.write('request 4');
    stream.write('2 failed\n');
    expect(await waiting).toBe('request 42 failed\n');
    expect(await waitForOutput(stream, read, 'request 42')).toBe('request 42 failed\n');
  });

  it('fails when the stream ends first, or at the deadline, quoting the output', async () => {
    const ended = accumulating();
    const waiting = waitForOutput(ended.stream, ended.read, 'never');
    ended.stream.end('bye\n');
    ended.stream.resume();
    await expect(waiting).rejects.toThrow(/stream ended before output matching never; the output was:\nbye/);

    const quiet = accumulating();
    quiet.stream.write('hello\n');
    await expect(
      waitForOutput(quiet.stream, quiet.read, 'never', { timeoutMs: 20, message: 'a word' }),
    ).rejects.toThrow(/gave up after 20 ms waiting for a word; the output so far:\nhello/);
  });
});

describe('deferred', () => {
  it('hands out resolve and reject', async () => {
    const ok = deferred<number>();
    ok.resolve(7);
    expect(await ok.promise).toBe(7);
    const bad = deferred();
    bad.reject(new Error('no'));
    await expect(bad.promise).rejects.toThrow('no');
  });
});
