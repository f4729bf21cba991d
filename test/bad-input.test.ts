/**
 * Bad input gets a clear, typed error and changes nothing: malformed and non-JSON-RPC bodies,
 * unknown tools, wrong, extra and missing arguments, oversized bodies, missing and invalid keys,
 * foreign Origin and Host, secrets in handler errors, `__proto__` in input.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/client';
import { SqliteStore, verifyAuditRecords } from 'coremcp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  errorCodeOf,
  httpClient,
  runCli,
  type ServerProcess,
  startServerProcess,
  structured,
} from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitForOutput } from './helpers/wait.js';

const APP = fileURLToPath(new URL('./fixtures/notes-app.ts', import.meta.url));
const tmp = tempDir();
let server: ServerProcess;
let key: string;
let client: Client;

const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

/** A raw POST to the MCP endpoint; `modern` adds the 2026-07-28 headers for a tools/call. */
async function post(
  body: string,
  options: { key?: string | null; headers?: Record<string, string>; tool?: string } = {},
): Promise<Response> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...options.headers,
  };
  const auth = options.key === undefined ? key : options.key;
  if (auth !== null) headers.authorization = `Bearer ${auth}`;
  if (options.tool) {
    headers['mcp-protocol-version'] = '2026-07-28';
    headers['mcp-method'] = 'tools/call';
    headers['mcp-name'] = options.tool;
  }
  return fetch(server.url, { method: 'POST', headers, body });
}

function modernCall(tool: string, argumentsJson: string): string {
  return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":${JSON.stringify(tool)},"arguments":${argumentsJson},"_meta":${JSON.stringify(ENVELOPE)}}}`;
}

async function notesState(): Promise<{ revision: number; value: unknown }> {
  const result = await client.readResource({ uri: 'coremcp://state/notes' });
  const content = result.contents[0] as { text: string; _meta: Record<string, unknown> };
  return { revision: content._meta['coremcp/revision'] as number, value: JSON.parse(content.text) };
}

let before: { revision: number; value: unknown };

beforeAll(async () => {
  server = await startServerProcess([APP, '--data-dir', tmp.dir]);
  key = server.firstKey!;
  client = await httpClient(server.url, key);
  await client.callTool({ name: 'note.add', arguments: { text: 'first' } });
});

afterAll(async () => {
  await client?.close();
  await server?.stop();
  tmp.remove();
});

beforeEach(async () => {
  before = await notesState();
});

async function expectUnchanged(): Promise<void> {
  expect(await notesState()).toEqual(before);
}

describe('malformed requests are protocol errors', () => {
  it('answers malformed JSON with a JSON-RPC parse error', async () => {
    const response = await post('{"jsonrpc":"2.0","id":1,"method":"tools/call",', { tool: 'note.add' });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: number } }).error.code).toBe(-32700);
    await expectUnchanged();
  });

  it('answers a JSON body that is not JSON-RPC with 400', async () => {
    for (const body of [
      '{"hello":"world"}',
      '[1,2,3]',
      '"tools/call"',
      '{"jsonrpc":"1.0","id":1,"method":"tools/list"}',
    ]) {
      const response = await post(body);
      expect(response.status, body).toBeGreaterThanOrEqual(400);
      expect(response.status, body).toBeLessThan(500);
    }
    await expectUnchanged();
  });

  it('answers an unknown tool with JSON-RPC -32602 and code unknown_command', async () => {
    await expect(client.callTool({ name: 'note.delete_everything', arguments: {} })).rejects.toMatchObject({
      code: -32602,
      data: { code: 'unknown_command' },
    });
    await expectUnchanged();
  });
});

describe('invalid arguments are tool errors naming the field', () => {
  it('refuses wrong argument types', async () => {
    const result = await client.callTool({ name: 'note.add', arguments: { text: 42 } });
    expect(result.isError).toBe(true);
    expect(structured(result).error).toMatchObject({
      code: 'invalid_input',
      details: { issues: [expect.objectContaining({ path: '/text' })] },
    });
    await expectUnchanged();
  });

  it('refuses missing fields', async () => {
    const result = await client.callTool({ name: 'note.add', arguments: {} });
    expect(structured(result).error).toMatchObject({
      code: 'invalid_input',
      details: { issues: [expect.objectContaining({ path: '/text' })] },
    });
    await expectUnchanged();
  });

  it('refuses fields the schema does not declare', async () => {
    const result = await client.callTool({ name: 'note.add', arguments: { text: 'x', admin: true } });
    expect(errorCodeOf(result)).toBe('invalid_input');
    expect(JSON.stringify(structured(result))).toMatch(/admin/);
    await expectUnchanged();
  });

  it('refuses __proto__, constructor and prototype keys anywhere in a message, before dispatch', async () => {
    // The SDK's schemas would silently drop a `__proto__` member, so the edge refuses the whole message.
    for (const args of [
      '{"text":"x","__proto__":{"polluted":true}}',
      '{"text":"x","tags":[],"constructor":{"prototype":{"polluted":true}}}',
    ]) {
      const response = await post(modernCall('note.add', args), { tool: 'note.add' });
      expect(response.status).toBe(400);
      const body = (await response.json()) as {
        id: number;
        error: { code: number; data: { code: string; details: { issues: Array<{ path: string }> } } };
      };
      expect(body.id).toBe(7);
      expect(body.error.code).toBe(-32602);
      expect(body.error.data.code).toBe('invalid_input');
      expect(body.error.data.details.issues[0]!.path).toMatch(
        /^\/params\/arguments\/(__proto__|constructor)$/,
      );
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await expectUnchanged();
  });

  it('refuses arguments nested deeper than the command limit (32) as a tool error', async () => {
    const deep = `${'['.repeat(40)}1${']'.repeat(40)}`;
    const response = await post(modernCall('note.add', `{"text":"x","tags":${deep}}`), { tool: 'note.add' });
    const body = (await response.json()) as { result: { structuredContent: { error: { code: string } } } };
    expect(body.result.structuredContent.error.code).toBe('invalid_input');
    await expectUnchanged();
  });

  it('refuses a message nested 10,000 deep before dispatch', async () => {
    const deep = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
    const response = await post(modernCall('note.add', `{"text":"x","tags":${deep}}`), { tool: 'note.add' });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { data: { code: string } } }).error.data.code).toBe(
      'invalid_input',
    );
    await expectUnchanged();
  });
});

