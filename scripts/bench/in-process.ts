/**
 * Scenarios 1 and 2, in this process: a task-board command through the whole pipeline with a durable
 * SQLite commit, and `state.update` alone on a 10 KB and a 1 MB document.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { createCore, localPrincipal, SqliteStore } from 'coremcp';
import taskboard from '../../examples/taskboard/app.js';
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

export async function inProcessScenario(dir: string, config: BenchConfig): Promise<Scenario> {
  const core = await createCore({
    app: taskboard,
    store: new SqliteStore({ path: join(dir, 'in-process.db') }),
    groupCommit: GROUP_COMMIT,
  });
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
      { key: 'command', run: async () => measurementOf(await runLoad(command, load), 'command') },
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
