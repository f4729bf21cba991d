import { randomBytes } from 'node:crypto';
import type { Principal } from '../core/access.js';
import type { CommandDefinition } from '../core/commands.js';
import type { ConsentGrant } from '../core/consent.js';
import { CommandError, jsonRpcCode, StateError } from '../core/errors.js';
import type { CommandExecutor, CommandResult, ExecuteOptions } from '../core/executor.js';
import type { ClientConnection } from '../core/input.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import type { Logger } from '../core/log.js';
import { KeyedMutex } from '../core/mutex.js';
import type { Store, TaskRecord } from '../core/store.js';

/**
 * MCP tasks (the `io.modelcontextprotocol/tasks` extension): a call to a command that declares
 * `task`, from a client that declares the extension, runs synchronously until its handler calls
 * `ctx.runAsTask()`; then the task is created in the store and the client gets it, and the rest
 * runs in the background. Everything about a task lives in the store (status, progress, questions,
 * answers, the outcome), so any instance answers `tasks/get`, any instance takes the answers of
 * `tasks/update` and runs the command again with them, and a task whose runner died (a restart) is
 * picked up by the next instance asked about it. A task is bound to the principal that created it.
 */

export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';

export interface TaskRunnerOptions {
  /** How long a task is kept after it is created, in ms (default one hour). */
  ttlMs?: number;
  /** The polling interval clients are asked to keep, in ms (default 1,000). */
  pollIntervalMs?: number;
  /** How long a runner's claim on a task holds without renewal, in ms (default 30,000). */
  leaseMs?: number;
  clock?: () => Date;
}

/** What the runner needs of the runtime. */
export interface TaskRunnerDeps {
  store: Pick<Store, 'createTask' | 'readTask' | 'updateTask'>;
  executor: Pick<CommandExecutor, 'execute'>;
  /** The command's outcome as a tool result (CallToolResult JSON). */
  toolResult: (
    result: Exclude<CommandResult, { status: 'input_required' }>,
    command: CommandDefinition,
  ) => JsonObject;
  /** Whether a failure travels as a JSON-RPC error (a task then fails) rather than a tool result. */
  isProtocolFailure: (code: string) => boolean;
  logger: Logger;
  /** Called after every change this process makes to a task (for `notifications/tasks`). */
  onChange: (task: TaskRecord) => void;
}

/** One tools/call that may become a task. */
export interface TaskCall {
  principal: Principal;
  command: CommandDefinition;
  input: JsonValue;
  /** The request's view of the client, for the synchronous part. */
  client: ClientConnection;
  answers: Readonly<Record<string, JsonValue>> | undefined;
  consent: ConsentGrant | undefined;
  options: Pick<ExecuteOptions, 'meta' | 'traceparent' | 'requestId'>;
  signal: AbortSignal;
}

/** A run in this process. */
interface LocalRun {
  abort: AbortController;
  heartbeat: NodeJS.Timeout;
  closing: boolean;
}

/** The wire shape of a task (`DetailedTask` on tasks/get and notifications/tasks). */
export function detailedTask(task: TaskRecord): JsonObject {
  const out: JsonObject = {
    taskId: task.taskId,
    status: task.status,
    createdAt: task.createdAt,
    lastUpdatedAt: task.lastUpdatedAt,
    ttlMs: task.ttlMs,
  };
  if (task.statusMessage !== undefined) out.statusMessage = task.statusMessage;
  if (task.pollIntervalMs !== undefined) out.pollIntervalMs = task.pollIntervalMs;
  if (task.status === 'input_required') out.inputRequests = task.inputRequests ?? {};
  if (task.status === 'completed' && task.result) out.result = task.result;
  if (task.status === 'failed' && task.error) out.error = task.error;
  return out;
}

/** The `CreateTaskResult` a tools/call answers with. */
export function createTaskResult(task: TaskRecord): JsonObject {
  const { inputRequests: _i, result: _r, error: _e, ...base } = detailedTask(task);
  return { resultType: 'task', ...base };
}

/** Whether a client's capabilities declare the tasks extension. */
export function declaresTasks(capabilities: Readonly<Record<string, unknown>> | undefined): boolean {
  const extensions = capabilities?.extensions;
  return (
    typeof extensions === 'object' &&
    extensions !== null &&
    (extensions as Record<string, unknown>)[TASKS_EXTENSION] !== undefined
  );
}

/** The refusal for a task method, or a task-only command, from a client without the extension. */
export function tasksCapabilityMissing(what: string): CommandError {
  return new CommandError('missing_client_capability', `${what} needs the ${TASKS_EXTENSION} extension`, {
    details: { requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } } },
  });
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

