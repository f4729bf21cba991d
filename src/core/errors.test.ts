import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  AccessError,
  CommandError,
  CoreMcpError,
  ERROR_CATALOG,
  ERROR_CODE_PATTERN,
  type ErrorSpec,
  errorCatalogMarkdown,
  errorForCode,
  errorSpec,
  isCoreMcpError,
  JSON_RPC_CODE_POLICY,
  jsonRpcErrorBody,
  jsonRpcPolicyViolation,
  RecoveryError,
  RevisionConflictError,
  StateError,
  toPublicError,
} from './errors.js';

describe('error catalog', () => {
  it('uses stable lower-snake codes, HTTP error statuses and public messages', () => {
    for (const [code, spec] of Object.entries(ERROR_CATALOG)) {
      expect(code).toMatch(ERROR_CODE_PATTERN);
      expect(spec.http).toBeGreaterThanOrEqual(400);
      expect(spec.message.length).toBeGreaterThan(0);
    }
  });

  it('keeps every JSON-RPC number within the 2026-07-28 allocation policy', () => {
    const violations = Object.entries(ERROR_CATALOG)
      .map(([code, spec]) => [code, jsonRpcPolicyViolation(code, spec.jsonRpc)])
      .filter(([, violation]) => violation !== undefined);
    expect(violations).toEqual([]);
    // App-defined codes travel with the number errorSpec gives codes outside the catalog.
    expect(jsonRpcPolicyViolation('task_already_claimed', errorSpec('task_already_claimed').jsonRpc)).toBe(
      undefined,
    );
    // Nothing of coremcp's own in the legacy range -32000..-32019 or the spec's -32020..-32099.
    for (const spec of Object.values(ERROR_CATALOG) as ErrorSpec[]) {
      const n = spec.jsonRpc;
      const own = n < -32768 || n > -32000;
      const allowed =
        JSON_RPC_CODE_POLICY.standard.includes(n) || Object.values(JSON_RPC_CODE_POLICY.spec).includes(n);
      expect(own || allowed, String(n)).toBe(true);
    }
  });

  it('refuses numbers that break the policy', () => {
    expect(jsonRpcPolicyViolation('rate_limited', -32029)).toMatch(/reserved range/);
    expect(jsonRpcPolicyViolation('forbidden', -32000)).toMatch(/reserved range/);
    expect(jsonRpcPolicyViolation('forbidden', -32021)).toMatch(/missing_client_capability/);
    expect(jsonRpcPolicyViolation('forbidden', -30000)).toMatch(/outside coremcp's block/);
    expect(jsonRpcPolicyViolation('forbidden', 1.5)).toMatch(/not an integer/);
    expect(jsonRpcPolicyViolation('missing_client_capability', -32021)).toBe(undefined);
    expect(jsonRpcPolicyViolation('invalid_input', -32602)).toBe(undefined);
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
    const wrapped = new RecoveryError('store_unavailable', 'pool exhausted at 10.0.0.5', {
      details: { host: '10.0.0.5' },
    });
    expect(toPublicError(wrapped)).toEqual({
      code: 'store_unavailable',
      message: 'Storage is unavailable; try again',
    });
  });

  it("accepts only its family's codes in each error class, and app codes only in CommandError", () => {
    expect(new AccessError('forbidden').spec.http).toBe(403);
    expect(new CommandError('task_already_claimed').spec.family).toBe('command');
    // Type errors too (see the @ts-expect-error lines); the runtime check catches untyped callers.
    // @ts-expect-error forbidden is an access code
    expect(() => new CommandError('forbidden')).toThrow(/access family/);
    // @ts-expect-error store_unavailable is a recovery code
    expect(() => new StateError('store_unavailable')).toThrow(/recovery family/);
    // @ts-expect-error app codes only through CommandError
    expect(() => new AccessError('task_already_claimed')).toThrow(/command family/);
  });

  it('rebuilds an error from its code in the right family', () => {
    expect(errorForCode('precondition_failed', 'no')).toBeInstanceOf(StateError);
    expect(errorForCode('task_already_claimed', 'taken')).toBeInstanceOf(CommandError);
    expect(errorForCode('rate_limited').code).toBe('rate_limited');
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
      error: { code: -31013, message: 'too big', data: { code: 'payload_too_large', requestId: 'r' } },
    });
  });
});
