/**
 * Scenarios 1 and 2, in this process: a task-board command through the whole pipeline with a durable
 * SQLite commit, and `state.update` alone on a 10 KB and a 1 MB document.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { createCore, localPrincipal, SqliteStore } from 'coremcp';
import taskboard from '../../examples/taskboard/app.js';
import type { CallFn } from './load.js';
import { measurementOf, runLoad } from './load.js';
import type { BenchConfig, Scenario } from './scenario.js';
import { BOARD_TASKS, GROUP_COMMIT } from './servers.js';

/** A JSON value of about `bytes` bytes: `items` objects of ~100 bytes each. */
function documentOf(bytes: number): {
  counter: number;
  items: Array<{ id: number; name: string; tags: string[] }>;
} {
  const count = Math.round(bytes / 88);
  const items = Array.from({ length: count }, (_, id) => ({
    id,
    name: `item-${id}-${'x'.repeat(40)}`,
    tags: ['alpha', 'beta', 'gamma'],
  }));
  return { counter: 0, items };
}

/** A call slower than this counts as slow (coremcp's p99 goal is 0.5 ms). */
const SLOW_MS = 0.5;

interface Span {
  start: number;
  end: number;
}

/**
 * Where a lone caller's slow calls fall: during a garbage-collection pause, while the WAL worker ran
 * a PASSIVE checkpoint (writers go on, but its syncs share the machine), while it ran a RESTART or
 * TRUNCATE (writers wait), or during none of them. Times are this process's `performance.now()`.
 */
function slowCallWatch(store: SqliteStore) {
  const calls: Span[] = [];
  const gcs: Span[] = [];
  const passive: Span[] = [];
  const blocking: Span[] = [];
  let on = false;
  const observer = new PerformanceObserver((list) => {
    if (on)
      for (const e of list.getEntries()) gcs.push({ start: e.startTime, end: e.startTime + e.duration });
  });
  observer.observe({ entryTypes: ['gc'] });
  const stopWatching = store.watchCheckpoints((event) => {
    if (!on) return;
    const start = event.startedAt - performance.timeOrigin;
    (event.mode === 'passive' ? passive : blocking).push({ start, end: start + event.durationMs });
  });
  const overlaps = (call: Span, spans: Span[]) => spans.some((s) => s.start < call.end && s.end > call.start);
  const median = (spans: Span[]) => {
    const sorted = spans.map((s) => s.end - s.start).sort((a, b) => a - b);
    return sorted.length === 0 ? 0 : sorted[sorted.length >> 1]!;
  };
  return {
    wrap(call: CallFn): CallFn {
      return async (worker) => {
        const start = performance.now();
        const ok = await call(worker);
        const end = performance.now();
        if (on && end - start > SLOW_MS) calls.push({ start, end });
        return ok;
      };
    },
    start() {
      on = true;
    },
    /** The counts, each slow call counted once: GC first, then a blocking checkpoint, then PASSIVE. */
    finish(): Record<string, number> {
      on = false;
      for (const e of observer.takeRecords()) gcs.push({ start: e.startTime, end: e.startTime + e.duration });
      observer.disconnect();
      stopWatching();
      let gc = 0;
      let waited = 0;
      let synced = 0;
      let other = 0;
      for (const call of calls) {
        if (overlaps(call, gcs)) gc++;
        else if (overlaps(call, blocking)) waited++;
        else if (overlaps(call, passive)) synced++;
        else other++;
      }
      return {
        slowCalls: calls.length,
        slowDuringGc: gc,
        slowDuringRestart: waited,
        slowDuringPassive: synced,
        slowDuringNone: other,
        gcPauses: gcs.length,
        gcMedianMs: median(gcs),
        passiveCheckpoints: passive.length,
        passiveMedianMs: median(passive),
        restartCheckpoints: blocking.length,
        restartMedianMs: median(blocking),
      };
    },
  };
}

