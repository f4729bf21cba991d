import { createHash } from 'node:crypto';
import type { Authorizer, Principal } from './access.js';
import type {
  ClientChannel,
  CommandDefinition,
  CommandLogger,
  CommandRegistry,
  QueryContext,
  WriteContext,
} from './commands.js';
import {
  AccessError,
  CommandError,
  type CoreMcpError,
  errorForCode,
  InternalError,
  isCoreMcpError,
  type PublicError,
  StateError,
  toPublicError,
} from './errors.js';
import { timeOrderedId } from './ids.js';
import {
  canonicalJson,
  DEFAULT_INPUT_LIMITS,
  findJsonProblem,
  type JsonLimits,
  type JsonObject,
  type JsonValue,
} from './json.js';
import { type Logger, silentLogger } from './log.js';
import { touchedPaths } from './patch.js';
import type { StateManager } from './state.js';
import type { AuditEntry, IdempotencyRecord } from './store.js';
import { CallSignal } from './timeout.js';
import { validTraceparent } from './trace.js';

/** Per-call options: who is calling and the call's coremcp `_meta`. */
export interface ExecuteOptions {
  /** The authenticated caller. Without one the call is refused as `unauthenticated`. */
  principal?: Principal;
  requestId?: string;
  signal?: AbortSignal;
  /** Runs the command at most once per (principal, key); repeats get the stored outcome. */
  idempotencyKey?: string;
  /** Commit only if the document is at this revision. */
  expectedRevision?: number;
  /** W3C trace context, carried into logs and the audit record (dropped when malformed). */
  traceparent?: string;
  /** The MCP client, when the call came through one. */
  client?: ClientChannel;
}

export interface CommandSuccess {
  status: 'success';
  command: string;
  requestId: string;
  commandId: string;
  doc: string;
  /** The document's revision after the call. */
  revision: number;
  /** Whether this call created a new revision. */
  committed: boolean;
  /** Whether this is the stored outcome of an earlier call with the same idempotency key. */
  replayed: boolean;
  result: JsonValue;
}

export interface CommandFailure {
  status: 'error';
  command: string;
  requestId: string;
  error: CoreMcpError;
  /** What a client may see: code, message, request id, public details. */
  publicError: PublicError;
  doc?: string;
  revision?: number;
}

export type CommandResult = CommandSuccess | CommandFailure;

/** What observers (logs, metrics) learn about each finished call. */
export interface ExecutionReport {
  command: string;
  principal: Principal | undefined;
  requestId: string;
  /** `ok`, or the error code. */
  outcome: string;
  durationMs: number;
  doc?: string;
  revision?: number;
  committed: boolean;
  replayed: boolean;
  traceparent?: string;
  /** The original error, unsanitized: for the server log only. */
  error?: unknown;
}

export interface ExecutorOptions {
  registry: CommandRegistry;
  state: StateManager;
  authorizer: Authorizer;
  /** Redacts an input before it goes into the audit trail. */
  redactInput?: (command: CommandDefinition, input: JsonValue) => JsonValue;
  inputLimits?: Partial<JsonLimits>;
  logger?: Logger;
  clock?: () => Date;
  observers?: Array<(report: ExecutionReport) => void>;
}

export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** Handler refusals worth storing for idempotent repeats: the handler ran and said no. */
function isStoredRefusal(error: CoreMcpError): boolean {
  const { family, expose } = error.spec;
  return expose && (family === 'command' || family === 'state') && !NOT_STORED.has(error.code);
}
const NOT_STORED = new Set(['timeout', 'cancelled', 'invalid_input', 'unknown_command', 'revision_conflict']);

/**
 * Runs commands through the pipeline: authenticate → look up → authorize → validate → idempotency →
 * execute on a draft → check paths → commit with audit → notify → respond. Every attempt, whatever
 * its outcome, leaves exactly one audit record.
 */
export class CommandExecutor {
  readonly registry: CommandRegistry;
  readonly state: StateManager;
  readonly #authorizer: Authorizer;
  readonly #redact: (command: CommandDefinition, input: JsonValue) => JsonValue;
  readonly #inputLimits: Partial<JsonLimits>;
  readonly #logger: Logger;
  readonly #clock: () => Date;
  readonly #observers: Array<(report: ExecutionReport) => void>;
  readonly #inflight = new Map<string, { fingerprint: string; done: Promise<CommandResult> }>();

