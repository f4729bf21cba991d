/**
 * A child process holding one core on one task board, driven by the bench over IPC (`workers.ts`).
 * Each board lives in its own process, so the RSS and the event-loop stalls measured are that
 * board's alone, and a million-entry seed never swells the bench's own heap.
 *   node --import tsx board-worker.ts <database path> [<clock ISO time>]
 * Out: `{ ready }` once the core is open, then `{ id, result }` or `{ id, error }` per request.
 */
import {
  type BatchOutcome,
  type CommandResult,
  type CommitOutcome,
  type CommitRequest,
  createCore,
  type DocumentDraft,
  type DocumentView,
  type JsonValue,
  localPrincipal,
  type Snapshot,
  SqliteStore,
} from 'coremcp';
import taskboard, { type board as boardDocument, type Task } from '../../examples/taskboard/app.js';
import { SEEDED_WIP_LIMIT, seededTask } from './boards.js';
import { type LoadOptions, measurementOf, runLoad } from './load.js';
import type { Measurement } from './scenario.js';
import { stallMonitor } from './stall.js';
import type { WorkerReady, WorkerRequest } from './workers.js';
import { randomTaskPicker } from './workloads.js';

type BoardShape = NonNullable<(typeof boardDocument)['shape']>;
type BoardDraft = DocumentDraft<BoardShape>;
type BoardView = DocumentView<BoardShape>;

const MB = 1024 * 1024;

/**
 * Times the store's synchronous work that can hold the event loop: snapshot writes (off the request
 * path, so their duration is a stall they cause) and commits (the SQLite transaction of each call),
 * so a long stall can be told apart from a long commit.
 */
class TimedSqliteStore extends SqliteStore {
  snapshots = 0;
  snapshotMaxMs = 0;
  commitMaxMs = 0;
  /** Commits that took 5 ms or more. */
  slowCommits = 0;

  override async writeSnapshot(doc: string, snapshot: Snapshot): Promise<void> {
    const started = performance.now();
    try {
      await super.writeSnapshot(doc, snapshot);
    } finally {
      this.snapshots++;
      this.snapshotMaxMs = Math.max(this.snapshotMaxMs, performance.now() - started);
    }
  }

  override async commit(request: CommitRequest): Promise<CommitOutcome> {
    const started = performance.now();
    try {
      return await super.commit(request);
    } finally {
      this.#timed(started);
    }
  }

  /** Group commit sends its batches here (a lone caller's too): one transaction, timed like a commit. */
  override async commitBatch(requests: readonly CommitRequest[]): Promise<BatchOutcome> {
    const started = performance.now();
    try {
      return await super.commitBatch(requests);
    } finally {
      this.#timed(started);
    }
  }

  #timed(started: number): void {
    const ms = performance.now() - started;
    this.commitMaxMs = Math.max(this.commitMaxMs, ms);
    if (ms >= 5) this.slowCommits++;
  }

  resetStats(): void {
    this.snapshots = 0;
    this.snapshotMaxMs = 0;
    this.commitMaxMs = 0;
    this.slowCommits = 0;
  }

  stats(): Measurement {
    const { snapshots, snapshotMaxMs, commitMaxMs, slowCommits } = this;
    return { snapshots, snapshotMaxMs, commitMaxMs, slowCommits };
  }
}

const [path, clockAt] = process.argv.slice(2);
if (!path) throw new Error('usage: board-worker.ts <database path> [<clock ISO time>]');
const store = new TimedSqliteStore({ path });
const openStarted = performance.now();
const core = await createCore({
  app: taskboard,
  store,
  ...(clockAt ? { clock: () => new Date(clockAt) } : {}),
});
const openMs = performance.now() - openStarted;
const member = localPrincipal('bench', ['member']);
const admin = localPrincipal('bench-admin');
const monitor = stallMonitor();

async function readBoard(): Promise<{ revision: number; value: BoardView }> {
  const { revision, value } = await core.state.view('board');
  return { revision, value: value as BoardView };
}

function memory(): { rssMb: number; heapMb: number } {
  const usage = process.memoryUsage();
  return { rssMb: usage.rss / MB, heapMb: usage.heapUsed / MB };
}

/** Lets the event loop turn, so a timer (the stall monitor's, a snapshot's) can run. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The stalls since the monitor was last reset. */
async function stallSince(): Promise<Measurement> {
  const stall = await monitor.read();
  return {
    stallMaxMs: stall.maxMs,
    stallOwnMs: stall.ownMaxMs,
    gcMaxMs: stall.gcMaxMs ?? Number.NaN,
    gcMajor: stall.gcMajor ?? Number.NaN,
  };
}

