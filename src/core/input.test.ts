import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineApp } from '../mcp/app.js';
import { createCore, localPrincipal } from '../runtime.js';
import { defineCommand, defineDocument } from './commands.js';
import type { ClientConnection } from './input.js';

const box = defineDocument('box', { items: [] as string[] });
const alice = localPrincipal('alice', ['admin']);

function connection(overrides: Partial<ClientConnection> = {}): ClientConnection {
  return {
    capabilities: { elicitation: {}, sampling: {}, roots: {} },
    canAsk: true,
    progress: async () => {},
    log: async () => {},
    ...overrides,
  };
}

const item = z.object({ item: z.string().min(1) });

async function core() {
  return createCore({
    app: defineApp({
      name: 'input-test',
      documents: [box],
      commands: [
        defineCommand({
          name: 'box.fill',
          description: 'asks three questions at once, awaiting only the first to fail',
          doc: box,
          handler: async ({ client, draft }) => {
            const first = client!.elicit({ message: 'First?', requestedSchema: item });
            const second = client!.elicit({ message: 'Second?', requestedSchema: item });
            const roots = client!.roots();
            const a = await first;
            const b = await second;
            const r = await roots;
            if (a.action === 'accept') draft.items.push(a.content.item);
            if (b.action === 'accept') draft.items.push(b.content.item);
            draft.items.push(...r.map((root) => root.uri));
            return { count: draft.items.length };
          },
        }),
        defineCommand({
          name: 'box.swallow',
          description: 'catches the question and carries on: it still waits for the answer',
          doc: box,
          handler: async ({ client, draft }) => {
            draft.items.push('written before the answer');
            try {
              await client!.elicit({ message: 'Sure?', requestedSchema: item });
            } catch {
              // Handlers cannot talk their way past an open question.
            }
            return 'done';
          },
        }),
        defineCommand({
          name: 'box.twice',
          description: 'asks under one key twice',
          doc: box,
          readOnly: true,
          handler: async ({ client }) => {
            await Promise.allSettled([
              client!.elicit({ message: 'a', requestedSchema: item }, { key: 'k' }),
              client!.elicit({ message: 'b', requestedSchema: item }, { key: 'k' }),
            ]);
          },
        }),
      ],
    }),
  });
}

describe('asking the client from a handler', () => {
  it('collects every question a run asks, commits nothing, and audits the attempt', async () => {
    const c = await core();
    const result = await c.execute('box.fill', {}, { principal: alice, client: connection() });
    expect(result.status).toBe('input_required');
    if (result.status !== 'input_required') return;
    expect(Object.keys(result.requests)).toEqual(['elicit-1', 'elicit-2', 'roots-1']);
    expect(result.requests['elicit-1']).toEqual({
      method: 'elicitation/create',
      params: {
        mode: 'form',
        message: 'First?',
        requestedSchema: {
          type: 'object',
          properties: { item: { type: 'string', minLength: 1 } },
          required: ['item'],
        },
      },
    });
    expect(result.answers).toEqual({});
    expect((await c.state.get('box')).revision).toBe(0);
    expect((await c.store.readAudit({ command: 'box.fill' })).map((r) => r.outcome)).toEqual([
      'input_required',
    ]);
  });

  it('runs to the end with the answers, re-asking only what is missing or malformed', async () => {
    const c = await core();
    const partial = await c.execute(
      'box.fill',
      {},
      {
        principal: alice,
        client: connection(),
        answers: {
          'elicit-1': { action: 'accept', content: { item: 'apple' } },
          'elicit-2': { action: 'accept', content: { item: '' } },
          'roots-1': { roots: 'not a list' },
        },
      },
    );
    expect(partial.status === 'input_required' && Object.keys(partial.requests)).toEqual([
      'elicit-2',
      'roots-1',
    ]);
    expect(partial.status === 'input_required' && partial.answers).toEqual({
      'elicit-1': { action: 'accept', content: { item: 'apple' } },
    });
    const done = await c.execute(
      'box.fill',
      {},
      {
        principal: alice,
        client: connection(),
        answers: {
          'elicit-1': { action: 'accept', content: { item: 'apple' } },
          'elicit-2': { action: 'decline' },
          'roots-1': { roots: [{ uri: 'file:///r' }] },
        },
      },
    );
    expect(done.status === 'success' && done.result).toEqual({ count: 2 });
    expect((await c.state.get('box')).value).toEqual({ items: ['apple', 'file:///r'] });
  });

  it('waits for an open question even when the handler catches it', async () => {
    const c = await core();
    const result = await c.execute('box.swallow', {}, { principal: alice, client: connection() });
    expect(result.status).toBe('input_required');
    expect((await c.state.get('box')).revision).toBe(0);
  });

  it('refuses a key asked twice in one run, as a bug of the handler', async () => {
    const c = await core();
    const result = await c.execute('box.twice', {}, { principal: alice, client: connection() });
    expect(result.status === 'error' && result.error.code).toBe('internal_error');
  });

  it('names the capability a client lacks, and refuses when no question can reach the client', async () => {
    const c = await core();
    const lacking = await c.execute(
      'box.fill',
      {},
      {
        principal: alice,
        client: connection({ capabilities: { roots: {} } }),
      },
    );
    expect(lacking.status === 'error' && lacking.publicError).toMatchObject({
      code: 'missing_client_capability',
      details: { requiredCapabilities: { elicitation: {} } },
    });
    const unreachable = await c.execute(
      'box.fill',
      {},
      { principal: alice, client: connection({ canAsk: false }) },
    );
    expect(unreachable.status === 'error' && unreachable.error.code).toBe('input_unavailable');
  });
});
