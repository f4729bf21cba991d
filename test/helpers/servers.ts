import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client, type ClientCapabilities, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { type Core, type McpSurface, type RunningHttpServer, type ServerOptions, startServer } from 'coremcp';

export const CLI = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
export const MODERN = '2026-07-28';

export type Era = 'legacy' | 'modern';

/** What a test client declares and answers before it connects. */
export interface ClientSetup {
  /** Client capabilities to declare (elicitation, sampling, roots, extensions). */
  capabilities?: ClientCapabilities;
  /** Registers request handlers (elicitation, sampling, roots) before connecting. */
  setup?: (client: Client) => void;
  /** `false`: hand `input_required` results back instead of answering them (SDK manual mode). */
  autoFulfill?: boolean;
}

function newClient(era: Era, options: ClientSetup): Client {
  const client = new Client(
    { name: 'coremcp-test', version: '1.0.0' },
    {
      versionNegotiation: { mode: era === 'modern' ? { pin: MODERN } : 'legacy' },
      capabilities: options.capabilities,
      inputRequired: { autoFulfill: options.autoFulfill ?? true },
    },
  );
  options.setup?.(client);
  return client;
}

/** A real SDK client over Streamable HTTP, speaking the 2025-11-25 (legacy) or 2026-07-28 (modern) protocol. */
export async function httpClient(
  url: string,
  key: string | undefined,
  era: Era = 'modern',
  options: ClientSetup = {},
): Promise<Client> {
  const client = newClient(era, options);
  const headers: Record<string, string> = key ? { Authorization: `Bearer ${key}` } : {};
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

/** A real SDK client that spawns `coremcp serve --stdio` and talks over its stdin/stdout. */
export async function stdioClient(
  args: string[],
  era: Era = 'legacy',
  options: ClientSetup = {},
): Promise<{ client: Client; stderr: () => string }> {
  let stderr = '';
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', '--stdio', '--log-level', 'warn', ...args],
    stderr: 'pipe',
  });
  const client = newClient(era, options);
  await client.connect(transport);
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return { client, stderr: () => stderr };
}

export interface ServerProcess {
  url: string;
  /** The admin key printed at first start, if this start printed one. */
  firstKey: string | undefined;
  /** The agent key printed beside it (role `agent` if configured, else `member`). */
  agentKey: string | undefined;
  stderr: () => string;
  child: ChildProcess;
  stop(): Promise<number | null>;
}

/** Spawns `coremcp serve --http 127.0.0.1:0 ...` and waits until it says where it listens. */
export async function startServerProcess(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--http', '127.0.0.1:0', '--log-level', 'warn', ...args],
    {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${stderr}`)), 20_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /serving "[^"]+" at (http:\/\/\S+)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${stderr}`));
    });
  });
  if (stdout.length > 0) throw new Error(`the server wrote to stdout: ${stdout}`);
  return {
    url,
    firstKey: /\n {2}(cmcp_\S+)\n/.exec(stderr)?.[1],
    agentKey: [...stderr.matchAll(/\n {2}(cmcp_\S+)\n/g)][1]?.[1],
    stderr: () => stderr,
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}

/** Runs the CLI to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface InProcessServer {
  core: Core;
  surface: McpSurface;
  http: RunningHttpServer;
  url: string;
  /** Creates an API key and returns it. */
  key(name: string, role: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts a server in this process through the composition root (`startServer`), serving HTTP on an
 * ephemeral loopback port. No first key is announced (tests make their own), and the per-principal
 * rate limit is raised out of reach: these tests are about behaviour, the attack table tests the limit.
 */
export async function startInProcess(
  options: Omit<ServerOptions, 'http'>,
  httpOptions: Omit<NonNullable<ServerOptions['http']>, 'port'> = {},
): Promise<InProcessServer> {
  const server = await startServer({
    announceFirstKey: false,
    ...options,
    limits: { rate: { perSecond: 100_000, burst: 1_000_000 }, ...options.limits },
    http: { ...httpOptions, port: 0 },
  });
  const http = server.http!;
  return {
    core: server.core,
    surface: server.surface,
    http,
    url: http.url,
    key: async (name, role) => (await server.core.keys!.create(name, role)).key,
    close: () => server.close(),
  };
}

/** The `structuredContent` of a tool result, typed loosely for assertions. */
export function structured(result: unknown): Record<string, unknown> {
  return ((result as { structuredContent?: Record<string, unknown> }).structuredContent ?? {}) as Record<
    string,
    unknown
  >;
}

/** The error code of a failed tool result. */
export function errorCodeOf(result: unknown): string | undefined {
  return (structured(result).error as { code?: string } | undefined)?.code;
}