interface LoadArgs {
  windowMs: number;
  warmupMs: number;
  maxCalls: number;
}

/** One client, yielding to the event loop between calls as a server would between requests. */
async function measureLoad(
  label: string,
  call: () => Promise<boolean>,
  args: LoadArgs,
  between: () => Promise<void> = yieldToLoop,
): Promise<Measurement> {
  const options: LoadOptions = {
    concurrency: 1,
    durationMs: args.windowMs,
    warmupMs: args.warmupMs,
    maxCalls: args.maxCalls,
    between,
    onMeasureStart: () => {
      store.resetStats();
      monitor.reset();
    },
  };
  const result = await runLoad(call, options);
  return {
    ...measurementOf(result, label),
    // CPU time is what a busy neighbour on a shared machine cannot inflate (all threads: the WAL
    // checkpointer included; for `adds`, the untimed removal too).
    cpuMsPerCall: (result.generatorCpu * 1000) / result.callsPerSec,
    ...(await stallSince()),
    ...store.stats(),
    ...memory(),
  };
}

/** Adds `size` tasks, `batch` per `state.update`, and the WIP limit; returns each batch's time. */
async function seed(args: { size: number; batch: number }): Promise<Measurement> {
  if (!clockAt) throw new Error('seeding needs the clock time, so every task has the same one');
  const batchMs: number[] = [];
  for (let from = 1; from <= args.size; from += args.batch) {
    const to = Math.min(args.size, from + args.batch - 1);
    const started = performance.now();
    await core.state.update<BoardDraft>(
      'board',
      (draft) => {
        for (let i = from; i <= to; i++) draft.tasks.set(`T-${i}`, seededTask(`T-${i}`, clockAt));
        draft.nextId = to + 1;
      },
      { principal: admin, command: 'bench.seed' },
    );
    batchMs.push(performance.now() - started);
    await yieldToLoop(); // the snapshot a large write makes due
  }
  const settings = await core.execute('board.settings', { wipLimit: SEEDED_WIP_LIMIT }, { principal: admin });
  if (settings.status !== 'success')
    throw new Error(
      `seeding: ${settings.status === 'error' ? settings.publicError.message : settings.status}`,
    );
  // The newest snapshot at head: the history writer starts from it.
  await core.state.snapshot('board');
  return {
    batches: batchMs.length,
    firstBatchMs: batchMs[0] ?? Number.NaN,
    lastBatchMs: batchMs.at(-1) ?? Number.NaN,
    totalMs: batchMs.reduce((a, b) => a + b, 0),
  };
}

/**
 * Claims a random task, or releases the one it holds: every call commits. The task held survives
 * between runs, so the next run begins by releasing it.
 */
let held: string | undefined;
let pick: ((worker: number) => string) | undefined;
async function claimOrRelease(): Promise<CommandResult> {
  pick ??= randomTaskPicker(await (await readBoard()).value.tasks.count(), 1);
  const id = held ?? pick(0);
  const result = await core.execute(held ? 'task.release' : 'task.claim', { id }, { principal: member });
  held = held ? undefined : id;
  return result;
}

async function claims(args: LoadArgs): Promise<Measurement> {
  const call = async () => {
    const result = await claimOrRelease();
    return result.status === 'success' && result.committed;
  };
  return measureLoad('claim/release', call, args);
}

/** `task.add`, each new task removed again (untimed) before the next call: the board keeps its size. */
async function adds(args: LoadArgs): Promise<Measurement> {
  let added: string | undefined;
  const call = async () => {
    const result = await core.execute('task.add', { title: 'Bench task' }, { principal: member });
    if (result.status !== 'success') return false;
    added = (result.result as unknown as { task: Task }).task.id;
    return result.committed;
  };
  const between = async () => {
    const id = added;
    added = undefined;
    if (id) await core.state.update<BoardDraft>('board', (draft) => draft.tasks.delete(id));
    await yieldToLoop();
  };
  return measureLoad('task.add', call, args, between);
}

