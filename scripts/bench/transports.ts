/**
 * Raw JSON-RPC channels to a server under test, with no MCP client library in the way, so the
 * generator stays cheap: Streamable HTTP in the stateless 2026-07-28 era (one POST per call over
 * keep-alive sockets) and stdio in the 2025-11-25 era (newline-delimited, pipelined, matched by id).
 */
import type { ChildProcessByStdio } from 'node:child_process';
import { Agent, request as httpRequest } from 'node:http';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

export const MODERN_VERSION = '2026-07-28';
export const LEGACY_VERSION = '2025-11-25';

const CLIENT_INFO = { name: 'coremcp-bench', version: '1.0.0' };

/** The `_meta` a stateless 2026-07-28 request carries in place of an initialize handshake. */
const MODERN_ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
  'io.modelcontextprotocol/clientInfo': CLIENT_INFO,
  'io.modelcontextprotocol/clientCapabilities': {},
};

export interface RpcResponse {
  id?: number | string | null;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

/** Sends `tools/call` (or any request) and resolves with the JSON-RPC response. */
export interface RpcChannel {
  request(method: string, params: Record<string, unknown>): Promise<RpcResponse>;
  close(): Promise<void>;
}

/** A tool call that came back as a result, and not as an `isError` result or a JSON-RPC error. */
export function succeeded(response: RpcResponse): boolean {
  return response.result !== undefined && response.result.isError !== true;
}

export function describeFailure(response: RpcResponse): string {
  if (response.error) return `JSON-RPC ${response.error.code}: ${response.error.message}`;
  return `tool error: ${JSON.stringify(response.result).slice(0, 300)}`;
}

/** Reads the JSON-RPC response out of a JSON body, or out of an SSE body's `data:` lines. */
function parseBody(body: string, contentType: string | undefined, id: number): RpcResponse {
  if (!contentType?.includes('text/event-stream')) return JSON.parse(body) as RpcResponse;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const message = JSON.parse(line.slice(5)) as RpcResponse;
    if (message.id === id) return message;
  }
  throw new Error(`no response with id ${id} in the event stream`);
}

/** One POST per request to `url`, keep-alive, up to `sockets` connections. 127.0.0.1 only. */
export function httpChannel(url: string, options: { sockets: number; bearer?: string }): RpcChannel {
  const target = new URL(url);
  if (target.hostname !== '127.0.0.1')
    throw new Error(`the bench only sends traffic to 127.0.0.1, not ${url}`);
  const agent = new Agent({ keepAlive: true, maxSockets: options.sockets, maxFreeSockets: options.sockets });
  let nextId = 1;
  return {
    request(method, params) {
      const id = nextId++;
      const body = JSON.stringify({
        jsonrpc: '2.0',
        id,
        method,
        params: { ...params, _meta: MODERN_ENVELOPE },
      });
      const headers: Record<string, string | number> = {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'content-length': Buffer.byteLength(body),
        'mcp-protocol-version': MODERN_VERSION,
        'mcp-method': method,
      };
      if (typeof params.name === 'string') headers['mcp-name'] = params.name;
      if (options.bearer) headers.authorization = `Bearer ${options.bearer}`;
      return new Promise((resolve, reject) => {
        const req = httpRequest(
          { agent, host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              try {
                resolve(parseBody(text, res.headers['content-type'], id));
              } catch {
                reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
              }
            });
            res.on('error', reject);
          },
        );
        req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
        req.on('error', reject);
        req.end(body);
      });
    },
    async close() {
      agent.destroy();
    },
  };
}

type StdioChild = ChildProcessByStdio<Writable, Readable, Readable | null>;

/**
 * Newline-delimited JSON-RPC over a child's stdin/stdout. Opens with `initialize` and
 * `notifications/initialized`, as a 2025-era stdio server requires; requests are then pipelined.
 */
export async function stdioChannel(child: StdioChild): Promise<RpcChannel> {
  const pending = new Map<number, { resolve: (r: RpcResponse) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    if (line.length === 0) return;
    const message = JSON.parse(line) as RpcResponse;
    if (typeof message.id !== 'number') return; // a notification
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    waiter?.resolve(message);
  });
  child.once('exit', (code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`the server exited with ${code}`));
    pending.clear();
  });
  const send = (message: Record<string, unknown>) => child.stdin.write(`${JSON.stringify(message)}\n`);
  const request = (method: string, params: Record<string, unknown>) =>
    new Promise<RpcResponse>((resolve, reject) => {
      if (child.exitCode !== null) return reject(new Error('the server has exited'));
      const id = nextId++;
      pending.set(id, { resolve, reject });
      send({ jsonrpc: '2.0', id, method, params });
    });

  const init = await request('initialize', {
    protocolVersion: LEGACY_VERSION,
    capabilities: {},
    clientInfo: CLIENT_INFO,
  });
  if (!init.result) throw new Error(`initialize failed: ${describeFailure(init)}`);
  send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return {
    request,
    async close() {
      lines.close();
      child.stdin.end();
    },
  };
}
