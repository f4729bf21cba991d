/**
 * Scenario 7, state at scale: task boards of 100 to 1,000,000 tasks (a collection with three indexes),
 * each seeded once through the API and copied, one copy per use.
 * - In process, in a worker process per board: `task.claim` / `task.release` of random tasks and
 *   `task.add`, one client, p50/p99, the longest event-loop stall, RSS.
 * - Over HTTP: `coremcp serve --http` per board, 16 clients claiming and releasing random tasks, and
 *   the bare SDK server in the same round (order alternating): calls/s, server CPU per call, the
 *   server's longest stall (read by `stall-probe.mjs`), RSS.
 * - Bulk add: 50,000 tasks in one `state.update` (then removed again, so every round adds to the
 *   same board).
 */
import { join } from 'node:path';
import { copyBoard, type SeededBoard } from './boards.js';
import type { BenchConfig, Measurement, Scenario } from './scenario.js';
import {
  createApiKey,
  type HttpServer,
  type HttpServerOptions,
  processStats,
  startBareHttp,
  startCoremcpHttp,
  stop,
  writeServerConfig,
} from './servers.js';
import { StallProbe } from './stall.js';
import { httpChannel } from './transports.js';
import { measure, type Target } from './wire.js';
import { BoardWorker } from './workers.js';
import { bareCounter, randomClaims } from './workloads.js';

interface SizedBoard {
  size: number;
  worker: BoardWorker;
  server: HttpServer;
  probe: StallProbe;
  target: Target;
  idleRssMb: number;
}

export interface BoardServer {
  server: HttpServer;
  target: Target;
  idleRssMb: number;
}

/** `coremcp serve --http` on a copy of a seeded board, and a target claiming its tasks at random. */
export async function startBoardServer(
  dataDir: string,
  board: SeededBoard,
  clients: number,
  options: HttpServerOptions = {},
): Promise<BoardServer> {
  copyBoard(board.path, dataDir);
  writeServerConfig(dataDir);
  const key = await createApiKey(dataDir);
  const server = await startCoremcpHttp(dataDir, options);
  return {
    server,
    idleRssMb: processStats(server.child.pid!).rssMb,
    target: {
      id: 'coremcp',
      child: server.child,
      workload: randomClaims(board.size, clients),
      channel: async (concurrency) => httpChannel(server.url, { sockets: concurrency, bearer: key }),
      release: async () => {},
    },
  };
}

async function prepareSize(dir: string, board: SeededBoard, clients: number): Promise<SizedBoard> {
  const worker = await BoardWorker.start(copyBoard(board.path, join(dir, 'in-process')));
  const { server, target, idleRssMb } = await startBoardServer(join(dir, 'http'), board, clients, {
    stallProbe: true,
  });
  return { size: board.size, worker, server, probe: new StallProbe(server.child), idleRssMb, target };
}

/** One HTTP load run with the server's stall and memory read around it. */
async function measureServer(
  target: Target,
  probe: StallProbe,
  clients: number,
  config: BenchConfig,
  label: string,
): Promise<Measurement> {
  const m = await measure(target, clients, config, label, { onMeasureStart: () => probe.reset() });
  const stall = await probe.read();
  const stats = processStats(target.child.pid!);
  return { ...m, stallMaxMs: stall.maxMs, stallOwnMs: stall.ownMaxMs, rssMb: stats.rssMb };
}

export async function scaleScenario(
  dir: string,
  config: BenchConfig,
  boards: ReadonlyMap<number, SeededBoard>,
): Promise<Scenario> {
  const sized: SizedBoard[] = [];
  const stopped: Array<() => Promise<void>> = [];
  try {
    for (const size of config.scaleSizes) {
      const one = await prepareSize(join(dir, `scale-${size}`), boards.get(size)!, config.scaleClients);
      stopped.push(
        () => one.worker.close(),
        () => stop(one.server.child),
      );
      sized.push(one);
    }
    const bare = await startBareHttp({ stallProbe: true });
    stopped.push(() => stop(bare.child));
    const bareProbe = new StallProbe(bare.child);
    const bareTarget: Target = {
      id: 'bare',
      child: bare.child,
      workload: bareCounter,
      channel: async (concurrency) => httpChannel(bare.url, { sockets: concurrency }),
      release: async () => {},
    };
    const smallest = boards.get(Math.min(...config.scaleSizes))!;
    const bulkWorker = await BoardWorker.start(copyBoard(smallest.path, join(dir, 'bulk')));
    stopped.push(() => bulkWorker.close());
    const load = { windowMs: config.windowMs, warmupMs: config.warmupMs, maxCalls: config.maxCalls };
    const oneClient = {
      ...config,
      windowMs: Math.round(config.windowMs / 2),
      warmupMs: Math.round(config.warmupMs / 2),
    };

    return {
      name: 'scale',
      cases: [
        ...sized.flatMap((one) => [
          {
            key: `scale.${one.size}.claims`,
            run: () => one.worker.call('claims', load),
            uses: () => [one.worker.child],
          },
          {
            key: `scale.${one.size}.adds`,
            run: () => one.worker.call('adds', load),
            uses: () => [one.worker.child],
          },
          {
            // One client leaves the server idle between calls: a stall here is one long task.
            key: `scale.${one.size}.http1`,
            run: () => measureServer(one.target, one.probe, 1, oneClient, `scale ${one.size} http 1 client`),
            uses: () => [one.server.child],
          },
          {
            key: `scale.${one.size}.http`,
            uses: () => [one.server.child, bare.child],
            run: async (round: number) => {
              const targets: Array<[Target, StallProbe]> = [
                [one.target, one.probe],
                [bareTarget, bareProbe],
              ];
              const out: Measurement = {};
              for (const [target, probe] of round % 2 === 0 ? targets : targets.reverse()) {
                const label = `scale ${one.size} http ${target.id}`;
                const m = await measureServer(target, probe, config.scaleClients, config, label);
                for (const [name, value] of Object.entries(m)) out[`${target.id}.${name}`] = value;
              }
              out.ratio = out['coremcp.callsPerSec']! / out['bare.callsPerSec']!;
              return out;
            },
          },
        ]),
        {
          key: 'scale.bare.http1',
          run: () => measureServer(bareTarget, bareProbe, 1, oneClient, 'scale bare http 1 client'),
          uses: () => [bare.child],
        },
        {
          key: 'scale.bulk',
          run: () => bulkWorker.call('bulk', { count: config.bulkEntries }),
          uses: () => [bulkWorker.child],
        },
      ],
      facts: () => {
        const out: Measurement = { bareIdleRssMb: processStats(bare.child.pid!).rssMb };
        for (const one of sized) {
          const seed = boards.get(one.size)!.seed;
          for (const [name, value] of Object.entries(seed)) out[`${one.size}.seed.${name}`] = value;
          out[`${one.size}.worker.openMs`] = one.worker.ready.openMs;
          out[`${one.size}.worker.idleRssMb`] = one.worker.ready.rssMb;
          out[`${one.size}.worker.peakRssMb`] = processStats(one.worker.child.pid!).peakRssMb;
          out[`${one.size}.server.idleRssMb`] = one.idleRssMb;
          out[`${one.size}.server.peakRssMb`] = processStats(one.server.child.pid!).peakRssMb;
        }
        out.bulkBoardEntries = bulkWorker.ready.entries;
        return out;
      },
      close: async () => {
        for (const close of stopped.reverse()) await close();
      },
    };
  } catch (error) {
    for (const close of stopped.reverse()) await close().catch(() => {});
    throw error;
  }
}
