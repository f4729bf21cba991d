/**
 * Scenario 5: a task board with many entries (1,000,000 in the full run, seeded through the API) and a
 * long history after them (1,000,000 claim/release commits, a snapshot every 1,000 as the runtime
 * writes them); then the time to restart (`createCore`: open the store, load the declared documents),
 * to roll back the last N commits, and to compact the history while a writer keeps committing.
 *
 * Committing a million revisions through the pipeline would take the bench most of its time budget,
 * so the history is written in large SQLite transactions straight into the commit, snapshot and audit
 * tables, with audit records sealed into the chain exactly as `SqliteStore` does. The entries are
 * never written that way: the history claims and releases tasks T-1…T-100 in pairs, every commit at
 * the instant the board was seeded, so after an even number of commits each task is again exactly
 * the entry the API stored (its index rows and the collection's size unchanged). The first restart
 * checks that: the head revision, the plain part, the counts and a task must match what was written.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { GENESIS_HASH, type JsonValue, sealAuditRecord } from 'coremcp';
import { MIGRATIONS } from '../../src/store/sqlite.js';
import { copyBoard, SEEDED_WIP_LIMIT, type SeededBoard, seededTask } from './boards.js';
import type { BenchConfig, Measurement, Scenario } from './scenario.js';
import { BOARD_TASKS } from './servers.js';
import { BoardWorker } from './workers.js';

/** The schema version the bulk writer below matches; a newer store schema must update it. */
// The writer fills commits, snapshots and audit rows, whose columns are as of schema 3 and later.
const SCHEMA_VERSION = String(MIGRATIONS.length);
const SNAPSHOT_EVERY = 1000;
const BATCH = 20_000;
/** Tasks claimed through the pipeline before each rollback, so that it has something to revert. */
const ROLLBACK_CLAIMS = 10;
/** Commits the last compaction keeps. */
const KEEP_COMMITS = 1000;

interface WrittenHistory {
  head: number;
  plain: JsonValue;
}

/** Appends `count` claim/release commits (with audit records and snapshots) to the board at `path` (exported for experiments). */
export function writeHistory(path: string, board: SeededBoard, count: number): WrittenHistory {
  if (count % 2 !== 0) throw new Error('the history is claim/release pairs: an even number of commits');
  const db = new Database(path);
  try {
    const version = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get();
    if (version !== SCHEMA_VERSION) {
      throw new Error(`history writer knows store schema ${SCHEMA_VERSION}, found ${String(version)}`);
    }
    const first = db.prepare("SELECT MAX(revision) FROM commits WHERE doc = 'board'").pluck().get() as number;
    const snapshot = db
      .prepare("SELECT revision, value FROM snapshots WHERE doc = 'board' ORDER BY revision DESC LIMIT 1")
      .get() as { revision: number; value: string };
    if (snapshot.revision !== first) throw new Error('the seeded board has no snapshot at its head');
    const touched = Math.min(BOARD_TASKS, board.size);
    const entry = db
      .prepare("SELECT value FROM entries WHERE doc = 'board' AND coll = 'tasks' AND key = ?")
      .pluck();
    for (let i = 1; i <= touched; i++) {
      const stored = entry.get(`T-${i}`) as string;
      if (stored !== JSON.stringify(seededTask(`T-${i}`, board.at)))
        throw new Error(`task T-${i} is not as seeded: ${stored}`);
    }

    const insertCommit = db.prepare(
      `INSERT INTO commits (doc, revision, command_id, command, principal, at, patches, inverse, audit_seq)
       VALUES ('board', ?, ?, ?, 'bench', ?, ?, ?, ?)`,
    );
    const insertAudit = db.prepare(
      "INSERT INTO audit (seq, at, principal, command, hash, record) VALUES (?, ?, 'bench', ?, ?, ?)",
    );
    const insertSnapshot = db.prepare("INSERT INTO snapshots (doc, revision, value) VALUES ('board', ?, ?)");
    const last = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; hash: string }
      | undefined;
    let seq = last?.seq ?? 0;
    let prevHash = last?.hash ?? GENESIS_HASH;
    const at = board.at;
    const replace = (id: string, status: string, assignee: string | null) => [
      { op: 'replace', path: `/tasks/${id}/status`, value: status },
      { op: 'replace', path: `/tasks/${id}/assignee`, value: assignee },
      { op: 'replace', path: `/tasks/${id}/updatedAt`, value: at },
    ];

    const writeBatch = db.transaction((from: number, to: number) => {
      for (let revision = from; revision <= to; revision++) {
        const n = revision - first - 1;
        const id = `T-${(Math.floor(n / 2) % touched) + 1}`;
        const claim = n % 2 === 0;
        const command = claim ? 'task.claim' : 'task.release';
        const claimed = replace(id, 'claimed', 'bench');
        const open = replace(id, 'open', null);
        const patchJson = JSON.stringify(claim ? claimed : open);
        const commandId = `bench-${revision}`;
        seq++;
        const record = sealAuditRecord(
          {
            at,
            requestId: commandId,
            principal: 'bench',
            via: 'internal',
            command,
            input: { id },
            outcome: 'ok',
            doc: 'board',
            revision,
            commandId,
            patchHash: createHash('sha256').update(patchJson).digest('hex'),
          },
          seq,
          prevHash,
        );
        prevHash = record.hash;
        insertAudit.run(seq, at, command, record.hash, JSON.stringify(record));
        insertCommit.run(
          revision,
          commandId,
          command,
          at,
          patchJson,
          JSON.stringify(claim ? open : claimed),
          seq,
        );
        // The plain part (nextId, settings) does not change: every snapshot holds the seeded one.
        if (revision % SNAPSHOT_EVERY === 0) insertSnapshot.run(revision, snapshot.value);
      }
    });
    const head = first + count;
    for (let from = first + 1; from <= head; from += BATCH)
      writeBatch(from, Math.min(head, from + BATCH - 1));
    return { head, plain: JSON.parse(snapshot.value) as JsonValue };
  } finally {
    db.close();
  }
}

