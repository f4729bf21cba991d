/**
 * The two integration tests of the seed specification (core-mcp-integration.md), in TypeScript:
 * command flow, and state sync through a replica on a real MCP transport.
 */
import { createCore, defineCommand, localPrincipal, StateReplica, startServer } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import { httpClient, startInProcess } from './helpers/servers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('seed: command flow', () => {
  it('registers a command and executes it to status success', async () => {
    const core = await createCore();
    cleanups.push(() => core.close());

    expect(() =>
      core.registry.register(
        defineCommand({ name: 'test', description: 'The seed test command', handler: () => ({ ok: true }) }),
      ),
    ).not.toThrow();

    const response = await core.execute('test', {}, { principal: localPrincipal('tester') });
    expect(response.status).toBe('success');
    expect(response.status === 'success' && response.result).toEqual({ ok: true });
  });

  it('refuses a second command with the same name, and registration once serving starts', async () => {
    const core = await createCore();
    cleanups.push(() => core.close());
    const test = defineCommand({ name: 'test', description: 'The seed test command', handler: () => null });
    core.registry.register(test);
    expect(() => core.registry.register(test)).toThrow(/already registered/);
    core.registry.freeze();
    expect(() =>
      core.registry.register(defineCommand({ name: 'other', description: 'x', handler: () => null })),
    ).toThrow(/frozen/);
  });

  it('freezes the registry when serving starts: a command registered afterwards throws registry_frozen', async () => {
    const server = await startServer({ http: { port: 0 }, announceFirstKey: false });
    cleanups.push(() => server.close());
    expect(server.core.registry.frozen).toBe(true);
    let thrown: unknown;
    try {
      server.core.registry.register(defineCommand({ name: 'late', description: 'x', handler: () => null }));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ name: 'SetupError', code: 'registry_frozen' });
    expect(server.core.registry.get('late')).toBeUndefined();
  });
});

describe('seed: state sync', () => {
  it('core sets value to 42; a StateReplica over MCP (Streamable HTTP) syncs and reads 42', async () => {
    const server = await startInProcess({});
    cleanups.push(() => server.close());
    const key = await server.key('replica', 'viewer');
    const client = await httpClient(server.url, key);
    cleanups.push(() => client.close());
    const replica = new StateReplica(client);

    await replica.sync();
    expect(replica.get()).toEqual({});

    const update = await server.core.state.update<{ value?: number }>('default', (state) => {
      state.value = 42;
    });
    expect(update.committed).toBe(true);

    const outcome = await replica.sync();
    expect(outcome).toEqual({ revision: update.revision, changed: true, method: 'diff' });
    expect(replica.get<{ value: number }>()?.value).toBe(42);
    expect(replica.revision).toBe(update.revision);
  });
});
