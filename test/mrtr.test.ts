/**
 * A handler asks the client once (`ctx.client.elicit/sample/roots`) and it works in both eras: on
 * 2026-07-28 as `input_required` + retries (MRTR, a signed single-use `requestState`), on 2025-11-25
 * as server-to-client requests. Real SDK clients over real HTTP and stdio.
 */
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/client';
import { afterEach, describe, expect, it } from 'vitest';
import askApp from './fixtures/ask-app.js';
import {
  type ClientSetup,
  type Era,
  httpClient,
  startInProcess,
  stdioClient,
  structured,
} from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const ASK_APP = fileURLToPath(new URL('./fixtures/ask-app.ts', import.meta.url));

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const EVERYTHING = { elicitation: {}, sampling: {}, roots: {} };

interface Asked {
  elicit: string[];
  sample: number;
  roots: number;
}

/** A client that answers every question the ask app puts, counting what it was asked. */
function answering(asked: Asked): ClientSetup {
  return {
    capabilities: EVERYTHING,
    setup: (client) => {
      client.setRequestHandler('elicitation/create', async (request) => {
        const message = String((request.params as { message?: unknown }).message);
        asked.elicit.push(message);
        const accept = (content: Record<string, string>) => ({ action: 'accept' as const, content });
        if (message.startsWith('What is your name')) return accept({ name: 'Ada' });
        if (message.includes('favourite color')) return accept({ color: 'green' });
        if (message.startsWith('Which topic')) return accept({ topic: 'tides' });
        return { action: 'decline' as const };
      });
      client.setRequestHandler('sampling/createMessage', async () => {
        asked.sample++;
        return { role: 'assistant', content: { type: 'text', text: 'Be kind' }, model: 'test-model' };
      });
      client.setRequestHandler('roots/list', async () => {
        asked.roots++;
        return { roots: [{ uri: 'file:///work', name: 'work' }] };
      });
    },
  };
}

async function askServer(clock?: () => Date) {
  const server = await startInProcess({ app: askApp, ...(clock ? { clock } : {}) });
  cleanups.push(() => server.close());
  return server;
}

type InputRequiredResult = {
  resultType: 'input_required';
  inputRequests: Record<string, { method: string; params: Record<string, unknown> }>;
  requestState: string;
};

/** One manual round: the raw result, `input_required` included (the SDK's manual mode). */
async function round(
  client: Client,
  params: { name: string; arguments: Record<string, unknown> } & Record<string, unknown>,
): Promise<InputRequiredResult | Record<string, unknown>> {
  return (await client.callTool(params as never, { allowInputRequired: true })) as never;
}

/** The JSON-RPC error a call fails with: its number and coremcp code. */
async function protocolError(
  call: Promise<unknown>,
): Promise<{ code: number; dataCode: unknown; reason: unknown }> {
  const error = (await call.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: number; data?: { code?: unknown; details?: { reason?: unknown } } } | undefined;
  if (!error) throw new Error('the call succeeded');
  return { code: error.code ?? 0, dataCode: error.data?.code, reason: error.data?.details?.reason };
}

describe.each<Era>(['modern', 'legacy'])('asking the client over HTTP (%s)', (era) => {
  it('asks in several rounds, gathers every answer, and commits once with all of them', async () => {
    const server = await askServer();
    const asked: Asked = { elicit: [], sample: 0, roots: 0 };
    const client = await httpClient(server.url, await server.key('ada', 'admin'), era, answering(asked));
    cleanups.push(() => client.close());

    const result = await client.callTool({ name: 'profile.set', arguments: { id: 'ada' } });
    expect(result.isError).toBeFalsy();
    expect(structured(result).profile).toEqual({
      name: 'Ada',
      color: 'green',
      motto: 'Be kind',
      roots: ['file:///work'],
      by: 'ada',
    });
    // Each question was put once: answers from earlier rounds came back with each retry.
    expect(asked).toEqual({
      elicit: ['What is your name?', 'Hello Ada: your favourite color?'],
      sample: 1,
      roots: 1,
    });
    const { value, revision } = await server.core.state.get<{ people: Record<string, unknown> }>('profiles');
    expect(revision).toBe(1);
    expect(Object.keys(value.people)).toEqual(['ada']);
    const audit = await server.core.store.readAudit({ command: 'profile.set' });
    expect(audit.map((r) => r.outcome)).toEqual(['input_required', 'input_required', 'input_required', 'ok']);
  });

  it('runs a prompt that asks first', async () => {
    const server = await askServer();
    const asked: Asked = { elicit: [], sample: 0, roots: 0 };
    const client = await httpClient(server.url, await server.key('ada', 'admin'), era, answering(asked));
    cleanups.push(() => client.close());
    const prompt = await client.getPrompt({ name: 'ask.prompt' });
    expect(prompt.messages[0]?.content).toEqual({ type: 'text', text: 'Write about tides.' });
    expect(asked.elicit).toEqual(['Which topic?']);
  });

  it('refuses a question the client did not declare it can answer, with -32021 naming the capability', async () => {
    const server = await askServer();
    const client = await httpClient(server.url, await server.key('ada', 'admin'), era, {
      capabilities: { sampling: {} },
    });
    cleanups.push(() => client.close());
    const error = (await client.callTool({ name: 'greet.ask', arguments: {} }).catch((e: unknown) => e)) as {
      code: number;
      data: { requiredCapabilities: unknown };
    };
    expect(error.code).toBe(-32021);
    expect(error.data.requiredCapabilities).toEqual({ elicitation: {} });
    const [audit] = await server.core.store.readAudit({ command: 'greet.ask' });
    expect(audit?.outcome).toBe('missing_client_capability');
  });
});