export class TaskRunner {
  readonly #deps: TaskRunnerDeps;
  readonly #ttlMs: number;
  readonly #pollIntervalMs: number;
  readonly #leaseMs: number;
  readonly #clock: () => Date;
  /** Identifies this process's claims on tasks. */
  readonly #runnerId = randomBytes(9).toString('base64url');
  readonly #running = new Map<string, LocalRun>();
  readonly #updates = new KeyedMutex();
  #closed = false;

  constructor(deps: TaskRunnerDeps, options: TaskRunnerOptions = {}) {
    this.#deps = deps;
    this.#ttlMs = options.ttlMs ?? 60 * 60_000;
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#clock = options.clock ?? (() => new Date());
  }

  /**
   * Runs a call that may become a task: the outcome of its synchronous part (a result, an error, or
   * questions for an MRTR retry), or the task it became when its handler called `runAsTask()`.
   */
  async call(call: TaskCall): Promise<{ sync: CommandResult } | { task: TaskRecord }> {
    const taskId = randomBytes(16).toString('base64url');
    const abort = new AbortController();
    // Until the call becomes a task, cancelling the request cancels the run.
    const cancelSync = () => abort.abort(call.signal.reason);
    call.signal.addEventListener('abort', cancelSync, { once: true });
    let escalated: TaskRecord | undefined;
    let becameTask!: (task: TaskRecord) => void;
    const task = new Promise<TaskRecord>((resolve) => {
      becameTask = resolve;
    });
    const connection: ClientConnection = {
      capabilities: call.client.capabilities,
      canAsk: true,
      progress: (progress, total, message) =>
        escalated
          ? this.#progress(taskId, progress, total, message)
          : call.client.progress(progress, total, message),
      log: (level, data) => (escalated ? Promise.resolve() : call.client.log(level, data)),
      runAsTask: async (statusMessage) => {
        if (escalated) return;
        call.signal.removeEventListener('abort', cancelSync);
        escalated = this.#newRecord(taskId, call, statusMessage);
        await this.#deps.store.createTask(escalated);
        this.#adopt(taskId, abort);
        becameTask(escalated);
      },
    };
    const execution = this.#deps.executor.execute(call.command.name, call.input, {
      ...call.options,
      principal: call.principal,
      signal: abort.signal,
      client: connection,
      answers: call.answers,
      consent: call.consent,
      ...this.#idempotency(call.command, taskId),
    });
    const first = await Promise.race([
      execution.then((result) => ({ result })),
      task.then((record) => ({ record })),
    ]);
    if ('result' in first && !escalated) {
      call.signal.removeEventListener('abort', cancelSync);
      return { sync: first.result };
    }
    void execution.then((result) => this.#settle(taskId, call.command, result));
    return { task: escalated ?? (await task) };
  }

  /** A task of `principal`'s, as it is now; a task whose runner is gone is picked up first. */
  async get(
    principal: Principal,
    taskId: unknown,
    command: (name: string) => CommandDefinition | undefined,
  ): Promise<TaskRecord> {
    const task = await this.#read(principal, taskId);
    if (task.status === 'working' && !this.#running.has(task.taskId) && this.#orphaned(task)) {
      const def = command(task.command);
      if (def) return (await this.#resume(task, def, principal)) ?? task;
    }
    return task;
  }

  /** Takes answers for the task's open questions; when none is left open, runs the command again. */
  async update(
    principal: Principal,
    taskId: unknown,
    responses: unknown,
    command: (name: string) => CommandDefinition | undefined,
  ): Promise<void> {
    const task = await this.#read(principal, taskId);
    if (task.status !== 'input_required' || !isObject(responses)) return;
    const updated = await this.#update(task.taskId, (current) => {
      if (current.status !== 'input_required') return undefined;
      const open = { ...(current.inputRequests ?? {}) };
      const answers = { ...(current.answers ?? {}) };
      let taken = 0;
      // Keys not currently open (never asked, answered already) are ignored, as the extension asks.
      for (const [key, value] of Object.entries(responses)) {
        if (!Object.hasOwn(open, key) || value === undefined) continue;
        answers[key] = value as JsonValue;
        delete open[key];
        taken++;
      }
      if (taken === 0) return undefined;
      const next: TaskRecord = { ...current, inputRequests: open, answers };
      if (Object.keys(open).length === 0) {
        next.status = 'working';
        delete next.inputRequests;
        next.statusMessage = 'Resuming with the answers';
      }
      return next;
    });
    if (updated?.status === 'working') {
      const def = command(updated.command);
      if (def) void this.#resume(updated, def, principal);
    }
  }

  /** Asks the task to stop: at once when it is waiting for answers, at the runner's next chance otherwise. */
  async cancel(principal: Principal, taskId: unknown): Promise<void> {
    const task = await this.#read(principal, taskId);
    if (TERMINAL.has(task.status)) return;
    await this.#update(task.taskId, (current) => {
      if (TERMINAL.has(current.status)) return undefined;
      if (current.status === 'input_required' || this.#orphaned(current)) {
        const { inputRequests: _open, ...rest } = current;
        return { ...rest, status: 'cancelled', statusMessage: 'Cancelled by the client' };
      }
      return { ...current, cancelRequested: true };
    });
    this.#running.get(task.taskId)?.abort.abort(new CommandError('cancelled'));
  }

  /** Stops the runs of this process and lets go of their tasks, so that another instance (or the next start) picks them up. */
  async close(): Promise<void> {
    this.#closed = true;
    const runs = [...this.#running];
    for (const [, run] of runs) {
      run.closing = true;
      clearInterval(run.heartbeat);
      run.abort.abort(new CommandError('cancelled', 'The server is shutting down'));
    }
    await Promise.all(
      runs.map(([taskId]) =>
        this.#update(taskId, (current) =>
          current.runner?.id === this.#runnerId
            ? { ...current, runner: { id: '', until: new Date(0).toISOString() } }
            : undefined,
        ).catch(() => undefined),
      ),
    );
    this.#running.clear();
  }

  // --- internals -------------------------------------------------------------------------------

  #newRecord(taskId: string, call: TaskCall, statusMessage: string | undefined): TaskRecord {
    const now = this.#clock();
    const at = now.toISOString();
    const record: TaskRecord = {
      taskId,
      principal: call.principal.id,
      command: call.command.name,
      input: call.input,
      status: 'working',
      createdAt: at,
      lastUpdatedAt: at,
      ttlMs: this.#ttlMs,
      pollIntervalMs: this.#pollIntervalMs,
      expiresAt: new Date(now.getTime() + this.#ttlMs).toISOString(),
      answers: { ...(call.answers ?? {}) },
      runner: { id: this.#runnerId, until: new Date(now.getTime() + this.#leaseMs).toISOString() },
      context: { capabilities: (call.client.capabilities ?? {}) as JsonObject },
      version: 1,
    };
    if (statusMessage !== undefined) record.statusMessage = statusMessage.slice(0, 1000);
    return record;
  }

  /** Writes run at most once per task: a write re-run after a restart finds the first run's commit. */
  #idempotency(command: CommandDefinition, taskId: string): Pick<ExecuteOptions, 'idempotencyKey'> {
    return command.readOnly ? {} : { idempotencyKey: `coremcp-task:${taskId}` };
  }

  async #read(principal: Principal, taskId: unknown): Promise<TaskRecord> {
    if (typeof taskId !== 'string' || taskId.length === 0 || taskId.length > 200) throw taskNotFound();
    const task = await this.#deps.store.readTask(taskId);
    // Another principal's task does not exist for this one: its id says nothing.
    if (!task || task.principal !== principal.id) throw taskNotFound();
    if (task.expiresAt !== undefined && task.expiresAt < this.#clock().toISOString()) throw taskNotFound();
    return task;
  }

  #orphaned(task: TaskRecord): boolean {
    return !task.runner || task.runner.until < this.#clock().toISOString();
  }

  /**
   * Claims a task and runs its command again with every answer it has, as the principal asking now
   * (the task's own, authenticated on this request, with the roles it has now).
   */
  async #resume(
    task: TaskRecord,
    command: CommandDefinition,
    principal: Principal,
  ): Promise<TaskRecord | undefined> {
    if (this.#closed || this.#running.has(task.taskId)) return undefined;
    const claimed = await this.#update(task.taskId, (current) => {
      if (current.status !== 'working') return undefined;
      if (current.runner && current.runner.id !== this.#runnerId && !this.#orphaned(current))
        return undefined;
      if (current.cancelRequested)
        return { ...current, status: 'cancelled', statusMessage: 'Cancelled by the client' };
      return { ...current, runner: this.#lease() };
    });
    if (claimed?.status !== 'working' || this.#running.has(task.taskId)) return claimed;
    const abort = new AbortController();
    this.#adopt(task.taskId, abort);
    const capabilities = claimed.context?.capabilities;
    const connection: ClientConnection = {
      capabilities: isObject(capabilities) ? capabilities : undefined,
      canAsk: true,
      progress: (progress, total, message) => this.#progress(task.taskId, progress, total, message),
      log: () => Promise.resolve(),
      runAsTask: () => Promise.resolve(),
    };
    void this.#deps.executor
      .execute(command.name, claimed.input, {
        principal,
        signal: abort.signal,
        client: connection,
        answers: (claimed.answers ?? {}) as Record<string, JsonValue>,
        ...this.#idempotency(command, task.taskId),
      })
      .then((result) => this.#settle(task.taskId, command, result));
    return claimed;
  }

  #lease(): { id: string; until: string } {
    return { id: this.#runnerId, until: new Date(this.#clock().getTime() + this.#leaseMs).toISOString() };
  }

  /** Marks a run as this process's and keeps its claim fresh (or stops it when cancelled elsewhere). */
  #adopt(taskId: string, abort: AbortController): void {
    const heartbeat = setInterval(
      () => {
        void this.#update(taskId, (current) => {
          if (current.cancelRequested) {
            abort.abort(new CommandError('cancelled'));
            return undefined;
          }
          if (TERMINAL.has(current.status) || current.runner?.id !== this.#runnerId) return undefined;
          return { ...current, runner: this.#lease() };
        }).catch((error: unknown) =>
          this.#deps.logger.debug({ err: error, taskId }, 'task heartbeat failed'),
        );
      },
      Math.max(50, Math.floor(this.#leaseMs / 3)),
    );
    heartbeat.unref();
    this.#running.set(taskId, { abort, heartbeat, closing: false });
  }

  async #progress(taskId: string, progress: number, total: number | undefined, message: string | undefined) {
    const statusMessage = (
      message ?? (total === undefined ? `${progress}` : `${progress} of ${total}`)
    ).slice(0, 1000);
    await this.#update(taskId, (current) =>
      current.status === 'working' && current.statusMessage !== statusMessage
        ? { ...current, statusMessage }
        : undefined,
    );
  }

  /** Records how a run ended: a result, a failure, or questions for `tasks/update`. */
  async #settle(taskId: string, command: CommandDefinition, result: CommandResult): Promise<void> {
    const run = this.#running.get(taskId);
    if (run) clearInterval(run.heartbeat);
    this.#running.delete(taskId);
    // A run stopped by a shutdown is left for the next runner, not ended.
    if (run?.closing || this.#closed) return;
    try {
      await this.#update(taskId, (current) => {
        if (TERMINAL.has(current.status)) return undefined;
        const { runner: _runner, inputRequests: _open, cancelRequested, ...rest } = current;
        if (result.status === 'input_required') {
          return {
            ...current,
            status: 'input_required',
            inputRequests: result.requests as unknown as JsonObject,
            answers: { ...(current.answers ?? {}), ...result.answers },
            statusMessage: 'Waiting for answers',
            runner: undefined,
          } as TaskRecord;
        }
        if (result.status === 'error' && result.error.code === 'cancelled' && cancelRequested) {
          return { ...rest, status: 'cancelled', statusMessage: 'Cancelled by the client' };
        }
        if (result.status === 'error' && this.#failsTask(result.error.code, result.error.spec.family)) {
          return {
            ...rest,
            status: 'failed',
            statusMessage: result.publicError.message,
            error: {
              code: jsonRpcCode(result.error.code),
              message: result.publicError.message,
              data: result.publicError as unknown as JsonObject,
            },
          };
        }
        return {
          ...rest,
          status: 'completed',
          statusMessage: result.status === 'success' ? 'Done' : result.publicError.message,
          result: this.#deps.toolResult(result, command),
        };
      });
    } catch (error) {
      this.#deps.logger.error({ err: error, taskId }, 'could not record how a task ended');
    }
  }

  /** A JSON-RPC failure (not a tool's own refusal) fails the task: the server could not run it. */
  #failsTask(code: string, family: string): boolean {
    return this.#deps.isProtocolFailure(code) || family === 'internal' || family === 'recovery';
  }

  /** One compare-and-set update of a task, retried when another writer came first. */
  #update(
    taskId: string,
    change: (current: TaskRecord) => TaskRecord | undefined,
  ): Promise<TaskRecord | undefined> {
    return this.#updates.run(taskId, async () => {
      for (let attempt = 0; attempt < 20; attempt++) {
        const current = await this.#deps.store.readTask(taskId);
        if (!current) return undefined;
        const next = change(current);
        if (!next) return undefined;
        // A renewed claim is bookkeeping: the task a client sees has not changed.
        const visible = JSON.stringify(detailedTask(next)) !== JSON.stringify(detailedTask(current));
        const written: TaskRecord = {
          ...stripUndefined(next),
          version: current.version + 1,
          lastUpdatedAt: visible ? this.#clock().toISOString() : current.lastUpdatedAt,
        };
        if (await this.#deps.store.updateTask(written)) {
          if (visible) this.#deps.onChange(written);
          return written;
        }
      }
      throw new Error(`task ${taskId} kept changing under its update`);
    });
  }
}

function taskNotFound(): StateError {
  return new StateError('mcp_task_not_found', 'Failed to retrieve task: Task not found');
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stripUndefined(task: TaskRecord): TaskRecord {
  const out = { ...task } as Record<string, unknown>;
  for (const key of Object.keys(out)) if (out[key] === undefined) delete out[key];
  return out as unknown as TaskRecord;
}
