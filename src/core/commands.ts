import { z } from 'zod';
import type { Principal } from './access.js';
import {
  DEFAULT_DOCUMENT,
  DOCUMENT_ID_PATTERN,
  type DocumentDefinition,
  type DocumentDraft,
  type DocumentView,
} from './document.js';
import { SetupError } from './errors.js';
import type { ClientChannel } from './input.js';
import { deepFreeze, type JsonObject, type JsonValue } from './json.js';
import type { JsonPatch } from './patch.js';

export type { ClientChannel } from './input.js';

/** MCP tool names: 1-128 of letters, digits, `_`, `-`, `.`; coremcp also requires a leading letter. */
export const COMMAND_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;

export {
  DEFAULT_DOCUMENT,
  DOCUMENT_ID_PATTERN,
  type DocumentDefinition,
  defineDocument,
} from './document.js';

/** Logging available to handlers; lines carry the request id. */
export interface CommandLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A document a command names: its id, or its `defineDocument` handle. */
export type DocumentRef<S = unknown> = string | DocumentDefinition<S>;

interface ContextBase<I> {
  readonly input: I;
  readonly principal: Principal;
  readonly requestId: string;
  readonly commandId: string;
  /** The document the command acts on. */
  readonly doc: string;
  /** The document's revision the handler sees. */
  readonly revision: number;
  /** Fixed for the whole call, re-runs included: handlers must not read the clock themselves. */
  readonly now: Date;
  readonly signal: AbortSignal;
  readonly log: CommandLogger;
  readonly client: ClientChannel | undefined;
  /** A document the command declares in `also`, as it was before the command (queries: at head). */
  stateOf<T = JsonValue>(doc: DocumentRef<T>): DocumentView<T>;
  /** The revision of a document the command declares (its own or one in `also`) that the handler sees. */
  revisionOf(doc: DocumentRef): number;
  /**
   * For a command that runs as a task (`task`): ends the call's synchronous part. Questions asked
   * before it are answered on the call itself (2026-07-28 `input_required` retries); when the client
   * declared the tasks extension, the client gets a task once this resolves, and the rest of the run
   * (progress, questions through `tasks/update`, the result) belongs to the task. A no-op otherwise:
   * the call simply goes on synchronously. A re-run of the task passes through it at once.
   */
  runAsTask(statusMessage?: string): Promise<void>;
}

/** What a write command's handler receives: a draft of the document at head. */
export interface WriteContext<I, S> extends ContextBase<I> {
  readonly draft: DocumentDraft<S>;
  /** The document as it was before this command. */
  readonly state: DocumentView<S>;
  /** The draft of a document the command declares in `also`: all of them commit together, or none. */
  draftOf<T = JsonObject>(doc: DocumentRef<T>): DocumentDraft<T>;
  /**
   * Applies RFC 6902 patches as coremcp produces them (history's forward or inverse patches) to the
   * draft of the command's document, or of one in `also`.
   */
  applyPatches(patches: JsonPatch, doc?: DocumentRef): Promise<void>;
  /**
   * The next value of the counter `name`, kept outside every document: a rollback never rewinds it,
   * so ids made from it are never handed out twice. At least `atLeast`. A re-run of the call after a
   * conflict gets the same values.
   */
  sequence(name: string, options?: { atLeast?: number }): Promise<number>;
  /**
   * Runs `effect` once the commit is durable; never on failure, never twice on re-runs. Use it for
   * side effects outside the state (sending mail, calling another service).
   */
  afterCommit(effect: () => void | Promise<void>): void;
}

/** What a query's handler receives: the document at head, read-only. */
export interface QueryContext<I, S> extends ContextBase<I> {
  readonly state: DocumentView<S>;
}

type DocumentSelector<I, S> = string | DocumentDefinition<S> | ((input: I) => string | Promise<string>);
type DocumentsSelector<I> =
  | ReadonlyArray<DocumentRef>
  | ((input: I) => readonly string[] | Promise<readonly string[]>);

