/**
 * Waiting on conditions instead of wall-clock sleeps: a test awaits the thing it needs (a log line, a
 * listener call, an address unblocked) and fails with a clear message if it does not come in time.
 * Deadlines are generous upper bounds, not expectations: a passing test never waits for them.
 */
import type { Readable } from 'node:stream';

export interface WaitOptions {
  /** Give up after this long, failing with `message` (default 10,000 ms). */
  timeoutMs?: number;
  /** How often to re-check a polled condition (default 20 ms). */
  intervalMs?: number;
  /** What the test was waiting for, for the failure message; a function is called only on failure. */
  message?: string | (() => string);
}

function failure(options: WaitOptions, timeoutMs: number): Error {
  const what = typeof options.message === 'function' ? options.message() : options.message;
  return new Error(`gave up after ${timeoutMs} ms waiting for ${what ?? 'a condition'}`);
}

/**
 * Resolves with the first truthy value `probe` returns, checking now and then every `intervalMs`;
 * rejects when `timeoutMs` has passed. A probe that throws or rejects fails the wait at once.
 */
export async function waitFor<T>(
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 20;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (performance.now() >= deadline) throw failure(options, timeoutMs);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Resolves once `read()` (the text accumulated so far, e.g. a child's stderr) satisfies `matches`,
 * re-checking on every chunk the stream emits rather than on a timer. Rejects when `timeoutMs` has
 * passed or the stream ends first, quoting the text read so far.
 */
export function waitForOutput(
  stream: Readable,
  read: () => string,
  matches: string | RegExp | ((text: string) => boolean),
  options: Omit<WaitOptions, 'intervalMs'> = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const test =
    typeof matches === 'function'
      ? matches
      : typeof matches === 'string'
        ? (text: string) => text.includes(matches)
        : (text: string) => matches.test(text);
  const what = () => {
    const message = options.message ?? `output matching ${String(matches)}`;
    return typeof message === 'function' ? message() : message;
  };
  return new Promise<string>((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer);
      stream.off('data', check);
      stream.off('end', ended);
      stream.off('close', ended);
      if (error) reject(error);
      else resolve(read());
    };
    // Listeners run in the order they were added, so the owner's accumulator has seen the chunk
    // by the time this one runs; the check after attaching covers text that is already there.
    const check = () => {
      if (test(read())) done();
    };
    const ended = () => {
      // The last chunk may have completed the match.
      if (test(read())) done();
      else done(new Error(`the stream ended before ${what()}; the output was:\n${read()}`));
    };
    const timer = setTimeout(
      () =>
        done(new Error(`gave up after ${timeoutMs} ms waiting for ${what()}; the output so far:\n${read()}`)),
      timeoutMs,
    );
    stream.on('data', check);
    stream.once('end', ended);
    stream.once('close', ended);
    if (stream.readableEnded || stream.destroyed) ended();
    else check();
  });
}

/** A promise with its resolve and reject handed out, for tests that decide when something happens. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