  constructor(options: ExecutorOptions) {
    this.registry = options.registry;
    this.state = options.state;
    this.#authorizer = options.authorizer;
    this.#redact = options.redactInput ?? ((_, input) => input);
    this.#inputLimits = { ...DEFAULT_INPUT_LIMITS, ...options.inputLimits };
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? (() => new Date());
    this.#observers = options.observers ?? [];
  }

  /** Adds an observer (metrics, logs). Must happen before serving; observers must not throw. */
  observe(observer: (report: ExecutionReport) => void): void {
    this.#observers.push(observer);
  }

  /** The commands a principal may call: what tools/list shows it. */
  visibleCommands(principal: Principal): CommandDefinition[] {
    return this.registry.list().filter((command) => this.#authorizer.canExecute(principal, command));
  }

  async execute(name: string, input: unknown, options: ExecuteOptions = {}): Promise<CommandResult> {
    const started = performance.now();
    const requestId = options.requestId ?? timeOrderedId();
    const { principal } = options;
    const call = new Call(name, requestId, principal, validTraceparent(options.traceparent));
    let result: CommandResult;
    try {
      result = await this.#run(call, input ?? {}, options);
    } catch (error) {
      result = await this.#fail(call, error);
    }
    this.#report(call, result, performance.now() - started);
    return result;
  }

  async #run(call: Call, rawInput: unknown, options: ExecuteOptions): Promise<CommandResult> {
    const { principal } = options;
    if (!principal) throw new AccessError('unauthenticated');
    const command = this.registry.get(call.command);
    if (!command)
      throw new CommandError('unknown_command', `Unknown command "${call.command}"`, {
        details: { command: call.command },
      });
    if (!this.#authorizer.canExecute(principal, command)) {
      throw new AccessError('forbidden', `Not allowed to call "${command.name}"`, {
        details: { permission: command.permission },
      });
    }
    const input = this.#validate(command, rawInput, call);
    const expected = options.expectedRevision;
    if (
      expected !== undefined &&
      (typeof expected !== 'number' || !Number.isSafeInteger(expected) || expected < 0)
    ) {
      throw new StateError('invalid_revision', 'The expected revision must be a non-negative integer', {
        details: {
          expectedRevision: typeof expected === 'number' ? expected : String(expected).slice(0, 64),
        },
      });
    }
    const doc = await command.resolveDoc(input);
    call.doc = doc;
    const action = command.readOnly ? 'read' : command.documentAction;
    if (!this.#authorizer.canAccessDocument(principal, doc, action)) {
      throw new AccessError('forbidden', `Not allowed to ${action} document "${doc}"`, {
        details: { doc, action },
      });
    }
    if (command.readOnly) return this.#query(command, input, principal, call, options);
    if (options.idempotencyKey === undefined)
      return this.#write(command, input, principal, call, options, undefined);

    const key = options.idempotencyKey;
    if (typeof key !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(key)) {
      throw new CommandError(
        'invalid_input',
        'The idempotency key must be 1-255 printable ASCII characters',
        {
          details: {
            issues: [
              {
                path: '_meta/coremcp~1idempotency-key',
                message: 'expected 1-255 printable ASCII characters',
              },
            ],
          },
        },
      );
    }
    const fingerprint = createHash('sha256')
      .update(`${command.name}\u0000${canonicalJson(rawInput as JsonValue)}`)
      .digest('hex');
    const slot = `${principal.id}\u0000${key}`;
    const running = this.#inflight.get(slot);
    if (running) {
      if (running.fingerprint !== fingerprint) throw reusedKey(key);
      const original = await running.done;
      if (original.status === 'error') throw original.error;
      return this.#replayed(call, original.doc, original.revision, original.commandId, original.result);
    }
    const done = this.#idempotent(command, input, principal, call, options, key, fingerprint);
    this.#inflight.set(slot, { fingerprint, done });
    try {
      return await done;
    } finally {
      this.#inflight.delete(slot);
    }
  }

