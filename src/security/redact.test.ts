import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCommand } from '../core/commands.js';
import { createRedactor, REDACTED } from './redact.js';

describe('createRedactor', () => {
  const command = defineCommand({
    name: 'svc.connect',
    description: 'x',
    input: z.object({
      host: z.string(),
      pin: z.string().meta({ secret: true }),
      nested: z.object({ secretish: z.array(z.string().meta({ secret: true })) }).optional(),
      password: z.string().optional(),
      note: z.string().optional(),
    }),
    handler: () => null,
  });

  it('redacts schema-marked secrets, credential-named members and credential-shaped values', () => {
    const redact = createRedactor();
    const input = {
      host: 'db.example',
      pin: '1234',
      nested: { secretish: ['a', 'b'] },
      password: 'hunter2',
      note: 'Bearer abc.def',
    };
    expect(redact(command, input)).toEqual({
      host: 'db.example',
      pin: REDACTED,
      nested: { secretish: [REDACTED, REDACTED] },
      password: REDACTED,
      note: REDACTED,
    });
  });

  it('recognizes keys, JWTs and well-known tokens in free text fields', () => {
    const redact = createRedactor();
    for (const value of [
      'cmcp_0123456789ab_0123456789012345678901234567890123456789012',
      'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl',
      'ghp_abcdefghijklmnopqrstuvwxyz012345',
      'AKIAABCDEFGHIJKLMNOP',
    ]) {
      expect(redact(command, { host: 'h', pin: 'p', note: value })).toMatchObject({ note: REDACTED });
    }
    expect(redact(command, { host: 'ordinary words', pin: 'x' })).toMatchObject({ host: 'ordinary words' });
  });

  it('redacts credentials inside free text, keeping the words around them', () => {
    const redact = createRedactor();
    const key = 'cmcp_0123456789ab_0123456789012345678901234567890123456789012';
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl';
    const cases: Array<[string, string]> = [
      [`use key ${key} for the deploy`, 'use key [REDACTED] for the deploy'],
      [`token=${jwt}; then retry`, 'token=[REDACTED]; then retry'],
      ['curl -H "Authorization: Bearer abcdefgh12345678" x', 'curl -H "Authorization: [REDACTED]" x'],
      ['aws AKIAABCDEFGHIJKLMNOP and ghp_abcdefghijklmnopqrstuvwxyz012345', 'aws [REDACTED] and [REDACTED]'],
      // A private key anywhere makes the whole value secret.
      ['-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- done', '[REDACTED]'],
    ];
    for (const [text, expected] of cases) {
      expect(redact(command, { host: 'h', pin: 'p', note: text })).toMatchObject({ note: expected });
    }
    const plain = 'a bearer of good news, sk-short, AKIA';
    expect(redact(command, { host: 'h', pin: 'p', note: plain })).toMatchObject({ note: plain });
  });
});
