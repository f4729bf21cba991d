import { describe, expect, it } from 'vitest';
import { paramHeaderMismatch, paramHeaders } from './param-headers.js';

const schema = {
  type: 'object',
  properties: {
    region: { type: 'string', 'x-mcp-header': 'Region' },
    shard: { type: 'integer', 'x-mcp-header': 'Shard' },
    nested: { type: 'object', properties: { flag: { type: 'boolean', 'x-mcp-header': 'Flag' } } },
  },
};

describe('parameters mirrored into Mcp-Param headers', () => {
  it('finds the annotated properties, at any depth of properties', () => {
    expect(paramHeaders('t', schema)).toEqual([
      { path: ['region'], header: 'Region', type: 'string' },
      { path: ['shard'], header: 'Shard', type: 'integer' },
      { path: ['nested', 'flag'], header: 'Flag', type: 'boolean' },
    ]);
  });

  it('refuses annotations the spec forbids', () => {
    const bad =
      (properties: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      () =>
        paramHeaders('t', { type: 'object', properties, ...extra });
    expect(bad({ a: { type: 'number', 'x-mcp-header': 'A' } })).toThrow(/string, integer or boolean/);
    expect(bad({ a: { type: 'string', 'x-mcp-header': 'Bad Name' } })).toThrow(/token/);
    expect(
      bad({ a: { type: 'string', 'x-mcp-header': 'A' }, b: { type: 'string', 'x-mcp-header': 'a' } }),
    ).toThrow(/twice/);
    expect(bad({ a: { type: 'array', items: { type: 'string', 'x-mcp-header': 'A' } } })).toThrow(
      /reachable/,
    );
    expect(bad({}, { anyOf: [{ properties: { a: { type: 'string', 'x-mcp-header': 'A' } } }] })).toThrow(
      /reachable/,
    );
  });

  it('compares headers with the body: literal or strict Base64, numbers by value, nulls need none', () => {
    const declared = paramHeaders('t', schema);
    const headers = (values: Record<string, string>) => (name: string) => values[name];
    const base64 = (text: string) => `=?base64?${Buffer.from(text).toString('base64')}?=`;
    expect(
      paramHeaderMismatch(
        declared,
        { region: 'eu', shard: 42, nested: { flag: true } },
        headers({
          'mcp-param-region': 'eu',
          'mcp-param-shard': '42.0',
          'mcp-param-flag': 'true',
        }),
      ),
    ).toBeUndefined();
    expect(
      paramHeaderMismatch(declared, { region: 'zürich' }, headers({ 'mcp-param-region': base64('zürich') })),
    ).toBe(undefined);
    expect(paramHeaderMismatch(declared, { region: null }, headers({}))).toBeUndefined();
    expect(paramHeaderMismatch(declared, { region: 'eu' }, headers({}))).toMatch(/absent/);
    expect(paramHeaderMismatch(declared, { region: 'eu' }, headers({ 'mcp-param-region': 'us' }))).toMatch(
      /does not match/,
    );
    expect(
      paramHeaderMismatch(
        declared,
        { region: 'Hello' },
        headers({ 'mcp-param-region': '=?base64?SGVsbG8?=' }),
      ),
    ).toMatch(/invalid Base64/);
    // Without the full sentinel the value is taken literally.
    expect(
      paramHeaderMismatch(
        declared,
        { region: '=?base64?SGVsbG8=' },
        headers({ 'mcp-param-region': '=?base64?SGVsbG8=' }),
      ),
    ).toBe(undefined);
  });
});
