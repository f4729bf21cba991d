/**
 * `npm run chaos`: a real `coremcp serve --http` under a bounded mixed load (several principals, both
 * HTTP eras, and a second `serve --stdio` process on the same data directory), while faults are
 * injected in turn with real processes and files: another process holding the write lock, a full
 * disk and a read-only database (a small loop-mounted ext4, when this process may mount one), `kill -9`
 * mid-write and SIGTERM under load.
 * Measures recovery time after each fault clears, the share of failed writes a retry recovered,
 * command success outside the fault windows and acknowledged commits lost, and writes them into
 * docs/benchmarks.md.
 *   --quick       one round of each fault (a check that the run works, ~30 s)
 *   --out FILE    write the report there instead of docs/benchmarks.md
 * Traffic goes to 127.0.0.1 only; every child is killed at the end; temporary data is removed.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SqliteStore } from '../../src/store/sqlite.js';
import {
  type Attempt,
  type Connect,
  httpConnect,
  type LoadRecord,
  probeRecovery,
  runWorker,
  stdioConnect,
} from './load.js';
import { writeSection } from './section.js';

const CLI = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
const LOCK_HOLDER = fileURLToPath(new URL('./lock-holder.mjs', import.meta.url));
/** The whole run is killed after this, whatever happens. */
const HARD_DEADLINE_MS = 5 * 60_000;

const { values: flags } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } },
});
const ROUNDS = flags.quick ? 1 : 4;
const OUT = resolve(flags.out ?? 'docs/benchmarks.md');

const children = new Set<ChildProcess>();
function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
function killAll(): void {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
process.on('exit', killAll);
const deadline = setTimeout(() => {
  process.stderr.write('chaos: hard deadline reached, stopping\n');
  killAll();
  process.exit(1);
}, HARD_DEADLINE_MS);
deadline.unref();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * The data directory: a 48 MiB ext4 file system on a loop device when this process may mount one (a
 * disk that really fills, and files that can be made immutable), else a tmpfs (no read-only fault),
 * else a plain temporary folder (neither).
 */
function dataDisk(): {
  root: string;
  dir: string;
  full: boolean;
  readOnly: boolean;
  kind: string;
  remove: () => void;
} {
  const root = mkdtempSync(join(tmpdir(), 'coremcp-chaos-'));
  const image = `${root}.img`;
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'ignore' });
  let kind = 'a plain temporary folder';
  try {
    run('truncate', ['-s', '48M', image]);
    run('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
    run('mount', ['-o', 'loop', image, root]);
    kind = 'a 48 MiB ext4 file system on a loop device';
  } catch {
    rmSync(image, { force: true });
    try {
      run('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', root]);
      kind = 'a 48 MiB tmpfs';
    } catch {
      // Not root, or no mounts in this container: the disk faults are left out.
    }
  }
  const mounted = kind !== 'a plain temporary folder';
  const dir = join(root, 'data');
  return {
    root,
    dir,
    full: mounted,
    readOnly: kind.includes('ext4'),
    kind,
    remove: () => {
      if (mounted) run('umount', ['-l', root]);
      rmSync(root, { recursive: true, force: true });
      rmSync(image, { force: true });
    },
  };
}

function cli(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
}

interface Server {
  child: ChildProcess;
  exited: Promise<number | null>;
}

