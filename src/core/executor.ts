import { z } from 'zod';
import type { Authorizer, Principal } from './access.js';
import { buildAuditEntry } from './audit.js';
import type { CommandDefinition, CommandRegistry, QueryContext, WriteContext } from './commands.js';
import { type ConsentGrant, consentQuestion, hashChanges, readConsent } from './consent.js';
import { type Effect, HandlerContext, type HandlerContextOptions } from './context.js';
import {
  AccessError,
  CommandError,
  type CoreMcpError,
  errorForCode,
  InternalError,
  isCoreMcpError,
  type PublicError,
  RevisionConflictError,
  StateError,
  TransportError,
  toPublicError,
} from './errors.js';
import {
  IDEMPOTENCY_KEY_PATTERN,
  IdempotencyGuard,
  type IdempotencySlot,
  idempotencyRecord,
  idempotencySlot,
  isStoredRefusal,
} from './idempotency.js';
import { timeOrderedId } from './ids.js';
import { type ClientConnection, ClientInput, InputNeeded, type InputRequests } from './input.js';
import {
  DEFAULT_INPUT_LIMITS,
  escapePointerToken,
  findJsonProblem,
  type JsonLimits,
  type JsonObject,
  type JsonValue,
} from './json.js';
import { type Logger, silentLogger } from './log.js';
import { touchedPaths } from './patch.js';
import { checkResultIsJson } from './results.js';
import type { PreviewedChange, StateManager } from './state.js';
import type { AuditConsent, AuditEntry, IdempotencyRecord } from './store.js';
import { CallSignal } from './timeout.js';
import { validTraceparent } from './trace.js';

export { IDEMPOTENCY_KEY_PATTERN } from './idempotency.js';

/** The request `_meta` keys coremcp reads. */
export const CALL_META_KEYS = {
  idempotencyKey: 'coremcp/idempotency-key',
  expectedRevision: 'coremcp/expected-revision',
  commandVersion: 'coremcp/command-version',
} as const;

/** Per-call options: who is calling and how. */
export interface ExecuteOptions {
  /** The authenticated caller. Without one the call is refused as `unauthenticated`. */
  principal?: Principal;
  requestId?: string;
  signal?: AbortSignal;
  /**
   * The request's `_meta` as received over MCP: its coremcp keys (`coremcp/idempotency-key`,
   * `coremcp/expected-revision`) are read and checked here, once.
   */
  meta?: Readonly<Record<string, unknown>>;
  /** Runs the command at most once per (principal, key); repeats get the stored outcome. */
  idempotencyKey?: string;
  /** Commit only if the document is at this revision. */
  expectedRevision?: number;
  /** W3C trace context, carried into logs and the audit record (dropped when malformed). */
  traceparent?: string;
  /** The MCP client, when the call came through one: what `ctx.client` asks. */
  client?: ClientConnection;
  /**
   * Answers the client gave to the command's questions, by key: from earlier rounds and this one
   * (MRTR retries, 2025 server-to-client requests, task updates).
   */
  answers?: Readonly<Record<string, JsonValue>>;
  /**
   * The consent question the client was shown in an earlier round, vouched for by the transport
   * (a verified `requestState`): only with it does an answer under `CONSENT_KEY` count.
   */
  consent?: ConsentGrant;
  /**
   * The transport refused the call before it could run (a `requestState` that failed its checks):
   * the pipeline authenticates, looks up and audits it, then fails it with this error.
   */
  refusal?: CoreMcpError;
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
  /** When the call changed several documents: each, with its new revision. */
  changed?: Array<{ doc: string; revision: number }>;
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

/**
 * The command asked the client something and cannot go on without the answers: nothing was
 * committed. Ask `requests`, then call again with `answers` (the ones here plus the new ones).
 */
export interface CommandInputRequired {
  status: 'input_required';
  command: string;
  requestId: string;
  doc: string;
  revision: number;
  /** The questions, by key. */
  requests: InputRequests;
  /** The answers this run used, to carry into the next call. */
  answers: Record<string, JsonValue>;
  /** When the question is consent to a change: what it was asked about. */
  consent?: ConsentGrant;
}

export type CommandResult = CommandSuccess | CommandFailure | CommandInputRequired;

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
  /** The store could not write this call's audit record (a full disk, a held lock); it was logged. */
  auditUnrecorded?: true;
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
  /** Stored idempotency records kept per principal (default 10,000); the oldest go first. */
  idempotencyKeysPerPrincipal?: number;
}

