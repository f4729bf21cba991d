/**
 * "Where a call's time goes": coremcp and the bare SDK server, each CPU-profiled (`--cpu-prof`)
 * under the same wire load in one run, summarized by area (profile.ts). The bench puts this in its
 * report, so the parts of a call that are the SDK's or Node's stand beside coremcp's own.
 */
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type ProfileSummary, summarizeProfile } from './profile.js';
import type { BenchConfig } from './scenario.js';
import { type Transport, wireScenario } from './wire.js';

export interface ProfiledServer {
  summary: ProfileSummary;
  /** Calls the profile covers (the warm-up too). */
  calls: number;
}

export interface WireProfile {
  transport: Transport;
  concurrency: number;
  coremcp: ProfiledServer;
  bare: ProfiledServer;
}

/** The main thread's profile in `dir`: the largest (the WAL checkpointer is a worker with its own). */
function mainThreadProfile(dir: string): string {
  const file = readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .sort((a, b) => statSync(join(dir, b)).size - statSync(join(dir, a)).size)[0];
  if (!file) throw new Error(`no CPU profile was written in ${dir}`);
  return join(dir, file);
}

/** One round of the wire scenario at `concurrency`, with coremcp and the bare SDK server profiled. */
export async function profileWire(
  transport: Transport,
  concurrency: number,
  dir: string,
  config: BenchConfig,
): Promise<WireProfile> {
  const profiles = { coremcp: join(dir, 'coremcp'), bare: join(dir, 'bare') };
  mkdirSync(profiles.coremcp, { recursive: true });
  mkdirSync(profiles.bare, { recursive: true });
  const scenario = await wireScenario(
    transport,
    dir,
    { ...config, rounds: 1, httpConcurrency: [concurrency], stdioConcurrency: [concurrency] },
    { profiles },
  );
  let measured: Record<string, number>;
  try {
    measured = await scenario.cases[0]!.run(0);
  } finally {
    await scenario.close(); // SIGTERM: each server exits and writes its profile
  }
  const server = (id: 'coremcp' | 'bare'): ProfiledServer => ({
    summary: summarizeProfile(mainThreadProfile(profiles[id])),
    calls: measured[`${id}.calls`]! + measured[`${id}.warmupCalls`]!,
  });
  return { transport, concurrency, coremcp: server('coremcp'), bare: server('bare') };
}

/** The report's table: each area's CPU per call in coremcp's server and in the bare SDK server. */
export function renderWhere(profile: WireProfile): string[] {
  const perCall = (server: ProfiledServer, area: string) => {
    const entry = server.summary.areas.find((a) => a.area === area);
    return entry === undefined ? 0 : entry.ms / server.calls;
  };
  const areas = [
    ...new Set([
      ...profile.coremcp.summary.areas.map((a) => a.area),
      ...profile.bare.summary.areas.map((a) => a.area),
    ]),
  ].filter((area) => Math.max(perCall(profile.coremcp, area), perCall(profile.bare, area)) >= 0.001);
  const ms = (value: number) => (value < 0.0005 ? '—' : value.toFixed(3));
  const total = (server: ProfiledServer) => server.summary.totalMs / server.calls;
  const rows = areas.map((area) => [
    area,
    ms(perCall(profile.coremcp, area)),
    ms(perCall(profile.bare, area)),
  ]);
  rows.push(['**all busy CPU**', `**${ms(total(profile.coremcp))}**`, `**${ms(total(profile.bare))}**`]);
  const label = `${profile.transport === 'http' ? 'HTTP' : 'stdio'}, ${profile.concurrency} client${profile.concurrency === 1 ? '' : 's'}`;
  return [
    `| ${label}: area | coremcp ms/call | bare SDK ms/call |`,
    '|---|---|---|',
    ...rows.map((row) => `| ${row.join(' | ')} |`),
    '',
    `Top functions by self time in coremcp's server: ${profile.coremcp.summary.functions
      .slice(0, 8)
      .map(
        (f) => `\`${f.name}\` (${f.area}, ${((f.ms / profile.coremcp.summary.totalMs) * 100).toFixed(1)}%)`,
      )
      .join(', ')}.`,
  ];
}
