import type { Client } from '@modelcontextprotocol/client';
import { DEFAULT_DOCUMENT } from '../core/commands.js';
import { StateError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { DocumentState, StateDiff } from '../core/state.js';
import { type ReplicaSource, ReplicaState, type SyncOutcome, syncReplica } from '../core/sync.js';
import { META, stateUri } from './meta.js';

export interface StateReplicaOptions {
  /** The document to replicate (default `default`). */
  doc?: string;
}

/**
 * A client-side copy of one coremcp document, kept in step through an SDK `Client` on any transport.
 * `sync()` brings it to the server's head with a diff from its revision (or a full read when that
 * history is gone); `revision` always matches the value `get()` returns.
 */
export class StateReplica {
  readonly doc: string;
  readonly #client: Client;
  readonly #state = new ReplicaState();
  readonly #source: ReplicaSource;
  #syncing: Promise<SyncOutcome> | undefined;

  constructor(client: Client, options: StateReplicaOptions = {}) {
    this.#client = client;
    this.doc = options.doc ?? DEFAULT_DOCUMENT;
    this.#source = {
      read: async (doc) => {
        const { body, revision } = await this.#read(stateUri(doc));
        return { doc, revision, value: body } satisfies DocumentState;
      },
      diff: async (doc, from) =>
        (await this.#read(`${stateUri(doc)}/diff?from=${from}`)).body as unknown as StateDiff,
    };
  }

  /** The revision of the value held; -1 before the first sync. */
  get revision(): number {
    return this.#state.revision;
  }

  /** The value held (deeply frozen), or undefined before the first sync. */
  get<T = JsonValue>(): T | undefined {
    return this.#state.value as T | undefined;
  }

  /** Brings the copy to the server's head. Concurrent calls share one round trip. */
  sync(): Promise<SyncOutcome> {
    this.#syncing ??= syncReplica(this.#state, this.#source, this.doc).finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  async #read(uri: string): Promise<{ body: JsonValue; revision: number }> {
    const result = await this.#client.readResource({ uri });
    const content = result.contents[0];
    if (!content || !('text' in content))
      throw new StateError('state_invalid', `The server sent no JSON for ${uri}`);
    const revision = (content._meta ?? result._meta)?.[META.revision];
    if (typeof revision !== 'number')
      throw new StateError('state_invalid', `The server sent no revision for ${uri}`);
    return { body: JSON.parse(content.text) as JsonValue, revision };
  }
}