const callOptionsSchema = z.object({
  idempotencyKey: z.string().regex(IDEMPOTENCY_KEY_PATTERN).optional(),
  expectedRevision: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});

/** The options of one call, checked. */
interface CallOptions {
  idempotencyKey: string | undefined;
  expectedRevision: number | undefined;
}

/**
 * What the pipeline learns about one call as it goes, step by step: the facts its audit record and
 * its report are made of, whatever step the call ends at.
 */
class CallTrace {
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
  /** The store could not write the audit record; the call was answered anyway (or failed anyway). */
  auditUnrecorded = false;
  /** A refusal to store for repeats of an idempotent call. */
  storedRefusal: IdempotencyRecord | undefined;
  /** Sequence values this call took, by name, in order: a re-run takes the same ones again. */
  readonly sequences = new Map<string, number[]>();
  /** For a command asking for consent: what its audit record says about it. */
  consent: AuditConsent | undefined;
  #now: Date | undefined;

  constructor(command: string, options: ExecuteOptions) {
    this.command = command;
    this.requestId = options.requestId ?? timeOrderedId();
    this.principal = options.principal;
    this.traceparent = validTraceparent(options.traceparent);
  }

  /** The call's time, fixed at first use (re-runs after a conflict see the same). */
  now(clock: () => Date): Date {
    this.#now ??= clock();
    return this.#now;
  }

  /** Takes on the identity of an earlier call whose stored outcome this repeat returns. */
  replay(record: { doc: string; revision: number; commandId: string }): void {
    this.doc = record.doc;
    this.revision = record.revision;
    this.commandId = record.commandId;
    this.replayed = true;
  }
}

/** A call past authentication, lookup, authorization and validation: what the last steps run on. */
interface ResolvedCall {
  command: CommandDefinition;
  input: unknown;
  principal: Principal;
  /** The command's document first, then those in `also`. */
  docs: readonly string[];
  options: CallOptions;
  signal: AbortSignal | undefined;
  client: ClientConnection | undefined;
  answers: Readonly<Record<string, JsonValue>>;
  consent: ConsentGrant | undefined;
}

/**
 * A run that stopped on questions: the pipeline's own signal, carried out of the transaction (which
 * commits nothing) to where the outcome is made.
 */
class AwaitingInput extends Error {
  readonly requests: InputRequests;
  readonly answers: Record<string, JsonValue>;
  readonly consent: ConsentGrant | undefined;

  constructor(requests: InputRequests, answers: Record<string, JsonValue>, consent?: ConsentGrant) {
    super('awaiting input');
    this.requests = requests;
    this.answers = answers;
    this.consent = consent;
  }
}

/** A consented change that is no longer the one shown: a fresh dry run asks again. */
class ConsentChanged extends Error {}

const NO_ANSWERS: Readonly<Record<string, JsonValue>> = Object.freeze({});

