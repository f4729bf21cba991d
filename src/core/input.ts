import { z } from 'zod';
import { CommandError } from './errors.js';
import type { JsonObject, JsonValue } from './json.js';

/**
 * Questions a handler puts to the MCP client (elicitation, sampling, roots) and the answers it gets.
 *
 * A handler asks once — `await ctx.client.elicit(...)` — and the transport decides how the question
 * travels: on 2026-07-28 the call ends with `input_required` and is retried with the answers
 * (multi round-trip requests); on 2025-11-25 sessions the SDK sends real server-to-client requests
 * and hands the answers back. Either way the handler runs again from the start with every answer
 * gathered so far, so it must be deterministic in (state, input, answers). A question nobody has
 * answered yet stops the run: nothing is committed until every question is answered.
 */

/** One question for the client, in the shape MCP embeds it (`inputRequests` entries). */
export interface InputRequest {
  method: 'elicitation/create' | 'sampling/createMessage' | 'roots/list';
  params: JsonObject;
}

export type InputRequests = Record<string, InputRequest>;

/** What the transport offers a call's handler: the MCP client, as the server sees it. */
export interface ClientConnection {
  /**
   * The capabilities the client declared: on 2026-07-28 those of this request's `_meta`, on
   * 2025-11-25 those of `initialize`. Undefined when unknown.
   */
  readonly capabilities: Readonly<Record<string, unknown>> | undefined;
  /** Whether a question can reach the client at all (not over 2025-11-25 HTTP without a session). */
  readonly canAsk: boolean;
  progress(progress: number, total?: number, message?: string): Promise<void>;
  log(level: LogLevel, data: JsonValue): Promise<void>;
  /**
   * Ends the synchronous part of a call to a command that runs as a task: the client gets its task
   * now (durably created first) and the rest of the run continues in the background. Absent when
   * the call cannot become a task.
   */
  runAsTask?(statusMessage?: string): Promise<void>;
}

export type LogLevel = 'debug' | 'info' | 'notice' | 'warning' | 'error';

/** Client capabilities a question needs, by kind. */
export type ClientCapability = 'elicitation' | 'elicitation.url' | 'sampling' | 'roots';

/** A form for the user: a message and the flat object schema of what to enter. */
export interface ElicitForm<S extends z.ZodObject = z.ZodObject> {
  message: string;
  /**
   * What to ask for: a zod object (the accepted content is validated with it, and re-asked when it
   * does not match) or a JSON Schema object in MCP's restricted elicitation shape.
   */
  requestedSchema: S | JsonObject;
}

/** Sends the user to a URL (out-of-band input, such as an OAuth consent page). */
export interface ElicitUrl {
  mode: 'url';
  message: string;
  url: string;
}

export type ElicitAnswer<T = Record<string, JsonValue>> =
  | { action: 'accept'; content: T }
  | { action: 'decline' | 'cancel'; content?: undefined };

/** A sampling request (`sampling/createMessage` params): `messages`, `maxTokens`, optional preferences. */
export type SampleRequest = JsonObject & { messages: JsonValue[]; maxTokens: number };

/** A sampling answer (`CreateMessageResult`). */
export interface SampleAnswer {
  role: 'assistant' | 'user';
  content: JsonObject | JsonObject[];
  model: string;
  stopReason?: string;
}

export interface Root {
  uri: string;
  name?: string;
}

export interface AskOptions {
  /**
   * The question's key in `inputRequests` (letters, digits, `_ . -`; at most 64). By default the kind
   * and its position among the run's questions of that kind: `elicit-1`, `sample-1`, `roots-1`, which
   * stay the same across re-runs because handlers are deterministic.
   */
  key?: string;
}

/** What a handler can ask of the connected MCP client. Undefined for in-process calls. */
export interface ClientChannel {
  /** Whether the client declared what a question of this kind needs. */
  supports(capability: ClientCapability): boolean;
  /** Asks the user to fill in a form, or to visit a URL. */
  elicit<S extends z.ZodObject>(
    form: { message: string; requestedSchema: S },
    options?: AskOptions,
  ): Promise<ElicitAnswer<z.output<S>>>;
  elicit(form: ElicitForm | ElicitUrl, options?: AskOptions): Promise<ElicitAnswer>;
  /** Asks the client's model for a completion. */
  sample(request: SampleRequest, options?: AskOptions): Promise<SampleAnswer>;
  /** Asks the client which roots (folders, repositories) it works in. */
  roots(options?: AskOptions): Promise<Root[]>;
  progress(progress: number, total?: number, message?: string): Promise<void>;
  /** Sends a log message to the client (MCP logging; the client's log level decides whether it is sent). */
  log(level: LogLevel, data: JsonValue): Promise<void>;
}

