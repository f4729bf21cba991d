/**
 * 2026-07-28 requests answered by a long-lived SDK instance per principal (`PooledInstances`) get the
 * same bytes as the SDK's per-request path: two servers on the same app, one pooled and one not, are
 * sent the same requests, and their answers (status, content type, body) must be equal once the
 * values that are random or time-bound by design (request ids, command ids, times, signed states)
 * are blanked.
 */
import { defineApp, defineCommand, defineDocument, localPrincipal } from 'coremcp';
import { afterAll, assert, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import taskboard from '../examples/taskboard/app.js';
import { Cancellation } from '../src/http/route.js';
import { PooledInstances } from '../src/mcp/pooled.js';
import { type InProcessServer, MODERN, startInProcess } from './helpers/servers.js';
import { modernFetch } from './helpers/wire.js';

interface RawAnswer {
  status: number;
  contentType: string | null;
  body: string;
}

const CAPABILITIES = { elicitation: { form: {} } };
const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'coremcp-wire-test', version: '1.0.0' },
  'io.modelcontextprotocol/clientCapabilities': CAPABILITIES,
};

async function send(
  server: InProcessServer,
  key: string,
  method: string,
  params: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<RawAnswer> {
  const response = await modernFetch(server.url, key, method, params, {
    capabilities: CAPABILITIES,
    headers,
  });
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body: await response.text(),
  };
}

/** Blanks what differs between two servers by design: ids, times, signed request states, the request id. */
function comparable(answer: RawAnswer): RawAnswer {
  const body = answer.body
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>')
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z/g, '<time>')
    .replace(/("requestState":")[^"]+"/g, '$1<state>"')
    // The JSON-RPC id (each server got its own numbers) is first after `jsonrpc` or last.
    .replace(/^\{"jsonrpc":"2.0","id":\d+,/, '{"jsonrpc":"2.0","id":<n>,')
    .replace(/,"id":\d+\}$/, ',"id":<n>}');
  return { ...answer, body };
}

let pooled: InProcessServer;
let perRequest: InProcessServer;
const keys = new Map<InProcessServer, string>();

beforeAll(async () => {
  pooled = await startInProcess({ app: taskboard });
  perRequest = await startInProcess({ app: taskboard }, { pooledInstances: false });
  for (const server of [pooled, perRequest]) keys.set(server, await server.key('agent', 'admin'));
});

afterAll(async () => {
  await pooled.close();
  await perRequest.close();
});

