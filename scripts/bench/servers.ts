/**
 * The servers under test, each in its own child process: `coremcp serve` (HTTP or stdio) on a seeded
 * task board, and the bare SDK counter server. Every child is tracked and killed at the end, on a
 * failure, and on Ctrl-C.
 */
import { type ChildProcess, type ChildProcessByStdio, execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createCore, localPrincipal, SqliteStore, type Store } from 'coremcp';
import taskboard from '../../examples/taskboard/app.js';
import { DATABASE_FILE } from '../../src/store/open.js';

const CLI = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
const BARE = fileURLToPath(new URL('./bare-server.mjs', import.meta.url));
const STALL_PROBE = fileURLToPath(new URL('./stall-probe.mjs', import.meta.url));
const START_TIMEOUT_MS = 20_000;

/** `COREMCP_BENCH_GROUP_COMMIT=0` runs the bench with group commit off (to compare, run by run). */
export const GROUP_COMMIT = process.env.COREMCP_BENCH_GROUP_COMMIT !== '0';

/** Tasks on the seeded board; HTTP worker `w` claims and releases `T-(w+1)`, so at most this many workers. */
export const BOARD_TASKS = 100;

const children = new Set<ChildProcess>();

/** Kills every child still running. Safe to call more than once, and from an `exit` handler. */
export function killAll(): void {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
}

/** Tracks a child so `killAll` kills it; returns it. */
export function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** The children started and not yet exited. */
export function trackedChildren(): ChildProcess[] {
  return [...children].filter((child) => child.exitCode === null && child.signalCode === null);
}

/**
 * Runs `work` with every tracked child but `uses` stopped (SIGSTOP), and continues them after. The
 * bench keeps every scenario's processes open for all its rounds: about twenty on two cores, the
 * HTTP servers and board workers with a 1 ms stall-probe timer each, every coremcp process with its
 * checkpointer ticking. Left running, their wake-ups share the cores with whatever is measured.
 */
export async function withOthersStopped<T>(
  uses: readonly ChildProcess[],
  work: () => Promise<T>,
): Promise<T> {
  const keep = new Set(uses);
  const stopped = trackedChildren().filter((child) => !keep.has(child) && child.kill('SIGSTOP'));
  try {
    return await work();
  } finally {
    for (const child of stopped) child.kill('SIGCONT');
  }
}

/** Asks a child to stop (SIGTERM, so a `--cpu-prof` profile gets written) and waits, then kills it. */
export function stop(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export interface ProcessStats {
  rssMb: number;
  /** Peak RSS since the process started (VmHWM). */
  peakRssMb: number;
  /** User + system CPU time so far. */
  cpuMs: number;
}

/** Memory and CPU of a process, from /proc (Linux). */
export function processStats(pid: number): ProcessStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024, cpuMs: (ticks * 1000) / 100 };
}

/**
 * The server configuration for the bench: the per-principal rate limit raised to its maximum, so the
 * bench measures capacity rather than the limiter (which still runs on every call).
 */
const BENCH_CONFIG = {
  limits: { rate: { perSecond: 100_000, burst: 1_000_000 } },
  store: { groupCommit: GROUP_COMMIT },
};

function configPath(dataDir: string): string {
  return join(dataDir, 'bench.config.json');
}

/**
 * Creates a task board with `BOARD_TASKS` open tasks and a WIP limit that lets one principal hold
 * them all, and the server configuration beside it.
 */
export async function seedTaskboard(dataDir: string): Promise<void> {
  await seedBoard(new SqliteStore({ path: join(dataDir, DATABASE_FILE) }));
  writeServerConfig(dataDir);
}

/** `BOARD_TASKS` open tasks and a WIP limit that lets one principal hold them all, in `store`. */
export async function seedBoard(store: Store): Promise<void> {
  const core = await createCore({ app: taskboard, store });
  try {
    const principal = localPrincipal('bench-seed');
    for (let i = 1; i <= BOARD_TASKS; i++) {
      const added = await core.execute('task.add', { title: `Task ${i}` }, { principal });
      if (added.status !== 'success') throw new Error(`seeding failed: ${JSON.stringify(added)}`);
    }
    await core.execute('board.settings', { wipLimit: BOARD_TASKS }, { principal });
  } finally {
    await core.close();
  }
}

/** Writes the bench's server configuration into a data dir (`serve` reads it with `--config`). */
export function writeServerConfig(dataDir: string): void {
  writeFileSync(configPath(dataDir), JSON.stringify(BENCH_CONFIG));
}

/** `coremcp keys create --name bench --role admin`: the key alone, on stdout. */
export async function createApiKey(dataDir: string): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [
    CLI,
    'keys',
    'create',
    '--name',
    'bench',
    '--role',
    'admin',
    '--data-dir',
    dataDir,
  ]);
  const key = stdout.trim();
  if (!/^\S+$/.test(key)) throw new Error(`keys create printed something other than a key: ${stdout}`);
  return key;
}

export interface HttpServer {
  name: string;
  url: string;
  child: ChildProcess;
}

/** Spawns a server and waits for the line on stderr that names its URL. */
function spawnHttp(name: string, args: string[], ready: RegExp): Promise<HttpServer> {
  const child = track(spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${stderr}`)), START_TIMEOUT_MS);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-20_000);
      const match = ready.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve({ name, url: match[1]!, child });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${stderr}`));
    });
  });
}

function serveOptions(dataDir: string): string[] {
  return ['--data-dir', dataDir, '--config', configPath(dataDir), '--log-level', 'warn'];
}

export interface HttpServerOptions {
  /** Write a V8 CPU profile there when the server exits. */
  cpuProfDir?: string;
  /** Preload `stall-probe.mjs`, so `StallProbe` can read the server's event-loop stalls. */
  stallProbe?: boolean;
  /** More `serve` arguments (`--store URL`). */
  args?: string[];
}

function nodeFlags(options: HttpServerOptions): string[] {
  return [
    ...(options.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir] : []),
    ...(options.stallProbe ? ['--import', STALL_PROBE] : []),
  ];
}

export function startCoremcpHttp(dataDir: string, options: HttpServerOptions = {}): Promise<HttpServer> {
  return spawnHttp(
    'coremcp',
    [
      ...nodeFlags(options),
      CLI,
      'serve',
      '--http',
      '127.0.0.1:0',
      ...serveOptions(dataDir),
      ...(options.args ?? []),
    ],
    /serving "[^"]+" at (http:\/\/\S+)/,
  );
}

export function startBareHttp(options: HttpServerOptions & { sqlite?: string } = {}): Promise<HttpServer> {
  const sqlite = options.sqlite === undefined ? [] : ['--sqlite', options.sqlite];
  return spawnHttp(
    options.sqlite === undefined ? 'bare SDK' : 'SDK + SQLite',
    [...nodeFlags(options), BARE, '--http', ...sqlite],
    /listening (http:\/\/\S+)/,
  );
}

export type StdioServer = ChildProcessByStdio<Writable, Readable, null>;

function spawnStdio(args: string[]): StdioServer {
  return track(spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'ignore'] }));
}

export function startCoremcpStdio(dataDir: string, cpuProfDir?: string): StdioServer {
  return spawnStdio([...nodeFlags({ cpuProfDir }), CLI, 'serve', '--stdio', ...serveOptions(dataDir)]);
}

export function startBareStdio(sqlite?: string, cpuProfDir?: string): StdioServer {
  return spawnStdio([
    ...nodeFlags({ cpuProfDir }),
    BARE,
    '--stdio',
    ...(sqlite === undefined ? [] : ['--sqlite', sqlite]),
  ]);
}
