/**
 * Task boards of a given size, seeded once through the API (`state.update`, 50,000 tasks a call:
 * entries, index rows and sizes exactly as the runtime writes them) and copied for each use.
 */
import { closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Task } from '../../examples/taskboard/app.js';
import { DATABASE_FILE } from '../../src/store/open.js';
import type { Measurement } from './scenario.js';
import { BoardWorker } from './workers.js';

/** The WIP limit seeded boards get: well above what the bench's clients hold at once. */
export const SEEDED_WIP_LIMIT = 100;

export interface SeededBoard {
  size: number;
  /** The database file; copy it, never change it (`copyBoard`). */
  path: string;
  /** Every task was created (and last updated) at this time, and every seeding commit made then. */
  at: string;
  /** Seeding: batches, first and last batch ms, total ms. */
  seed: Measurement;
}

/** A task as `task.add` makes it, created at `at`. */
export function seededTask(id: string, at: string): Task {
  return {
    id,
    title: `Task ${id}`,
    description: '',
    status: 'open',
    assignee: null,
    createdBy: 'bench-seed',
    createdAt: at,
    updatedAt: at,
    note: null,
  };
}

/** Seeds one board per size under `dir`, each in a worker process of its own. */
export async function seedBoards(
  dir: string,
  sizes: readonly number[],
  batch: number,
  log: (message: string) => void,
): Promise<Map<number, SeededBoard>> {
  const at = new Date().toISOString();
  const boards = new Map<number, SeededBoard>();
  for (const size of sizes) {
    const path = join(dir, `board-${size}`, DATABASE_FILE);
    log(`seeding a board of ${size.toLocaleString('en-US')} tasks`);
    const worker = await BoardWorker.start(path, { clockAt: at });
    try {
      const seed = await worker.call('seed', { size, batch });
      boards.set(size, { size, path, at, seed });
    } finally {
      await worker.close();
    }
  }
  return boards;
}

/** Copies a board's database (closed cleanly) into `dataDir`, as `coremcp serve --data-dir` expects it. */
export function copyBoard(from: string, dataDir: string): string {
  // A cleanly closed database has checkpointed its log into the file: the file alone is the board.
  if (existsSync(`${from}-wal`)) throw new Error(`${from} was not closed cleanly`);
  const path = join(dataDir, DATABASE_FILE);
  mkdirSync(dirname(path), { recursive: true });
  copyFileSync(from, path);
  // Written back to disk now, not by the kernel during the measurement: a copy of the 1,000,000-task
  // board is ~800 MB of dirty pages, whose writeback would share the disk with the checkpoints'
  // syncs of the run that follows.
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return path;
}
