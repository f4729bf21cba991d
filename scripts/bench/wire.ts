/**
 * Scenarios 3, 4 and 6: tool calls over a transport to coremcp (task board, durable commits) and to
 * the bare SDK counter server, in the same run with the same generator, alternating which goes first
 * each round. Memory of each server process is read at idle and after the load.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { type LoadOptions, measurementOf, runLoad } from './load.js';
import type { BenchConfig, Measurement, Scenario } from './scenario.js';
import {
  createApiKey,
  processStats,
  seedTaskboard,
  startBareHttp,
  startBareStdio,
  startCoremcpHttp,
  startCoremcpStdio,
  stop,
} from './servers.js';
import { httpChannel, type RpcChannel, stdioChannel } from './transports.js';
import { bareCounter, taskboardClaims, type Workload } from './workloads.js';

export type Transport = 'http' | 'stdio';

/** A server under test: its process, and how to open a channel to it for `concurrency` workers. */
export interface Target {
  /** `sqlite`: the bare SDK server whose tool persists its change in SQLite itself. */
  id: 'coremcp' | 'bare' | 'sqlite';
  child: ChildProcess;
  workload: Workload;
  channel(concurrency: number): Promise<RpcChannel>;
  /** Closes channels the target keeps for reuse (stdio). */
  release(): Promise<void>;
}

/** Where each server writes its V8 CPU profile when it exits (`--profile`, the bench's profile section). */
export interface ProfileDirs {
  coremcp?: string;
  bare?: string;
}

async function httpTargets(dir: string, profiles: ProfileDirs = {}): Promise<Target[]> {
  await seedTaskboard(dir);
  const key = await createApiKey(dir);
  const [coremcp, bare, sqlite] = await Promise.all([
    startCoremcpHttp(dir, profiles.coremcp ? { cpuProfDir: profiles.coremcp } : {}),
    startBareHttp(profiles.bare ? { cpuProfDir: profiles.bare } : {}),
    startBareHttp({ sqlite: join(dir, 'sdk-sqlite.db') }),
  ]);
  const target = (id: Target['id'], server: typeof coremcp, workload: Workload, bearer?: string): Target => ({
    id,
    child: server.child,
    workload,
    channel: async (concurrency) =>
      httpChannel(server.url, { sockets: concurrency, ...(bearer ? { bearer } : {}) }),
    release: async () => {},
  });
  return [
    target('coremcp', coremcp, taskboardClaims, key),
    target('bare', bare, bareCounter),
    target('sqlite', sqlite, bareCounter),
  ];
}

async function stdioTargets(dir: string, profiles: ProfileDirs = {}): Promise<Target[]> {
  await seedTaskboard(dir);
  const coremcp = startCoremcpStdio(dir, profiles.coremcp);
  const bare = startBareStdio(undefined, profiles.bare);
  const sqlite = startBareStdio(join(dir, 'sdk-sqlite.db'));
  // One connection per server for the whole bench: the handshake happens once, as for a real client.
  const channels = await Promise.all([stdioChannel(coremcp), stdioChannel(bare), stdioChannel(sqlite)]);
  const target = (
    id: Target['id'],
    child: ChildProcess,
    workload: Workload,
    channel: RpcChannel,
  ): Target => ({
    id,
    child,
    workload,
    channel: async () => ({ request: channel.request, close: async () => {} }),
    release: () => channel.close(),
  });
  return [
    target('coremcp', coremcp, taskboardClaims, channels[0]),
    target('bare', bare, bareCounter, channels[1]),
    target('sqlite', sqlite, bareCounter, channels[2]),
  ];
}

/** One load run against one target: rate, latency, the generator's CPU and the server's CPU per call. */
export async function measure(
  target: Target,
  concurrency: number,
  config: BenchConfig,
  label: string,
  hooks: { onMeasureStart?: () => void } = {},
): Promise<Measurement> {
  const channel = await target.channel(concurrency);
  let serverCpuBefore = 0;
  const options: LoadOptions = {
    concurrency,
    durationMs: config.windowMs,
    warmupMs: config.warmupMs,
    maxCalls: config.maxCalls,
    onMeasureStart: () => {
      serverCpuBefore = processStats(target.child.pid!).cpuMs;
      hooks.onMeasureStart?.();
    },
  };
  try {
    const result = await runLoad(target.workload.calls(channel), options);
    const serverCpuMs = processStats(target.child.pid!).cpuMs - serverCpuBefore;
    return { ...measurementOf(result, label), serverCpuMsPerCall: serverCpuMs / result.calls };
  } finally {
    await channel.close();
  }
}

export async function wireScenario(
  transport: Transport,
  dir: string,
  config: BenchConfig,
  options: { profiles?: ProfileDirs } = {},
): Promise<Scenario> {
  const targets =
    transport === 'http'
      ? await httpTargets(join(dir, 'http'), options.profiles)
      : await stdioTargets(join(dir, 'stdio'), options.profiles);
  const idle: Measurement = {};
  for (const target of targets) {
    const stats = processStats(target.child.pid!);
    idle[`${target.id}.idleRssMb`] = stats.rssMb;
    idle[`${target.id}.idlePeakRssMb`] = stats.peakRssMb;
  }
  const levels = transport === 'http' ? config.httpConcurrency : config.stdioConcurrency;
  return {
    name: transport,
    cases: levels.map((concurrency) => ({
      key: `${transport}.${concurrency}`,
      run: async (round) => {
        // Each round starts with another target, so no one always runs on a warmer (or busier) machine.
        const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
        const out: Measurement = {};
        for (const target of order) {
          const m = await measure(target, concurrency, config, `${transport} ${concurrency} ${target.id}`);
          for (const [name, value] of Object.entries(m)) out[`${target.id}.${name}`] = value;
        }
        out.ratio = out['coremcp.callsPerSec']! / out['bare.callsPerSec']!;
        out.ratioSqlite = out['coremcp.callsPerSec']! / out['sqlite.callsPerSec']!;
        return out;
      },
    })),
    facts: () => {
      const out: Measurement = { ...idle };
      for (const target of targets)
        out[`${target.id}.loadPeakRssMb`] = processStats(target.child.pid!).peakRssMb;
      return out;
    },
    close: async () => {
      for (const target of targets) await target.release();
      await Promise.all(targets.map((target) => stop(target.child)));
    },
  };
}