  async #idempotent(
    command: CommandDefinition,
    input: unknown,
    principal: Principal,
    call: Call,
    options: ExecuteOptions,
    key: string,
    fingerprint: string,
  ): Promise<CommandResult> {
    const stored = await this.state.store.findIdempotency(principal.id, key);
    if (stored) {
      if (stored.fingerprint !== fingerprint) throw reusedKey(key);
      return this.#fromRecord(call, stored);
    }
    try {
      return await this.#write(command, input, principal, call, options, { key, fingerprint });
    } catch (error) {
      if (!isCoreMcpError(error) || !isStoredRefusal(error) || !call.handlerRan) throw error;
      // The handler refused: repeats get the same refusal without running it again.
      const publicError = toPublicError(error);
      call.idempotency = {
        principal: principal.id,
        key,
        fingerprint,
        command: command.name,
        doc: call.doc ?? '',
        revision: call.revision ?? 0,
        commandId: call.commandId,
        outcome: error.code,
        response: publicError as unknown as JsonValue,
        at: this.#clock().toISOString(),
      };
      throw error;
    }
  }

  #validate(command: CommandDefinition, rawInput: unknown, call: Call): unknown {
    const problem = findJsonProblem(rawInput, this.#inputLimits);
    if (problem) {
      throw new CommandError(
        'invalid_input',
        `Invalid input at "${problem.path || '/'}": ${problem.problem}`,
        {
          details: { issues: [{ path: problem.path, message: problem.problem }] },
        },
      );
    }
    call.auditInput = this.#redact(command, rawInput as JsonValue);
    const parsed = command.input.safeParse(rawInput);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 20).map((issue) => ({
        path: issue.path.map((p) => `/${String(p).replace(/~/g, '~0').replace(/\//g, '~1')}`).join(''),
        message: issue.message,
      }));
      const first = issues[0];
      throw new CommandError(
        'invalid_input',
        first ? `Invalid input at "${first.path || '/'}": ${first.message}` : 'Invalid input',
        {
          details: { issues },
        },
      );
    }
    return parsed.data;
  }

  async #query(
    command: CommandDefinition,
    input: unknown,
    principal: Principal,
    call: Call,
    options: ExecuteOptions,
  ): Promise<CommandResult> {
    const doc = call.doc!;
    const head = await this.state.get(doc);
    call.revision = head.revision;
    const signal = new CallSignal(options.signal);
    call.handlerRan = true;
    const ctx = new HandlerContext(
      command,
      input,
      principal,
      call,
      options.client,
      head.revision,
      head.value,
      call.now(this.#clock),
      signal,
      this.#logger,
    );
    checkPrecondition(command, ctx);
    let result = command.run(ctx as unknown as QueryContext<unknown, unknown>);
    if (result instanceof Promise) result = await signal.bound(result, command.timeoutMs);
    const value = this.#checkResult(result);
    await this.state.store.recordAttempt({ audit: call.audit('ok', this.#clock()) });
    return call.success(doc, head.revision, false, false, value);
  }

  async #write(
    command: CommandDefinition,
    input: unknown,
    principal: Principal,
    call: Call,
    options: ExecuteOptions,
    idempotency: { key: string; fingerprint: string } | undefined,
  ): Promise<CommandResult> {
    const doc = call.doc!;
    const signal = new CallSignal(options.signal);
    let effects: Effect[] = [];
    const outcome = await this.state.transact({
      doc,
      principal,
      command: command.name,
      commandId: call.commandId,
      requestId: call.requestId,
      auditInput: call.auditInput,
      traceparent: call.traceparent,
      expectedRevision: options.expectedRevision,
      idempotency,
      timeoutMs: command.timeoutMs,
      call: signal,
      mutate: (draft, base) => {
        effects = [];
        call.revision = base.revision;
        call.handlerRan = true;
        const ctx = new HandlerContext(
          command,
          input,
          principal,
          call,
          options.client,
          base.revision,
          base.value,
          call.now(this.#clock),
          signal,
          this.#logger,
        );
        checkPrecondition(command, ctx);
        ctx.draft = draft;
        ctx.effects = effects;
        return command.run(ctx as unknown as WriteContext<unknown, unknown>);
      },
      checkPatches: (patches) => {
        const forbidden = this.#authorizer.findForbiddenPath(principal, command, doc, touchedPaths(patches));
        if (forbidden !== undefined) {
          throw new AccessError('forbidden', `Not allowed to change "${forbidden}" of document "${doc}"`, {
            details: { doc, path: forbidden },
          });
        }
      },
    });
    if (outcome.duplicate) return this.#fromRecord(call, outcome.duplicate);
    const value = this.#checkResult(outcome.result);
    if (!outcome.committed) {
      await this.state.store.recordAttempt({
        audit: call.audit('ok', this.#clock(), outcome.revision),
        idempotency: idempotency && {
          principal: principal.id,
          key: idempotency.key,
          fingerprint: idempotency.fingerprint,
          command: command.name,
          doc,
          revision: outcome.revision,
          commandId: call.commandId,
          outcome: 'ok',
          response: value,
          at: this.#clock().toISOString(),
        },
      });
    }
    if (outcome.committed) for (const effect of effects) this.#runEffect(effect, call);
    return call.success(doc, outcome.revision, outcome.committed, false, value);
  }

  #checkResult(result: unknown): JsonValue {
    if (result === undefined) return null;
    const problem = findJsonProblem(result);
    if (problem) {
      throw new StateError(
        'state_invalid',
        `The command returned a result that is not plain JSON at "${problem.path}": ${problem.problem}`,
      );
    }
    return result as JsonValue;
  }

  #runEffect(effect: () => void | Promise<void>, call: Call): void {
    Promise.resolve()
      .then(effect)
      .catch((error: unknown) => {
        this.#logger.error(
          { err: error, requestId: call.requestId, command: call.command },
          'afterCommit effect failed',
        );
      });
  }

  /** A repeat of an idempotent call: the first call's outcome, audited as an attempt of its own. */
  async #replayed(
    call: Call,
    doc: string,
    revision: number,
    commandId: string,
    result: JsonValue,
  ): Promise<CommandResult> {
    call.doc = doc;
    call.revision = revision;
    call.commandId = commandId;
    call.replayed = true;
    await this.state.store.recordAttempt({ audit: call.audit('ok', this.#clock(), revision) });
    return call.success(doc, revision, false, true, result);
  }

  async #fromRecord(call: Call, record: IdempotencyRecord): Promise<CommandResult> {
    if (record.outcome === 'ok')
      return this.#replayed(call, record.doc, record.revision, record.commandId, record.response);
    call.doc = record.doc;
    call.revision = record.revision;
    call.commandId = record.commandId;
    call.replayed = true;
    const stored = record.response as { message?: string; details?: JsonObject };
    throw errorForCode(record.outcome, stored.message, stored.details ? { details: stored.details } : {});
  }

  /** Turns any failure into a CommandResult, audits it, and logs what the client will not see. */
  async #fail(call: Call, thrown: unknown): Promise<CommandResult> {
    const error = isCoreMcpError(thrown) ? thrown : new InternalError(thrown);
    if (!error.spec.expose || error.spec.family === 'recovery' || error.spec.family === 'internal') {
      this.#logger.error({ err: thrown, requestId: call.requestId, command: call.command }, 'command failed');
    }
    if (call.principal) {
      try {
        await this.state.store.recordAttempt({
          audit: call.audit(error.code, this.#clock(), call.revision),
          idempotency: call.idempotency,
        });
      } catch (auditError) {
        this.#logger.error(
          { err: auditError, requestId: call.requestId },
          'could not write the audit record of a failed call',
        );
      }
    }
    const failure: CommandFailure = {
      status: 'error',
      command: call.command,
      requestId: call.requestId,
      error,
      publicError: toPublicError(error, call.requestId),
    };
    if (call.doc !== undefined) failure.doc = call.doc;
    if (call.revision !== undefined) failure.revision = call.revision;
    return failure;
  }

  #report(call: Call, result: CommandResult, durationMs: number): void {
    if (this.#observers.length === 0) return;
    const report: ExecutionReport = {
      command: call.command,
      principal: call.principal,
      requestId: call.requestId,
      outcome: result.status === 'success' ? 'ok' : result.error.code,
      durationMs,
      committed: result.status === 'success' && result.committed,
      replayed: call.replayed,
    };
    if (call.doc !== undefined) report.doc = call.doc;
    if (result.revision !== undefined) report.revision = result.revision;
    if (call.traceparent !== undefined) report.traceparent = call.traceparent;
    if (result.status === 'error') report.error = result.error;
    for (const observer of this.#observers) observer(report);
  }
}

type Effect = () => void | Promise<void>;

/**
 * What a handler receives. The abort signal and the logger are made on first use: most handlers
 * never touch them and should not pay for them.
 */
class HandlerContext {
  readonly input: unknown;
  readonly principal: Principal;
  readonly requestId: string;
  readonly commandId: string;
  readonly doc: string;
  readonly revision: number;
  readonly now: Date;
  readonly state: unknown;
  readonly client: ClientChannel | undefined;
  draft: unknown;
  effects: Effect[] | undefined;
  readonly #command: string;
  readonly #signal: CallSignal;
  readonly #logger: Logger;
  #log: CommandLogger | undefined;

  constructor(
    command: CommandDefinition,
    input: unknown,
    principal: Principal,
    call: Call,
    client: ClientChannel | undefined,
    revision: number,
    state: JsonValue,
    now: Date,
    signal: CallSignal,
    logger: Logger,
  ) {
    this.input = input;
    this.principal = principal;
    this.requestId = call.requestId;
    this.commandId = call.commandId;
    this.doc = call.doc!;
    this.revision = revision;
    this.now = now;
    this.state = state;
    this.client = client;
    this.#command = command.name;
    this.#signal = signal;
    this.#logger = logger;
  }

  get signal(): AbortSignal {
    return this.#signal.signal;
  }

  get log(): CommandLogger {
    this.#log ??= commandLogger(this.#logger.child({ requestId: this.requestId, command: this.#command }));
    return this.#log;
  }

  /** An own property, so handlers may destructure it: `({ draft, afterCommit }) => ...`. */
  readonly afterCommit = (effect: Effect): void => {
    if (!this.effects) throw new TypeError('afterCommit() is only available to write commands');
    if (typeof effect !== 'function') throw new TypeError('afterCommit() takes a function');
    this.effects.push(effect);
  };
}

/** What the pipeline learns about one call as it goes; feeds the audit record and the report. */
class Call {
  readonly command: string;
  readonly requestId: string;
  readonly principal: Principal | undefined;
  readonly traceparent: string | undefined;
  commandId: string = timeOrderedId();
  doc: string | undefined;
  revision: number | undefined;
  auditInput: JsonValue = null;
  handlerRan = false;
  replayed = false;
  idempotency: IdempotencyRecord | undefined;
  #now: Date | undefined;

  constructor(
    command: string,
    requestId: string,
    principal: Principal | undefined,
    traceparent: string | undefined,
  ) {
    this.command = command;
    this.requestId = requestId;
    this.principal = principal;
    this.traceparent = traceparent;
  }

  now(clock: () => Date): Date {
    this.#now ??= clock();
    return this.#now;
  }

  audit(outcome: string, now: Date, revision?: number): AuditEntry {
    const entry: AuditEntry = {
      at: now.toISOString(),
      requestId: this.requestId,
      principal: this.principal?.id ?? 'anonymous',
      via: this.principal?.via ?? 'none',
      command: this.command,
      input: this.auditInput,
      outcome,
      commandId: this.commandId,
    };
    if (this.doc !== undefined) entry.doc = this.doc;
    if (revision !== undefined) entry.revision = revision;
    if (this.traceparent !== undefined) entry.traceparent = this.traceparent;
    return entry;
  }

  success(
    doc: string,
    revision: number,
    committed: boolean,
    replayed: boolean,
    result: JsonValue,
  ): CommandSuccess {
    return {
      status: 'success',
      command: this.command,
      requestId: this.requestId,
      commandId: this.commandId,
      doc,
      revision,
      committed,
      replayed,
      result,
    };
  }
}

function checkPrecondition(command: CommandDefinition, ctx: HandlerContext): void {
  if (!command.precondition) return;
  const verdict = command.precondition(ctx as unknown as QueryContext<unknown, unknown>);
  if (verdict === true) return;
  const reason =
    typeof verdict === 'string' && verdict.length > 0
      ? verdict.slice(0, 500)
      : 'the precondition returned false';
  throw new StateError('precondition_failed', `Precondition of "${command.name}" failed: ${reason}`, {
    details: { reason },
  });
}

function reusedKey(key: string): CommandError {
  return new CommandError(
    'idempotency_key_reused',
    `Idempotency key "${key}" was already used with a different command or input`,
  );
}

function commandLogger(logger: Logger): CommandLogger {
  return {
    debug: (message, fields) => logger.debug(fields ?? {}, message),
    info: (message, fields) => logger.info(fields ?? {}, message),
    warn: (message, fields) => logger.warn(fields ?? {}, message),
    error: (message, fields) => logger.error(fields ?? {}, message),
  };
}
