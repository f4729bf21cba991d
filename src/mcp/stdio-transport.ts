import type { Readable, Writable } from 'node:stream';
import {
  type JSONRPCMessage,
  parseJSONRPCMessage,
  serializeMessage,
  type Transport,
} from '@modelcontextprotocol/server';
import { TransportError } from '../core/errors.js';
import { batchRefusal, findMessageProblem, messageProblemError, replyWith } from './guard.js';

/** Marks the error listener a closed transport leaves on its output to swallow late write failures. */
const SWALLOWS_AFTER_CLOSE = Symbol('swallowsAfterClose');

/** The longest line stdio accepts by default (the SDK itself gives up at 10 MiB and closes). */
export const DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024;

export interface StdioTransportOptions {
  /** Longest line accepted, in bytes; a longer one is answered with `payload_too_large` and skipped. */
  maxLineBytes?: number;
  /**
   * Runs when the input ends, before the connection closes: the calls already read can finish and
   * be answered (the SDK's transport closes at end of input, dropping answers still to come).
   */
  beforeEnd?: () => Promise<unknown>;
}

/**
 * Newline-delimited JSON-RPC on a readable and a writable (stdin and stdout), framed on bytes and
 * parsed once. It stands in for the SDK's `StdioServerTransport`, which would parse every line a
 * second time behind a guard of ours; messages are still validated by the SDK's own schema
 * (`parseJSONRPCMessage`) and written by its `serializeMessage`, so the wire is the SDK's.
 *
 * Lines end at `\n` (which never occurs inside a multi-byte UTF-8 character, so one split across
 * reads arrives whole). What the SDK would drop in silence is answered:
 * - a line that is not JSON: `parse_error` (the SDK skips it without a word);
 * - a JSON array: `batch_not_supported` (batches left MCP in 2025-06-18), and nothing in it runs;
 * - a line longer than `maxLineBytes`: `payload_too_large`, the rest of the line skipped, the server
 *   serving on (the SDK would close the connection at its own limit);
 * - `__proto__`, `constructor` or `prototype` members, or hostile nesting: `invalid_input` (the SDK's
 *   schemas drop such members before any hook could refuse them).
 * JSON that is no JSON-RPC message goes to `onerror`, as with the SDK's transport.
 */
export class GuardedStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  readonly #input: Readable;
  readonly #output: Writable;
  readonly #max: number;
  readonly #beforeEnd: (() => Promise<unknown>) | undefined;
  #pending: Buffer[] = [];
  #size = 0;
  #skipping = false;
  #started = false;
  #ending = false;
  #closed = false;

  constructor(input: Readable, output: Writable, options: StdioTransportOptions = {}) {
    this.#input = input;
    this.#output = output;
    this.#max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#beforeEnd = options.beforeEnd;
  }

  async start(): Promise<void> {
    if (this.#started) throw new Error('The stdio transport is already started');
    this.#started = true;
    // A closed transport's error listener stays on its output; one taking over the stream drops it.
    for (const listener of this.#output.listeners('error'))
      if ((listener as { [SWALLOWS_AFTER_CLOSE]?: true })[SWALLOWS_AFTER_CLOSE])
        this.#output.off('error', listener as (error: Error) => void);
    if (this.#input.readableEnded || this.#input.destroyed) setImmediate(this.#onEnd);
    this.#input.on('data', this.#onData);
    this.#input.on('error', this.#onInputError);
    this.#input.on('end', this.#onEnd);
    this.#input.on('close', this.#onEnd);
    // Stays attached after close, so a late write failure is swallowed instead of thrown.
    this.#output.on('error', this.#onOutputError);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#input.off('data', this.#onData);
    this.#input.off('error', this.#onInputError);
    this.#input.off('end', this.#onEnd);
    this.#input.off('close', this.#onEnd);
    if (this.#input.listenerCount('data') === 0) this.#input.pause();
    this.#pending = [];
    (this.#onOutputError as { [SWALLOWS_AFTER_CLOSE]?: true })[SWALLOWS_AFTER_CLOSE] = true;
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('The stdio transport is closed'));
    const output = this.#output;
    return new Promise((resolve, reject) => {
      const settle = (error?: Error | null) => {
        output.off('error', settle);
        output.off('drain', settle);
        if (error) reject(error);
        else resolve();
      };
      output.once('error', settle);
      if (output.write(serializeMessage(message))) settle();
      else output.once('drain', settle);
    });
  }

  readonly #onData = (chunk: Buffer): void => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const piece = chunk.subarray(start, nl === -1 ? chunk.length : nl);
      if (this.#skipping) {
        if (nl !== -1) this.#skipping = false;
      } else if (this.#size + piece.length > this.#max) {
        this.#pending = [];
        this.#size = 0;
        this.#skipping = nl === -1;
        replyWith(
          this.#output,
          new TransportError('payload_too_large', `A message is at most ${this.#max} bytes`),
          null,
        );
      } else if (nl === -1) {
        if (piece.length > 0) {
          this.#pending.push(piece);
          this.#size += piece.length;
        }
      } else {
        const line = this.#size === 0 ? piece : Buffer.concat([...this.#pending, piece]);
        this.#pending = [];
        this.#size = 0;
        this.#line(line);
      }
      if (nl === -1 || this.#closed) return;
      start = nl + 1;
    }
  };

  /** One whole line: answered here if refused, else handed on as a message. */
  #line(line: Buffer): void {
    const text = line.toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      if (text.trim() !== '')
        replyWith(this.#output, new TransportError('parse_error', 'The line is not valid JSON'), null);
      return;
    }
    if (Array.isArray(value)) {
      replyWith(this.#output, batchRefusal(), null);
      return;
    }
    const problem = findMessageProblem(value);
    if (problem) {
      const { id } = (value ?? {}) as { id?: unknown };
      // A notification (no id) gets no answer, as JSON-RPC says; it does not run either.
      if (id !== undefined) this.#output.write(`${JSON.stringify(messageProblemError(id, problem))}\n`);
      return;
    }
    let message: JSONRPCMessage;
    try {
      message = parseJSONRPCMessage(value);
    } catch (error) {
      this.onerror?.(error as Error);
      return;
    }
    try {
      this.onmessage?.(message);
    } catch (error) {
      this.onerror?.(error as Error);
    }
  }

  /** End of input: a last line without its newline still counts; then `beforeEnd`, then close. */
  readonly #onEnd = (): void => {
    if (this.#ending) return;
    this.#ending = true;
    const rest = this.#skipping ? Buffer.alloc(0) : Buffer.concat(this.#pending);
    this.#pending = [];
    this.#size = 0;
    if (rest.length > 0 && !this.#closed) this.#line(rest);
    // A turn later: the answers of the calls `beforeEnd` waited for are sent from the promise
    // callbacks that follow their completion.
    const closing = () => {
      setImmediate(() => this.close().catch(() => {}));
    };
    if (this.#beforeEnd) this.#beforeEnd().then(closing, closing);
    else closing();
  };

  readonly #onInputError = (error: Error): void => {
    this.onerror?.(error);
  };

  readonly #onOutputError = (error: Error): void => {
    if (this.#closed) return;
    this.onerror?.(error);
    this.close().catch(() => {});
  };
}
