/**
 * What each server is asked to do, independent of the transport: coremcp claims and releases a task
 * (a validated, audited commit every call); the bare SDK server bumps a counter.
 */
import type { CallFn } from './load.js';
import { BOARD_TASKS } from './servers.js';
import { describeFailure, type RpcChannel, succeeded } from './transports.js';

export interface Workload {
  name: string;
  /** A fresh call function; per-worker state (which task it holds) lives in it. Throws on a failed call. */
  calls(channel: RpcChannel): CallFn;
}

/** Worker `w` alternates task.claim / task.release on task T-(w+1): every call commits a revision. */
export const taskboardClaims: Workload = {
  name: 'coremcp task board (claim/release)',
  calls(channel) {
    const holding: boolean[] = [];
    return async (worker) => {
      if (worker >= BOARD_TASKS) throw new Error(`at most ${BOARD_TASKS} workers: one task each`);
      const held = holding[worker] === true;
      const response = await channel.request('tools/call', {
        name: held ? 'task.release' : 'task.claim',
        arguments: { id: `T-${worker + 1}` },
      });
      // Flip either way: a failed claim or release means our idea of the task was wrong.
      holding[worker] = !held;
      if (!succeeded(response)) throw new Error(describeFailure(response));
      return true;
    };
  },
};

export const bareCounter: Workload = {
  name: 'bare SDK (counter)',
  calls(channel) {
    return async () => {
      const response = await channel.request('tools/call', { name: 'incr', arguments: { by: 1 } });
      if (!succeeded(response)) throw new Error(describeFailure(response));
      return true;
    };
  },
};

/**
 * Random tasks of a board of `tasks` (T-1 … T-tasks) for `workers` concurrent workers that never pick
 * the same one: worker `w` takes tasks whose number is `w + 1` modulo `workers`.
 */
export function randomTaskPicker(tasks: number, workers: number): (worker: number) => string {
  if (tasks < workers) throw new Error(`${workers} workers need at least as many tasks, not ${tasks}`);
  return (worker) => {
    const own = Math.floor((tasks - 1 - worker) / workers) + 1;
    return `T-${worker + 1 + workers * Math.floor(Math.random() * own)}`;
  };
}

/**
 * Each worker claims a random task, then releases it, then claims another: every call commits, and on
 * a large board nearly every claim reads a task no recent call touched.
 */
export function randomClaims(tasks: number, workers: number): Workload {
  const pick = randomTaskPicker(tasks, workers);
  const held: Array<string | undefined> = [];
  return {
    name: `coremcp task board of ${tasks.toLocaleString('en-US')} (random claim/release)`,
    // Kept across runs: a worker holding a task when a run ends releases it first in the next.
    calls(channel) {
      return async (worker) => {
        const holding = held[worker];
        const id = holding ?? pick(worker);
        const response = await channel.request('tools/call', {
          name: holding ? 'task.release' : 'task.claim',
          arguments: { id },
        });
        held[worker] = holding ? undefined : id;
        if (!succeeded(response)) throw new Error(describeFailure(response));
        return true;
      };
    },
  };
}
