/**
 * The MCP surface in process: a real SDK `Client` connected to `surface.createServer(principal, …)`
 * over the SDK's in-memory transport pair. No HTTP, no child process: the surface's own behaviour.
 */
import { Client } from '@modelcontextprotocol/client';
import { InMemoryTransport } from '@modelcontextprotocol/server';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCommand, defineDocument } from '../core/commands.js';
import { CommandError } from '../core/errors.js';
import { type Core, createCore, localPrincipal } from '../runtime.js';
import { defineApp } from './app.js';
import { META, stateUri } from './meta.js';
import { McpSurface } from './surface.js';

interface Board {
  items: Record<string, { title: string }>;
  next: number;
}

const board = defineDocument<Board>('board', { items: {}, next: 1 });

const app = defineApp({
  name: 'surface-test',
  documents: [board],
  commands: [
    defineCommand({
      name: 'item.add',
      description: 'Add an item',
      doc: board,
      input: z.object({ title: z.string().min(1) }),
      handler: ({ input, draft }) => {
        const id = `I-${draft.next++}`;
        draft.items[id] = { title: input.title };
        return { id };
      },
    }),
    defineCommand({
      name: 'item.remove',
      description: 'Remove an item',
      doc: board,
      input: z.object({ id: z.string() }),
      handler: ({ input, draft }) => {
        if (!draft.items[input.id]) throw new CommandError('item_not_found', `No item ${input.id}`);
        delete draft.items[input.id];
        return { removed: input.id };
      },
    }),
    defineCommand({
      name: 'item.count',
      description: 'Count items',
      doc: board,
      readOnly: true,
      handler: ({ state }) => ({ count: Object.keys(state.items).length }),
    }),
  ],
});

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function frozenCore(): Promise<Core> {
  const core = await createCore({ app, historyTools: false });
  core.registry.freeze();
  cleanups.push(() => core.close());
  return core;
}

/** A client connected in process to a session-channel server instance serving `roles`. */
async function connect(surface: McpSurface, roles: string[], id = 'tester'): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const server = surface.createServer(localPrincipal(id, roles), 'session');
  await server.connect(serverSide);
  const client = new Client({ name: 'surface-test', version: '1.0.0' });
  await client.connect(clientSide);
  cleanups.push(async () => {
    await client.close();
    await server.close();
  });
  return client;
}

async function surfaceOf(core: Core): Promise<McpSurface> {
  const surface = new McpSurface(core);
  cleanups.push(async () => surface.close());
  return surface;
}

describe('McpSurface over an in-memory transport', () => {
  it('lists only the tools the principal may call', async () => {
    const surface = await surfaceOf(await frozenCore());
    const names = async (roles: string[]) =>
      (await (await connect(surface, roles)).listTools()).tools.map((t) => t.name).sort();
    expect(await names(['member'])).toEqual(['item.add', 'item.count', 'item.remove']);
    expect(await names(['viewer'])).toEqual(['item.count']);
  });

  it('calls a tool through the pipeline: the result, the new revision and document in _meta', async () => {
    const core = await frozenCore();
    const client = await connect(await surfaceOf(core), ['member']);
    const result = await client.callTool({ name: 'item.add', arguments: { title: 'first' } });
    expect(result.isError).toBeUndefined();
    expect(result.structuredContent).toEqual({ id: 'I-1' });
    expect(result._meta).toMatchObject({ [META.revision]: 1, [META.doc]: 'board' });
    expect((await core.state.get<Board>('board')).value.items).toEqual({ 'I-1': { title: 'first' } });
  });

  it("returns a handler's refusal as a typed tool error, committing nothing", async () => {
    const core = await frozenCore();
    const client = await connect(await surfaceOf(core), ['member']);
    const result = await client.callTool({ name: 'item.remove', arguments: { id: 'I-9' } });
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toMatchObject({
      error: { code: 'item_not_found', message: 'No item I-9' },
    });
    expect((await core.state.get('board')).revision).toBe(0);
  });

  it('answers an unknown tool with JSON-RPC -32602 and data.code unknown_command', async () => {
    const client = await connect(await surfaceOf(await frozenCore()), ['admin']);
    await expect(client.callTool({ name: 'item.nope', arguments: {} })).rejects.toMatchObject({
      code: -32602,
      data: { code: 'unknown_command' },
    });
  });

  it('reads a state document as a resource, with its revision in _meta', async () => {
    const core = await frozenCore();
    await core.execute('item.add', { title: 'a' }, { principal: localPrincipal('seed', ['admin']) });
    const client = await connect(await surfaceOf(core), ['viewer']);
    const read = await client.readResource({ uri: stateUri('board') });
    expect(read._meta).toMatchObject({ [META.revision]: 1, [META.doc]: 'board' });
    const [content] = read.contents;
    expect(content?.mimeType).toBe('application/json');
    expect(JSON.parse((content as { text: string }).text)).toEqual({
      items: { 'I-1': { title: 'a' } },
      next: 2,
    });
  });

  it('delivers notifications/resources/updated to a subscriber after a commit', async () => {
    const core = await frozenCore();
    const surface = await surfaceOf(core);
    const client = await connect(surface, ['viewer']);
    const updates: Array<{ uri: string; revision: unknown }> = [];
    const received = new Promise<void>((resolve) => {
      client.setNotificationHandler('notifications/resources/updated', (notification) => {
        updates.push({ uri: notification.params.uri, revision: notification.params._meta?.[META.revision] });
        resolve();
      });
    });
    await client.subscribeResource({ uri: stateUri('board') });
    expect(surface.activeSubscriptions).toBe(1);
    await core.execute('item.add', { title: 'b' }, { principal: localPrincipal('writer', ['member']) });
    await received;
    expect(updates).toEqual([{ uri: stateUri('board'), revision: 1 }]);
  });

  it('refuses to serve a registry that can still change', async () => {
    const core = await createCore({ app });
    cleanups.push(() => core.close());
    expect(() => new McpSurface(core)).toThrow(/freeze the registry/);
  });
});
