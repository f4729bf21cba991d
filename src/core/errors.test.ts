import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CommandError,
  CoreMcpError,
  ERROR_CATALOG,
  ERROR_CODE_PATTERN,
  errorCatalogMarkdown,
  isCoreMcpError,
  jsonRpcErrorBody,
  RevisionConflictError,
  StateError,
  toPublicError,
} from './errors.js';

describe('error catalog', () => {
  it('uses stable lower-snake codes and JSON-RPC codes the SDK does not claim', () => {
    const sdkCodes = new Set([-32020, -32021, -32022, -32042, -32700, -32600, -32601]);
    for (const [code, spec] of Object.entries(ERROR_CATALOG)) {
      expect(code).toMatch(ERROR_CODE_PATTERN);
      expect(sdkCodes.has(spec.jsonRpc), code).toBe(false);
      expect(spec.http).toBeGreaterThanOrEqual(400);
      expect(spec.message.length).toBeGreaterThan(0);
    }
  });

  it('is documented in docs/errors.md exactly as generated (npm run docs:errors)', () => {
    expect(readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')).toBe(
      errorCatalogMarkdown(),
    );
  });

  it('shows clients the code, message and details of exposed errors', () => {
    const error = new CommandError('task_already_claimed', 'Task T-1 is claimed by alice', {
      details: { holder: 'alice' },
    });
    expect(toPublicError(error, 'req-1')).toEqual({
      code: 'task_already_claimed',
      message: 'Task T-1 is claimed by alice',
      requestId: 'req-1',
      details: { holder: 'alice' },
    });
  });

  it('hides everything of unknown exceptions and unexposed codes but the code and request id', () => {
    const secret = new Error('SQLITE_CANTOPEN /var/lib/db token=abc');
    expect(toPublicError(secret, 'r')).toEqual({
      code: 'internal_error',
      message: 'Internal error',
      requestId: 'r',
    });
    const wrapped = new StateError('store_unavailable', 'pool exhausted at 10.0.0.5', {
      details: { host: '10.0.0.5' },
    });
    expect(toPublicError(wrapped)).toEqual({
      code: 'store_unavailable',
      message: 'Storage is unavailable; try again',
    });
  });

  it('refuses malformed codes at construction', () => {
    expect(() => new CommandError('Bad Code')).toThrow(TypeError);
    expect(() => new CommandError('x')).toThrow(TypeError);
  });

  it('recognizes its errors by brand, across copies of the library', () => {
    const foreign = Object.assign(new Error('x'), { [Symbol.for('coremcp.error')]: true, code: 'forbidden' });
    expect(isCoreMcpError(foreign)).toBe(true);
    expect(isCoreMcpError(new Error('x'))).toBe(false);
    expect(new RevisionConflictError('d', 1, 2)).toBeInstanceOf(CoreMcpError);
  });

  it('builds JSON-RPC bodies for errors raised before dispatch', () => {
    expect(jsonRpcErrorBody({ code: 'payload_too_large', message: 'too big', requestId: 'r' })).toEqual({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32013, message: 'too big', data: { code: 'payload_too_large', requestId: 'r' } },
    });
  });
});