/**
 * Runs commands through the pipeline: authenticate → look up → authorize → validate → resolve the
 * documents → query, or write (idempotency → execute on drafts → check paths → commit with audit →
 * notify) → respond. Every attempt, whatever its outcome, leaves exactly one audit record.
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
  readonly #idempotency: IdempotencyGuard<CommandSuccess>;
  #running = 0;
  #idle: Array<() => void> = [];
  #draining = false;

  constructor(options: ExecutorOptions) {
    this.registry = options.registry;
    this.state = options.state;
    this.#authorizer = options.authorizer;
    this.#redact = options.redactInput ?? ((_, input) => input);
    this.#inputLimits = { ...DEFAULT_INPUT_LIMITS, ...options.inputLimits };
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? (() => new Date());
    this.#observers = options.observers ?? [];
    this.#idempotency = new IdempotencyGuard(options.state.store, options.idempotencyKeysPerPrincipal);
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
    const trace = new CallTrace(name, options);
    let result: CommandResult;
    this.#running++;
    try {
      if (this.#draining) throw new TransportError('shutting_down');
      result = await this.#run(trace, input ?? {}, options);
    } catch (error) {
      result =
        error instanceof AwaitingInput ? await this.#ask(trace, error) : await this.#fail(trace, error);
    } finally {
      if (--this.#running === 0) for (const wake of this.#idle.splice(0)) wake();
    }
    this.#report(trace, result, performance.now() - started);
    return result;
  }

  /** Calls running now. */
  get running(): number {
    return this.#running;
  }

  /**
   * For a graceful shutdown: refuses new calls with `shutting_down` and waits for the running ones,
   * at most `timeoutMs`. True when every call finished in time.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.#draining = true;
    if (this.#running === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      new Promise<boolean>((resolve) => this.#idle.push(() => resolve(true))),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return finished;
  }

  async #run(trace: CallTrace, rawInput: unknown, options: ExecuteOptions): Promise<CommandResult> {
    const principal = authenticated(options.principal);
    const command = this.#lookUp(trace.command);
    this.#authorize(principal, command);
    if (options.refusal) throw options.refusal;
    const input = this.#validate(command, rawInput, trace, options.meta);
    const callOptions = readCallOptions(options);
    const docs = await this.#resolveDocuments(command, input, principal, trace);
    const call: ResolvedCall = {
      command,
      input,
      principal,
      docs,
      options: callOptions,
      signal: options.signal,
      client: options.client,
      answers: options.answers ?? NO_ANSWERS,
      consent: options.consent,
    };
    if (command.readOnly) return this.#query(call, trace);
    const key = callOptions.idempotencyKey;
    if (key === undefined) return this.#writeCall(call, trace, undefined);
    const slot = idempotencySlot(principal.id, key, command.name, rawInput);
    return this.#idempotency.run(
      slot,
      () => this.#writeOnce(call, trace, slot),
      (original) => this.#repeat(trace, original),
    );
  }

  /** A write, with consent first when the command asks for it. */
  #writeCall(
    call: ResolvedCall,
    trace: CallTrace,
    slot: IdempotencySlot | undefined,
  ): Promise<CommandSuccess> {
    return call.command.confirm ? this.#writeWithConsent(call, trace, slot) : this.#write(call, trace, slot);
  }

  /**
   * Consent: a dry run shows the changes and commits nothing; an approval of exactly those changes,
   * at exactly those revisions, commits them; anything else is asked again or refused.
   */
  async #writeWithConsent(
    call: ResolvedCall,
    trace: CallTrace,
    slot: IdempotencySlot | undefined,
  ): Promise<CommandSuccess> {
    if (!call.client) {
      throw new CommandError(
        'input_unavailable',
        `"${call.command.name}" asks for consent before it commits, and this call has no client to ask`,
      );
    }
    const grant = call.consent;
    const decision = grant && readConsent(call.answers);
    if (grant && decision === 'declined') {
      trace.consent = { decision: 'declined', diffHash: grant.diffHash };
      throw new CommandError('consent_declined', `The changes of "${call.command.name}" were not approved`, {
        details: { diffHash: grant.diffHash },
      });
    }
    if (grant && decision === 'accepted') {
      try {
        return await this.#write(call, trace, slot, { approved: grant });
      } catch (error) {
        // Another commit moved a document, or the run no longer makes the changes shown: show the new ones.
        if (!(error instanceof RevisionConflictError) && !(error instanceof ConsentChanged)) throw error;
      }
    }
    return this.#write(call, trace, slot, { dryRun: true });
  }

  #lookUp(name: string): CommandDefinition {
    const command = this.registry.get(name);
    if (!command) {
      throw new CommandError('unknown_command', `Unknown command "${name}"`, { details: { command: name } });
    }
    return command;
  }

  #authorize(principal: Principal, command: CommandDefinition): void {
    if (!this.#authorizer.canExecute(principal, command)) {
      throw new AccessError('forbidden', `Not allowed to call "${command.name}"`, {
        details: { permission: command.permission },
      });
    }
  }

  #validate(
    command: CommandDefinition,
    rawInput: unknown,
    trace: CallTrace,
    meta: Readonly<Record<string, unknown>> | undefined,
  ): unknown {
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
    trace.auditInput = this.#redact(command, rawInput as JsonValue);
    const claimed = meta?.[CALL_META_KEYS.commandVersion];
    let parsed = command.input.safeParse(
      typeof claimed === 'number' && claimed < command.version
        ? upcast(command, rawInput, claimed)
        : rawInput,
    );
    if (!parsed.success && command.upcasters.size > 0) {
      // An older client: the newest earlier version whose schema takes the input, upgraded step by step.
      for (let from = command.version - 1; from >= 1; from--) {
        if (!command.upcasters.get(from)?.input.safeParse(rawInput).success) continue;
        const upgraded = command.input.safeParse(upcast(command, rawInput, from));
        if (upgraded.success) parsed = upgraded;
        break;
      }
    }
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 20).map((issue) => ({
        path: issue.path.map((p) => `/${escapePointerToken(String(p))}`).join(''),
        message: issue.message,
      }));
      const first = issues[0];
      throw new CommandError(
        'invalid_input',
        first ? `Invalid input at "${first.path || '/'}": ${first.message}` : 'Invalid input',
        { details: { issues } },
      );
    }
    return parsed.data;
  }

  /** The command's document and those in `also`, each checked against what the principal may do with it. */
  async #resolveDocuments(
    command: CommandDefinition,
    input: unknown,
    principal: Principal,
    trace: CallTrace,
  ): Promise<string[]> {
    const doc = await command.resolveDoc(input);
    trace.doc = doc;
    const docs = [doc];
    if (command.resolveAlso)
      for (const other of await command.resolveAlso(input)) if (!docs.includes(other)) docs.push(other);
    const action = command.readOnly ? 'read' : command.documentAction;
    for (const each of docs) {
      if (!this.#authorizer.canAccessDocument(principal, each, action)) {
        throw new AccessError('forbidden', `Not allowed to ${action} document "${each}"`, {
          details: { doc: each, action },
        });
      }
    }
    return docs;
  }

  async #query(call: ResolvedCall, trace: CallTrace): Promise<CommandResult> {
    const { command, docs } = call;
    const signal = new CallSignal(call.signal);
    const views = new Map<string, { revision: number; value: unknown }>();
    for (const doc of docs) views.set(doc, await this.state.view(doc));
    trace.revision = views.get(docs[0]!)!.revision;
    trace.handlerRan = true;
    const client = call.client && new ClientInput(call.client, call.answers);
    const ctx = this.#context(call, trace, signal, views, undefined, client);
    checkPrecondition(command, ctx);
    let result: unknown;
    try {
      result = command.run(ctx as unknown as QueryContext<unknown, unknown>);
      if (result instanceof Promise) result = await signal.bound(result, command.timeoutMs);
    } catch (error) {
      throw stoppedBy(error, client);
    }
    const waiting = stopped(client);
    if (waiting) throw waiting;
    const value = result === undefined ? null : result;
    checkResultIsJson(value);
    await this.#recordAnswered(trace, this.#audit(trace, 'ok'));
    return succeed(trace, { revision: trace.revision, committed: false, result: value as JsonValue });
  }

  /** An idempotent write run for the first time: a refusal by its handler is stored for repeats. */
  async #writeOnce(call: ResolvedCall, trace: CallTrace, slot: IdempotencySlot): Promise<CommandSuccess> {
    try {
      return await this.#writeCall(call, trace, slot);
    } catch (error) {
      if (!isCoreMcpError(error) || !isStoredRefusal(error) || !trace.handlerRan) throw error;
      // The handler refused: repeats get the same refusal without running it again.
      trace.storedRefusal = idempotencyRecord(slot, {
        command: call.command.name,
        doc: trace.doc ?? '',
        revision: trace.revision ?? 0,
        commandId: trace.commandId,
        outcome: error.code,
        response: toPublicError(error) as unknown as JsonValue,
        at: this.#clock().toISOString(),
      });
      throw error;
    }
  }

  async #write(
    call: ResolvedCall,
    trace: CallTrace,
    slot: IdempotencySlot | undefined,
    consent: { dryRun?: true; approved?: ConsentGrant } = {},
  ): Promise<CommandSuccess> {
    const { command, principal, docs } = call;
    const doc = docs[0]!;
    const signal = new CallSignal(call.signal);
    let effects: Effect[] = [];
    let used: Record<string, JsonValue> = {};
    const approved = consent.approved;
    const outcome = await this.state.transact({
      docs,
      principal,
      command: command.name,
      commandId: trace.commandId,
      requestId: trace.requestId,
      auditInput: trace.auditInput,
      traceparent: trace.traceparent,
      expectedRevision: call.options.expectedRevision,
      idempotency: slot,
      timeoutMs: command.timeoutMs,
      call: signal,
      // History-rewinding commands (rollback, undo) must not lose to writers in other processes.
      exclusive: command.documentAction === 'rollback',
      dryRun: consent.dryRun,
      consent: approved && { decision: 'accepted', diffHash: approved.diffHash },
      beforeCommit: approved && ((changes) => checkApproved(approved, changes)),
      mutate: (session) => {
        effects = [];
        const views = new Map(docs.map((d) => [d, session.base(d)]));
        trace.revision = views.get(doc)!.revision;
        trace.handlerRan = true;
        const sequencesThisRun = new Map<string, number>();
        const sequence = async (name: string, floor: number) => {
          const index = sequencesThisRun.get(name) ?? 0;
          sequencesThisRun.set(name, index + 1);
          const taken = trace.sequences.get(name) ?? [];
          trace.sequences.set(name, taken);
          taken[index] ??= await this.state.store.nextSequence(name, floor);
          return taken[index]!;
        };
        const client = call.client && new ClientInput(call.client, call.answers);
        const ctx = this.#context(call, trace, signal, views, { session, effects, sequence }, client);
        checkPrecondition(command, ctx);
        let result: unknown;
        try {
          result = command.run(ctx as unknown as WriteContext<unknown, unknown>);
        } catch (error) {
          throw stoppedBy(error, client);
        }
        if (result instanceof Promise) {
          return result.then(
            (value) => {
              const waiting = stopped(client);
              if (waiting) throw waiting;
              used = client?.used ?? {};
              return value;
            },
            (error: unknown) => {
              throw stoppedBy(error, client);
            },
          );
        }
        const waiting = stopped(client);
        if (waiting) throw waiting;
        used = client?.used ?? {};
        return result;
      },
      checkPatches: (changed, patches) => {
        const forbidden = this.#authorizer.findForbiddenPath(
          principal,
          command,
          changed,
          touchedPaths(patches),
        );
        if (forbidden !== undefined) {
          throw new AccessError(
            'forbidden',
            `Not allowed to change "${forbidden}" of document "${changed}"`,
            {
              details: { doc: changed, path: forbidden },
            },
          );
        }
      },
    });
    if (outcome.duplicate) return this.#repeat(trace, { stored: outcome.duplicate });
    const result = (outcome.result ?? null) as JsonValue;
    if (consent.dryRun && outcome.preview && outcome.preview.length > 0) {
      const grant: ConsentGrant = {
        revisions: Object.fromEntries(outcome.preview.map((c) => [c.doc, c.revision])),
        diffHash: hashChanges(outcome.preview),
      };
      const question = consentQuestion(command, {
        input: call.input,
        principal,
        result,
        changes: outcome.preview,
        diffHash: grant.diffHash,
      });
      throw new AwaitingInput(question, used, grant);
    }
    if (!outcome.committed) {
      await this.state.store.recordAttempt({
        audit: this.#audit(trace, 'ok', outcome.revision),
        idempotency:
          slot &&
          idempotencyRecord(slot, {
            command: command.name,
            doc,
            revision: outcome.revision,
            commandId: trace.commandId,
            outcome: 'ok',
            response: result,
            at: this.#clock().toISOString(),
          }),
      });
    } else {
      for (const effect of effects) this.#runEffect(effect, trace);
    }
    return succeed(trace, {
      revision: outcome.revision,
      committed: outcome.committed,
      result,
      ...(outcome.changed.length > 1 ? { changed: outcome.changed } : {}),
    });
  }

  #context(
    call: ResolvedCall,
    trace: CallTrace,
    signal: CallSignal,
    views: ReadonlyMap<string, { revision: number; value: unknown }>,
    write: HandlerContextOptions['write'],
    client: ClientInput | undefined,
  ): HandlerContext {
    const view = (doc: string) => {
      const found = views.get(doc);
      if (!found)
        throw new TypeError(
          `command "${call.command.name}" does not declare document "${doc}" (add it to \`also\`)`,
        );
      return found;
    };
    return new HandlerContext({
      command: call.command,
      input: call.input,
      principal: call.principal,
      requestId: trace.requestId,
      commandId: trace.commandId,
      doc: call.docs[0]!,
      now: trace.now(this.#clock),
      signal,
      logger: this.#logger,
      client,
      documents: { revision: (doc) => view(doc).revision, state: (doc) => view(doc).value },
      ...(write ? { write } : {}),
    });
  }

  #runEffect(effect: Effect, trace: CallTrace): void {
    Promise.resolve()
      .then(effect)
      .catch((error: unknown) => {
        this.#logger.error(
          { err: error, requestId: trace.requestId, command: trace.command },
          'afterCommit effect failed',
        );
      });
  }

  /**
   * A repeat of an idempotent call: the first call's outcome (still in flight, or stored), audited
   * as an attempt of its own.
   */
  async #repeat(
    trace: CallTrace,
    original: { inflight: CommandSuccess } | { stored: IdempotencyRecord },
  ): Promise<CommandSuccess> {
    if ('inflight' in original) {
      const first = original.inflight;
      trace.replay({ doc: first.doc, revision: first.revision, commandId: first.commandId });
      await this.#recordAnswered(trace, this.#audit(trace, 'ok', first.revision));
      return succeed(trace, { revision: first.revision, committed: false, result: first.result });
    }
    const record = original.stored;
    trace.replay(record);
    if (record.outcome !== 'ok') {
      const stored = record.response as { message?: string; details?: JsonObject };
      throw errorForCode(record.outcome, stored.message, stored.details ? { details: stored.details } : {});
    }
    await this.#recordAnswered(trace, this.#audit(trace, 'ok', record.revision));
    return succeed(trace, { revision: record.revision, committed: false, result: record.response });
  }

  /**
   * The audit record of a call that changed nothing and whose answer is already known: a read, or a
   * repeat of an idempotent call. When the store cannot write it (a full disk, a read-only file, a
   * held lock: a recovery-family fault), the answer is still given: reads keep working while writes
   * cannot. The record is logged at error level instead, with its request id, and counted
   * (`coremcp_audit_unrecorded_total`). Any other failure fails the call.
   */
  async #recordAnswered(trace: CallTrace, audit: AuditEntry): Promise<void> {
    try {
      await this.state.store.recordAttempt({ audit });
    } catch (error) {
      if (!isCoreMcpError(error) || error.spec.family !== 'recovery') throw error;
      trace.auditUnrecorded = true;
      this.#logger.error(
        {
          err: error,
          requestId: trace.requestId,
          command: trace.command,
          principal: audit.principal,
          outcome: audit.outcome,
          doc: audit.doc,
          revision: audit.revision,
        },
        'answered without an audit record: the store cannot write it',
      );
    }
  }

  #audit(trace: CallTrace, outcome: string, revision = trace.revision) {
    return buildAuditEntry({
      at: this.#clock(),
      requestId: trace.requestId,
      principal: trace.principal,
      command: trace.command,
      input: trace.auditInput,
      outcome,
      commandId: trace.commandId,
      doc: trace.doc,
      revision,
      traceparent: trace.traceparent,
      consent: trace.consent,
    });
  }

  /** A run stopped on questions: audited, and answered with the questions to ask. */
  async #ask(trace: CallTrace, awaiting: AwaitingInput): Promise<CommandInputRequired> {
    if (awaiting.consent) trace.consent = { decision: 'requested', diffHash: awaiting.consent.diffHash };
    await this.state.store.recordAttempt({ audit: this.#audit(trace, 'input_required') });
    const outcome: CommandInputRequired = {
      status: 'input_required',
      command: trace.command,
      requestId: trace.requestId,
      doc: trace.doc!,
      revision: trace.revision ?? 0,
      requests: awaiting.requests,
      answers: awaiting.answers,
    };
    if (awaiting.consent) outcome.consent = awaiting.consent;
    return outcome;
  }

  /** Turns any failure into a CommandResult, audits it, and logs what the client will not see. */
  async #fail(trace: CallTrace, thrown: unknown): Promise<CommandResult> {
    const error = isCoreMcpError(thrown) ? thrown : new InternalError(thrown);
    if (!error.spec.expose || error.spec.family === 'recovery' || error.spec.family === 'internal') {
      this.#logger.error(
        { err: thrown, requestId: trace.requestId, command: trace.command },
        'command failed',
      );
    }
    if (trace.principal) {
      try {
        await this.state.store.recordAttempt({
          audit: this.#audit(trace, error.code),
          idempotency: trace.storedRefusal,
        });
      } catch (auditError) {
        trace.auditUnrecorded = true;
        this.#logger.error(
          { err: auditError, requestId: trace.requestId },
          'could not write the audit record of a failed call',
        );
      }
    }
    const failure: CommandFailure = {
      status: 'error',
      command: trace.command,
      requestId: trace.requestId,
      error,
      publicError: toPublicError(error, trace.requestId),
    };
    if (trace.doc !== undefined) failure.doc = trace.doc;
    if (trace.revision !== undefined) failure.revision = trace.revision;
    return failure;
  }

  #report(trace: CallTrace, result: CommandResult, durationMs: number): void {
    if (this.#observers.length === 0) return;
    const report: ExecutionReport = {
      command: trace.command,
      principal: trace.principal,
      requestId: trace.requestId,
      outcome:
        result.status === 'success' ? 'ok' : result.status === 'error' ? result.error.code : 'input_required',
      durationMs,
      committed: result.status === 'success' && result.committed,
      replayed: trace.replayed,
    };
    if (trace.doc !== undefined) report.doc = trace.doc;
    if (result.revision !== undefined) report.revision = result.revision;
    if (trace.traceparent !== undefined) report.traceparent = trace.traceparent;
    if (result.status === 'error') report.error = result.error;
    if (trace.auditUnrecorded) report.auditUnrecorded = true;
    for (const observer of this.#observers) observer(report);
  }
}