/** Keys of `inputRequests`: MCP leaves them to the server; coremcp keeps them short and plain. */
export const INPUT_KEY_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

type AskKind = 'elicit' | 'sample' | 'roots';

/** Most questions one run may have open at once. */
const MAX_PENDING = 16;

/**
 * Thrown at a handler by a question that has no answer yet; the pipeline turns it into an
 * `input_required` outcome. A handler that catches it changes nothing: the open questions decide.
 */
export class InputNeeded extends Error {
  constructor() {
    super('The command is waiting for the client to answer');
    this.name = 'InputNeeded';
  }
}

/**
 * One run's view of the client: answers by key from earlier rounds and this one, and the questions
 * the run asked that have none yet. Made fresh for every run of a handler (re-runs included).
 */
export class ClientInput implements ClientChannel {
  readonly #connection: ClientConnection;
  readonly #answers: Readonly<Record<string, JsonValue>>;
  readonly #pending = new Map<string, InputRequest>();
  readonly #used = new Map<string, JsonValue>();
  readonly #counts: Record<AskKind, number> = { elicit: 0, sample: 0, roots: 0 };

  constructor(connection: ClientConnection, answers: Readonly<Record<string, JsonValue>> = {}) {
    this.#connection = connection;
    this.#answers = answers;
  }

  /** Questions asked in this run that have no (acceptable) answer yet. */
  get pending(): InputRequests {
    return Object.fromEntries(this.#pending);
  }

  get waiting(): boolean {
    return this.#pending.size > 0;
  }

  /** The answers this run used, to carry into the next round. */
  get used(): Record<string, JsonValue> {
    return Object.fromEntries(this.#used);
  }

  supports(capability: ClientCapability): boolean {
    const caps = this.#connection.capabilities;
    if (!caps) return false;
    const [name, mode] = capability.split('.') as [string, string | undefined];
    const declared = caps[name];
    if (declared === null || typeof declared !== 'object') return false;
    if (mode === undefined) return true;
    return (declared as Record<string, unknown>)[mode] !== undefined;
  }

  elicit<S extends z.ZodObject>(
    form: { message: string; requestedSchema: S },
    options?: AskOptions,
  ): Promise<ElicitAnswer<z.output<S>>>;
  elicit(form: ElicitForm | ElicitUrl, options?: AskOptions): Promise<ElicitAnswer>;
  elicit(form: ElicitForm | ElicitUrl, options: AskOptions = {}): Promise<ElicitAnswer> {
    const key = this.#key('elicit', options);
    const isUrl = 'mode' in form && form.mode === 'url';
    this.#require(isUrl ? 'elicitation.url' : 'elicitation', key);
    let params: JsonObject;
    let schema: z.ZodObject | undefined;
    if (isUrl) {
      params = { mode: 'url', message: form.message, url: form.url };
    } else {
      const requested = (form as ElicitForm).requestedSchema;
      if (requested instanceof z.ZodType) {
        schema = requested as z.ZodObject;
        params = { mode: 'form', message: form.message, requestedSchema: elicitationSchema(schema) };
      } else {
        params = { mode: 'form', message: form.message, requestedSchema: requested };
      }
    }
    return this.#ask(key, { method: 'elicitation/create', params }, (answer) =>
      readElicitAnswer(answer, schema),
    );
  }

  sample(request: SampleRequest, options: AskOptions = {}): Promise<SampleAnswer> {
    const key = this.#key('sample', options);
    this.#require('sampling', key);
    return this.#ask(key, { method: 'sampling/createMessage', params: request }, readSampleAnswer);
  }

  roots(options: AskOptions = {}): Promise<Root[]> {
    const key = this.#key('roots', options);
    this.#require('roots', key);
    return this.#ask(key, { method: 'roots/list', params: {} }, readRoots);
  }

  progress(progress: number, total?: number, message?: string): Promise<void> {
    return this.#connection.progress(progress, total, message);
  }

  log(level: LogLevel, data: JsonValue): Promise<void> {
    return this.#connection.log(level, data);
  }

  runAsTask(statusMessage?: string): Promise<void> {
    return this.#connection.runAsTask?.(statusMessage) ?? Promise.resolve();
  }

  #key(kind: AskKind, options: AskOptions): string {
    this.#counts[kind] += 1;
    const key = options.key ?? `${kind}-${this.#counts[kind]}`;
    if (!INPUT_KEY_PATTERN.test(key)) {
      throw new TypeError(`question key "${key}" must match ${INPUT_KEY_PATTERN}`);
    }
    if (this.#pending.has(key) || this.#used.has(key))
      throw new TypeError(`question key "${key}" is asked twice in one run: give each question its own key`);
    return key;
  }

  #require(capability: ClientCapability, key: string): void {
    if (!this.#connection.canAsk) {
      throw new CommandError(
        'input_unavailable',
        'This command needs an answer from the client, and this connection cannot carry the question: use the 2026-07-28 protocol or a 2025-11-25 session',
        { details: { key } },
      );
    }
    if (this.supports(capability)) return;
    const [name, mode] = capability.split('.') as [string, string | undefined];
    const required: JsonObject = { [name]: mode === undefined ? {} : { [mode]: {} } };
    throw new CommandError(
      'missing_client_capability',
      `This command asks the client for input it did not declare it can give (${capability})`,
      { details: { requiredCapabilities: required, key } },
    );
  }

