import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { type Deferred, deferred } from '../../test/helpers/wait.js';
import { defineApp } from '../mcp/app.js';
import { type Core, createCore, localPrincipal } from '../runtime.js';
import { verifyAuditRecords } from './audit.js';
import { defineCommand, defineDocument } from './commands.js';
import { CommandError } from './errors.js';
import type { CommandResult } from './executor.js';

interface Counter {
  n: number;
  log: string[];
  settings: { locked: boolean };
}
const counter = defineDocument<Counter>('counter', { n: 0, log: [], settings: { locked: false } });
let runs = 0;
const effects: string[] = [];

/** The test decides when the slow handler finishes: it parks on `release` after writing its draft. */
interface SlowGate {
  /** Resolves with the handler's abort signal once the handler is running. */
  started: Deferred<AbortSignal>;
  release: Deferred<void>;
  /** Resolves once the handler has returned, after `release`. */
  finished: Deferred<void>;
}
let slow: SlowGate;
const SLOW_LIMIT_MS = 50;

const app = defineApp({
  name: 'executor-test',
  documents: [counter],
  commands: [
    defineCommand({
      name: 'count.add',
      description: 'add',
      doc: counter,
      input: z.object({
        by: z.number().int().min(1).max(100),
        secret: z.string().meta({ secret: true }).optional(),
      }),
      handler: ({ input, draft, afterCommit, commandId }) => {
        runs++;
        draft.n += input.by;
        afterCommit(() => {
          effects.push(commandId);
        });
        return { n: draft.n };
      },
    }),
    defineCommand({
      name: 'count.get',
      description: 'get',
      doc: counter,
      readOnly: true,
      handler: ({ state }) => ({ n: state.n }),
    }),
    defineCommand({
      name: 'count.refuse',
      description: 'refuse',
      doc: counter,
      handler: ({ draft }) => {
        runs++;
        draft.n = -1;
        throw new CommandError('counter_closed', 'closed', { details: { why: 'test' } });
      },
    }),
    defineCommand({
      name: 'count.slow',
      description: 'slow',
      doc: counter,
      timeoutMs: SLOW_LIMIT_MS,
      handler: async ({ draft, signal }) => {
        const gate = slow;
        draft.n = 1000;
        gate.started.resolve(signal);
        await gate.release.promise;
        draft.n = 2000;
        gate.finished.resolve();
        return { aborted: signal.aborted };
      },
    }),
    defineCommand({
      name: 'admin.lock',
      description: 'lock',
      doc: counter,
      handler: ({ draft }) => {
        draft.settings.locked = true;
      },
    }),
    defineCommand({
      name: 'count.lock',
      description: 'members may call it, but not write /settings',
      doc: counter,
      handler: ({ draft }) => {
        draft.settings.locked = true;
      },
    }),
  ],
  roles: {
    member: {
      commands: ['count.*'],
      queries: true,
      documents: { '*': ['read', 'write'] },
      paths: { counter: { deny: ['/settings/**'] } },
    },
  },
});

const admin = localPrincipal('admin', ['admin']);
const member = localPrincipal('mia', ['member']);
const viewer = localPrincipal('vic', ['viewer']);

let core: Core;
afterEach(async () => {
  vi.useRealTimers();
  slow?.release.resolve();
  await core?.close();
});

async function setup(): Promise<Core> {
  runs = 0;
  effects.length = 0;
  slow = { started: deferred(), release: deferred(), finished: deferred() };
  core = await createCore({ app });
  return core;
}

/**
 * Lets the event loop turn (no clock time passes) until `done()` or a bounded number of turns, so a
 * call that should end without its handler fails the test instead of hanging it.
 */
async function turnsUntil(done: () => boolean, turns = 50): Promise<void> {
  for (let turn = 0; turn < turns && !done(); turn++) await new Promise((resolve) => setImmediate(resolve));
}

function errorCode(result: CommandResult): string | undefined {
  return result.status === 'error' ? result.error.code : undefined;
}

