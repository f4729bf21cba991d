/**
 * `npm run bench`: runs every scenario, interleaved over rounds, and writes docs/benchmarks.md.
 *   --quick        short windows and a small history (CI: checks the bench still runs, ~1 minute)
 *   --out FILE     write the report there instead of docs/benchmarks.md
 *   --json FILE    also write every measurement (each round's, the medians, the facts) there
 *   --from-json FILE  run nothing: render the report again from a file --json wrote
 *   --profile      instead: CPU-profile `coremcp serve` under 16 HTTP clients and print a summary
 *   --size N       with --profile: on a seeded board of N tasks, claimed and released at random
 *   --stdio        with --profile: `coremcp serve --stdio` under 1 pipelined client instead
 * Every child process is killed at the end, on failure and on Ctrl-C; temporary data is removed.
 */

import type { ChildProcess } from 'node:child_process';
import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chaosSection, withChaosSection } from '../chaos/section.js';
import { seedBoards } from './boards.js';
import { historyScenario } from './history.js';
import { inProcessScenario } from './in-process.js';
import { postgresScenario } from './postgres.js';
import { renderProfile, summarizeProfile } from './profile.js';
import { type BenchResults, renderReport } from './report.js';
import { scaleScenario, startBoardServer } from './scale.js';
import type { BenchConfig, Measurement, Scenario } from './scenario.js';
import { killAll, stop, trackedChildren, withOthersStopped } from './servers.js';

/** The report, with the faults section `npm run chaos` wrote into the old one kept. */
function keepChaos(out: string, report: string): string {
  let old: string;
  try {
    old = readFileSync(out, 'utf8');
  } catch {
    return report;
  }
  const section = chaosSection(old);
  return section === undefined ? report : withChaosSection(report, section);
}

import { medianOf } from './stats.js';
import { profileWire, type WireProfile } from './where.js';
import { measure, wireScenario } from './wire.js';

const FULL: BenchConfig = {
  quick: false,
  rounds: 3,
  windowMs: 4000,
  warmupMs: 1000,
  maxCalls: 500_000,
  historyCommits: 1_000_000,
  rollbackCommits: 1000,
  httpConcurrency: [1, 16, 64],
  stdioConcurrency: [1, 16],
  scaleSizes: [100, 1000, 10_000, 50_000, 1_000_000],
  scaleClients: 16,
  seedBatch: 50_000,
  bulkEntries: 50_000,
};

const QUICK: BenchConfig = {
  ...FULL,
  quick: true,
  windowMs: 400,
  warmupMs: 200,
  maxCalls: 20_000,
  historyCommits: 10_000,
  scaleSizes: [100, 10_000],
  bulkEntries: 10_000,
};

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

async function closeAll(scenarios: Scenario[]): Promise<void> {
  for (const scenario of scenarios)
    await scenario.close().catch((error) => log(`closing ${scenario.name}: ${error}`));
}

async function runBench(config: BenchConfig, dir: string, out: string, json?: string): Promise<void> {
  const startedAt = new Date();
  const started = performance.now();
  const loadAtStart = loadavg()[0]!;
  const scenarios: Scenario[] = [];
  try {
    const boards = await seedBoards(join(dir, 'boards'), config.scaleSizes, config.seedBatch, log);
    // The processes each scenario started while it was prepared: what its cases use by default.
    const owned = new Map<Scenario, ChildProcess[]>();
    const prepare = async (what: string, make: () => Promise<Scenario>) => {
      log(`preparing: ${what}`);
      const before = new Set(trackedChildren());
      const scenario = await make();
      scenarios.push(scenario);
      owned.set(
        scenario,
        trackedChildren().filter((child) => !before.has(child)),
      );
      return scenario;
    };
    await prepare('in-process core', () => inProcessScenario(dir, config));
    await prepare('boards at scale (a worker and an HTTP server per size)', () =>
      scaleScenario(dir, config, boards),
    );
    const largest = boards.get(Math.max(...config.scaleSizes))!;
    await prepare(
      `${config.historyCommits.toLocaleString('en-US')} commits of history on the board of ${largest.size.toLocaleString('en-US')}`,
      () => historyScenario(dir, config, largest),
    );
    await prepare('HTTP servers', () => wireScenario('http', dir, config));
    await prepare('stdio servers', () => wireScenario('stdio', dir, config));
    await prepare('PostgreSQL (one and two instances on one schema) beside SQLite', () =>
      postgresScenario(dir, config),
    );

    const runs: Record<string, Measurement[]> = {};
    for (let round = 0; round < config.rounds; round++) {
      for (const scenario of scenarios) {
        for (const c of scenario.cases) {
          log(`round ${round + 1}/${config.rounds}: ${c.key}`);
          // Every other bench process is stopped meanwhile (see withOthersStopped).
          const uses = c.uses?.() ?? owned.get(scenario) ?? [];
          const measured = await withOthersStopped(uses, () => c.run(round));
          runs[c.key] = [...(runs[c.key] ?? []), measured];
        }
      }
    }
    const facts: Record<string, Measurement> = {};
    for (const scenario of scenarios) if (scenario.facts) facts[scenario.name] = scenario.facts();
    // Profiled apart from the measured rounds: a profiler slows what it watches.
    const profiles: WireProfile[] = [];
    for (const [transport, concurrency] of [
      ['http', 16],
      ['stdio', 1],
    ] as const) {
      log(`profiling coremcp and the bare SDK server: ${transport}, ${concurrency} client(s)`);
      // Its servers are started for it; every other bench process is stopped meanwhile.
      profiles.push(
        await withOthersStopped([], () =>
          profileWire(transport, concurrency, join(dir, `profile-${transport}`), {
            ...config,
            windowMs: config.quick ? 500 : 4000,
          }),
        ),
      );
    }
    const medians = Object.fromEntries(Object.entries(runs).map(([key, list]) => [key, medianOf(list)]));
    const results: BenchResults = {
      config,
      startedAt,
      durationS: (performance.now() - started) / 1000,
      loadAverage: { start: loadAtStart, end: loadavg()[0]! },
      medians,
      runs,
      facts,
      profiles,
    };
    if (json) writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(out, keepChaos(out, renderReport(results)));
    log(`wrote ${out} in ${Math.round(results.durationS)} s`);
    const failed = Object.values(runs)
      .flat()
      .flatMap((run) => Object.entries(run).filter(([name, value]) => name.endsWith('errors') && value > 0));
    // A rate measured on failing calls means nothing: fail, so CI notices (the report says which).
    if (failed.length > 0) throw new Error(`${failed.length} runs had failed calls; see the messages above`);
  } finally {
    await closeAll(scenarios);
  }
}

