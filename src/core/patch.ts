import { apply } from 'mutative';
import { sha256 } from './digest.js';
import { StateError } from './errors.js';
import {
  canonicalJson,
  deepFreeze,
  findJsonProblem,
  type JsonLimits,
  type JsonValue,
  parsePointer,
} from './json.js';

// mutative's typing of apply() recurses through JsonValue without end; the call is plain data in and out.
const applyPatches = apply as unknown as (
  base: object,
  patch: readonly JsonPatchOperation[],
  options: object,
) => unknown;

/**
 * One RFC 6902 operation, of the three kinds coremcp produces (add, remove, replace). Any RFC 6902
 * library can apply coremcp's patches; coremcp itself applies only what it produced.
 */
export type JsonPatchOperation =
  | { op: 'add' | 'replace'; path: string; value: JsonValue }
  | { op: 'remove'; path: string };

export type JsonPatch = JsonPatchOperation[];

/**
 * Applies a patch coremcp produced to a frozen value and returns the new value, sharing unchanged
 * parts. Patches touching `__proto__`, `constructor` or `prototype` are refused.
 */
export function applyPatch<T extends JsonValue>(value: T, patch: readonly JsonPatchOperation[]): T {
  if (patch.length === 0) return value;
  // A root replace is the only operation mutative's apply cannot take as a plain path.
  let start = 0;
  let base: JsonValue = value;
  for (let i = 0; i < patch.length; i++) {
    const op = patch[i]!;
    if (op.path === '' && (op.op === 'replace' || op.op === 'add')) {
      base = op.value;
      start = i + 1;
    }
  }
  const rest = start === 0 ? patch : patch.slice(start);
  if (rest.length === 0) return base as T;
  if (base === null || typeof base !== 'object') {
    throw new StateError(
      'state_invalid',
      'A patch addressed a path inside a value that is not an object or array',
    );
  }
  let next: T;
  try {
    next = applyPatches(base, rest, { enableAutoFreeze: false }) as T;
  } catch (error) {
    throw new StateError('state_invalid', 'A patch could not be applied to the document', { cause: error });
  }
  freezeChanged(next, rest);
  return next;
}

/**
 * Freezes what a patch created in `value`: the containers along each patched path (copy-on-write
 * made them new) and the values written. Everything else was shared with a frozen value and is frozen
 * already, so the cost follows the size of the change, not of the document.
 */
export function freezeChanged(value: JsonValue, patch: readonly JsonPatchOperation[]): void {
  if (value === null || typeof value !== 'object') return;
  // Each container is frozen once per call: a bulk write of 50,000 members of one map must not
  // freeze that map 50,000 times (freezing a large object walks all its members).
  const frozen = new Set<object>();
  const freeze = (node: object) => {
    if (frozen.has(node)) return;
    frozen.add(node);
    Object.freeze(node);
  };
  freeze(value);
  for (const op of patch) {
    let node: JsonValue | undefined = value;
    for (const token of parsePointer(op.path)) {
      if (node === null || typeof node !== 'object') break;
      freeze(node);
      node = (node as Record<string, JsonValue>)[token];
    }
    if (node !== null && typeof node === 'object' && !frozen.has(node)) {
      frozen.add(node);
      deepFreeze(node);
    }
  }
}

/** Checks what a patch writes: plain JSON within limits, no forbidden keys in its paths. */
export function findPatchProblem(
  patch: readonly JsonPatchOperation[],
  limits: Partial<JsonLimits>,
): { path: string; problem: string } | undefined {
  for (const op of patch) {
    for (const token of parsePointer(op.path)) {
      if (token === '__proto__' || token === 'constructor' || token === 'prototype') {
        return { path: op.path, problem: `key "${token}" is not allowed` };
      }
    }
    if ('value' in op) {
      const problem = findJsonProblem(op.value, limits, op.path);
      if (problem) return problem;
    }
  }
  return undefined;
}

/** SHA-256 over the canonical JSON of a patch: what the audit record commits to. */
export function hashPatch(patch: readonly JsonPatchOperation[]): string {
  return sha256(canonicalJson(patch as unknown as JsonValue));
}

/** The distinct paths a patch touches, in order of first appearance. */
export function touchedPaths(patch: readonly JsonPatchOperation[]): string[] {
  return [...new Set(patch.map((op) => op.path))];
}

/** Whether two JSON Pointers overlap: equal, or one is an ancestor of the other. */
export function pathsOverlap(a: string, b: string): boolean {
  if (a === b) return true;
  return a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}
