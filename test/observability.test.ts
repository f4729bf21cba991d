/**
 * Observability: Prometheus metrics, health endpoints, command logs on stderr, and W3C trace context
 * carried into logs and the audit trail. Real SQLite files, real HTTP, real SDK clients, the built CLI.
 */
import { spawn } from 'node:child_process';
import { get } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type Logger, SqliteStore } from 'coremcp';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import { defineApp } from '../src/mcp/app.js';
import type { HealthReport } from '../src/observability/health.js';
import {
  CLI,
  type Era,
  httpClient,
  type InProcessServer,
  runCli,
  startServerProcess,
} from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** A real pino logger writing JSON lines into an array. */
function capturingLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const logger = pino({ level: 'info' }, sink) as unknown as Logger;
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((line) => line.length > 0)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** GETs a URL with a Host header of our choosing (fetch does not let a caller set it). */
function statusWithHost(url: string, host: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    get(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode);
    }).on('error', reject);
  });
}

/** One sample's value from Prometheus text, or undefined when the series is absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

interface ObservedServer extends InProcessServer {
  base: string;
  log: () => Array<Record<string, unknown>>;
}

describe('metrics', () => {
  const tmp = tempDir();
  let server: ObservedServer;
  let adminKey: string;

  beforeAll(async () => {
    const { logger, lines } = capturingLogger();
    const { startServer } = await import('coremcp');
    const running = await startServer({
      app: taskboard,
      store: new SqliteStore({ path: join(tmp.dir, 'coremcp.db') }),
      metrics: true,
      logger,
      http: { port: 0 },
      announceFirstKey: false,
    });
    const http = running.http!;
    server = {
      core: running.core,
      surface: running.surface,
      http,
      url: http.url,
      base: http.url.replace(/\/mcp$/, ''),
      log: lines,
      key: async (name, role) => (await running.core.keys!.create(name, role)).key,
      close: () => running.close(),
    };
    adminKey = await server.key('ops', 'admin');
  });
  afterAll(async () => {
    await server.close();
    tmp.remove();
  });

  const scrape = async (key: string | null = adminKey) =>
    fetch(`${server.base}/metrics`, key ? { headers: { authorization: `Bearer ${key}` } } : {});

  it('counts calls by command and outcome, times them, and counts commits and revisions', async () => {
    const member = await server.key('agent', 'member');
    const client = await httpClient(server.url, member);
    try {
      await client.callTool({ name: 'task.add', arguments: { title: 'one' } });
      await client.callTool({ name: 'task.add', arguments: { title: 'two' } });
      const refused = await client.callTool({ name: 'task.claim', arguments: { id: 'T-999' } });
      expect(refused.isError).toBe(true);
      await client.callTool({ name: 'task.add', arguments: {} });
      await expect(client.callTool({ name: 'no.such.tool', arguments: {} })).rejects.toThrow();
    } finally {
      await client.close();
    }
    const response = await scrape();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(sample(text, 'coremcp_commands_total{command="task.add",outcome="ok"}')).toBe(2);
    expect(sample(text, 'coremcp_command_duration_seconds_count{command="task.add",outcome="ok"}')).toBe(2);
    expect(
      sample(text, 'coremcp_command_duration_seconds_sum{command="task.add",outcome="ok"}'),
    ).toBeGreaterThan(0);
    expect(sample(text, 'coremcp_commands_total{command="task.claim",outcome="task_not_found"}')).toBe(1);
    expect(sample(text, 'coremcp_commands_total{command="task.add",outcome="invalid_input"}')).toBe(1);
    // Unregistered names never become label values.
    expect(sample(text, 'coremcp_commands_total{command="unknown",outcome="unknown_command"}')).toBe(1);
    expect(text).not.toContain('no.such.tool');
    expect(sample(text, 'coremcp_state_commits_total{doc="board"}')).toBe(2);
    expect(sample(text, 'coremcp_state_revision{doc="board"}')).toBe(2);
    expect(sample(text, 'coremcp_state_conflicts_total')).toBe(0);
    expect(sample(text, 'coremcp_recovery_duration_seconds')).toBeGreaterThan(0);
    expect(sample(text, 'coremcp_active_subscriptions')).toBe(0);
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    // No principals or ids in labels.
    expect(text).not.toContain('agent');
    expect(text).not.toContain('T-1');
  });

  it('asks for credentials with the admin.metrics permission, and counts refused credentials', async () => {
    expect((await scrape(null)).status).toBe(401);
    expect((await scrape('cmcp_notakey')).status).toBe(401);
    const member = await server.key('member-scraper', 'member');
    expect((await scrape(member)).status).toBe(403);
    const text = await (await scrape()).text();
    expect(sample(text, 'coremcp_auth_failures_total{reason="missing_token"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'coremcp_auth_failures_total{reason="malformed"}')).toBeGreaterThanOrEqual(1);
  });

  it('counts resource subscriptions while they are open', async () => {
    const client = await httpClient(server.url, adminKey, 'legacy');
    try {
      await client.subscribeResource({ uri: 'coremcp://state/board' });
      const open = await (await scrape()).text();
      expect(sample(open, 'coremcp_active_subscriptions')).toBe(1);
      await client.unsubscribeResource({ uri: 'coremcp://state/board' });
      const closed = await (await scrape()).text();
      expect(sample(closed, 'coremcp_active_subscriptions')).toBe(0);
    } finally {
      await client.close();
    }
  });

  it('keeps a registry per core, so two cores in one process do not share series', async () => {
    const { createCore } = await import('coremcp');
    const other = await createCore({ app: taskboard, metrics: true });
    try {
      const text = await other.metrics!.render();
      expect(sample(text, 'coremcp_commands_total{command="task.add",outcome="ok"}')).toBeUndefined();
    } finally {
      await other.close();
    }
  });
});

describe('health', () => {
  const tmp = tempDir();
  afterAll(() => tmp.remove());

  it('answers /healthz without credentials', async () => {
    const { startServer } = await import('coremcp');
    const server = await startServer({ app: taskboard, http: { port: 0 }, announceFirstKey: false });
    const http = server.http!;
    try {
      const response = await fetch(http.url.replace(/\/mcp$/, '/healthz'));
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: 'healthy' });
      expect((await fetch(http.url.replace(/\/mcp$/, '/metrics'))).status).toBe(404);
      expect((await fetch(http.url.replace(/\/mcp$/, '/healthz'), { method: 'POST' })).status).toBe(405);
    } finally {
      await server.close();
    }
  });

  it('turns /readyz to 503 while the store is unreachable, and back to 200 when it returns', async () => {
    const { startServer } = await import('coremcp');
    const path = join(tmp.dir, 'ready.db');
    const server = await startServer({
      app: taskboard,
      store: new SqliteStore({ path }),
      metrics: true,
      http: { port: 0 },
      announceFirstKey: false,
    });
    const { core } = server;
    const http = server.http!;
    const readyz = http.url.replace(/\/mcp$/, '/readyz');
    try {
      const ready = await fetch(readyz);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({
        status: 'healthy',
        checks: { store: { status: 'healthy' }, migrations: { status: 'healthy' } },
      });

      await core.store.close();
      const down = await fetch(readyz);
      expect(down.status).toBe(503);
      const text = await down.text();
      expect(JSON.parse(text)).toMatchObject({
        status: 'unhealthy',
        checks: { store: { status: 'unhealthy', detail: 'sqlite store unreachable' } },
      });
      expect(typeof (JSON.parse(text) as HealthReport).checks.store?.durationMs).toBe('number');
      // No file paths, no driver messages.
      expect(text).not.toContain(tmp.dir);
      expect(text).not.toContain('not open');
      expect(
        sample(await core.metrics!.render(), 'coremcp_store_errors_total{kind="ping"}'),
      ).toBeGreaterThanOrEqual(1);

      await core.store.open();
      const back = await fetch(readyz);
      expect(back.status).toBe(200);
      expect(((await back.json()) as HealthReport).status).toBe('healthy');
    } finally {
      await server.close();
    }
  });

  it("runs the app's checks: degraded stays 200, a throw is unhealthy without its message", async () => {
    const { createCore } = await import('coremcp');
    let upstream: 'healthy' | 'degraded' | 'fail' = 'degraded';
    const app = defineApp({
      name: 'checked',
      documents: { default: {} },
      healthChecks: {
        upstream: () => {
          if (upstream === 'fail') throw new Error('connect ECONNREFUSED 10.0.0.7:5432 password=hunter2');
          return upstream === 'degraded' ? { status: 'degraded', detail: 'slow upstream' } : undefined;
        },
      },
    });
    const core = await createCore({ app });
    try {
      expect(await core.health.check()).toMatchObject({
        status: 'degraded',
        checks: { store: { status: 'healthy' }, upstream: { status: 'degraded', detail: 'slow upstream' } },
      });
      upstream = 'fail';
      const failed = await core.health.check();
      expect(failed).toMatchObject({ status: 'unhealthy', checks: { upstream: { status: 'unhealthy' } } });
      expect(JSON.stringify(failed)).not.toContain('hunter2');
      upstream = 'healthy';
      expect((await core.health.check()).status).toBe('healthy');
      core.health.add('late', () => 'unhealthy');
      expect((await core.health.check()).checks.late?.status).toBe('unhealthy');
      expect(() => core.health.add('Bad Name', () => true)).toThrow(TypeError);
    } finally {
      await core.close();
    }
  });
});

describe('logs and trace context', () => {
  it('writes one line per command with the traceparent from _meta or the HTTP header, also in the audit', async () => {
    const tmp = tempDir();
    const { logger, lines } = capturingLogger();
    const { startServer } = await import('coremcp');
    const server = await startServer({
      app: taskboard,
      store: new SqliteStore({ path: join(tmp.dir, 'db') }),
      logger,
      http: { port: 0 },
      announceFirstKey: false,
    });
    const { core } = server;
    const http = server.http!;
    const key = (await core.keys!.create('tracer', 'member')).key;
    try {
      for (const era of ['modern', 'legacy'] as Era[]) {
        const client = await httpClient(http.url, key, era);
        try {
          await client.callTool({
            name: 'task.add',
            arguments: { title: era },
            _meta: { traceparent: TRACEPARENT },
          });
        } finally {
          await client.close();
        }
      }
      const fromHeader = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const { Client, StreamableHTTPClientTransport } = await import('@modelcontextprotocol/client');
      const headerClient = new Client(
        { name: 't', version: '1' },
        { versionNegotiation: { mode: { pin: '2026-07-28' } } },
      );
      await headerClient.connect(
        new StreamableHTTPClientTransport(new URL(http.url), {
          requestInit: { headers: { authorization: `Bearer ${key}`, traceparent: fromHeader } },
        }),
      );
      await headerClient.callTool({ name: 'task.add', arguments: { title: 'header' } });
      await headerClient.callTool({
        name: 'task.add',
        arguments: { title: 'bad' },
        _meta: { traceparent: 'not-a-trace' },
      });
      await headerClient.close();

      const commandLines = lines().filter((l) => l.msg === 'command');
      expect(commandLines).toHaveLength(4);
      for (const line of commandLines) {
        expect(line).toMatchObject({
          command: 'task.add',
          outcome: 'ok',
          principal: 'tracer',
          committed: true,
        });
        expect(typeof line.requestId).toBe('string');
        expect(typeof line.durationMs).toBe('number');
        expect(typeof line.revision).toBe('number');
      }
      expect(commandLines.slice(0, 2).map((l) => l.traceparent)).toEqual([TRACEPARENT, TRACEPARENT]);
      // The _meta value wins over the header; a malformed one is dropped, and the header is used.
      expect(commandLines[2]!.traceparent).toBe(fromHeader);
      expect(commandLines[3]!.traceparent).toBe(fromHeader);

      const audit = (await core.store.readAudit({})).filter((r) => r.command === 'task.add');
      expect(audit.map((r) => r.traceparent)).toEqual([TRACEPARENT, TRACEPARENT, fromHeader, fromHeader]);
      expect(audit.map((r) => r.requestId)).toEqual(commandLines.map((l) => l.requestId));
    } finally {
      await server.close();
      tmp.remove();
    }
  });

  it('logs to stderr only, never a key, whether it came in the Authorization header or an input', async () => {
    const tmp = tempDir();
    const created = await runCli([
      'keys',
      'create',
      '--name',
      'carol',
      '--role',
      'admin',
      '--data-dir',
      tmp.dir,
    ]);
    const key = created.stdout.trim();
    expect(key).toMatch(/^cmcp_/);
    const server = await startServerProcess(['--data-dir', tmp.dir, '--log-level', 'debug']);
    try {
      const client = await httpClient(server.url, key);
      await client.callTool({
        name: 'task.add',
        arguments: { title: 'rotate', description: `old key: ${key}` },
        _meta: { traceparent: TRACEPARENT },
      });
      await client.callTool({ name: 'task.claim', arguments: { id: key } });
      await client.close();
      await fetch(server.url, { method: 'POST', headers: { authorization: `Bearer ${key}x` }, body: '{}' });
    } finally {
      await server.stop();
    }
    const stderr = server.stderr();
    expect(stderr).not.toContain(key);
    expect(stderr).not.toContain(key.slice(-20));
    const lines = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === 'command' && l.command === 'task.add')).toMatchObject({
      principal: 'carol',
      outcome: 'ok',
      revision: 1,
      traceparent: TRACEPARENT,
    });
    // The key as a task id fails validation; the line says so without repeating the input.
    expect(lines.find((l) => l.msg === 'command' && l.command === 'task.claim')).toMatchObject({
      outcome: 'invalid_input',
    });
    tmp.remove();
  });

  it('keeps stdout to the protocol in stdio mode, with command lines on stderr', async () => {
    const tmp = tempDir();
    // With a metrics listener too: it must not keep the server alive once the client closes stdin.
    const child = spawn(
      process.execPath,
      [CLI, 'serve', '--stdio', '--metrics', '127.0.0.1:0', '--log-level', 'debug', '--data-dir', tmp.dir],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const replied = new Promise<void>((resolve) => {
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString();
        if (stdout.includes('"id":2')) resolve();
      });
    });
    const send = (message: object) => child.stdin.write(`${JSON.stringify(message)}\n`);
    send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'task.add', arguments: { title: 'over stdio' }, _meta: { traceparent: TRACEPARENT } },
    });
    await replied;
    child.stdin.end();
    await new Promise((resolve) => child.once('exit', resolve));
    for (const line of stdout.split('\n').filter((l) => l.length > 0)) {
      expect(JSON.parse(line)).toMatchObject({ jsonrpc: '2.0' });
    }
    const logged = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'command');
    expect(logged).toMatchObject({ command: 'task.add', outcome: 'ok', traceparent: TRACEPARENT });
    tmp.remove();
  });
});

describe('coremcp health and --metrics', () => {
  it('serves metrics and readiness on a loopback listener and exits 0 only when healthy', async () => {
    const tmp = tempDir();
    const server = await startServerProcess(['--data-dir', tmp.dir, '--metrics', '127.0.0.1:0']);
    try {
      // The metrics listener starts after the MCP one announces itself.
      let base: string | undefined;
      for (let i = 0; i < 100 && base === undefined; i++) {
        base = /metrics at (http:\/\/\S+)\/metrics/.exec(server.stderr())?.[1];
        if (base === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(base).toBeDefined();
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('coremcp_recovery_duration_seconds');
      // A web page reaching the port through DNS rebinding names another host.
      expect(await statusWithHost(`${base}/metrics`, 'evil.example')).toBe(403);
      expect(await statusWithHost(`${base}/metrics`, 'localhost')).toBe(200);

      const healthy = await runCli(['health', '--url', server.url]);
      expect(healthy.code).toBe(0);
      expect(JSON.parse(healthy.stdout)).toMatchObject({
        status: 'healthy',
        checks: { store: { status: 'healthy' } },
      });
      const viaListener = await runCli(['health', '--url', `${base}/readyz`]);
      expect(viaListener.code).toBe(0);
    } finally {
      await server.stop();
    }
    const gone = await runCli(['health', '--url', server.url, '--timeout', '2']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('unhealthy');
    const refused = await runCli(['serve', '--metrics', '0.0.0.0:9464', '--data-dir', tmp.dir]);
    expect(refused.code).toBe(2);
    tmp.remove();
  });
});
