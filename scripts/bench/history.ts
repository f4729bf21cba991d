/**
 * Scenario 5: a task board with a long history (1,000,000 commits in the full run, snapshots every
 * 1,000 as the server writes them), then the time to restart (open the store, rebuild the head from
 * the newest snapshot plus the commits after it) and to roll back the last N commits.
 *
 * Committing a million revisions through the pipeline would take the bench most of its time budget,
 * so the history is written in large SQLite transactions straight into the store's tables, with
 * audit records sealed into the chain exactly as `SqliteStore` does. The first restart checks the
 * result: the head it rebuilds must equal the value the writer computed.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  createCore,
  GENESIS_HASH,
  type JsonValue,
  localPrincipal,
  SqliteStore,
  sealAuditRecord,
} from 'coremcp';
import taskboard, { type Board } from '../../examples/taskboard/app.js';
import type { BenchConfig, Scenario } from './scenario.js';
import { BOARD_TASKS } from './servers.js';

/** The schema version the bulk writer below matches; a newer store schema must update it. */
const SCHEMA_VERSION = '2';
const SNAPSHOT_EVERY = 1000;
const BATCH = 20_000;

/** Writes `count` claim/release commits (with audit records and snapshots) after the current head. */
function writeHistory(path: string, start: Board, count: number): { head: number; value: Board } {
  const db = new Database(path);
  try {
    const version = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get();
    if (version !== SCHEMA_VERSION) {
      throw new Error(`history writer knows store schema ${SCHEMA_VERSION}, found ${String(version)}`);
    }
    const insertCommit = db.prepare(
      `INSERT INTO commits (doc, revision, command_id, command, principal, at, patches, inverse, audit_seq)
       VALUES ('board', ?, ?, ?, 'bench', ?, ?, ?, ?)`,
    );
    const insertAudit = db.prepare(
      "INSERT INTO audit (seq, at, principal, command, hash, record) VALUES (?, ?, 'bench', ?, ?, ?)",
    );
    const insertSnapshot = db.prepare("INSERT INTO snapshots (doc, revision, value) VALUES ('board', ?, ?)");
    const first = db.prepare("SELECT MAX(revision) AS revision FROM commits WHERE doc = 'board'").get() as {
      revision: number;
    };
    const last = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; hash: string }
      | undefined;
    let seq = last?.seq ?? 0;
    let prevHash = last?.hash ?? GENESIS_HASH;
    const value = structuredClone(start);
    const at = new Date().toISOString();

    const writeBatch = db.transaction((from: number, to: number) => {
      for (let revision = from; revision <= to; revision++) {
        const n = revision - first.revision - 1;
        const id = `T-${(Math.floor(n / 2) % BOARD_TASKS) + 1}`;
        const task = value.tasks[id]!;
        const claim = n % 2 === 0;
        const command = claim ? 'task.claim' : 'task.release';
        const next = { status: claim ? 'claimed' : 'open', assignee: claim ? 'bench' : null, updatedAt: at };
        const patches = Object.entries(next).map(([k, v]) => ({
          op: 'replace',
          path: `/tasks/${id}/${k}`,
          value: v,
        }));
        const inverse = Object.keys(next).map((k) => ({
          op: 'replace',
          path: `/tasks/${id}/${k}`,
          value: task[k as keyof typeof next],
        }));
        Object.assign(task, next);
        const patchJson = JSON.stringify(patches);
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
        insertCommit.run(revision, commandId, command, at, patchJson, JSON.stringify(inverse), seq);
        if (revision % SNAPSHOT_EVERY === 0) insertSnapshot.run(revision, JSON.stringify(value));
      }
    });
    const head = first.revision + count;
    for (let from = first.revision + 1; from <= head; from += BATCH)
      writeBatch(from, Math.min(head, from + BATCH - 1));
    return { head, value };
  } finally {
    db.close();
  }
}

export async function historyScenario(dir: string, config: BenchConfig): Promise<Scenario> {
  const path = join(dir, 'history.db');
  const open = () => createCore({ app: taskboard, store: new SqliteStore({ path }) });
  const principal = localPrincipal('bench');

  const seeded = await open();
  for (let i = 1; i <= BOARD_TASKS; i++)
    await seeded.execute('task.add', { title: `Task ${i}` }, { principal });
  await seeded.execute('board.settings', { wipLimit: BOARD_TASKS }, { principal });
  const start = (await seeded.state.get<Board>('board')).value;
  await seeded.close();

  const buildStarted = performance.now();
  const written = writeHistory(path, start, config.historyCommits);
  const buildMs = performance.now() - buildStarted;
  let verified = false;

  // A long-lived core for the rollbacks; each restart opens (and closes) its own.
  const core = await open();
  await core.state.get('board');

  return {
    name: 'history',
    cases: [
      {
        key: 'restart',
        run: async () => {
          const started = performance.now();
          const restarted = await open();
          const head = await restarted.state.get<JsonValue>('board');
          const ms = performance.now() - started;
          await restarted.close();
          if (!verified) {
            if (
              head.revision !== written.head ||
              JSON.stringify(head.value) !== JSON.stringify(written.value)
            )
              throw new Error(`restart rebuilt revision ${head.revision}, not the ${written.head} written`);
            verified = true;
          }
          return { ms };
        },
      },
      {
        key: 'rollback',
        run: async () => {
          const { revision } = await core.state.get('board');
          const started = performance.now();
          const result = await core.state.rollback('board', revision - config.rollbackCommits);
          const ms = performance.now() - started;
          if (result.result.reverted !== config.rollbackCommits)
            throw new Error('rollback reverted the wrong count');
          return { ms };
        },
      },
    ],
    facts: () => ({ commits: config.historyCommits, buildMs }),
    close: () => core.close(),
  };
}