describe('limits and access at the HTTP edge', () => {
  it('answers a body over 1 MiB with 413 payload_too_large', async () => {
    const response = await post(
      modernCall('note.add', JSON.stringify({ text: 'x'.repeat(1024 * 1024 + 10) })),
      { tool: 'note.add' },
    );
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: { data: { code: string } } }).error.data.code).toBe(
      'payload_too_large',
    );
    await expectUnchanged();
  });

  it('answers a missing key with 401 and a Bearer challenge', async () => {
    const response = await post(modernCall('note.add', '{"text":"x"}'), { key: null, tool: 'note.add' });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect(((await response.json()) as { error: { data: { code: string } } }).error.data.code).toBe(
      'unauthenticated',
    );
    await expectUnchanged();
  });

  it('answers an invalid or made-up key with 401', async () => {
    for (const bad of ['nope', 'cmcp_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', `${key}x`]) {
      const response = await post(modernCall('note.add', '{"text":"x"}'), { key: bad, tool: 'note.add' });
      expect(response.status, bad).toBe(401);
      expect(response.headers.get('www-authenticate')).toMatch(/invalid_token/);
    }
    await expectUnchanged();
  });

  it('refuses a foreign Origin and a rebinding Host with 403', async () => {
    const foreign = await post(modernCall('note.add', '{"text":"x"}'), {
      headers: { origin: 'https://evil.example' },
      tool: 'note.add',
    });
    expect(foreign.status).toBe(403);
    expect(((await foreign.json()) as { error: { data: { code: string } } }).error.data.code).toBe(
      'forbidden',
    );
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        server.url,
        {
          method: 'POST',
          headers: {
            host: 'evil.example:80',
            'content-type': 'application/json',
            authorization: `Bearer ${key}`,
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(modernCall('note.add', '{"text":"x"}'));
    });
    expect(status).toBe(403);
    await expectUnchanged();
  });
});

describe('failing handlers change nothing and leak nothing', () => {
  it('turns an exception carrying secrets into internal_error with a request id, and logs the details server-side', async () => {
    const result = await client.callTool({ name: 'note.leak', arguments: {} });
    expect(result.isError).toBe(true);
    const error = structured(result).error as { code: string; message: string; requestId: string };
    expect(error.code).toBe('internal_error');
    expect(error.message).toBe('Internal error');
    expect(error.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const wire = JSON.stringify(result);
    for (const secret of [
      'hunter2',
      'postgres://',
      'secret.db',
      '/var/lib',
      'SQLITE',
      'cmcp_abcdef',
      'at ',
      'Error:',
    ]) {
      expect(wire).not.toContain(secret);
    }
    await expectUnchanged();
    // The server logs the details after it answers: wait for the line instead of for a while.
    await waitForOutput(server.child.stderr!, server.stderr, error.requestId, {
      message: `the server to log request ${error.requestId} on stderr`,
    });
    expect(server.stderr()).toContain(error.requestId);
  });

  it('passes an app-defined refusal through with its code and details, committing nothing', async () => {
    const result = await client.callTool({ name: 'note.refuse', arguments: {} });
    expect(structured(result).error).toMatchObject({
      code: 'note_refused',
      message: 'Notes are closed today',
      details: { reopens: 'tomorrow' },
    });
    await expectUnchanged();
  });

  it('refuses a handler that writes non-JSON into the state', async () => {
    const result = await client.callTool({ name: 'note.corrupt', arguments: {} });
    expect(structured(result).error).toMatchObject({ code: 'state_invalid', details: { path: '/when' } });
    await expectUnchanged();
  });

  it('keeps only successful commands in the history, and audits every authenticated attempt', async () => {
    const { stdout } = await runCli(['state', 'history', '--doc', 'notes', '--json', '--data-dir', tmp.dir]);
    const commits = JSON.parse(stdout).commits as Array<{ command: string }>;
    expect(commits.map((c) => c.command)).toEqual(['note.add']);
    const store = new SqliteStore({ path: join(tmp.dir, 'coremcp.db') });
    await store.open();
    try {
      const outcomes = (await store.readAudit({})).map((r) => `${r.command}:${r.outcome}`);
      expect(outcomes).toEqual(
        expect.arrayContaining([
          'note.add:ok',
          'note.add:invalid_input',
          'note.leak:internal_error',
          'note.refuse:note_refused',
          'note.corrupt:state_invalid',
          'note.delete_everything:unknown_command',
        ]),
      );
      expect(verifyAuditRecords(await store.readAudit({})).ok).toBe(true);
    } finally {
      await store.close();
    }
  });
});
