import type { Principal } from './access.js';
import type { CommandDefinition, CommandLogger, DocumentRef } from './commands.js';
import type { ClientInput } from './input.js';
import type { Logger } from './log.js';
import type { JsonPatch } from './patch.js';
import type { WriteSession } from './state.js';
import type { CallSignal } from './timeout.js';

export type Effect = () => void | Promise<void>;

/** Everything a handler context is made from. */
export interface HandlerContextOptions {
  command: CommandDefinition;
  input: unknown;
  principal: Principal;
  requestId: string;
  commandId: string;
  doc: string;
  now: Date;
  signal: CallSignal;
  logger: Logger;
  client: ClientInput | undefined;
  /** The documents as the handler sees them: the command's own and those in `also`. */
  documents: {
    revision(doc: string): number;
    state(doc: string): unknown;
  };
  /** Present for writes: drafts, patching, and the effects to run after the commit. */
  write?: {
    session: WriteSession;
    effects: Effect[];
    /** The next value of a named counter that no rollback rewinds (the same on a re-run of this call). */
    sequence: (name: string, floor: number) => Promise<number>;
  };
}

const SEQUENCE_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,127}$/;

function idOf(ref: DocumentRef): string {
  return typeof ref === 'string' ? ref : ref.id;
}

/**
 * What a handler receives, built in one place for queries and writes alike. The abort signal and the
 * logger are made on first use: most handlers never touch them and should not pay for them.
 */
export class HandlerContext {
  readonly input: unknown;
  readonly principal: Principal;
  readonly requestId: string;
  readonly commandId: string;
  readonly doc: string;
  readonly revision: number;
  readonly now: Date;
  readonly state: unknown;
  readonly client: ClientInput | undefined;
  readonly #options: HandlerContextOptions;
  #log: CommandLogger | undefined;
  #draft: unknown;

  constructor(options: HandlerContextOptions) {
    this.#options = options;
    this.input = options.input;
    this.principal = options.principal;
    this.requestId = options.requestId;
    this.commandId = options.commandId;
    this.doc = options.doc;
    this.revision = options.documents.revision(options.doc);
    this.now = options.now;
    this.state = options.documents.state(options.doc);
    this.client = options.client;
  }

  /** The draft of the command's document (writes only). Made on first use. */
  get draft(): unknown {
    const write = this.#options.write;
    if (!write) return undefined;
    this.#draft ??= write.session.draft(this.doc);
    return this.#draft;
  }

  get signal(): AbortSignal {
    return this.#options.signal.signal;
  }

  get log(): CommandLogger {
    this.#log ??= commandLogger(
      this.#options.logger.child({ requestId: this.requestId, command: this.#options.command.name }),
    );
    return this.#log;
  }

  readonly stateOf = (doc: DocumentRef): unknown => this.#options.documents.state(idOf(doc));

  readonly revisionOf = (doc: DocumentRef): number => this.#options.documents.revision(idOf(doc));

  readonly draftOf = (doc: DocumentRef): unknown => this.#session('draftOf').draft(idOf(doc));

  readonly applyPatches = (patches: JsonPatch, doc: DocumentRef = this.doc): Promise<void> =>
    this.#session('applyPatches').apply(idOf(doc), patches);

  /**
   * The next value of the counter `name`: kept outside every document, so a rollback never rewinds it
   * and an id handed out is never handed out again. At least `options.atLeast` (e.g. the document's own
   * next id, when moving to this). A re-run of the call after a conflict gets the same values again.
   */
  readonly sequence = (name: string, options: { atLeast?: number } = {}): Promise<number> => {
    if (typeof name !== 'string' || !SEQUENCE_NAME.test(name))
      throw new TypeError(`sequence name "${String(name)}" must match ${SEQUENCE_NAME}`);
    const floor = options.atLeast ?? 1;
    if (!Number.isSafeInteger(floor)) throw new TypeError('sequence(): atLeast must be an integer');
    const write = this.#options.write;
    if (!write) throw new TypeError('sequence() is only available to write commands');
    return write.sequence(name, floor);
  };
  readonly runAsTask = (statusMessage?: string): Promise<void> =>
    this.client?.runAsTask(statusMessage) ?? Promise.resolve();

  /** An own property, so handlers may destructure it: `({ draft, afterCommit }) => ...`. */
  readonly afterCommit = (effect: Effect): void => {
    const write = this.#options.write;
    if (!write) throw new TypeError('afterCommit() is only available to write commands');
    if (typeof effect !== 'function') throw new TypeError('afterCommit() takes a function');
    write.effects.push(effect);
  };

  #session(what: string): WriteSession {
    const write = this.#options.write;
    if (!write) throw new TypeError(`${what}() is only available to write commands`);
    return write.session;
  }
}

function commandLogger(logger: Logger): CommandLogger {
  return {
    debug: (message, fields) => logger.debug(fields ?? {}, message),
    info: (message, fields) => logger.info(fields ?? {}, message),
    warn: (message, fields) => logger.warn(fields ?? {}, message),
    error: (message, fields) => logger.error(fields ?? {}, message),
  };
}