interface CommandSpecBase<Schema extends z.ZodType, S> {
  /** The tool name clients call. */
  name: string;
  title?: string;
  description: string;
  /** A zod schema for the arguments; its JSON Schema must describe an object. */
  input?: Schema;
  /** A zod schema for the result, advertised as the tool's outputSchema. */
  output?: z.ZodType;
  /** The permission a role must grant; defaults to the command name. */
  permission?: string;
  /** The document the command acts on (an id, a `defineDocument` handle, or a function of the input); defaults to `default`. */
  doc?: DocumentSelector<z.output<Schema>, S>;
  /**
   * More documents the command reads (queries) or may change (writes) besides `doc`: a write's
   * changes to all of them commit atomically, each at its next revision, with one audit record.
   */
  also?: DocumentsSelector<z.output<Schema>>;
  /**
   * A condition on the current state that must hold for the command to run; return `true`, or a
   * reason why not (the call fails with `precondition_failed`). Checked inside the transaction, on
   * the state the handler will see.
   */
  precondition?: (ctx: QueryContext<z.output<Schema>, S>) => true | string;
  /** What a write needs on its document: `write` (default), or `rollback` for history-rewinding commands. */
  documentAction?: 'write' | 'rollback';
  /** Tool annotations. */
  destructive?: boolean;
  idempotent?: boolean;
  /** How long the handler may run, in milliseconds (default 10,000). */
  timeoutMs?: number;
  /**
   * The version of the command's input (default 1). When the input changes shape, raise it and keep
   * older clients working with `upcast`.
   */
  version?: number;
  /**
   * Inputs of earlier versions, still accepted: an input the current schema refuses but an older
   * one accepts is upgraded step by step (`from` 1 to 2, 2 to 3, …) and then checked again. One step
   * per version from the oldest kept; a client may also name its version in
   * `_meta["coremcp/command-version"]`.
   */
  upcast?: ReadonlyArray<Upcaster>;
  /**
   * Run as a task (the MCP tasks extension) when the client declares it: the call returns a task at
   * once and the client polls it. `optional`: clients without the extension get the result
   * synchronously; `required`: they are refused with `missing_client_capability`.
   */
  task?: 'optional' | 'required';
}

/** One step of input upgrading: an input of version `from`, and how it reads in version `from + 1`. */
export interface Upcaster {
  readonly from: number;
  readonly input: z.ZodType;
  readonly upgrade: (input: never) => unknown;
}

/**
 * Turns a command's result into the content blocks a client shows (MCP `ContentBlock`s: text, image,
 * audio, resource). The result itself stays plain JSON (audited, replayed for idempotent repeats, sent
 * as `structuredContent`); without a renderer the content is the result's JSON text.
 */
export type ContentRenderer<R> = (result: R) => ReadonlyArray<ContentBlockLike>;

/** A content block as the core sees it: opaque, with a `type`; the MCP layer and the SDK check the rest. */
export type ContentBlockLike = { readonly type: string; readonly [key: string]: unknown };

/** What a command asking for consent shows: the dry run's changes, not yet committed. */
export interface ConsentPreview<I = unknown, R = unknown> {
  readonly input: I;
  readonly principal: Principal;
  /** What the handler returned on the dry run. */
  readonly result: R;
  /** Each document the call would change: its revision now and the RFC 6902 patches. */
  readonly changes: ReadonlyArray<{ doc: string; revision: number; patches: JsonPatch }>;
}

export interface WriteCommandSpec<Schema extends z.ZodType, S, R> extends CommandSpecBase<Schema, S> {
  readOnly?: false;
  /**
   * Ask for consent before committing. The first call runs the handler on a draft and commits
   * nothing; the client is asked to approve a summary and the RFC 6902 patches the call would make.
   * An approval commits the call only if every document is still at the revision the diff was made
   * on (otherwise the client gets a fresh diff); a refusal changes nothing. `true` shows a default
   * summary; a function returns the summary for a preview.
   */
  confirm?: boolean | ((preview: ConsentPreview<z.output<Schema>, R>) => string);
  /**
   * Changes `ctx.draft` and returns the result (plain JSON). Must be deterministic in (state, input,
   * ctx): it runs again if another writer commits first. Throw a `CommandError` to refuse.
   */
  handler: (ctx: WriteContext<z.output<Schema>, S>) => R | Promise<R>;
  content?: ContentRenderer<R>;
}

export interface QueryCommandSpec<Schema extends z.ZodType, S, R> extends CommandSpecBase<Schema, S> {
  readOnly: true;
  handler: (ctx: QueryContext<z.output<Schema>, S>) => R | Promise<R>;
  content?: ContentRenderer<R>;
}