/**
 * CPU-profiles the coremcp HTTP server while 16 clients call it, and prints where the time goes: on
 * the wire scenario's board of 100 tasks (each client its own task), or with `size` on a seeded
 * board of that many tasks, claimed and released at random as in the scaling scenario.
 */
async function runProfile(
  config: BenchConfig,
  dir: string,
  out: string | undefined,
  size: number | undefined,
  stdio = false,
): Promise<void> {
  const profileDir = join(dir, 'profile');
  let run: () => Promise<Measurement>;
  let close: () => Promise<void>;
  if (size === undefined) {
    const scenario = await wireScenario(
      stdio ? 'stdio' : 'http',
      dir,
      { ...config, rounds: 1, httpConcurrency: [16], stdioConcurrency: [1] },
      { profiles: { coremcp: profileDir } },
    );
    run = () => scenario.cases[0]!.run(0);
    close = () => scenario.close();
  } else {
    const boards = await seedBoards(join(dir, 'boards'), [size], config.seedBatch, log);
    const board = await startBoardServer(join(dir, 'profiled'), boards.get(size)!, 16, {
      cpuProfDir: profileDir,
    });
    run = async () => {
      const m = await measure(board.target, 16, config, `profile ${size}`);
      return Object.fromEntries(Object.entries(m).map(([name, value]) => [`coremcp.${name}`, value]));
    };
    close = () => stop(board.server.child);
  }
  let calls = 0;
  try {
    log(
      `profiling coremcp serve under ${stdio ? '1 stdio client' : '16 HTTP clients'}${size === undefined ? '' : ` on ${size} tasks`}`,
    );
    const m = await run();
    calls = m['coremcp.calls']! + m['coremcp.warmupCalls']!; // the profile covers the warm-up too
    log(
      `coremcp ${Math.round(m['coremcp.callsPerSec']!)} calls/s` +
        (m['bare.callsPerSec'] === undefined ? '' : `, bare SDK ${Math.round(m['bare.callsPerSec'])}`),
    );
  } finally {
    await close(); // SIGTERM: the server exits and writes its profile
  }
  // One profile per thread (the WAL checkpointer is a worker thread): the main thread's is the largest.
  const file = readdirSync(profileDir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .sort((a, b) => statSync(join(profileDir, b)).size - statSync(join(profileDir, a)).size)[0];
  if (!file) throw new Error('the server wrote no CPU profile');
  const summary = renderProfile(summarizeProfile(join(profileDir, file)), calls);
  if (out) {
    writeFileSync(out, `${summary}\n`);
    copyFileSync(join(profileDir, file), `${out}.cpuprofile`);
    log(`wrote ${out} and ${out}.cpuprofile`);
  } else {
    process.stdout.write(`${summary}\n`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      out: { type: 'string' },
      json: { type: 'string' },
      'from-json': { type: 'string' },
      profile: { type: 'boolean' },
      size: { type: 'string' },
      stdio: { type: 'boolean' },
    },
  });
  const config = values.quick ? QUICK : FULL;
  if (values['from-json']) {
    const saved = JSON.parse(readFileSync(values['from-json'], 'utf8')) as BenchResults;
    const out = resolve(values.out ?? new URL('../../docs/benchmarks.md', import.meta.url).pathname);
    writeFileSync(out, keepChaos(out, renderReport({ ...saved, startedAt: new Date(saved.startedAt) })));
    log(`wrote ${out} from ${values['from-json']}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'coremcp-bench-'));
  const cleanup = () => {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping`);
      process.exit(130);
    });
  }
  if (values.profile) {
    const size = values.size === undefined ? undefined : Number(values.size);
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 16))
      throw new Error('--size takes a number of tasks, at least 16');
    await runProfile(
      { ...config, windowMs: config.quick ? 1000 : 10_000 },
      dir,
      values.out,
      size,
      values.stdio === true,
    );
  } else {
    const out = resolve(values.out ?? new URL('../../docs/benchmarks.md', import.meta.url).pathname);
    await runBench(config, dir, out, values.json);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
