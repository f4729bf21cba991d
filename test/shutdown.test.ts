/**
 * Graceful shutdown of real `coremcp serve` processes: SIGTERM lets calls in flight finish and
 * commit, refuses new ones cleanly, ends event streams and exits 0; past the deadline a call is
 * cancelled and commits nothing; stdio answers what it read before stdin closed.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CLI,
  httpClient,
  runCli,
  type ServerProcess,
  startServerProcess,
  structured,
} from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/wait.js';

const APP = fileURLToPath(new URL('./fixtures/slow-app.ts', import.meta.url));
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serverIn(dir: string): Promise<ServerProcess & { key: string }> {
  const server = await startServerProcess([APP, '--data-dir', dir, '--config', join(dir, 'config.json')]);
  cleanups.push(() => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
  });
  return { ...server, key: server.firstKey! };
}

function exited(server: ServerProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (server.child.exitCode !== null) return resolve(server.child.exitCode);
    server.child.once('exit', (code) => resolve(code));
  });
}

async function doneTags(dir: string): Promise<string[]> {
  const got = await runCli(['state', 'get', '--doc', 'log', '--data-dir', dir]);
  expect(got.code).toBe(0);
  return Object.keys((JSON.parse(got.stdout) as { value: { done: object } }).value.done).sort();
}

describe('graceful shutdown', () => {
  it('on SIGTERM lets calls in flight finish and commit, refuses new ones, and exits 0', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    writeFileSync(join(tmp.dir, 'config.json'), JSON.stringify({ shutdownSeconds: 20 }));
    const server = await serverIn(tmp.dir);
    const clients = await Promise.all([1, 2, 3, 4, 5].map(() => httpClient(server.url, server.key)));
    const calls = clients.map((client, i) =>
      client.callTool({ name: 'slow.write', arguments: { tag: `t${i}`, ms: 1500 } }),
    );
    await waitFor(() => (server.stderr().match(/slow\.write started/g) ?? []).length === 5, {
      message: 'all five calls to be running',
    });
    server.child.kill('SIGTERM');
    // A call arriving now is refused cleanly: 503 shutting_down, or no connection at all.
    await waitFor(
      async () => {
        const late = await fetch(server.url, {
          method: 'POST',
          headers: { authorization: `Bearer ${server.key}`, 'content-type': 'application/json' },
          body: '{}',
        }).catch(() => undefined);
        if (late === undefined) return true;
        const text = await late.text();
        return (
          late.status === 503 && late.headers.get('retry-after') === '1' && text.includes('shutting_down')
        );
      },
      { message: 'new requests to be refused' },
    );
    const results = await Promise.all(calls);
    for (const [i, result] of results.entries()) {
      expect(result.isError).toBeFalsy();
      expect(structured(result)).toEqual({ tag: `t${i}` });
    }
    expect(await exited(server)).toBe(0);
    expect(await doneTags(tmp.dir)).toEqual(['t0', 't1', 't2', 't3', 't4']);
  });

  it('cancels a call still running at the deadline: it commits nothing, and the server exits 0 in time', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    writeFileSync(join(tmp.dir, 'config.json'), JSON.stringify({ shutdownSeconds: 1 }));
    const server = await serverIn(tmp.dir);
    const client = await httpClient(server.url, server.key);
    const quick = await client.callTool({ name: 'slow.write', arguments: { tag: 'quick', ms: 0 } });
    expect(quick.isError).toBeFalsy();
    const slow = client.callTool({ name: 'slow.write', arguments: { tag: 'slow', ms: 30_000 } }).then(
      (r) => r,
      (e: unknown) => e,
    );
    await waitFor(() => server.stderr().includes('"tag":"slow"'), { message: 'the slow call to be running' });
    const signalled = Date.now();
    server.child.kill('SIGTERM');
    expect(await exited(server)).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(5000);
    const outcome = (await slow) as { isError?: boolean };
    expect(outcome instanceof Error || outcome.isError === true).toBe(true);
    expect(await doneTags(tmp.dir)).toEqual(['quick']);
  });

  it('ends open listen streams on SIGTERM instead of waiting for them', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    writeFileSync(join(tmp.dir, 'config.json'), JSON.stringify({ shutdownSeconds: 30 }));
    const server = await serverIn(tmp.dir);
    const client = await httpClient(server.url, server.key);
    const subscription = await client.listen({ resourceSubscriptions: ['coremcp://state/log'] });
    const signalled = Date.now();
    server.child.kill('SIGTERM');
    expect(await exited(server)).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(5000);
    await subscription.close().catch(() => {});
  });

  it('over stdio, answers the calls it read before stdin closed, then exits 0', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const child = spawn(
      process.execPath,
      [CLI, 'serve', APP, '--stdio', '--log-level', 'warn', '--data-dir', tmp.dir],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    cleanups.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const send = (message: object) => child.stdin.write(`${JSON.stringify(message)}\n`);
    send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    await waitFor(() => out.includes('"id":1'), { message: 'the initialize answer' });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'slow.write', arguments: { tag: 'eof', ms: 700 } },
    });
    child.stdin.end();
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    const answer = out
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { id?: number; result?: { structuredContent?: unknown } })
      .find((m) => m.id === 2);
    expect(answer?.result?.structuredContent).toEqual({ tag: 'eof' });
    expect(await doneTags(tmp.dir)).toEqual(['eof']);
  });
});