/** `count` tasks added in one `state.update`, then removed in another. */
async function bulk(args: { count: number }): Promise<Measurement> {
  const at = new Date().toISOString();
  const before = await readBoard();
  const first = before.value.nextId;
  monitor.reset();
  let started = performance.now();
  const added = await core.state.update<BoardDraft>(
    'board',
    (draft) => {
      for (let i = 0; i < args.count; i++)
        draft.tasks.set(`T-${first + i}`, seededTask(`T-${first + i}`, at));
      draft.nextId = first + args.count;
    },
    { principal: admin, command: 'bench.bulk-add' },
  );
  const addMs = performance.now() - started;
  const addStall = await stallSince();
  if (!added.committed) throw new Error('the bulk add committed nothing');
  monitor.reset();
  started = performance.now();
  await core.state.update<BoardDraft>(
    'board',
    (draft) => {
      for (let i = 0; i < args.count; i++) draft.tasks.delete(`T-${first + i}`);
    },
    { principal: admin, command: 'bench.bulk-remove' },
  );
  const removeMs = performance.now() - started;
  const removeStall = await stallSince();
  return {
    entriesBefore: await before.value.tasks.count(),
    addMs,
    addStallMaxMs: addStall.stallMaxMs!,
    addStallOwnMs: addStall.stallOwnMs!,
    removeMs,
    removeStallMaxMs: removeStall.stallMaxMs!,
    removeStallOwnMs: removeStall.stallOwnMs!,
    ...memory(),
  };
}

/**
 * Compacts the board's history through revision `through` while one client keeps claiming and
 * releasing tasks: how long it takes, how long it stalls the loop, and what the writer sees meanwhile.
 */
async function compact(args: { through: number }): Promise<Measurement> {
  const { revision } = await readBoard();
  const latencies: number[] = [];
  let done = false;
  let failed = 0;
  const writer = (async () => {
    while (!done) {
      await yieldToLoop();
      const started = performance.now();
      const result = await claimOrRelease();
      latencies.push(performance.now() - started);
      if (result.status !== 'success' || !result.committed) failed++;
    }
  })();
  store.resetStats();
  monitor.reset();
  const started = performance.now();
  const result = await core.state.compact('board', { keepCommits: revision - args.through });
  const ms = performance.now() - started;
  done = true;
  await writer;
  const stall = await stallSince();
  latencies.sort((a, b) => a - b);
  return {
    ms,
    removed: result.removed,
    ...stall,
    writerCalls: latencies.length,
    writerErrors: failed,
    writerP50Ms: latencies[Math.floor(latencies.length / 2)] ?? Number.NaN,
    writerMaxMs: latencies.at(-1) ?? Number.NaN,
    ...store.stats(),
  };
}

/**
 * Claims `claimFirst` random tasks through the pipeline (untimed), then rolls the last `commits`
 * commits back: the rollback has those claims to undo, so it commits a real change.
 */
async function rollback(args: { commits: number; claimFirst: number }): Promise<Measurement> {
  const choose = randomTaskPicker(await (await readBoard()).value.tasks.count(), 1);
  for (let i = 0; i < args.claimFirst; i++)
    await core.execute('task.claim', { id: choose(0) }, { principal: member });
  const { revision } = await readBoard();
  monitor.reset();
  const started = performance.now();
  const result = await core.state.rollback('board', revision - args.commits);
  const ms = performance.now() - started;
  if (result.result.reverted !== args.commits) throw new Error('rollback reverted the wrong count');
  return { ms, committed: result.committed ? 1 : 0, ...(await stallSince()) };
}

/** What a restart found, for the bench to check against what it wrote. */
async function inspect(): Promise<Record<string, JsonValue>> {
  const { revision, value } = await readBoard();
  const first = await value.tasks.get('T-1');
  return {
    revision,
    nextId: value.nextId,
    wipLimit: value.settings.wipLimit,
    entries: await value.tasks.count(),
    open: await value.tasks.count('byStatus', ['open']),
    claimed: await value.tasks.count('byStatus', ['claimed']),
    first: (first ?? null) as JsonValue,
  };
}

const operations: Record<string, (args: never) => Promise<unknown>> = {
  seed,
  claims,
  adds,
  bulk,
  compact,
  rollback,
  inspect,
  memory: async () => memory(),
};

// One request at a time: the bench waits for each answer.
process.on('message', (message: WorkerRequest) => {
  const reply = (body: Record<string, unknown>) => process.send!({ id: message.id, ...body });
  if (message.op === 'close') {
    monitor.stop();
    void core.close().then(() => process.send!({ id: message.id, result: null }, () => process.exit(0)));
    return;
  }
  const operation = operations[message.op];
  if (!operation) return reply({ error: `unknown operation ${message.op}` });
  operation(message.args as never).then(
    (result) => reply({ result }),
    (error: unknown) =>
      reply({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});

const ready: WorkerReady = {
  openMs,
  recoveryMs: core.recoveryMs,
  entries: await (await readBoard()).value.tasks.count(),
  ...memory(),
};
process.send!({ ready });
