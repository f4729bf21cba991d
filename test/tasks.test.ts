/**
 * Long-running commands as MCP tasks (the io.modelcontextprotocol/tasks extension) over real HTTP:
 * created durably before the answer, bound to their principal, polled, progressing, asking through
 * tasks/update, cancelled, expiring, and surviving a restart of the server process.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { localPrincipal, SqliteStore } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import jobApp from './fixtures/job-app.js';
import { startInProcess, startServerProcess } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/wait.js';
import { modernResult, modernRpc, TASKS } from './helpers/wire.js';

const JOB_APP = fileURLToPath(new URL('./fixtures/job-app.ts', import.meta.url));

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(options: { clock?: () => Date } = {}) {
  const s = await startInProcess({ app: jobApp, ...options });
  cleanups.push(() => s.close());
  return { s, key: await s.key('ada', 'admin'), bob: await s.key('bob', 'admin') };
}

type Task = Record<string, unknown> & { taskId: string; status: string };

async function settle(
  url: string,
  key: string,
  taskId: string,
  until = ['completed', 'failed', 'cancelled'],
) {
  return waitFor(
    async () => {
      const task = (await modernResult(url, key, 'tasks/get', { taskId })) as Task;
      return until.includes(task.status) ? task : undefined;
    },
    { message: `task ${taskId} to reach ${until.join('/')}`, timeoutMs: 20_000 },
  );
}

describe('a command that runs as a task', () => {
  it('answers with a durably created task, reports progress, and inlines the result', async () => {
    const { s, key } = await server();
    const created = (await modernResult(s.url, key, 'tools/call', {
      name: 'job.slow',
      arguments: { steps: 3, stepMs: 150 },
    })) as Task;
    expect(created).toMatchObject({
      resultType: 'task',
      status: 'working',
      statusMessage: 'Counting',
      ttlMs: 3_600_000,
    });
    expect(created.taskId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(created).not.toHaveProperty('result');
    expect(created).not.toHaveProperty('requestState');
    // Durable before the answer: the store has it, so any instance would too.
    expect((await s.core.store.readTask(created.taskId))?.status).toBe('working');
    const progressed = await waitFor(async () => {
      const task = (await modernResult(s.url, key, 'tasks/get', { taskId: created.taskId })) as Task;
      return typeof task.statusMessage === 'string' && task.statusMessage.startsWith('step')
        ? task
        : undefined;
    });
    expect(progressed.statusMessage).toMatch(/^step [1-3] of 3$/);
    const done = await settle(s.url, key, created.taskId);
    expect(done).toMatchObject({
      resultType: 'complete',
      status: 'completed',
      result: { structuredContent: { counted: 3 }, content: [{ type: 'text', text: '{"counted":3}' }] },
    });
  });

  it('runs synchronously for a client without the extension, unless the command requires a task', async () => {
    const { s, key } = await server();
    const sync = await modernResult(
      s.url,
      key,
      'tools/call',
      { name: 'job.slow', arguments: { steps: 1, stepMs: 1 } },
      { capabilities: {} },
    );
    expect(sync).toMatchObject({ resultType: 'complete', structuredContent: { counted: 1 } });
    const refused = await modernRpc(
      s.url,
      key,
      'tools/call',
      { name: 'job.interview', arguments: {} },
      { capabilities: {} },
    );
    expect(refused.status).toBe(400);
    expect(refused.error).toMatchObject({
      code: -32021,
      data: { code: 'missing_client_capability', requiredCapabilities: { extensions: { [TASKS]: {} } } },
    });
    for (const method of ['tasks/get', 'tasks/update', 'tasks/cancel']) {
      const gated = await modernRpc(
        s.url,
        key,
        method,
        { taskId: 'x', inputResponses: {} },
        { capabilities: {} },
      );
      expect(gated.error?.code, method).toBe(-32021);
    }
  });

  it('asks on the call, then again during the task through tasks/update, ignoring unknown keys', async () => {
    const { s, key } = await server();
    const capabilities = { elicitation: {}, extensions: { [TASKS]: {} } };
    const first = await modernResult(
      s.url,
      key,
      'tools/call',
      { name: 'job.interview', arguments: {} },
      { capabilities },
    );
    expect(first).toMatchObject({ resultType: 'input_required' });
    expect(first).not.toHaveProperty('taskId');
    expect(Object.keys(first.inputRequests as object)).toEqual(['user_name']);
    const created = (await modernResult(
      s.url,
      key,
      'tools/call',
      {
        name: 'job.interview',
        arguments: {},
        requestState: first.requestState,
        inputResponses: { user_name: { action: 'accept', content: { name: 'Ada' } } },
      },
      { capabilities },
    )) as Task;
    expect(created).toMatchObject({ resultType: 'task', status: 'working' });
    expect(created).not.toHaveProperty('requestState');
    const waiting = await settle(s.url, key, created.taskId, ['input_required']);
    expect(Object.keys(waiting.inputRequests as object)).toEqual(['elicit-2']);
    const ack = await modernResult(s.url, key, 'tasks/update', {
      taskId: created.taskId,
      inputResponses: { nonsense: { action: 'accept', content: {} } },
    });
    expect(ack).toEqual({ resultType: 'complete', _meta: expect.any(Object) });
    expect(((await modernResult(s.url, key, 'tasks/get', { taskId: created.taskId })) as Task).status).toBe(
      'input_required',
    );
    await modernResult(s.url, key, 'tasks/update', {
      taskId: created.taskId,
      inputResponses: { 'elicit-2': { action: 'accept', content: { color: 'blue' } } },
    });
    const done = await settle(s.url, key, created.taskId);
    expect(done.result).toMatchObject({ content: [{ type: 'text', text: 'Ada likes blue' }] });
  });

  it('stops a running task cooperatively on tasks/cancel, and acks a cancel of a finished one', async () => {
    const { s, key } = await server();
    const created = (await modernResult(s.url, key, 'tools/call', {
      name: 'job.slow',
      arguments: { steps: 100, stepMs: 200 },
    })) as Task;
    const ack = await modernResult(s.url, key, 'tasks/cancel', { taskId: created.taskId });
    expect(Object.keys(ack).sort()).toEqual(['_meta', 'resultType']);
    const cancelled = await settle(s.url, key, created.taskId);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled).not.toHaveProperty('result');
    expect(await modernResult(s.url, key, 'tasks/cancel', { taskId: created.taskId })).toMatchObject({
      resultType: 'complete',
    });
  });

  it('keeps tool errors as completed results and fails on unexpected errors without leaking them', async () => {
    const { s, key } = await server();
    const refused = (await modernResult(s.url, key, 'tools/call', {
      name: 'job.refuse',
      arguments: {},
    })) as Task;
    expect((await settle(s.url, key, refused.taskId)).result).toMatchObject({
      isError: true,
      structuredContent: { error: { code: 'job_refused' } },
    });
    const crashed = (await modernResult(s.url, key, 'tools/call', {
      name: 'job.crash',
      arguments: {},
    })) as Task;
    const failed = await settle(s.url, key, crashed.taskId);
    expect(failed).toMatchObject({ status: 'failed', error: { code: -32603, message: 'Internal error' } });
    expect(failed).not.toHaveProperty('result');
    expect(JSON.stringify(failed)).not.toContain('/var/lib/secret');
  });

  it('is invisible to another principal, and unknown ids are -32602', async () => {
    const { s, key, bob } = await server();
    const created = (await modernResult(s.url, key, 'tools/call', {
      name: 'job.slow',
      arguments: { steps: 50, stepMs: 100 },
    })) as Task;
    for (const [method, params] of [
      ['tasks/get', {}],
      ['tasks/update', { inputResponses: {} }],
      ['tasks/cancel', {}],
    ] as const) {
      const other = await modernRpc(s.url, bob, method, { taskId: created.taskId, ...params });
      expect(other.error, method).toMatchObject({ code: -32602, data: { code: 'mcp_task_not_found' } });
    }
    expect(((await modernResult(s.url, key, 'tasks/get', { taskId: created.taskId })) as Task).status).toBe(
      'working',
    );
    const unknown = await modernRpc(s.url, key, 'tasks/get', { taskId: 'no-such-task' });
    expect(unknown.error?.code).toBe(-32602);
    for (const removed of ['tasks/result', 'tasks/list']) {
      expect((await modernRpc(s.url, key, removed, { taskId: created.taskId })).error?.code).toBe(-32601);
    }
    await modernResult(s.url, key, 'tasks/cancel', { taskId: created.taskId });
  });

  it('expires after its time to live', async () => {
    let now = Date.parse('2026-08-01T10:00:00.000Z');
    const { s, key } = await server({ clock: () => new Date(now) });
    const created = (await modernResult(s.url, key, 'tools/call', {
      name: 'job.slow',
      arguments: { steps: 1, stepMs: 1 },
    })) as Task;
    await settle(s.url, key, created.taskId);
    now += 3_600_000 - 1000;
    expect(((await modernResult(s.url, key, 'tasks/get', { taskId: created.taskId })) as Task).status).toBe(
      'completed',
    );
    now += 2000;
    const expired = await modernRpc(s.url, key, 'tasks/get', { taskId: created.taskId });
    expect(expired.error).toMatchObject({ code: -32602, data: { code: 'mcp_task_not_found' } });
    expect(await s.core.store.expireTasks(new Date(now).toISOString())).toBe(1);
  });
});

describe('the task board export', () => {
  it('runs as a task with progress for clients with the extension, and synchronously for others', async () => {
    const s = await startInProcess({ app: taskboard });
    cleanups.push(() => s.close());
    const key = await s.key('ada', 'admin');
    const principal = localPrincipal('seed');
    for (let i = 1; i <= 1200; i++)
      await s.core.execute('task.add', { title: i === 7 ? 'a "quoted", title' : `t${i}` }, { principal });
    const created = (await modernResult(s.url, key, 'tools/call', {
      name: 'board.export',
      arguments: {},
    })) as Task;
    expect(created).toMatchObject({ resultType: 'task', statusMessage: 'Exporting the board' });
    const done = await settle(s.url, key, created.taskId);
    expect(done.statusMessage).toBe('Done');
    const csv = (done.result as { structuredContent: { csv: string } }).structuredContent.csv.split('\n');
    expect(csv).toHaveLength(1201);
    expect(csv[0]).toBe('id,title,status,assignee,createdAt');
    expect(csv[7]).toMatch(/^T-7,"a ""quoted"", title",open,,/);
    const sync = await modernResult(
      s.url,
      key,
      'tools/call',
      { name: 'board.export', arguments: { limit: 2 } },
      { capabilities: {} },
    );
    expect(sync).toMatchObject({ resultType: 'complete', structuredContent: { exported: 2 } });
  });
});

describe('a task across a restart of the server', () => {
  it('is picked up again by the next process and completes, a write committing once', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.remove);
    const first = await startServerProcess([JOB_APP, '--data-dir', tmp.dir]);
    cleanups.push(() => first.stop());
    const key = first.firstKey!;
    const slow = (await modernResult(first.url, key, 'tools/call', {
      name: 'job.slow',
      arguments: { steps: 6, stepMs: 250 },
    })) as Task;
    const write = (await modernResult(first.url, key, 'tools/call', {
      name: 'job.record',
      arguments: { line: 'once', stepMs: 1500 },
    })) as Task;
    const interview = await modernResult(
      first.url,
      key,
      'tools/call',
      {
        name: 'job.interview',
        arguments: {},
        inputResponses: { user_name: { action: 'accept', content: { name: 'Ada' } } },
      },
      { capabilities: { elicitation: {}, extensions: { [TASKS]: {} } } },
    );
    await settle(first.url, key, interview.taskId as string, ['input_required']);
    expect(await first.stop()).toBe(0);

    const second = await startServerProcess([JOB_APP, '--data-dir', tmp.dir]);
    cleanups.push(() => second.stop());
    expect(((await settle(second.url, key, slow.taskId)) as Task).result).toMatchObject({
      structuredContent: { counted: 6 },
    });
    expect(((await settle(second.url, key, write.taskId)) as Task).result).toMatchObject({
      structuredContent: { runs: 1 },
    });
    await modernResult(second.url, key, 'tasks/update', {
      taskId: interview.taskId,
      inputResponses: { 'elicit-2': { action: 'accept', content: { color: 'red' } } },
    });
    expect((await settle(second.url, key, interview.taskId as string)).result).toMatchObject({
      content: [{ type: 'text', text: 'Ada likes red' }],
    });
    await second.stop();
    const store = new SqliteStore({ path: join(tmp.dir, 'coremcp.db') });
    await store.open();
    cleanups.push(() => store.close());
    const [jobs] = await store.listDocuments();
    expect(jobs?.revision).toBe(1);
  });
});