/** A validated, frozen command, ready to register. */
export interface CommandDefinition {
  readonly name: string;
  readonly title: string | undefined;
  readonly description: string;
  readonly permission: string;
  readonly readOnly: boolean;
  readonly destructive: boolean;
  readonly idempotent: boolean;
  readonly timeoutMs: number;
  readonly input: z.ZodType;
  readonly output: z.ZodType | undefined;
  /** JSON Schema (draft 2020-12) of the input, as tools/list shows it. */
  readonly inputJsonSchema: JsonObject;
  readonly outputJsonSchema: JsonObject | undefined;
  /** Resolves the document for a validated input. */
  readonly resolveDoc: (input: unknown) => string | Promise<string>;
  /** The document, when it is fixed (an id or a handle), not chosen by a function of the input. */
  readonly fixedDoc: string | undefined;
  /** Resolves the other documents (`also`) for a validated input; none for most commands. */
  readonly resolveAlso: ((input: unknown) => readonly string[] | Promise<readonly string[]>) | undefined;
  readonly precondition: ((ctx: QueryContext<unknown, unknown>) => true | string) | undefined;
  readonly documentAction: 'write' | 'rollback';
  readonly run: (ctx: WriteContext<unknown, unknown> | QueryContext<unknown, unknown>) => unknown;
  readonly content: ContentRenderer<JsonValue> | undefined;
  /** The input version (1 unless raised). */
  readonly version: number;
  /** Steps that upgrade older inputs, by the version they start from. */
  readonly upcasters: ReadonlyMap<number, Upcaster>;
  /** The consent summary for a preview, when the command asks for consent. */
  readonly confirm: ((preview: ConsentPreview) => string) | undefined;
  /** Whether the command runs as a task for clients with the tasks extension. */
  readonly task: 'optional' | 'required' | undefined;
}

const EMPTY_INPUT = z.object({});

function toJsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  return z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' }) as JsonObject;
}

/**
 * Objects reject keys they do not declare: a misspelled argument is an error the caller sees, not a
 * value silently dropped. Schemas that chose `.loose()` or a catchall keep their choice.
 */
function strictInput(schema: z.ZodType): z.ZodType {
  if (!(schema instanceof z.ZodObject) || schema._zod.def.catchall !== undefined) return schema;
  // Metadata (JSON Schema keywords given with `.meta()`: allOf, if/then/else...) belongs to the
  // schema instance; the strict copy keeps it.
  const meta = z.globalRegistry.get(schema);
  return meta ? schema.strict().meta(meta) : schema.strict();
}

/** Declares a command: a tool whose calls run through the pipeline. Misuse throws at once. */
export function defineCommand<Schema extends z.ZodType = typeof EMPTY_INPUT, S = JsonObject, R = unknown>(
  spec: WriteCommandSpec<Schema, S, R> | QueryCommandSpec<Schema, S, R>,
): CommandDefinition {
  if (typeof spec !== 'object' || spec === null)
    throw new TypeError('defineCommand needs a specification object');
  const { name } = spec;
  if (typeof name !== 'string' || !COMMAND_NAME_PATTERN.test(name)) {
    throw new TypeError(`command name "${String(name)}" must match ${COMMAND_NAME_PATTERN}`);
  }
  if (typeof spec.description !== 'string' || spec.description.trim() === '') {
    throw new TypeError(`command "${name}" needs a description: agents choose tools by it`);
  }
  if (typeof spec.handler !== 'function') throw new TypeError(`command "${name}" needs a handler function`);
  const input = strictInput(spec.input ?? EMPTY_INPUT);
  if (!(input instanceof z.ZodType)) throw new TypeError(`command "${name}": input must be a zod schema`);
  const inputJsonSchema = toJsonSchema(input, 'input');
  if (inputJsonSchema.type !== 'object') {
    throw new TypeError(`command "${name}": input must describe an object (MCP tool arguments are objects)`);
  }
  const task = spec.task;
  if (task !== undefined && task !== 'optional' && task !== 'required')
    throw new TypeError(`command "${name}": task must be 'optional' or 'required'`);
  if (task !== undefined && (spec as { confirm?: unknown }).confirm)
    throw new TypeError(`command "${name}": a command that asks for consent runs synchronously (no task)`);
  const timeoutMs = spec.timeoutMs ?? 10_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw new TypeError(`command "${name}": timeoutMs must be a positive integer`);

  const check = (doc: unknown): string => {
    if (typeof doc !== 'string' || !DOCUMENT_ID_PATTERN.test(doc)) {
      throw new TypeError(`command "${name}" chose document "${String(doc)}", which is not a valid id`);
    }
    return doc;
  };
  const selector = spec.doc ?? DEFAULT_DOCUMENT;
  let resolveDoc: (input: unknown) => string | Promise<string>;
  let fixedDoc: string | undefined;
  if (typeof selector === 'function') {
    resolveDoc = (value) => {
      const doc = (selector as (input: unknown) => string | Promise<string>)(value);
      return doc instanceof Promise ? doc.then(check) : check(doc);
    };
  } else {
    const doc = typeof selector === 'string' ? selector : selector.id;
    if (!DOCUMENT_ID_PATTERN.test(doc))
      throw new TypeError(`command "${name}": document id "${doc}" is not valid`);
    resolveDoc = () => doc;
    fixedDoc = doc;
  }
  const version = spec.version ?? 1;
  if (!Number.isSafeInteger(version) || version < 1)
    throw new TypeError(`command "${name}": version must be a positive integer`);
  const upcasters = new Map<number, Upcaster>();
  for (const step of spec.upcast ?? []) {
    if (!Number.isSafeInteger(step?.from) || step.from < 1 || step.from >= version)
      throw new TypeError(`command "${name}": an upcaster starts from a version 1 to ${version - 1}`);
    if (!(step.input instanceof z.ZodType) || typeof step.upgrade !== 'function')
      throw new TypeError(`command "${name}": an upcaster has an input schema and an upgrade function`);
    if (upcasters.has(step.from))
      throw new TypeError(`command "${name}": two upcasters from version ${step.from}`);
    upcasters.set(step.from, step);
  }
  for (const from of upcasters.keys()) {
    for (let v = from; v < version; v++)
      if (!upcasters.has(v))
        throw new TypeError(
          `command "${name}": inputs of version ${from} need an upcaster from version ${v} too`,
        );
  }
  let resolveAlso: CommandDefinition['resolveAlso'];
  const also = spec.also;
  if (typeof also === 'function') {
    resolveAlso = (value) => {
      const docs = (also as (input: unknown) => readonly string[] | Promise<readonly string[]>)(value);
      return docs instanceof Promise ? docs.then((list) => list.map(check)) : docs.map(check);
    };
  } else if (also !== undefined && also.length > 0) {
    const docs = Object.freeze(also.map((ref) => check(typeof ref === 'string' ? ref : ref.id)));
    resolveAlso = () => docs;
  }

  return Object.freeze({
    name,
    title: spec.title,
    description: spec.description,
    permission: spec.permission ?? name,
    readOnly: spec.readOnly === true,
    destructive: spec.destructive ?? false,
    idempotent: spec.idempotent ?? false,
    timeoutMs,
    input,
    output: spec.output,
    inputJsonSchema: deepFreeze(inputJsonSchema),
    outputJsonSchema: spec.output ? deepFreeze(toJsonSchema(spec.output, 'output')) : undefined,
    resolveDoc,
    fixedDoc,
    resolveAlso,
    precondition: spec.precondition as CommandDefinition['precondition'],
    documentAction: spec.documentAction ?? 'write',
    run: spec.handler as CommandDefinition['run'],
    content: spec.content as ContentRenderer<JsonValue> | undefined,
    version,
    upcasters,
    confirm: consentSummary(name, spec.readOnly === true, (spec as { confirm?: unknown }).confirm),
    task,
  });
}