export async function inProcessScenario(dir: string, config: BenchConfig): Promise<Scenario> {
  const store = new SqliteStore({ path: join(dir, 'in-process.db') });
  const core = await createCore({ app: taskboard, store, groupCommit: GROUP_COMMIT });
  const principal = localPrincipal('bench');
  for (let i = 1; i <= BOARD_TASKS; i++)
    await core.execute('task.add', { title: `Task ${i}` }, { principal });

  const sizes = { '10kb': 10 * 1024, '1mb': 1024 * 1024 };
  const documentBytes: Record<string, number> = {};
  for (const [name, bytes] of Object.entries(sizes)) {
    const value = documentOf(bytes);
    documentBytes[name] = JSON.stringify(value).length;
    await core.state.update(`bench-${name}`, (draft: Record<string, unknown>) => {
      Object.assign(draft, value);
    });
  }
  const load = {
    concurrency: 1,
    durationMs: config.windowMs,
    warmupMs: config.warmupMs,
    maxCalls: config.maxCalls,
  };

  let held = false;
  const command = async () => {
    const result = await core.execute(held ? 'task.release' : 'task.claim', { id: 'T-1' }, { principal });
    held = !held;
    return result.status === 'success' && result.committed;
  };
  // 16 callers at once, each an agent of its own claiming and releasing a task of its own (T-2 … T-17):
  // concurrent writers of one document, as agents are (one principal would hit the board's WIP limit).
  const heldBy = new Map<number, boolean>();
  const agents = Array.from({ length: 16 }, (_, worker) => localPrincipal(`bench-${worker}`));
  const concurrent = async (worker: number) => {
    const mine = heldBy.get(worker) ?? false;
    const result = await core.execute(
      mine ? 'task.release' : 'task.claim',
      { id: `T-${worker + 2}` },
      { principal: agents[worker % agents.length]! },
    );
    heldBy.set(worker, !mine);
    return result.status === 'success' && result.committed;
  };
  const idle = { ...load, between: () => new Promise<void>((resolve) => setTimeout(resolve, 1)) };
  // Calibration: fixed work with no coremcp in it (a JSON round trip of a 10 KB value and a SHA-256,
  // ~0.1 ms), hot and with the same idle gaps. What it loses after 1 ms idle is the machine's (a
  // virtual CPU waking from halt, caches refilled), not anything coremcp does between calls.
  const fixedValue = documentOf(10 * 1024);
  const fixedWork = async () => {
    const text = JSON.stringify(fixedValue);
    const copy = JSON.parse(text) as typeof fixedValue;
    return createHash('sha256').update(JSON.stringify(copy)).digest('hex').length === 64;
  };
  const update = (name: string) => async () => {
    const result = await core.state.update(`bench-${name}`, (draft: ReturnType<typeof documentOf>) => {
      draft.counter += 1;
      draft.items[draft.counter % draft.items.length]!.name = `renamed-${draft.counter}`;
    });
    return result.committed;
  };

  return {
    name: 'in-process',
    cases: [
      {
        key: 'command',
        run: async () => {
          const watch = slowCallWatch(store);
          const result = await runLoad(watch.wrap(command), { ...load, onMeasureStart: () => watch.start() });
          return { ...measurementOf(result, 'command'), ...watch.finish() };
        },
      },
      {
        // A realistic cadence: 1 ms idle between calls (timers, GC and the checkpointer wake in between).
        key: 'command.idle',
        run: async () => measurementOf(await runLoad(command, idle), 'command with idle gaps'),
      },
      {
        key: 'calibration',
        run: async () => measurementOf(await runLoad(fixedWork, load), 'fixed work (calibration)'),
      },
      {
        key: 'calibration.idle',
        run: async () => measurementOf(await runLoad(fixedWork, idle), 'fixed work with idle gaps'),
      },
      {
        key: 'command.16',
        run: async () =>
          measurementOf(await runLoad(concurrent, { ...load, concurrency: 16 }), 'command, 16 callers'),
      },
      ...Object.keys(sizes).map((name) => ({
        key: `update.${name}`,
        run: async () => measurementOf(await runLoad(update(name), load), `update ${name}`),
      })),
    ],
    facts: () => ({ 'bytes.10kb': documentBytes['10kb']!, 'bytes.1mb': documentBytes['1mb']! }),
    close: () => core.close(),
  };
}