async function startServer(dataDir: string, config: string, port: number): Promise<Server> {
  const child = track(
    spawn(
      process.execPath,
      [
        CLI,
        'serve',
        '--http',
        `127.0.0.1:${port}`,
        '--data-dir',
        dataDir,
        '--config',
        config,
        '--log-level',
        'fatal',
        '--no-console',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    ),
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let stderr = '';
  await new Promise<void>((ready, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${stderr}`)), 20_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (/serving "[^"]+" at /.test(stderr)) {
        clearTimeout(timer);
        ready();
      }
    });
    void exited.then((code) => reject(new Error(`server exited with ${code}:\n${stderr}`)));
  });
  return { child, exited };
}

/** Fills the file system holding `path`; returns a function that frees the space. */
function fillDisk(path: string): () => void {
  const fd = openSync(path, 'w');
  try {
    for (const size of [1 << 20, 1 << 16, 1 << 12, 512]) {
      const chunk = Buffer.alloc(size, 1);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
  return () => rmSync(path);
}

async function holdLock(db: string): Promise<() => Promise<void>> {
  const child = track(spawn(process.execPath, [LOCK_HOLDER, db], { stdio: ['pipe', 'pipe', 'ignore'] }));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((locked) =>
    child.stdout!.on('data', (c: Buffer) => c.toString().includes('locked') && locked()),
  );
  return async () => {
    child.stdin!.end('release\n');
    await exited;
  };
}

const released = (release: () => Promise<void>) => async () => {
  await release();
  return undefined;
};

interface FaultRun {
  fault: string;
  injectedAt: number;
  clearedAt: number;
  recoveryMs: number | undefined;
  /** For a restart: from the new process spawned to it listening. */
  restartMs: number | undefined;
}

async function main(): Promise<void> {
  const disk = dataDisk();
  const record: LoadRecord = { attempts: [], failed: [], acknowledged: new Map() };
  const runs: FaultRun[] = [];
  let stopped = false;
  try {
    const config = join(disk.root, 'chaos.config.json');
    writeFileSync(config, JSON.stringify({ limits: { rate: { perSecond: 100_000, burst: 1_000_000 } } }));
    const adminKey = cli([
      'keys',
      'create',
      '--name',
      'chaos-admin',
      '--role',
      'admin',
      '--data-dir',
      disk.dir,
    ]).trim();
    const memberKeys = ['alice', 'bob', 'carol'].map((name) =>
      cli(['keys', 'create', '--name', name, '--role', 'member', '--data-dir', disk.dir]).trim(),
    );
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/mcp`;
    let server = await startServer(disk.dir, config, port);
    const db = join(disk.dir, 'coremcp.db');

    const workers: Array<[string, Connect]> = [
      ['alice-modern', httpConnect(() => url, memberKeys[0]!, 'modern')],
      ['bob-modern', httpConnect(() => url, memberKeys[1]!, 'modern')],
      ['carol-legacy', httpConnect(() => url, memberKeys[2]!, 'legacy')],
      ['admin-stdio', stdioConnect(CLI, disk.dir, config)],
    ];
    const running = workers.map(([name, connect]) => runWorker(name, connect, record, () => stopped, 5));
    const prober = httpConnect(() => url, adminKey, 'modern');

    const fault = async (
      name: string,
      inject: () => Promise<() => Promise<number | undefined>>,
      holdMs: number,
    ) => {
      const injectedAt = now();
      const clear = await inject();
      await sleep(holdMs);
      const restartMs = await clear();
      const clearedAt = now();
      const recoveryMs = await probeRecovery(prober, clearedAt, `f${runs.length}`);
      runs.push({ fault: name, injectedAt, clearedAt, recoveryMs, restartMs });
      process.stderr.write(`chaos: ${name}: recovered in ${recoveryMs?.toFixed(1) ?? 'never'} ms\n`);
      await sleep(1000);
    };

    await sleep(3000);
    for (let round = 0; round < ROUNDS; round++) {
      // Held past the 2 s a write waits: calls get store_busy, then work again on release.
      await fault('foreign write lock (3 s)', async () => released(await holdLock(db)), 3000);
      // Held within the wait: calls are delayed, not failed.
      await fault('foreign write lock (1 s)', async () => released(await holdLock(db)), 1000);
      if (disk.readOnly)
        await fault(
          'database made read-only (chattr +i)',
          async () => {
            const files = ['coremcp.db', 'coremcp.db-wal'].map((f) => join(disk.dir, f));
            execFileSync('chattr', ['+i', ...files]);
            return async () => {
              execFileSync('chattr', ['-i', ...files]);
              return undefined;
            };
          },
          1500,
        );
      if (disk.full)
        await fault(
          'disk full',
          async () => {
            const filledAt = now();
            const free = fillDisk(join(disk.root, 'filler'));
            return async () => {
              // A full disk bites only once the log must grow: hold it until a write has failed.
              const bitten = () =>
                record.attempts.some((a) => a.code === 'storage_full' && a.start >= filledAt);
              for (let waited = 0; !bitten() && waited < 10_000; waited += 50) await sleep(50);
              free();
              return undefined;
            };
          },
          1000,
        );
      await fault(
        'kill -9 mid-write, restart',
        async () => {
          server.child.kill('SIGKILL');
          await server.exited;
          return async () => {
            const spawned = now();
            server = await startServer(disk.dir, config, port);
            return now() - spawned;
          };
        },
        0,
      );
      await fault(
        'SIGTERM under load, restart',
        async () => {
          server.child.kill('SIGTERM');
          const code = await server.exited;
          if (code !== 0) process.stderr.write(`chaos: SIGTERM exit code ${code}\n`);
          return async () => {
            const spawned = now();
            server = await startServer(disk.dir, config, port);
            return now() - spawned;
          };
        },
        0,
      );
    }
    stopped = true;
    await Promise.all(running);
    server.child.kill('SIGTERM');
    await server.exited;

    const lost = await lostCommits(db, record);
    const report = renderReport(record, runs, lost, disk.kind);
    process.stdout.write(report);
    writeSection(OUT, report);
    process.stderr.write(`chaos: wrote the report into ${OUT}\n`);
  } finally {
    stopped = true;
    killAll();
    disk.remove();
  }
}

/** Acknowledged writes whose task is not on the board, and keys that made more than one task. */
async function lostCommits(
  db: string,
  record: LoadRecord,
): Promise<{ lost: number; duplicates: number; tasks: number }> {
  const store = new SqliteStore({ path: db, checkpointIntervalMs: 0 });
  await store.open();
  const titles = new Map<string, number>();
  const ids = new Set<string>();
  try {
    let after: string | undefined;
    for (;;) {
      const page = await store.listEntries('board', 'tasks', { ...(after ? { after } : {}), limit: 1000 });
      for (const entry of page) {
        ids.add(entry.key);
        const title = (entry.value as { title: string }).title;
        titles.set(title, (titles.get(title) ?? 0) + 1);
      }
      if (page.length < 1000) break;
      after = page.at(-1)!.key;
    }
  } finally {
    await store.close();
  }
  let lost = 0;
  for (const [, id] of record.acknowledged) if (!ids.has(id)) lost++;
  const duplicates = [...titles.values()].filter((n) => n > 1).length;
  return { lost, duplicates, tasks: ids.size };
}

const pct = (n: number, d: number) => (d === 0 ? 'n/a' : `${((100 * n) / d).toFixed(n === d ? 0 : 2)} %`);
const ms = (v: number | undefined) => (v === undefined ? 'not recovered' : `${v.toFixed(1)} ms`);

function renderReport(
  record: LoadRecord,
  runs: FaultRun[],
  lost: { lost: number; duplicates: number; tasks: number },
  disk: string,
): string {
  // A fault's window: from its injection until every client has written successfully again.
  const windows = runs.map((r) => {
    let end = r.clearedAt + (r.recoveryMs ?? 15_000);
    for (const worker of new Set(record.attempts.map((a) => a.worker))) {
      const first = record.attempts.find((a) => a.worker === worker && a.ok && a.start >= r.clearedAt);
      if (first) end = Math.max(end, first.end);
    }
    return { ...r, windowEnd: end };
  });
  const inWindow = (a: Attempt) => windows.some((r) => a.end >= r.injectedAt && a.start <= r.windowEnd);
  const outside = record.attempts.filter((a) => !inWindow(a));
  const outsideOk = outside.filter((a) => a.ok).length;
  if (process.env.CHAOS_DEBUG) {
    const t0 = record.attempts[0]?.start ?? 0;
    for (const r of windows)
      process.stderr.write(
        `window ${r.fault}: ${(r.injectedAt - t0).toFixed(0)}..${(r.windowEnd - t0).toFixed(0)}\n`,
      );
    for (const a of outside.filter((x) => !x.ok))
      process.stderr.write(
        `outside: ${a.worker} ${a.code} ${(a.start - t0).toFixed(0)}..${(a.end - t0).toFixed(0)}\n`,
      );
    for (const f of record.failed.filter((x) => !x.recovered))
      process.stderr.write(`unrecovered: ${f.key}\n`);
  }
  const recovered = record.failed.filter((f) => f.recovered).length;
  const byFault = new Map<string, FaultRun[]>();
  for (const run of runs) byFault.set(run.fault, [...(byFault.get(run.fault) ?? []), run]);
  const codes = new Map<string, number>();
  for (const a of record.attempts) if (!a.ok) codes.set(a.code ?? '?', (codes.get(a.code ?? '?') ?? 0) + 1);
  const faultsRecovered = runs.filter((r) => r.recoveryMs !== undefined).length;
  const lines = [
    '## 9. Faults and recovery (`npm run chaos`)',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} cores (load average ${loadavg()[0]!.toFixed(2)} at the end), ${ROUNDS} round${ROUNDS === 1 ? '' : 's'} of each fault. A real \`coremcp serve --http\` on 127.0.0.1 takes writes (\`task.add\`, each with an idempotency key) from three principals (two 2026-07-28 clients, one 2025-11-25) while a second \`coremcp serve --stdio\` process writes to the same data directory as a fourth. A failed write is retried with its key (backoff 25–500 ms) until it succeeds or 15 s pass. Recovery time: from the fault's removal (lock released, space freed, files writable again, restarted process listening) to the end of the first successful write, probed back to back by a fifth client. The data directory is ${disk}${disk.includes('ext4') ? ': filled to the last byte for the disk-full fault (held at least 1 s and until a write has failed: a full disk bites only once the log must grow), its database and log made immutable (`chattr +i`, writes refused even through open descriptors) for the read-only fault' : disk.includes('tmpfs') ? ': filled to the last byte for the disk-full fault (held at least 1 s and until a write has failed); tmpfs has no immutable files, so the read-only fault was not run' : ': mounting was refused, so the disk-full and read-only faults were not run'}.`,
    '',
    '| fault | injected | recovery time (each) | seed |',
    '|---|---|---|---|',
    ...[...byFault].map(([name, list]) => {
      const restarts = list.filter((r) => r.restartMs !== undefined);
      const start =
        restarts.length === 0
          ? ''
          : ` (the new process took ${restarts.map((r) => ms(r.restartMs)).join(', ')} from spawn to listening)`;
      return `| ${name} | ${list.length} | ${list.map((r) => ms(r.recoveryMs)).join(', ')}${start} | < 200 ms |`;
    }),
    '',
    '| figure | measured | seed |',
    '|---|---|---|',
    `| faults recovered from (a write succeeded after the fault cleared, without restarting for lock and disk faults) | ${faultsRecovered}/${runs.length} (${pct(faultsRecovered, runs.length)}) | |`,
    `| error recovery rate: failed writes a retry with the same key made succeed | ${recovered}/${record.failed.length} (${pct(recovered, record.failed.length)}) | > 99 % |`,
    `| command success outside the fault windows (a window: from injection until every client has written successfully again) | ${outsideOk}/${outside.length} (${pct(outsideOk, outside.length)}) | > 99.9 % |`,
    `| acknowledged commits lost | ${lost.lost} of ${record.acknowledged.size} | 0 |`,
    `| idempotency keys that made two tasks | ${lost.duplicates} | 0 |`,
    `| attempts in all (ok / failed) | ${record.attempts.length} (${record.attempts.length - [...codes.values()].reduce((a, b) => a + b, 0)} / ${[...codes.values()].reduce((a, b) => a + b, 0)}) | |`,
    '',
    `Failed attempts by code: ${
      [...codes]
        .sort((a, b) => b[1] - a[1])
        .map(([c, n]) => `\`${c}\` ${n}`)
        .join(', ') || 'none'
    } (\`transport\`: the connection was refused or reset, while the process was down).`,
    '',
    'Not injected here: a read-only file system at start (refused with one `store_read_only` line, `test/faults/disk.test.ts`), and a deleted or replaced database file or log (writes stop for good with `store_corrupt` until a restart, by design; `test/faults/wal.test.ts`).',
    '',
  ];
  return `${lines.join('\n')}\n`;
}

await main();