function consentSummary(name: string, readOnly: boolean, confirm: unknown): CommandDefinition['confirm'] {
  if (confirm === undefined || confirm === false) return undefined;
  if (readOnly) throw new TypeError(`command "${name}": only write commands can ask for consent (confirm)`);
  if (confirm === true) return defaultConsentSummary(name);
  if (typeof confirm !== 'function') throw new TypeError(`command "${name}": confirm is true or a function`);
  return confirm as (preview: ConsentPreview) => string;
}

function defaultConsentSummary(name: string): (preview: ConsentPreview) => string {
  return ({ changes }) => {
    const ops = changes.reduce((n, c) => n + c.patches.length, 0);
    const docs = changes.map((c) => `"${c.doc}" (revision ${c.revision})`).join(', ');
    return `Allow ${name} to make ${ops} change${ops === 1 ? '' : 's'} to ${docs}?`;
  };
}

/**
 * The set of commands a server offers. Registration happens before serving; `freeze()` (called when
 * serving starts) makes any later change throw.
 */
export class CommandRegistry {
  readonly #commands = new Map<string, CommandDefinition>();
  #frozen = false;

  register(command: CommandDefinition): this {
    if (this.#frozen) {
      throw new SetupError(
        'registry_frozen',
        `cannot register "${command?.name}": the registry is frozen once serving starts`,
      );
    }
    if (typeof command !== 'object' || command === null || typeof command.run !== 'function') {
      throw new TypeError('register() takes what defineCommand() returns');
    }
    if (this.#commands.has(command.name))
      throw new SetupError('duplicate_command', `command "${command.name}" is already registered`);
    this.#commands.set(command.name, command);
    return this;
  }

  get(name: string): CommandDefinition | undefined {
    return this.#commands.get(name);
  }

  list(): CommandDefinition[] {
    return [...this.#commands.values()];
  }

  get size(): number {
    return this.#commands.size;
  }

  freeze(): void {
    this.#frozen = true;
  }

  get frozen(): boolean {
    return this.#frozen;
  }
}
