/**
 * 2026-07-28 JSON-RPC over real HTTP, by hand: the per-request `_meta` envelope and the standard
 * headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name), for what the SDK client does not speak yet
 * (the tasks extension: it refuses `resultType: "task"`) and for requests it would never send.
 */
export const TASKS = 'io.modelcontextprotocol/tasks';

export interface WireResponse {
  status: number;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: Record<string, unknown> };
}

let nextId = 1;

/** The name a method routes by (SEP-2243): a tool or prompt name, a resource URI, a task id. */
function mcpName(method: string, params: Record<string, unknown>): string | undefined {
  const name =
    method === 'resources/read' ? params.uri : method.startsWith('tasks/') ? params.taskId : params.name;
  return typeof name === 'string' ? name : undefined;
}

export interface ModernRequestOptions {
  capabilities?: Record<string, unknown>;
  headers?: Record<string, string>;
  /** Aborts the request: the client goes away. */
  signal?: AbortSignal;
}

/** Sends one 2026-07-28 request with its envelope and standard headers; the raw HTTP response. */
export function modernFetch(
  url: string,
  key: string,
  method: string,
  params: Record<string, unknown> = {},
  options: ModernRequestOptions = {},
): Promise<Response> {
  const headers: Record<string, string> = {
    Authorization: `Bearer ${key}`,
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': '2026-07-28',
    'Mcp-Method': method,
  };
  const name = mcpName(method, params);
  if (
    name !== undefined &&
    (method === 'tools/call' ||
      method === 'prompts/get' ||
      method === 'resources/read' ||
      method.startsWith('tasks/'))
  )
    headers['Mcp-Name'] = name;
  Object.assign(headers, options.headers);
  const body = {
    jsonrpc: '2.0',
    id: nextId++,
    method,
    params: {
      ...params,
      _meta: {
        'io.modelcontextprotocol/protocolVersion': '2026-07-28',
        'io.modelcontextprotocol/clientInfo': { name: 'coremcp-wire-test', version: '1.0.0' },
        'io.modelcontextprotocol/clientCapabilities': options.capabilities ?? { extensions: { [TASKS]: {} } },
        ...(params._meta as Record<string, unknown> | undefined),
      },
    },
  };
  return fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

export async function modernRpc(
  url: string,
  key: string,
  method: string,
  params: Record<string, unknown> = {},
  options: ModernRequestOptions = {},
): Promise<WireResponse> {
  const response = await modernFetch(url, key, method, params, options);
  const text = await response.text();
  // An SSE answer carries the response as the last `data:` line.
  const json = response.headers.get('content-type')?.includes('text/event-stream')
    ? (text
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .at(-1)
        ?.slice(6) ?? '{}')
    : text;
  const message = JSON.parse(json) as Omit<WireResponse, 'status'>;
  return { status: response.status, ...message };
}

/** The result of a call that must succeed. */
export async function modernResult(...args: Parameters<typeof modernRpc>): Promise<Record<string, unknown>> {
  const response = await modernRpc(...args);
  if (!response.result) throw new Error(`${args[2]} failed: ${JSON.stringify(response)}`);
  return response.result;
}