  #ask<T>(key: string, request: InputRequest, read: (answer: JsonValue) => T | undefined): Promise<T> {
    const answer = this.#answers[key];
    const value = answer === undefined ? undefined : read(answer);
    if (value !== undefined) {
      this.#used.set(key, answer!);
      return Promise.resolve(value);
    }
    if (this.#pending.size >= MAX_PENDING) {
      throw new TypeError(`a run may have at most ${MAX_PENDING} open questions`);
    }
    this.#pending.set(key, request);
    const waiting = Promise.reject(new InputNeeded());
    // Marked handled: a handler that asks several questions at once awaits only the first to fail.
    waiting.catch(() => {});
    return waiting;
  }
}

function isObject(value: unknown): value is Record<string, JsonValue> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An elicitation answer, if well formed (and, with a zod schema, if the accepted content matches it). */
function readElicitAnswer(answer: JsonValue, schema: z.ZodObject | undefined): ElicitAnswer | undefined {
  if (!isObject(answer)) return undefined;
  const { action } = answer;
  if (action === 'decline' || action === 'cancel') return { action };
  if (action !== 'accept') return undefined;
  const content = answer.content ?? {};
  if (!isObject(content)) return undefined;
  if (!schema) return { action, content };
  const parsed = schema.safeParse(content);
  return parsed.success ? { action, content: parsed.data as Record<string, JsonValue> } : undefined;
}

function readSampleAnswer(answer: JsonValue): SampleAnswer | undefined {
  if (!isObject(answer)) return undefined;
  const { role, content, model } = answer;
  if (role !== 'assistant' && role !== 'user') return undefined;
  if (typeof model !== 'string') return undefined;
  const blocks = Array.isArray(content) ? content : [content];
  if (blocks.length === 0 || !blocks.every((b) => isObject(b) && typeof b.type === 'string'))
    return undefined;
  const out: SampleAnswer = { role, content: content as JsonObject | JsonObject[], model };
  if (typeof answer.stopReason === 'string') out.stopReason = answer.stopReason;
  return out;
}

function readRoots(answer: JsonValue): Root[] | undefined {
  if (!isObject(answer) || !Array.isArray(answer.roots)) return undefined;
  const roots: Root[] = [];
  for (const root of answer.roots) {
    if (!isObject(root) || typeof root.uri !== 'string') return undefined;
    roots.push(typeof root.name === 'string' ? { uri: root.uri, name: root.name } : { uri: root.uri });
  }
  return roots;
}

/** A zod object as the flat JSON Schema an elicitation form takes. */
function elicitationSchema(schema: z.ZodObject): JsonObject {
  const json = z.toJSONSchema(schema, {
    io: 'input',
    target: 'draft-2020-12',
    unrepresentable: 'any',
  }) as JsonObject;
  const { $schema: _dialect, additionalProperties: _closed, ...form } = json;
  return form;
}