describe('asking the client over stdio', () => {
  it.each<Era>(['modern', 'legacy'])('completes a three-round command over stdio (%s)', async (era) => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const asked: Asked = { elicit: [], sample: 0, roots: 0 };
    const { client } = await stdioClient([ASK_APP, '--data-dir', tmp.dir], era, answering(asked));
    cleanups.push(() => client.close());
    const result = await client.callTool({ name: 'profile.set', arguments: { id: 'ada' } });
    expect(structured(result).profile).toMatchObject({ name: 'Ada', color: 'green', motto: 'Be kind' });
    expect(asked).toEqual({
      elicit: ['What is your name?', 'Hello Ada: your favourite color?'],
      sample: 1,
      roots: 1,
    });
  });
});

describe('requestState (2026-07-28)', () => {
  it('re-asks what is missing, keeps what was answered across rounds, and accepts partial answers', async () => {
    const server = await askServer();
    const client = await httpClient(server.url, await server.key('ada', 'admin'), 'modern', {
      capabilities: EVERYTHING,
      autoFulfill: false,
    });
    cleanups.push(() => client.close());
    const call = { name: 'profile.set', arguments: { id: 'ada' } };

    const r1 = (await round(client, call)) as InputRequiredResult;
    expect(r1.resultType).toBe('input_required');
    expect(Object.keys(r1.inputRequests)).toEqual(['elicit-1']);
    expect(r1.inputRequests['elicit-1']?.method).toBe('elicitation/create');

    // A retry without the answer is asked the same question again.
    const again = (await round(client, { ...call, requestState: r1.requestState })) as InputRequiredResult;
    expect(Object.keys(again.inputRequests)).toEqual(['elicit-1']);

    // An answer that does not match the form's schema is no answer.
    const wrong = (await round(client, {
      ...call,
      requestState: again.requestState,
      inputResponses: { 'elicit-1': { action: 'accept', content: { name: 42 } } },
    })) as InputRequiredResult;
    expect(Object.keys(wrong.inputRequests)).toEqual(['elicit-1']);

    const r2 = (await round(client, {
      ...call,
      requestState: wrong.requestState,
      inputResponses: {
        'elicit-1': { action: 'accept', content: { name: 'Ada' } },
        extra: { action: 'accept' },
      },
    })) as InputRequiredResult;
    expect(Object.keys(r2.inputRequests)).toEqual(['color']);

    const r3 = (await round(client, {
      ...call,
      requestState: r2.requestState,
      inputResponses: { color: { action: 'accept', content: { color: 'blue' } } },
    })) as InputRequiredResult;
    expect(Object.keys(r3.inputRequests).sort()).toEqual(['roots-1', 'sample-1']);

    // Half of the last round: only the other half is asked again.
    const partial = (await round(client, {
      ...call,
      requestState: r3.requestState,
      inputResponses: {
        'sample-1': { role: 'assistant', content: { type: 'text', text: 'Onward' }, model: 'm' },
      },
    })) as InputRequiredResult;
    expect(Object.keys(partial.inputRequests)).toEqual(['roots-1']);

    const done = await round(client, {
      ...call,
      requestState: partial.requestState,
      inputResponses: { 'roots-1': { roots: [{ uri: 'file:///a' }] } },
    });
    expect(structured(done).profile).toEqual({
      name: 'Ada',
      color: 'blue',
      motto: 'Onward',
      roots: ['file:///a'],
      by: 'ada',
    });
    expect((await server.core.state.get('profiles')).revision).toBe(1);
  });

  it('refuses a tampered, replayed, misdirected or other principal’s state, running nothing', async () => {
    const server = await askServer();
    const setup = { capabilities: EVERYTHING, autoFulfill: false };
    const ada = await httpClient(server.url, await server.key('ada', 'admin'), 'modern', setup);
    const bob = await httpClient(server.url, await server.key('bob', 'admin'), 'modern', setup);
    cleanups.push(
      () => ada.close(),
      () => bob.close(),
    );
    const call = { name: 'profile.set', arguments: { id: 'ada' } };
    const first = (await round(ada, call)) as InputRequiredResult;
    const answer = { 'elicit-1': { action: 'accept', content: { name: 'Ada' } } };
    const state = first.requestState;

    const body = state.split('.');
    const tampered = `${body[0]}.${Buffer.from(
      Buffer.from(body[1]!, 'base64url').toString('utf8').replace('"s":"ada"', '"s":"eve"'),
    ).toString('base64url')}.${body[2]}`;
    expect(
      await protocolError(round(ada, { ...call, requestState: tampered, inputResponses: answer })),
    ).toEqual({
      code: -32602,
      dataCode: 'request_state_invalid',
      reason: 'signature',
    });
    expect(
      await protocolError(round(ada, { ...call, requestState: `${state}-TAMPERED`, inputResponses: answer })),
    ).toMatchObject({ code: -32602, dataCode: 'request_state_invalid' });
    expect(await protocolError(round(bob, { ...call, requestState: state, inputResponses: answer }))).toEqual(
      {
        code: -32602,
        dataCode: 'request_state_invalid',
        reason: 'principal',
      },
    );
    expect(
      await protocolError(
        round(ada, {
          name: 'profile.set',
          arguments: { id: 'eve' },
          requestState: state,
          inputResponses: answer,
        }),
      ),
    ).toEqual({ code: -32602, dataCode: 'request_state_invalid', reason: 'arguments' });
    expect(
      await protocolError(
        round(ada, {
          name: 'greet.ask',
          arguments: { id: 'ada' },
          requestState: state,
          inputResponses: answer,
        }),
      ),
    ).toMatchObject({ code: -32602 });

    // The genuine retry works once; the same state again is a replay.
    const next = (await round(ada, {
      ...call,
      requestState: state,
      inputResponses: answer,
    })) as InputRequiredResult;
    expect(Object.keys(next.inputRequests)).toEqual(['color']);
    expect(await protocolError(round(ada, { ...call, requestState: state, inputResponses: answer }))).toEqual(
      {
        code: -32602,
        dataCode: 'request_state_replayed',
        reason: 'replayed',
      },
    );

    expect((await server.core.state.get('profiles')).revision).toBe(0);
    const outcomes = (await server.core.store.readAudit({ command: 'profile.set' })).map((r) => [
      r.principal,
      r.outcome,
    ]);
    expect(outcomes).toEqual([
      ['ada', 'input_required'],
      ['ada', 'request_state_invalid'],
      ['ada', 'request_state_invalid'],
      ['bob', 'request_state_invalid'],
      ['ada', 'request_state_invalid'],
      ['ada', 'input_required'],
      ['ada', 'request_state_replayed'],
    ]);
  });

  it('refuses an expired state', async () => {
    let now = Date.parse('2026-08-01T10:00:00.000Z');
    const server = await askServer(() => new Date(now));
    const client = await httpClient(server.url, await server.key('ada', 'admin'), 'modern', {
      capabilities: EVERYTHING,
      autoFulfill: false,
    });
    cleanups.push(() => client.close());
    const call = { name: 'greet.ask', arguments: {} };
    const first = (await round(client, call)) as InputRequiredResult;
    expect(Object.keys(first.inputRequests)).toEqual(['user_name']);
    now += 11 * 60_000;
    expect(
      await protocolError(
        round(client, {
          ...call,
          requestState: first.requestState,
          inputResponses: { user_name: { action: 'accept', content: { name: 'Ada' } } },
        }),
      ),
    ).toEqual({ code: -32602, dataCode: 'request_state_expired', reason: 'expired' });
  });

  it('takes answers given up front on a first call, without a state', async () => {
    const server = await askServer();
    const client = await httpClient(server.url, await server.key('ada', 'admin'), 'modern', {
      capabilities: EVERYTHING,
      autoFulfill: false,
    });
    cleanups.push(() => client.close());
    const done = await round(client, {
      name: 'greet.ask',
      arguments: {},
      inputResponses: { user_name: { action: 'accept', content: { name: 'Grace' } } },
    });
    expect((done as { content: unknown }).content).toEqual([{ type: 'text', text: 'Hello, Grace!' }]);
  });
});

describe('2025-11-25 without a session', () => {
  it('refuses a question it cannot carry with input_unavailable', async () => {
    const server = await askServer();
    const key = await server.key('ada', 'admin');
    const response = await fetch(server.url, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
        'MCP-Protocol-Version': '2025-11-25',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'greet.ask', arguments: {} },
      }),
    });
    const text = await response.text();
    const message = JSON.parse(/data: (.*)/.exec(text)?.[1] ?? text) as { result: Record<string, unknown> };
    expect(message.result.isError).toBe(true);
    expect(structured(message.result).error).toMatchObject({ code: 'input_unavailable' });
  });
});