function authenticated(principal: Principal | undefined): Principal {
  if (!principal) throw new AccessError('unauthenticated');
  return principal;
}

/** The call's idempotency key and expected revision, from the options or the request `_meta`, checked once. */
function readCallOptions(options: ExecuteOptions): CallOptions {
  const meta = options.meta;
  const raw = {
    idempotencyKey: options.idempotencyKey ?? meta?.[CALL_META_KEYS.idempotencyKey],
    expectedRevision: options.expectedRevision ?? meta?.[CALL_META_KEYS.expectedRevision],
  };
  if (raw.idempotencyKey === undefined && raw.expectedRevision === undefined)
    return { idempotencyKey: undefined, expectedRevision: undefined };
  const parsed = callOptionsSchema.safeParse(raw);
  if (parsed.success)
    return { idempotencyKey: parsed.data.idempotencyKey, expectedRevision: parsed.data.expectedRevision };
  if (parsed.error.issues.some((issue) => issue.path[0] === 'expectedRevision')) {
    const expected = raw.expectedRevision;
    throw new StateError('invalid_revision', 'The expected revision must be a non-negative integer', {
      details: { expectedRevision: typeof expected === 'number' ? expected : String(expected).slice(0, 64) },
    });
  }
  throw new CommandError('invalid_input', 'The idempotency key must be 1-255 printable ASCII characters', {
    details: {
      issues: [
        { path: '_meta/coremcp~1idempotency-key', message: 'expected 1-255 printable ASCII characters' },
      ],
    },
  });
}

