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
});
