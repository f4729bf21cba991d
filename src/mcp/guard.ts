import type { Writable } from 'node:stream';
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
  // Each node keeps its parent and its key, so a path is spelled out only for a problem found.
  const stack: Frame[] = [{ value: message, parent: undefined, key: '', depth: 0 }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    const { value, depth } = frame;
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_MESSAGE_DEPTH)
      return { path: pathOf(frame), problem: `nested deeper than ${MAX_MESSAGE_DEPTH} levels` };
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const item: unknown = value[i];
        if (item !== null && typeof item === 'object')
          stack.push({ value: item, parent: frame, key: String(i), depth: depth + 1 });
      }
      continue;
    }
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue;
      const child: Frame = {
        value: (value as Record<string, unknown>)[key],
        parent: frame,
        key,
        depth: depth + 1,
      };
      if (FORBIDDEN_KEYS.has(key)) return { path: pathOf(child), problem: `key "${key}" is not allowed` };
      if (child.value !== null && typeof child.value === 'object') stack.push(child);
    }
  }
  return undefined;
}

interface Frame {
  value: unknown;
  parent: Frame | undefined;
  key: string;
  depth: number;
}

/** The JSON Pointer of a node: its keys from the root, escaped. */
function pathOf(frame: Frame): string {
  const keys: string[] = [];
  for (let at: Frame | undefined = frame; at?.parent; at = at.parent) keys.push(escapePointerToken(at.key));
  return keys.length === 0 ? '' : `/${keys.reverse().join('/')}`;
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

/** The refusal of a JSON-RPC batch: one error for the whole array; nothing in it runs. */
export function batchRefusal(): TransportError {
  return new TransportError(
    'batch_not_supported',
    'JSON-RPC batches are not supported (MCP removed them in 2025-06-18); send one message at a time',
  );
}

/** Writes the JSON-RPC error for `error` as one line (over stdio). */
export function replyWith(output: Writable, error: TransportError, id: string | number | null): void {
  output.write(`${JSON.stringify(jsonRpcErrorBody(toPublicError(error), id))}\n`);
}
