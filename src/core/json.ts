/** Plain JSON: what documents, inputs, results and patches are made of. */
export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/**
 * Keys that are refused anywhere in inputs and state: they reach object prototypes when a value is
 * merged or patched, which is how prototype pollution starts.
 */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Bounds on values that come from outside. All sizes are in bytes of their JSON text, roughly. */
export interface JsonLimits {
  /** Deepest nesting of arrays and objects. */
  maxDepth: number;
  /** Longest string (in UTF-16 code units), keys included. */
  maxStringLength: number;
  /** Most elements in one array, or members in one object. */
  maxCollectionSize: number;
  /** Largest serialized size. */
  maxBytes: number;
}

export const DEFAULT_INPUT_LIMITS: JsonLimits = {
  maxDepth: 32,
  maxStringLength: 64 * 1024,
  maxCollectionSize: 10_000,
  maxBytes: 256 * 1024,
};

/** Why a value is not acceptable plain JSON; `path` is a JSON Pointer into the value. */
export interface JsonProblem {
  path: string;
  problem: string;
}

export function escapePointerToken(token: string): string {
  // Most tokens have nothing to escape: skip the two regular expressions (a hot path in patches).
  if (token.indexOf('~') === -1 && token.indexOf('/') === -1) return token;
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function unescapePointerToken(token: string): string {
  if (token.indexOf('~') === -1) return token;
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** Splits a JSON Pointer ("" is the root) into unescaped tokens. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new TypeError(`not a JSON Pointer: ${pointer}`);
  return pointer.slice(1).split('/').map(unescapePointerToken);
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Checks that `value` is plain JSON within `limits`: no `undefined`, functions, symbols, bigints,
 * non-finite numbers, class instances, cycles or forbidden keys. Returns the first problem found, or
 * undefined. Cost is linear in the value's size and stops at the first problem.
 */
export function findJsonProblem(
  value: unknown,
  limits: Partial<JsonLimits> = {},
  basePath = '',
): JsonProblem | undefined {
  const maxDepth = limits.maxDepth ?? Number.POSITIVE_INFINITY;
  const maxString = limits.maxStringLength ?? Number.POSITIVE_INFINITY;
  const maxCollection = limits.maxCollectionSize ?? Number.POSITIVE_INFINITY;
  const maxBytes = limits.maxBytes ?? Number.POSITIVE_INFINITY;
  const seen = new Set<object>();
  let bytes = 0;

  // Iterative walk: a hostile value nested 100,000 deep must not overflow the stack. A node's path is
  // built only for a problem, from its parent links: most values have none.
  interface Item {
    value: unknown;
    parent: Item | undefined;
    key: string | number;
    depth: number;
    leave?: object;
  }
  const pathOf = (item: Item, child?: string | number): string => {
    const tokens: Array<string | number> = child === undefined ? [] : [child];
    for (let at: Item | undefined = item; at?.parent; at = at.parent) tokens.push(at.key);
    let out = basePath;
    for (let i = tokens.length - 1; i >= 0; i--) {
      const token = tokens[i]!;
      out += `/${typeof token === 'number' ? token : escapePointerToken(token)}`;
    }
    return out;
  };
  const stack: Item[] = [{ value, parent: undefined, key: '', depth: 0 }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (item.leave) {
      seen.delete(item.leave);
      continue;
    }
    const { value: v, depth } = item;
    switch (typeof v) {
      case 'string':
        if (v.length > maxString)
          return { path: pathOf(item), problem: `string longer than ${maxString} characters` };
        bytes += v.length + 2;
        break;
      case 'number':
        if (!Number.isFinite(v)) return { path: pathOf(item), problem: 'number is not finite' };
        bytes += 8;
        break;
      case 'boolean':
        bytes += 5;
        break;
      case 'object': {
        if (v === null) {
          bytes += 4;
          break;
        }
        if (depth >= maxDepth)
          return { path: pathOf(item), problem: `nested deeper than ${maxDepth} levels` };
        if (seen.has(v)) return { path: pathOf(item), problem: 'value contains a cycle' };
        if (Array.isArray(v)) {
          if (v.length > maxCollection)
            return { path: pathOf(item), problem: `array longer than ${maxCollection} elements` };
          seen.add(v);
          stack.push({ value: undefined, parent: undefined, key: '', depth, leave: v });
          bytes += 2 + v.length;
          for (let i = v.length - 1; i >= 0; i--) {
            if (!(i in v)) return { path: pathOf(item, i), problem: 'array has a hole' };
            stack.push({ value: v[i], parent: item, key: i, depth: depth + 1 });
          }
          break;
        }
        if (!isPlainObject(v))
          return { path: pathOf(item), problem: `${v.constructor?.name ?? 'object'} is not plain JSON` };
        const keys = Object.keys(v);
        if (keys.length > maxCollection)
          return { path: pathOf(item), problem: `object has more than ${maxCollection} members` };
        if (Object.getOwnPropertySymbols(v).length > 0)
          return { path: pathOf(item), problem: 'object has symbol keys' };
        seen.add(v);
        stack.push({ value: undefined, parent: undefined, key: '', depth, leave: v });
        bytes += 2 + keys.length;
        for (let i = keys.length - 1; i >= 0; i--) {
          const key = keys[i]!;
          if (FORBIDDEN_KEYS.has(key))
            return { path: pathOf(item, key), problem: `key "${key}" is not allowed` };
          if (key.length > maxString)
            return { path: pathOf(item, key), problem: `key longer than ${maxString} characters` };
          bytes += key.length + 3;
          stack.push({ value: (v as Record<string, unknown>)[key], parent: item, key, depth: depth + 1 });
        }
        break;
      }
      default:
        return { path: pathOf(item), problem: `${typeof v} is not plain JSON` };
    }
    if (bytes > maxBytes) return { path: basePath, problem: `larger than ${maxBytes} bytes` };
  }
  return undefined;
}

/** Whether every object in `value` already lists its keys in sorted order (so JSON.stringify is canonical). */
function isKeySorted(value: JsonValue, depth = 0): boolean {
  if (value === null || typeof value !== 'object') return true;
  if (depth > 512) return false;
  if (Array.isArray(value)) {
    for (const item of value) if (!isKeySorted(item, depth + 1)) return false;
    return true;
  }
  let previous: string | undefined;
  for (const key in value) {
    if (previous !== undefined && previous >= key) return false;
    previous = key;
    if (!isKeySorted(value[key]!, depth + 1)) return false;
  }
  return true;
}

function writeCanonical(value: JsonValue, out: string[]): void {
  if (value === null || typeof value !== 'object') {
    out.push(JSON.stringify(value));
  } else if (Array.isArray(value)) {
    out.push('[');
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(',');
      writeCanonical(value[i]!, out);
    }
    out.push(']');
  } else {
    out.push('{');
    const keys = Object.keys(value).sort();
    for (let i = 0; i < keys.length; i++) {
      if (i > 0) out.push(',');
      out.push(JSON.stringify(keys[i]), ':');
      writeCanonical(value[keys[i]!]!, out);
    }
    out.push('}');
  }
}

/**
 * JSON with object keys sorted (by UTF-16 code units), so equal values always give equal text and
 * equal hashes. Values already in sorted order, the common case, cost one check and JSON.stringify.
 */
export function canonicalJson(value: JsonValue | undefined): string {
  if (value === undefined) return 'null';
  if (isKeySorted(value)) return JSON.stringify(value);
  const out: string[] = [];
  writeCanonical(value, out);
  return out.join('');
}

/** Deep-freezes a plain JSON value in place and returns it. */
export function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  Object.freeze(value);
  for (const child of Object.values(value as object)) deepFreeze(child);
  return value;
}