async function outcomes(): Promise<string[]> {
  return (await core.store.readAudit({})).map((r) => `${r.principal}:${r.command}:${r.outcome}`);
}

describe('the pipeline', () => {
  it('refuses a call without a principal as unauthenticated, and audits nothing', async () => {
    await setup();
    expect(errorCode(await core.execute('count.add', { by: 1 }))).toBe('unauthenticated');
    expect(await outcomes()).toEqual([]);
  });

  it('audits every other attempt with its outcome: unknown, forbidden, invalid, refused, ok', async () => {
    await setup();
    expect(errorCode(await core.execute('count.nope', {}, { principal: member }))).toBe('unknown_command');
    expect(errorCode(await core.execute('admin.lock', {}, { principal: member }))).toBe('forbidden');
    expect(errorCode(await core.execute('count.add', { by: 0 }, { principal: member }))).toBe(
      'invalid_input',
    );
    expect(errorCode(await core.execute('count.refuse', {}, { principal: member }))).toBe('counter_closed');
    expect((await core.execute('count.add', { by: 2 }, { principal: member })).status).toBe('success');
    expect((await core.execute('count.get', {}, { principal: viewer })).status).toBe('success');
    expect(await outcomes()).toEqual([
      'mia:count.nope:unknown_command',
      'mia:admin.lock:forbidden',
      'mia:count.add:invalid_input',
      'mia:count.refuse:counter_closed',
      'mia:count.add:ok',
      'vic:count.get:ok',
    ]);
    expect(verifyAuditRecords(await core.store.readAudit({})).ok).toBe(true);
    expect((await core.state.get<Counter>('counter')).value.n).toBe(2);
  });

  it('shows a principal only the commands it may call', async () => {
    await setup();
    expect(core.executor.visibleCommands(viewer).map((c) => c.name)).toEqual(['count.get']);
    expect(core.executor.visibleCommands(member).map((c) => c.name)).toEqual([
      'count.add',
      'count.get',
      'count.refuse',
      'count.slow',
      'count.lock',
    ]);
  });

  it("refuses patches outside the role's paths, naming the path, even through a permitted command", async () => {
    await setup();
    const result = await core.execute('count.lock', {}, { principal: member });
    expect(result.status === 'error' && result.publicError).toMatchObject({
      code: 'forbidden',
      details: { path: '/settings/locked' },
    });
    expect((await core.state.get<Counter>('counter')).value.settings.locked).toBe(false);
    expect((await core.execute('count.lock', {}, { principal: admin })).status).toBe('success');
  });

  it('stops a handler at its time limit, aborts its signal and commits nothing', async () => {
    await setup();
    // Only the time limit's timer is faked: the test moves the clock, the handler never finishes
    // on its own, so the outcome cannot depend on how fast the machine is.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    let settled = false;
    const pending = core.execute('count.slow', {}, { principal: admin }).finally(() => {
      settled = true;
    });
    const signal = await slow.started.promise;
    await vi.advanceTimersByTimeAsync(SLOW_LIMIT_MS - 1);
    expect(settled).toBe(false);
    expect(signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await turnsUntil(() => settled);
    expect(settled).toBe(true);
    const result = await pending;
    expect(errorCode(result)).toBe('timeout');
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toMatchObject({ code: 'timeout' });
    // The handler finishing after its limit changes nothing either.
    slow.release.resolve();
    await slow.finished.promise;
    await new Promise((resolve) => setImmediate(resolve));
    const state = await core.state.get<Counter>('counter');
    expect(state.revision).toBe(0);
    expect(state.value.n).toBe(0);
    expect(await core.store.readCommits('counter', { after: 0 })).toEqual([]);
    expect(await outcomes()).toEqual(['admin:count.slow:timeout']);
  });

  it('stops a handler when the caller cancels', async () => {
    await setup();
    // The time limit cannot fire first: its clock only moves when the test says so.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const controller = new AbortController();
    let settled = false;
    const pending = core
      .execute('count.slow', {}, { principal: admin, signal: controller.signal })
      .finally(() => {
        settled = true;
      });
    const signal = await slow.started.promise;
    expect(signal.aborted).toBe(false);
    controller.abort();
    await turnsUntil(() => settled);
    expect(settled).toBe(true);
    expect(errorCode(await pending)).toBe('cancelled');
    expect(signal.aborted).toBe(true);
    slow.release.resolve();
    await slow.finished.promise;
    await new Promise((resolve) => setImmediate(resolve));
    const state = await core.state.get<Counter>('counter');
    expect(state.revision).toBe(0);
    expect(state.value.n).toBe(0);
    expect(await core.store.readCommits('counter', { after: 0 })).toEqual([]);
    expect(await outcomes()).toEqual(['admin:count.slow:cancelled']);
  });

  it('runs afterCommit effects once, after the commit, never for failed calls', async () => {
    await setup();
    const ok = await core.execute('count.add', { by: 1 }, { principal: admin });
    await core.execute('count.add', { by: 1000 }, { principal: admin });
    await new Promise((resolve) => setImmediate(resolve));
    expect(effects).toEqual([ok.status === 'success' ? ok.commandId : '']);
  });

  it('redacts secret inputs in the audit trail', async () => {
    await setup();
    await core.execute('count.add', { by: 1, secret: 'hunter2' }, { principal: admin });
    const [record] = await core.store.readAudit({});
    expect(record?.input).toEqual({ by: 1, secret: '[REDACTED]' });
  });
});

describe('idempotency keys', () => {
  it('runs a key sent 20 times at once exactly once; all 20 get the same result and revision', async () => {
    await setup();
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        core.execute('count.add', { by: 5 }, { principal: member, idempotencyKey: 'k-1' }),
      ),
    );
    expect(runs).toBe(1);
    const successes = results.filter((r) => r.status === 'success');
    expect(successes).toHaveLength(20);
    expect(new Set(successes.map((r) => JSON.stringify([r.result, r.revision, r.commandId]))).size).toBe(1);
    expect(successes.filter((r) => r.replayed)).toHaveLength(19);
    expect((await core.state.get<Counter>('counter')).value.n).toBe(5);
    const again = await core.execute('count.add', { by: 5 }, { principal: member, idempotencyKey: 'k-1' });
    expect(again).toMatchObject({ status: 'success', replayed: true, revision: 1 });
    expect(runs).toBe(1);
  });

  it('keeps keys per principal', async () => {
    await setup();
    await core.execute('count.add', { by: 1 }, { principal: member, idempotencyKey: 'same' });
    await core.execute('count.add', { by: 1 }, { principal: admin, idempotencyKey: 'same' });
    expect((await core.state.get<Counter>('counter')).value.n).toBe(2);
  });

  it('refuses a key reused with different input', async () => {
    await setup();
    await core.execute('count.add', { by: 1 }, { principal: member, idempotencyKey: 'k' });
    expect(
      errorCode(await core.execute('count.add', { by: 2 }, { principal: member, idempotencyKey: 'k' })),
    ).toBe('idempotency_key_reused');
    expect(
      errorCode(await core.execute('count.refuse', {}, { principal: member, idempotencyKey: 'k' })),
    ).toBe('idempotency_key_reused');
  });

  it('replays a refusal without running the handler again', async () => {
    await setup();
    const first = await core.execute('count.refuse', {}, { principal: member, idempotencyKey: 'r' });
    const second = await core.execute('count.refuse', {}, { principal: member, idempotencyKey: 'r' });
    expect(runs).toBe(1);
    expect(second.status === 'error' && second.publicError).toMatchObject({
      code: 'counter_closed',
      message: 'closed',
      details: { why: 'test' },
    });
    expect(first.status).toBe('error');
  });

  it('refuses keys that are too long, empty or not strings', async () => {
    await setup();
    for (const key of ['', 'x'.repeat(256), 'has space', 42, { k: 1 }]) {
      expect(
        errorCode(
          await core.execute('count.add', { by: 1 }, { principal: member, idempotencyKey: key as string }),
        ),
      ).toBe('invalid_input');
    }
    expect(runs).toBe(0);
  });
});
