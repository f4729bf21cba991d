/**
 * The chaos run's traffic: workers writing tasks through real MCP clients, each write with an
 * idempotency key, a failed one retried with the same key until it succeeds (or 15 s pass), every
 * attempt recorded with its times and outcome.
 */
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

export interface Attempt {
  worker: string;
  key: string;
  start: number;
  end: number;
  ok: boolean;
  /** The error code, or `transport` for a refused or reset connection. */
  code?: string;
  taskId?: string;
}

/** A write that failed at least once: whether a retry with its key succeeded. */
export interface FailedWrite {
  key: string;
  recovered: boolean;
}

export interface LoadRecord {
  attempts: Attempt[];
  failed: FailedWrite[];
  /** Task ids of acknowledged writes, by idempotency key. */
  acknowledged: Map<string, string>;
}

const RETRY_FOR_MS = 15_000;

export type Connect = () => Promise<Client>;

export function httpConnect(url: () => string, key: string, era: 'modern' | 'legacy'): Connect {
  return async () => {
    const client = new Client(
      { name: 'coremcp-chaos', version: '1.0.0' },
      { versionNegotiation: { mode: era === 'modern' ? { pin: '2026-07-28' } : 'legacy' } },
    );
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url()), {
        requestInit: { headers: { Authorization: `Bearer ${key}` } },
      }),
    );
    return client;
  };
}

/** A second `coremcp serve` on the same data directory, over stdio: two processes on one store. */
export function stdioConnect(cli: string, dataDir: string, configPath: string): Connect {
  return async () => {
    const client = new Client(
      { name: 'coremcp-chaos', version: '1.0.0' },
      { versionNegotiation: { mode: 'legacy' } },
    );
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [
          cli,
          'serve',
          '--stdio',
          '--data-dir',
          dataDir,
          '--config',
          configPath,
          '--log-level',
          'fatal',
        ],
        stderr: 'ignore',
      }),
    );
    return client;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls task.add once; never throws. */
async function addTask(
  client: Client | undefined,
  key: string,
): Promise<Omit<Attempt, 'worker' | 'start' | 'end'>> {
  if (!client) return { key, ok: false, code: 'transport' };
  try {
    const result = await client.callTool(
      { name: 'task.add', arguments: { title: `chaos ${key}` }, _meta: { 'coremcp/idempotency-key': key } },
      { timeout: 20_000 },
    );
    const content = (result as { structuredContent?: Record<string, unknown> }).structuredContent ?? {};
    const error = content.error as { code?: string } | undefined;
    if (result.isError || error) return { key, ok: false, code: error?.code ?? 'tool_error' };
    return { key, ok: true, taskId: (content.task as { id: string }).id };
  } catch (error) {
    const text = String((error as Error)?.message ?? error);
    const code = /"code":"([a-z_]+)"/.exec(text)?.[1] ?? 'transport';
    return { key, ok: false, code };
  }
}

/**
 * Runs one worker until `stop()` says so: writes back to back (a short pause between), each failure
 * retried with the same idempotency key, with backoff; reconnects when the connection is gone.
 */
export async function runWorker(
  name: string,
  connect: Connect,
  record: LoadRecord,
  stopped: () => boolean,
  pauseMs: number,
): Promise<void> {
  let client: Client | undefined;
  let n = 0;
  const reconnect = async () => {
    await client?.close().catch(() => {});
    client = await connect().catch(() => undefined);
  };
  await reconnect();
  while (!stopped()) {
    const key = `${name}-${++n}`;
    const firstTry = performance.now();
    let failedOnce = false;
    for (let attempt = 0; ; attempt++) {
      const start = performance.now();
      const outcome = await addTask(client, key);
      record.attempts.push({ worker: name, start, end: performance.now(), ...outcome });
      if (outcome.ok) {
        record.acknowledged.set(key, outcome.taskId!);
        if (failedOnce) record.failed.push({ key, recovered: true });
        break;
      }
      failedOnce = true;
      if (performance.now() - firstTry > RETRY_FOR_MS) {
        record.failed.push({ key, recovered: false });
        break;
      }
      if (outcome.code === 'transport' || outcome.code === 'session_not_found') await reconnect();
      await sleep(Math.min(500, 25 * 2 ** Math.min(attempt, 5)));
    }
    await sleep(pauseMs);
  }
  await client?.close().catch(() => {});
}

/**
 * Right after a fault is removed: writes as fast as answers come until one succeeds. The time from
 * `clearedAt` to the end of that call is the recovery time.
 */
export async function probeRecovery(
  connect: Connect,
  clearedAt: number,
  label: string,
): Promise<number | undefined> {
  let client: Client | undefined;
  let n = 0;
  while (performance.now() - clearedAt < RETRY_FOR_MS) {
    client ??= await connect().catch(() => undefined);
    const outcome = await addTask(client, `probe-${label}-${++n}`);
    if (outcome.ok) {
      await client?.close().catch(() => {});
      return performance.now() - clearedAt;
    }
    if (outcome.code === 'transport') {
      await client?.close().catch(() => {});
      client = undefined;
    }
    await sleep(1);
  }
  await client?.close().catch(() => {});
  return undefined;
}
