/**
 * Scenario 8: the task board over Streamable HTTP at 16 clients on SQLite (one instance) and on
 * PostgreSQL (one instance, and two instances on one schema with the clients' calls alternating
 * between them). Every call commits to the one board document, so two instances race for its head:
 * a call that lost more often than the server retries (`conflict_retries_exhausted`, nothing
 * committed) is sent again and counted, so the rate is of committed calls.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { PostgresStore } from 'coremcp';
import pg from 'pg';
import type { BenchConfig, Measurement, Scenario } from './scenario.js';
import {
  BOARD_TASKS,
  type HttpServer,
  processStats,
  seedBoard,
  seedTaskboard,
  startCoremcpHttp,
  stop,
} from './servers.js';
import { summarizeLatencies } from './stats.js';
import { httpChannel, type RpcChannel, type RpcResponse } from './transports.js';
import type { Target } from './wire.js';
import { measure } from './wire.js';
import { taskboardClaims } from './workloads.js';

const CLI = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
/** The PostgreSQL the bench uses (the tests' server), or `$COREMCP_BENCH_PG_URL`. */
const PG_URL = process.env.COREMCP_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const PG_CLIENTS = 16;
const RATE = { limits: { rate: { perSecond: 100_000, burst: 1_000_000 } } };

function errorCode(response: RpcResponse): string | undefined {
  const content = response.result?.structuredContent as { error?: { code?: string } } | undefined;
  return response.result?.isError === true ? content?.error?.code : undefined;
}

/**
 * Sends each request to the next channel in turn (2026-07-28 requests need no affinity), again when
 * the server answered `conflict_retries_exhausted`; `resent` counts those.
 */
function spreadChannel(channels: RpcChannel[], counter: { resent: number }): RpcChannel {
  let next = 0;
  return {
    async request(method, params) {
      for (;;) {
        const channel = channels[next++ % channels.length]!;
        const response = await channel.request(method, params);
        if (errorCode(response) !== 'conflict_retries_exhausted') return response;
        counter.resent++;
      }
    },
    async close() {
      await Promise.all(channels.map((c) => c.close()));
    },
  };
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
  });
  return stdout.trim();
}

function seedOnPostgres(url: string): Promise<void> {
  return seedBoard(new PostgresStore({ url }));
}

/** Commits whose notification latency one run measures. */
const NOTIFY_SAMPLES = 50;

async function sdkClient(url: string, key: string): Promise<Client> {
  const client = new Client(
    { name: 'coremcp-bench', version: '1.0.0' },
    { versionNegotiation: { mode: { pin: '2026-07-28' } } },
  );
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

/**
 * A follower on B (`subscriptions/listen` on the board, the real SDK client) and a writer on A: the
 * time from the writer sending a commit to B's follower hearing its revision (the whole call
 * included), one commit at a time, and how often B heard it before A's answer reached the writer.
 */
async function notificationLatency(a: HttpServer, b: HttpServer, key: string): Promise<Measurement> {
  const writer = await sdkClient(a.url, key);
  const follower = await sdkClient(b.url, key);
  const heard = new Map<number, number>();
  const waiting = new Map<number, () => void>();
  follower.setNotificationHandler('notifications/resources/updated', (n) => {
    const revision = (n.params as { _meta?: Record<string, unknown> })._meta?.['coremcp/revision'];
    if (typeof revision !== 'number') return;
    heard.set(revision, performance.now());
    waiting.get(revision)?.();
  });
  const subscription = await follower.listen({ resourceSubscriptions: ['coremcp://state/board'] });
  const samples = new Float64Array(NOTIFY_SAMPLES);
  let beforeAnswer = 0;
  try {
    for (let i = 0; i < NOTIFY_SAMPLES; i++) {
      const sent = performance.now();
      const result = await writer.callTool({
        name: i % 2 === 0 ? 'task.claim' : 'task.release',
        arguments: { id: `T-${BOARD_TASKS}` },
      });
      const revision = result._meta?.['coremcp/revision'];
      if (result.isError || typeof revision !== 'number')
        throw new Error(`notify probe: ${JSON.stringify(result)}`);
      if (heard.has(revision)) beforeAnswer++;
      else {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`B never heard revision ${revision}`)), 10_000);
          waiting.set(revision, () => {
            clearTimeout(timer);
            resolve();
          });
        });
        waiting.delete(revision);
      }
      samples[i] = heard.get(revision)! - sent;
    }
  } finally {
    await subscription.close();
    await writer.close();
    await follower.close();
  }
  const { p50, p99, max } = summarizeLatencies(samples, NOTIFY_SAMPLES);
  return {
    'notify.p50Ms': p50,
    'notify.p99Ms': p99,
    'notify.maxMs': max,
    'notify.beforeAnswerShare': beforeAnswer / NOTIFY_SAMPLES,
  };
}