/** Throws unless the restarted board is the one written. */
function verify(found: Record<string, JsonValue>, written: WrittenHistory, board: SeededBoard): void {
  const expected: Record<string, JsonValue> = {
    revision: written.head,
    nextId: board.size + 1,
    wipLimit: SEEDED_WIP_LIMIT,
    entries: board.size,
    open: board.size,
    claimed: 0,
    first: seededTask('T-1', board.at) as unknown as JsonValue,
  };
  for (const [name, value] of Object.entries(expected)) {
    if (JSON.stringify(found[name]) !== JSON.stringify(value))
      throw new Error(`restart found ${name} ${JSON.stringify(found[name])}, not ${JSON.stringify(value)}`);
  }
  if (
    JSON.stringify({ nextId: found.nextId, settings: { wipLimit: found.wipLimit } }) !==
    JSON.stringify(written.plain)
  )
    throw new Error(`restart found a plain part other than the ${JSON.stringify(written.plain)} written`);
}

export async function historyScenario(
  dir: string,
  config: BenchConfig,
  board: SeededBoard,
): Promise<Scenario> {
  const path = copyBoard(board.path, join(dir, 'history'));
  const buildStarted = performance.now();
  const written = writeHistory(path, board, config.historyCommits);
  const buildMs = performance.now() - buildStarted;
  // Compaction removes history: it gets a copy of its own, so restarts and rollbacks keep all of it.
  const compactionPath = copyBoard(path, join(dir, 'compaction'));
  const keeper = await BoardWorker.start(path);
  const compactor = await BoardWorker.start(compactionPath);
  // Each round compacts the next slice; the last keeps the newest KEEP_COMMITS.
  const slice = Math.floor((written.head - KEEP_COMMITS) / config.rounds);
  let verified = false;

  return {
    name: 'history',
    cases: [
      {
        key: 'restart',
        // A process of its own, started by the case: the keeper and the compactor stay stopped.
        uses: () => [],
        run: async () => {
          const restarted = await BoardWorker.start(path);
          try {
            if (!verified) {
              verify(await restarted.call<Record<string, JsonValue>>('inspect'), written, board);
              verified = true;
            }
            const { openMs, recoveryMs, rssMb, heapMb } = restarted.ready;
            return { ms: openMs, recoveryMs, rssMb, heapMb };
          } finally {
            await restarted.close();
          }
        },
      },
      {
        key: 'rollback',
        run: () => keeper.call('rollback', { commits: config.rollbackCommits, claimFirst: ROLLBACK_CLAIMS }),
      },
      {
        key: 'compact',
        run: async (round): Promise<Measurement> => ({
          ...(await compactor.call('compact', { through: (round + 1) * slice })),
          slice,
        }),
      },
    ],
    facts: () => ({ commits: config.historyCommits, entries: board.size, buildMs }),
    close: async () => {
      await keeper.close();
      await compactor.close();
    },
  };
}