/** An input of version `from` upgraded to the command's current version (unknown steps leave it as it is). */
function upcast(command: CommandDefinition, input: unknown, from: number): unknown {
  let value = input;
  for (let v = Math.max(1, from); v < command.version; v++) {
    const step = command.upcasters.get(v);
    if (!step) return input;
    const parsed = step.input.safeParse(value);
    if (!parsed.success) return input;
    value = step.upgrade(parsed.data as never);
  }
  return value;
}

function succeed(
  trace: CallTrace,
  outcome: {
    revision: number;
    committed: boolean;
    result: JsonValue;
    changed?: Array<{ doc: string; revision: number }>;
  },
): CommandSuccess {
  const success: CommandSuccess = {
    status: 'success',
    command: trace.command,
    requestId: trace.requestId,
    commandId: trace.commandId,
    doc: trace.doc!,
    revision: outcome.revision,
    committed: outcome.committed,
    replayed: trace.replayed,
    result: outcome.result,
  };
  if (outcome.changed) success.changed = outcome.changed;
  return success;
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

/**
 * The pipeline's signal for a run whose client input has open questions, if it has any: a run that
 * returned with questions open waits for their answers.
 */
function stopped(client: ClientInput | undefined): AwaitingInput | undefined {
  return client?.waiting ? new AwaitingInput(client.pending, client.used) : undefined;
}

/** What a run that threw ends with: waiting, if it stopped at a question; otherwise its error. */
function stoppedBy(error: unknown, client: ClientInput | undefined): unknown {
  return error instanceof InputNeeded ? (stopped(client) ?? error) : error;
}

/** An approved change commits only as shown: same documents, same revisions, same patches. */
function checkApproved(grant: ConsentGrant, changes: readonly PreviewedChange[]): void {
  for (const change of changes) {
    const shown = grant.revisions[change.doc];
    if (shown === undefined) throw new ConsentChanged();
    if (shown !== change.revision) throw new RevisionConflictError(change.doc, shown, change.revision);
  }
  if (changes.length !== Object.keys(grant.revisions).length || hashChanges(changes) !== grant.diffHash)
    throw new ConsentChanged();
}
