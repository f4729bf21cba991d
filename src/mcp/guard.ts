import { type Readable, Transform, type Writable } from 'node:stream';
import { CommandError, jsonRpcErrorBody, toPublicError } from '../core/errors.js';
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

/** Lines this long are scanned in full (depth); shorter ones only when they name a forbidden key. */
const FULL_SCAN_BYTES = 64 * 1024;
const FORBIDDEN_TEXT = /"(__proto__|constructor|prototype)"\s*:/;

/**
 * A filter in front of a stdio transport's input. The SDK parses each line through schemas that drop
 * `__proto__` members before any hook could see them, so lines are checked raw: a refused request is
 * answered on `output` with `invalid_input` and never reaches the SDK. The SDK still does all framing
 * and parsing; this only looks.
 */
export function guardStdin(input: Readable, output: Writable): Readable {
  let pending = '';
  const filter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      pending += chunk.toString('utf8');
      let out = '';
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl + 1);
        pending = pending.slice(nl + 1);
        out += admit(line, output);
      }
      done(null, out.length > 0 ? out : undefined);
    },
    flush(done) {
      done(null, pending.length > 0 ? admit(pending, output) : undefined);
    },
  });
  input.pipe(filter);
  return filter;
}

function admit(line: string, output: Writable): string {
  if (line.length < FULL_SCAN_BYTES && !FORBIDDEN_TEXT.test(line)) return line;
  let message: unknown;
  try {
    message = JSON.parse(line);
  } catch {
    return line; // not ours to judge: the SDK answers with its own parse error
  }
  const problem = findMessageProblem(message);
  if (!problem) return line;
  const { id, method } = (message ?? {}) as { id?: unknown; method?: unknown };
  if (id !== undefined && typeof method === 'string')
    output.write(`${JSON.stringify(messageProblemError(id, problem))}\n`);
  return '';
}