export async function postgresScenario(dir: string, config: BenchConfig): Promise<Scenario> {
  const schema = `bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`the PostgreSQL scenario needs PostgreSQL at ${PG_URL}: ${(error as Error).message}`);
  }
  await admin.end();
  const url = `${PG_URL}?schema=${schema}`;
  const sqliteDir = join(dir, 'pg-sqlite');
  const pgDir = join(dir, 'pg');
  mkdirSync(pgDir, { recursive: true });
  await seedTaskboard(sqliteDir);
  await seedOnPostgres(url);
  writeFileSync(join(pgDir, 'bench.config.json'), JSON.stringify(RATE));
  const sqliteKey = await cli([
    'keys',
    'create',
    '--name',
    'bench',
    '--role',
    'admin',
    '--data-dir',
    sqliteDir,
  ]);
  const pgKey = await cli(['keys', 'create', '--name', 'bench', '--role', 'admin'], {
    COREMCP_STORE_URL: url,
  });
  const servers: HttpServer[] = [];
  const start = async (dataDir: string, extra: string[]) => {
    const server = await startCoremcpHttp(dataDir, { args: extra });
    servers.push(server);
    return server;
  };
  const sqlite = await start(sqliteDir, []);
  const [a, b] = await Promise.all([start(pgDir, ['--store', url]), start(pgDir, ['--store', url])]);
  const counter = { resent: 0 };
  const target = (group: HttpServer[], key: string): Target => ({
    id: 'coremcp',
    child: group[0]!.child,
    workload: taskboardClaims,
    channel: async (concurrency) =>
      spreadChannel(
        group.map((s) => httpChannel(s.url, { sockets: Math.ceil(concurrency / group.length), bearer: key })),
        counter,
      ),
    release: async () => {},
  });
  const cases: Array<{ id: string; target: Target; group: HttpServer[] }> = [
    { id: 'sqlite1', target: target([sqlite], sqliteKey), group: [sqlite] },
    { id: 'pg1', target: target([a!], pgKey), group: [a!] },
    { id: 'pg2', target: target([a!, b!], pgKey), group: [a!, b!] },
  ];
  return {
    name: 'postgres',
    cases: [
      {
        key: `pg.${PG_CLIENTS}`,
        run: async (round) => {
          const out: Measurement = {};
          const order = round % 2 === 0 ? cases : [...cases].reverse();
          for (const c of order) {
            let cpuBefore: number[] = [];
            const m = await measure(c.target, PG_CLIENTS, config, `postgres ${c.id}`, {
              onMeasureStart: () => {
                counter.resent = 0;
                cpuBefore = c.group.map((s) => processStats(s.child.pid!).cpuMs);
              },
            });
            const cpu = c.group.reduce(
              (sum, s, i) => sum + processStats(s.child.pid!).cpuMs - cpuBefore[i]!,
              0,
            );
            for (const [name, value] of Object.entries(m)) out[`${c.id}.${name}`] = value;
            // Summed over every instance of the case.
            out[`${c.id}.serverCpuMsPerCall`] = cpu / m.calls!;
            out[`${c.id}.resentPer1000`] = (1000 * counter.resent) / m.calls!;
          }
          // The load generator's clients work T-1…T-16; the probe's task is the board's last.
          Object.assign(out, await notificationLatency(a!, b!, pgKey));
          return out;
        },
      },
    ],
    close: async () => {
      await Promise.all(servers.map((s) => stop(s.child)));
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    },
  };
}
