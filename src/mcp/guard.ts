import { type Readable, Transform, type Writable } from 'node:stream';
import { CommandError, jsonRpcErrorBody, TransportError, toPublicError } from '../core/errors.js';
import { escapePointerToken, FORBIDDEN_KEYS, type JsonObject } from '../core/json.js';

/** Deepest nesting accepted in a JSON-RPC message (arguments are further bounded by the command limits). */
export const MAX_MESSAGE_DEPTH = 64;

export interface MessageProblem {
  path: string;
  problem: string;
}

/**
 * Checks a whole incoming message before the SDK parses it: the SDK's schemas silently drop
 * `__proto__` members (so a handler could never refuse them), and recursive parsing of hostile nesting
 * is better refused early. Iterative, stops at the first problem.
 */
export function findMessageProblem(message: unknown): MessageProblem | undefined {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [
    { value: message, path: '', depth: 0 },
  ];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_MESSAGE_DEPTH)
      return { path, problem: `nested deeper than ${MAX_MESSAGE_DEPTH} levels` };
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++)
        stack.push({ value: value[i], path: `${path}/${i}`, depth: depth + 1 });
      continue;
    }
    for (const key of Object.keys(value)) {
      const child = `${path}/${escapePointerToken(key)}`;
      if (FORBIDDEN_KEYS.has(key)) return { path: child, problem: `key "${key}" is not allowed` };
      stack.push({ value: (value as Record<string, unknown>)[key], path: child, depth: depth + 1 });
    }
  }
  return undefined;
}

/** The refusal of a message `findMessageProblem` found a problem in: `invalid_input`, naming the path. */
export function invalidMessage(problem: MessageProblem): CommandError {
  return new CommandError('invalid_input', `Invalid input at "${problem.path}": ${problem.problem}`, {
    details: { issues: [{ path: problem.path, message: problem.problem }] },
  });
}

/** The JSON-RPC error answering a message refused by `findMessageProblem` (over stdio). */
export function messageProblemError(id: unknown, problem: MessageProblem): JsonObject {
  return jsonRpcErrorBody(
    toPublicError(invalidMessage(problem)),
    typeof id === 'string' || typeof id === 'number' ? id : null,
  );
}

/** The longest line stdio accepts by default (the SDK itself gives up at 10 MiB and closes). */
export const DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024;
const NEWLINE = Buffer.from('\n');

export interface StdinGuardOptions {
  /** Longest line accepted, in bytes; a longer one is answered with `payload_too_large` and skipped. */
  maxLineBytes?: number;
  /**
   * Runs when the input ends, before the SDK hears of it: the calls already read can finish and be
   * answered (the SDK closes the connection at end of input, dropping answers still to come).
   */
  beforeEnd?: () => Promise<unknown>;
}

/**
 * The framing in front of a stdio transport's input, on bytes: lines end at `\n` (which never occurs
 * inside a multi-byte UTF-8 character, so one split across reads arrives whole), each line is checked
 * before the SDK sees it, and what the SDK would drop in silence is answered on `output`:
 * - a line that is not JSON: `parse_error` (the SDK skips it without a word);
 * - a JSON array: `batch_not_supported` (batches left MCP in 2025-06-18), and nothing in it runs;
 * - a line longer than `maxLineBytes`: `payload_too_large`, the rest of the line skipped, the server
 *   serving on (the SDK would close the connection at its own limit);
 * - `__proto__`, `constructor` or `prototype` members, or hostile nesting: `invalid_input` (the SDK's
 *   schemas drop such members before any hook could refuse them).
 * Admitted lines go to the SDK byte for byte.
 */
export function guardStdin(input: Readable, output: Writable, options: StdinGuardOptions = {}): Readable {
  const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  let pending: Buffer[] = [];
  let size = 0;
  let skipping = false;
  const tooLong = () => {
    pending = [];
    size = 0;
    reply(output, new TransportError('payload_too_large', `A message is at most ${max} bytes`), null);
  };
  const filter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const out: Buffer[] = [];
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, start);
        const piece = chunk.subarray(start, nl === -1 ? chunk.length : nl);
        if (skipping) {
          if (nl !== -1) skipping = false;
        } else if (size + piece.length > max) {
          tooLong();
          skipping = nl === -1;
        } else if (nl === -1) {
          if (piece.length > 0) {
            pending.push(piece);
            size += piece.length;
          }
        } else {
          const line = size === 0 ? piece : Buffer.concat([...pending, piece]);
          pending = [];
          size = 0;
          if (admit(line, output)) out.push(line, NEWLINE);
        }
        if (nl === -1) break;
        start = nl + 1;
      }
      done(null, out.length > 0 ? Buffer.concat(out) : undefined);
    },
    flush(done) {
      const line = Buffer.concat(pending);
      pending = [];
      const last = !skipping && line.length > 0 && admit(line, output) ? line : undefined;
      if (!options.beforeEnd) return done(null, last);
      if (last) this.push(last);
      options.beforeEnd().then(
        () => done(),
        () => done(),
      );
    },
  });
  input.pipe(filter);
  return filter;
}

/** Whether a line goes on to the SDK; if not, it was answered (or was blank). */
function admit(line: Buffer, output: Writable): boolean {
  const text = line.toString('utf8');
  if (text.trim() === '') return false;
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    reply(output, new TransportError('parse_error', 'The line is not valid JSON'), null);
    return false;
  }
  if (Array.isArray(message)) {
    reply(output, batchRefusal(), null);
    return false;
  }
  const problem = findMessageProblem(message);
  if (!problem) return true;
  const { id } = (message ?? {}) as { id?: unknown };
  // A notification (no id) gets no answer, as JSON-RPC says; it does not run either.
  if (id !== undefined) output.write(`${JSON.stringify(messageProblemError(id, problem))}\n`);
  return false;
}

/** The refusal of a JSON-RPC batch: one error for the whole array; nothing in it runs. */
export function batchRefusal(): TransportError {
  return new TransportError(
    'batch_not_supported',
    'JSON-RPC batches are not supported (MCP removed them in 2025-06-18); send one message at a time',
  );
}

function reply(output: Writable, error: TransportError, id: string | number | null): void {
  output.write(`${JSON.stringify(jsonRpcErrorBody(toPublicError(error), id))}\n`);
}
