import { describe, expect, it } from 'vitest';
import { canonicalJson, findJsonProblem, parsePointer } from './json.js';

describe('findJsonProblem', () => {
  it('accepts plain JSON', () => {
    expect(findJsonProblem({ a: [1, 'x', null, true, { b: -1.5 }], 'c/d': {} })).toBeUndefined();
  });

  it.each([
    [{ a: undefined }, '/a', 'undefined'],
    [{ a: () => 1 }, '/a', 'function'],
    [{ a: Number.NaN }, '/a', 'not finite'],
    [{ a: new Date(0) }, '/a', 'Date'],
    [{ a: new Map() }, '/a', 'Map'],
    [{ a: 1n }, '/a', 'bigint'],
    [Object.assign(new Array(3), { 0: 1, 2: 3 }), '/1', 'hole'],
    [JSON.parse('{"x":{"__proto__":1}}'), '/x/__proto__', '__proto__'],
    [{ constructor: 1 }, '/constructor', 'constructor'],
  ])('refuses %o at %s', (value, path, problem) => {
    const found = findJsonProblem(value);
    expect(found?.path).toBe(path);
    expect(found?.problem).toContain(problem);
  });

  it('refuses cycles without overflowing', () => {
    const a: Record<string, unknown> = {};
    a.self = a;
    expect(findJsonProblem(a)?.problem).toContain('cycle');
  });

  it('enforces depth, string, collection and size limits without recursion', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(findJsonProblem(deep, { maxDepth: 32 })?.problem).toContain('deeper than 32');
    expect(findJsonProblem({ s: 'x'.repeat(11) }, { maxStringLength: 10 })?.path).toBe('/s');
    expect(
      findJsonProblem(
        Array.from({ length: 11 }, () => 0),
        { maxCollectionSize: 10 },
      )?.problem,
    ).toContain('longer than 10');
    expect(findJsonProblem({ s: 'x'.repeat(2000) }, { maxBytes: 1000 })?.problem).toContain(
      'larger than 1000',
    );
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level so equal values serialize equally', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}',
    );
    expect(canonicalJson({ '10': 1, '9': 2 })).toBe('{"10":1,"9":2}');
    expect(canonicalJson({ a: 1, b: 2 })).toBe(JSON.stringify({ a: 1, b: 2 }));
  });
});

describe('parsePointer', () => {
  it('unescapes ~1 and ~0', () => {
    expect(parsePointer('/a~1b/c~0d')).toEqual(['a/b', 'c~d']);
    expect(parsePointer('')).toEqual([]);
    expect(() => parsePointer('a')).toThrow();
  });
});