describe('pooled 2026-07-28 instances', () => {
  it('answer every pooled method with the bytes of the per-request path', async () => {
    const requests: Array<[string, Record<string, unknown>, Record<string, string>?]> = [
      ['tools/list', {}],
      ['resources/list', {}],
      ['resources/templates/list', {}],
      ['server/discover', {}],
      ['tools/call', { name: 'task.add', arguments: { title: 'Write the guide' } }],
      ['tools/call', { name: 'task.add', arguments: { title: 'Ünïcödé ✓ 任务' } }],
      ['tools/call', { name: 'task.claim', arguments: { id: 'T-1' } }],
      // A refusal, bad input, an unknown tool: a tool error, a tool error, a JSON-RPC error.
      ['tools/call', { name: 'task.claim', arguments: { id: 'T-404' } }],
      ['tools/call', { name: 'task.add', arguments: { title: 7 } }],
      ['tools/call', { name: 'no.such.tool', arguments: {} }],
      ['tools/call', { name: 'task.list' }],
      // Consent: the first call of a confirmed command asks, with a signed state.
      ['tools/call', { name: 'task.remove', arguments: { id: 'T-2' } }],
      ['resources/read', { uri: 'coremcp://state/board' }],
      ['resources/read', { uri: 'coremcp://state/nothing-here' }],
      // Not pooled (a progress token; a header with spaces): the per-request path on both servers.
      ['tools/call', { name: 'task.list', _progress: true }],
      ['tools/call', { name: 'task.list' }, { 'Mcp-Name': ' task.list ' }],
    ];
    for (const [method, rawParams, headers] of requests) {
      const { _progress, ...params } = rawParams;
      const withMeta = _progress ? { ...params, _meta: { progressToken: 'p1' } } : params;
      const answers = await Promise.all(
        [pooled, perRequest].map((server) => send(server, keys.get(server)!, method, withMeta, headers)),
      );
      const [a, b] = answers.map(comparable);
      expect({ method, params, ...a }).toEqual({ method, params, ...b });
    }
  });

  it('build one SDK instance per principal, not one per request', async () => {
    const created = vi.spyOn(pooled.surface, 'createServer');
    const key = await pooled.key('counted', 'member');
    for (let i = 0; i < 5; i++) {
      const answer = await send(pooled, key, 'tools/call', { name: 'task.list' });
      expect(answer.status).toBe(200);
    }
    expect(created.mock.calls.filter(([principal]) => principal.id === 'counted')).toHaveLength(1);
    created.mockRestore();
  });

  it('answer server/discover from the principal’s instance too', async () => {
    const key = await pooled.key('discoverer', 'member');
    expect((await send(pooled, key, 'tools/list', {})).status).toBe(200);
    const created = vi.spyOn(pooled.surface, 'createServer');
    const answer = await send(pooled, key, 'server/discover', {});
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body).result.supportedVersions).toContain(MODERN);
    // The per-request path would have built a server for it.
    expect(created).not.toHaveBeenCalled();
    created.mockRestore();
  });

  it('keep principals apart: another role gets its own instance and its own tools', async () => {
    const viewer = await pooled.key('watcher', 'viewer');
    const tools = JSON.parse((await send(pooled, viewer, 'tools/list', {})).body).result.tools as Array<{
      name: string;
    }>;
    const names = tools.map((t) => t.name);
    expect(names).toContain('task.list');
    expect(names).not.toContain('task.add');
    const refused = JSON.parse(
      (await send(pooled, viewer, 'tools/call', { name: 'task.add', arguments: { title: 'x' } })).body,
    );
    expect(refused.result?.isError ?? refused.error !== undefined).toBe(true);
  });

  it('answer concurrent calls of one principal each with its own id', async () => {
    const key = keys.get(pooled)!;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        fetch(pooled.url, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${key}`,
            'content-type': 'application/json',
            accept: 'application/json',
            'mcp-protocol-version': MODERN,
            'mcp-method': 'tools/call',
            'mcp-name': 'task.add',
          },
          // Every client numbers from 1: the same id from many clients at once.
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: i % 2 === 0 ? 1 : `s-${i}`,
            method: 'tools/call',
            params: { name: 'task.add', arguments: { title: `c${i}` }, _meta: ENVELOPE },
          }),
        }).then(async (r) => ({ i, body: JSON.parse(await r.text()) })),
      ),
    );
    const titles = new Set<string>();
    for (const { i, body } of answers) {
      expect(body.id).toBe(i % 2 === 0 ? 1 : `s-${i}`);
      titles.add(body.result.structuredContent.task.title);
      expect(body.result.structuredContent.task.title).toBe(`c${i}`);
    }
    expect(titles.size).toBe(20);
  });
});

describe('which requests a pool takes', () => {
  const headers = (method: string, name?: string) => ({
    'content-type': 'application/json',
    'mcp-protocol-version': MODERN,
    'mcp-method': method,
    ...(name === undefined ? {} : { 'mcp-name': name }),
  });
  const call = (meta: Record<string, unknown>, frame: Record<string, unknown> = {}) => ({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'task.list', arguments: {}, _meta: meta },
    ...frame,
  });
  const pool = () =>
    new PooledInstances({ createServer: () => assert.fail(), declaresParamHeaders: () => false });

  it('judges a request by the SDK’s classification each time, remembered or not', async () => {
    const capabilitiesText = { ...ENVELOPE, 'io.modelcontextprotocol/clientCapabilities': 'all' };
    const withExperimental = (value: unknown) => ({
      ...ENVELOPE,
      'io.modelcontextprotocol/clientCapabilities': { experimental: { x: { y: value } } },
    });
    const badVersion = { ...ENVELOPE, 'io.modelcontextprotocol/protocolVersion': 7 };
    const cases: Array<[string, Record<string, unknown>, boolean]> = [
      ['a well-formed call', call(ENVELOPE), true],
      ['a string id', call(ENVELOPE, { id: 'a' }), true],
      ['capabilities that are not an object', call(capabilitiesText), false],
      ['a protocol version that is not a string', call(badVersion), false],
      // The same envelope the pool has accepted, in frames the SDK refuses.
      ['a fractional id', call(ENVELOPE, { id: 1.5 }), false],
      ['an id past the safe integers', call(ENVELOPE, { id: 2 ** 60 }), false],
      ['a key beside the request’s own', call(ENVELOPE, { result: {} }), false],
      ['another JSON-RPC version', call(ENVELOPE, { jsonrpc: '1.0' }), false],
      // Written alike by JSON.stringify (Infinity as null), judged apart by the SDK.
      ['a null deep in the capabilities', call(withExperimental(null)), true],
      ['a number past a double deep in the capabilities', call(withExperimental(Infinity)), false],
    ];
    const remembering = pool();
    for (const round of [1, 2]) {
      for (const [what, body, expected] of cases) {
        const fresh = pool();
        const verdicts = [remembering, fresh].map((p) =>
          p.eligible(body, headers('tools/call', 'task.list')),
        );
        expect({ round, what, verdicts }).toEqual({ round, what, verdicts: [expected, expected] });
        await fresh.close();
      }
    }
    await remembering.close();
  });

  it('remembers a client’s envelope once, and none that is long, per request or not exact', async () => {
    const p = pool();
    const accepted = (meta: Record<string, unknown>) =>
      p.eligible(call(meta), headers('tools/call', 'task.list'));
    for (let i = 0; i < 3; i++) expect(accepted(ENVELOPE)).toBe(true);
    expect(p.remembered).toBe(1);
    expect(
      accepted({ ...ENVELOPE, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
    ).toBe(true);
    expect(
      accepted({
        ...ENVELOPE,
        'io.modelcontextprotocol/clientInfo': { name: 'x'.repeat(5000), version: '1' },
      }),
    ).toBe(true);
    expect(p.remembered).toBe(1);
    await p.close();
  });
});

describe('a pooled call whose client goes away', () => {
  it('is not delivered when the client left before it reached the pool: no instance is made for it', async () => {
    let created = 0;
    const pool = new PooledInstances({
      createServer: () => {
        created++;
        throw new Error('no instance should be made');
      },
      declaresParamHeaders: () => false,
    });
    const gone = new Cancellation();
    gone.cancel();
    const request = {
      jsonrpc: '2.0' as const,
      id: 1,
      method: 'tools/list',
      params: { _meta: ENVELOPE },
    };
    expect(await pool.call(localPrincipal('gone'), request, gone)).toBeUndefined();
    expect(created).toBe(0);
    expect(pool.size).toBe(0);
    await pool.close();
  });

  it('is cancelled: its handler’s signal aborts, nothing commits, and the instance serves on', async () => {
    let started!: () => void;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    let sawAbort!: (reason: unknown) => void;
    const handlerAborted = new Promise<unknown>((resolve) => {
      sawAbort = resolve;
    });
    const log = defineDocument('log', { done: {} as Record<string, boolean> });
    const app = defineApp({
      name: 'cancel',
      documents: [log],
      commands: [
        defineCommand({
          name: 'wait.write',
          description: 'Waits until cancelled, then would record its tag.',
          doc: log,
          timeoutMs: 60_000,
          input: z.object({ tag: z.string() }),
          handler: async ({ input, draft, signal }) => {
            // Written to the draft first: a cancelled call must not commit it.
            draft.done[input.tag] = true;
            started();
            await new Promise((_, reject) =>
              signal.addEventListener('abort', () => {
                sawAbort(signal.reason);
                reject(signal.reason);
              }),
            );
            return {};
          },
        }),
        defineCommand({
          name: 'quick.write',
          description: 'Records its tag.',
          doc: log,
          input: z.object({ tag: z.string() }),
          handler: ({ input, draft }) => {
            draft.done[input.tag] = true;
            return { tag: input.tag };
          },
        }),
      ],
    });
    const server = await startInProcess({ app });
    try {
      const created = vi.spyOn(server.surface, 'createServer');
      const key = await server.key('leaver', 'admin');
      const client = new AbortController();
      const call = modernFetch(
        server.url,
        key,
        'tools/call',
        { name: 'wait.write', arguments: { tag: 'gone' } },
        { capabilities: CAPABILITIES, signal: client.signal },
      );
      await handlerStarted;
      // The pooled path served it: one long-lived instance for this principal.
      expect(created.mock.calls.map(([, mode]) => mode)).toEqual(['pooled']);
      client.abort();
      await expect(call).rejects.toThrow();
      expect(await handlerAborted).toBeDefined();
      const next = await send(server, key, 'tools/call', { name: 'quick.write', arguments: { tag: 'next' } });
      expect(JSON.parse(next.body).result.structuredContent).toEqual({ tag: 'next' });
      expect(created).toHaveBeenCalledTimes(1);
      const { value } = await server.core.state.get('log');
      expect(value).toEqual({ done: { next: true } });
      created.mockRestore();
    } finally {
      await server.close();
    }
  });
});
