/**
 * docs/deploy/nginx.conf as written (ports changed) in front of two `coremcp serve` processes on one
 * PostgreSQL schema: 2026-07-28 calls go to either instance and lose no update; a 2025-11-25 session
 * stays on the instance that holds it, and hears commits made through the other.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshSchema } from './helpers/postgres.js';
import { httpClient, runCli, type ServerProcess, startServerProcess, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/wait.js';

const APP = fileURLToPath(new URL('./fixtures/counter-app.ts', import.meta.url));
const CONF = fileURLToPath(new URL('../docs/deploy/nginx.conf', import.meta.url));
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((path) => existsSync(path));

const tmp = tempDir();
const clients: Client[] = [];
let servers: ServerProcess[] = [];
let nginx: ChildProcess | undefined;
let nginxLog = '';
let front: string;
let key: string;
let dropSchema: () => Promise<void>;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** How many commits an instance made, from its own /metrics. */
async function commitsMadeBy(server: ServerProcess): Promise<number> {
  const response = await fetch(`${new URL(server.url).origin}/metrics`, {
    headers: { Authorization: `Bearer ${key}` },
  });
  const text = await response.text();
  return [...text.matchAll(/^coremcp_state_commits_total(?:\{[^}]*\})? (\d+)/gm)].reduce(
    (sum, m) => sum + Number(m[1]),
    0,
  );
}

async function client(era: 'modern' | 'legacy'): Promise<Client> {
  const c = await httpClient(front, key, era);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  expect(NGINX, 'nginx is not installed (.ci/run installs it from Debian)').toBeDefined();
  const fresh = await freshSchema('deploy');
  dropSchema = fresh.drop;
  const env = { COREMCP_STORE_URL: fresh.url };
  const made = await runCli(['keys', 'create', '--name', 'admin', '--role', 'admin'], { env, cwd: tmp.dir });
  expect(made.code, made.stderr).toBe(0);
  key = made.stdout.trim();
  servers = await Promise.all([
    startServerProcess([APP], { cwd: tmp.dir, env }),
    startServerProcess([APP], { cwd: tmp.dir, env }),
  ]);
  const listen = await freePort();
  const [a, b] = servers.map((s) => new URL(s.url).host);
  const conf = readFileSync(CONF, 'utf8')
    .replace('127.0.0.1:3001', a!)
    .replace('127.0.0.1:3002', b!)
    .replace('127.0.0.1:8080', `127.0.0.1:${listen}`)
    .replace('/tmp/coremcp-nginx.pid', join(tmp.dir, 'nginx.pid'));
  const path = join(tmp.dir, 'nginx.conf');
  writeFileSync(path, conf);
  nginx = spawn(NGINX!, ['-p', tmp.dir, '-c', path, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  nginx.stderr!.on('data', (chunk: Buffer) => {
    nginxLog += chunk.toString();
  });
  front = `http://127.0.0.1:${listen}/mcp`;
  await waitFor(
    async () => {
      if (nginx!.exitCode !== null) throw new Error(`nginx exited: ${nginxLog}`);
      return fetch(`http://127.0.0.1:${listen}/healthz`)
        .then((r) => r.ok)
        .catch(() => false);
    },
    { message: 'nginx to answer' },
  );
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  if (nginx && nginx.exitCode === null) {
    const exited = new Promise((resolve) => nginx!.once('exit', resolve));
    nginx.kill('SIGQUIT');
    await exited;
  }
  await Promise.all(servers.map((s) => s.stop()));
  await dropSchema?.();
  tmp.remove();
});

describe('two instances behind docs/deploy/nginx.conf', () => {
  it('spreads 2026-07-28 calls over both instances and loses no update', async () => {
    const writers = await Promise.all(Array.from({ length: 6 }, () => client('modern')));
    let exhausted = 0;
    await Promise.all(
      writers.map(async (w) => {
        for (let i = 0; i < 10; ) {
          const result = await w.callTool({ name: 'counter.bump', arguments: {} });
          if (!result.isError) i++;
          else if ((structured(result).error as { code?: string })?.code === 'conflict_retries_exhausted')
            exhausted++;
          else throw new Error(JSON.stringify(result));
        }
      }),
    );
    const read = await (await client('modern')).callTool({ name: 'counter.read', arguments: {} });
    expect(structured(read)).toMatchObject({ value: 60 });
    expect(exhausted).toBeLessThan(60);
    // Both instances made some of the commits: nginx spread the requests that carry the version.
    const commits = await Promise.all(servers.map((s) => commitsMadeBy(s)));
    expect(commits.every((n) => n > 0)).toBe(true);
    expect(commits.reduce((x, y) => x + y, 0)).toBe(60);
  });

  it('keeps a 2025-11-25 session on its instance, hearing commits made through the other', async () => {
    const follower = await client('legacy');
    const heard: number[] = [];
    follower.setNotificationHandler('notifications/resources/updated', (n) => {
      heard.push((n.params as { _meta?: Record<string, unknown> })._meta?.['coremcp/revision'] as number);
    });
    await follower.subscribeResource({ uri: 'coremcp://state/counter' });
    // Calls in the session keep reaching the instance that holds it.
    for (let i = 0; i < 10; i++) {
      expect(structured(await follower.callTool({ name: 'counter.read', arguments: {} }))).toHaveProperty(
        'value',
      );
    }
    const writers = await Promise.all(Array.from({ length: 4 }, () => client('modern')));
    const revisions = await Promise.all(
      writers.map(async (w) => {
        for (;;) {
          const result = await w.callTool({ name: 'counter.bump', arguments: {} });
          if (!result.isError) return result._meta?.['coremcp/revision'] as number;
        }
      }),
    );
    await waitFor(() => revisions.every((r) => heard.includes(r)), {
      message: 'the session to hear every commit, whichever instance made it',
    });
  });
});
