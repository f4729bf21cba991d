/**
 * Group commit on and off, back to back in one process (the machine's load is then the same for
 * both): 16 concurrent in-process callers on one SQLite document, with `durability` normal and full,
 * on a plain document (`state.update`) and through the task board (`task.claim`/`task.release`).
 * Prints calls per second, process CPU per call and the mean batch size.
 *
 *   npm run build
 *   TSX_TSCONFIG_PATH=scripts/bench/tsconfig.json node --import tsx scripts/bench/group-commit.ts [--ms 2000] [--rounds 2]
 *
 * (the tsconfig makes it measure the built dist/, as `npm run bench` does; without it, src/ through tsx)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createCore, localPrincipal, SqliteStore } from 'coremcp';
import taskboard from '../../examples/taskboard/app.js';

const { values } = parseArgs({ options: { ms: { type: 'string' }, rounds: { type: 'string' } } });
const windowMs = Number(values.ms ?? 2000);
const rounds = Number(values.rounds ?? 2);
const CALLERS = 16;

async function measure(
  durability: 'normal' | 'full',
  groupCommit: boolean,
  workload: 'update' | 'claim',
): Promise<{ perSecond: number; cpuUs: number; batch: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'coremcp-gc-bench-'));
  const core = await createCore({
    app: taskboard,
    store: new SqliteStore({ path: join(dir, 'bench.db'), durability }),
    groupCommit,
  });
  try {
    const seed = localPrincipal('seed');
    for (let i = 1; i <= CALLERS; i++)
      await core.execute('task.add', { title: `Task ${i}` }, { principal: seed });
    const agents = Array.from({ length: CALLERS }, (_, i) => localPrincipal(`agent-${i}`));
    const held = new Array<boolean>(CALLERS).fill(false);
    const call = async (worker: number) => {
      if (workload === 'update') {
        await core.state.update('counter', (draft: { n?: number }) => {
          draft.n = (draft.n ?? 0) + 1;
        });
        return;
      }
      const result = await core.execute(
        held[worker] ? 'task.release' : 'task.claim',
        { id: `T-${worker + 1}` },
        { principal: agents[worker]! },
      );
      if (result.status !== 'success') throw new Error(JSON.stringify(result));
      held[worker] = !held[worker];
    };
    const run = async (ms: number) => {
      let calls = 0;
      const until = performance.now() + ms;
      await Promise.all(
        Array.from({ length: CALLERS }, async (_, worker) => {
          while (performance.now() < until) {
            await call(worker);
            calls++;
          }
        }),
      );
      return calls;
    };
    await run(300); // warm-up
    const before = core.state.batches;
    const cpu = process.cpuUsage();
    const started = performance.now();
    const calls = await run(windowMs);
    const elapsed = performance.now() - started;
    const used = process.cpuUsage(cpu);
    const after = core.state.batches;
    const batches = after.batches - before.batches;
    return {
      perSecond: (calls * 1000) / elapsed,
      cpuUs: (used.user + used.system) / calls,
      batch: batches === 0 ? 1 : (after.commits - before.commits) / batches,
    };
  } finally {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: string[] = [];
for (const durability of ['normal', 'full'] as const) {
  for (const workload of ['update', 'claim'] as const) {
    const figures: Record<'on' | 'off', Array<Awaited<ReturnType<typeof measure>>>> = { on: [], off: [] };
    for (let round = 0; round < rounds; round++) {
      figures.off.push(await measure(durability, false, workload));
      figures.on.push(await measure(durability, true, workload));
    }
    const best = (list: Array<Awaited<ReturnType<typeof measure>>>) =>
      list.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
    const on = best(figures.on);
    const off = best(figures.off);
    rows.push(
      `| ${durability} | ${workload} | ${off.perSecond.toFixed(0)} | ${on.perSecond.toFixed(0)} | ${(on.perSecond / off.perSecond).toFixed(2)}x | ${off.cpuUs.toFixed(0)} | ${on.cpuUs.toFixed(0)} | ${on.batch.toFixed(1)} |`,
    );
    process.stderr.write(`${rows.at(-1)}\n`);
  }
}
process.stdout.write(
  [
    `16 concurrent in-process callers, one SQLite document, best of ${rounds} rounds of ${windowMs} ms`,
    '',
    '| durability | workload | calls/s off | calls/s on | on/off | CPU µs/call off | CPU µs/call on | mean batch |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n'),
);
process.exit(0);
