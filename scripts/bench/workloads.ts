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
