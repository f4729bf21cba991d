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

export interface WatchOptions {
  /**
   * Also sync this often, in ms, whatever the notifications say (default 30,000; 0 turns it off). A
   * safety net for notifications lost on the way; gaps between notifications repair themselves.
   */
  resyncMs?: number;
}

/** Emitted after each sync that changed the replica. */
export interface ReplicaChange<T = JsonValue> {
  doc: string;
  revision: number;
  previousRevision: number;
  value: T;
  /** `diff` when patches were applied, `full` when the whole value was read (first sync, compaction). */
  method: 'full' | 'diff';
}

type UpdateListener = (uri: string, revision: number | undefined) => void;

/** One `notifications/resources/updated` handler per client, shared by all its replicas. */
const hubs = new WeakMap<Client, Set<UpdateListener>>();

function updateHub(client: Client): Set<UpdateListener> {
  const existing = hubs.get(client);
  if (existing) return existing;
  const listeners = new Set<UpdateListener>();
  hubs.set(client, listeners);
  client.setNotificationHandler('notifications/resources/updated', (notification) => {
    const revision = notification.params._meta?.[META.revision];
    for (const listener of listeners)
      listener(notification.params.uri, typeof revision === 'number' ? revision : undefined);
  });
  return listeners;
}

/**
 * A client-side copy of one coremcp document, kept in step through an SDK `Client` on any transport.
 * `sync()` brings it to the server's head with a diff from its revision (or a full read when that
 * history is gone); `watch()` keeps it there from change notifications. `revision` always matches the
 * value `get()` returns.
 */
export class StateReplica {
  readonly doc: string;
  readonly #client: Client;
  readonly #state = new ReplicaState();
  readonly #source: ReplicaSource;
  readonly #listeners = {
    change: new Set<(change: ReplicaChange) => void>(),
    error: new Set<(error: unknown) => void>(),
  };
  #syncing: Promise<SyncOutcome> | undefined;
  #dirty = false;
  #heard = -1;
  #watch: { stop: () => Promise<void> } | undefined;

  constructor(client: Client, options: StateReplicaOptions = {}) {
    this.#client = client;
    this.doc = options.doc ?? DEFAULT_DOCUMENT;
    this.#source = {
      read: (doc) => this.#readWhole(doc),
      diff: async (doc, from) =>
        (await this.#read(`${stateUri(doc)}/diff?from=${from}`)).body as unknown as StateDiff,
    };
  }

  /** The revision of the value held; -1 before the first sync. */
  get revision(): number {
    return this.#state.revision;
  }

  /**
   * The newest revision the server has announced (a change notification carries it in `_meta`) or
   * this replica has read; -1 before either. Known without a round trip.
   */
  get knownRevision(): number {
    return Math.max(this.#heard, this.#state.revision);
  }

  /** Whether the server announced a revision newer than the one held: the copy is behind. */
  get behind(): boolean {
    return this.#heard > this.#state.revision;
  }

  /** The value held (deeply frozen), or undefined before the first sync. */
  get<T = JsonValue>(): T | undefined {
    return this.#state.value as T | undefined;
  }

  get watching(): boolean {
    return this.#watch !== undefined;
  }

  on(event: 'change', listener: (change: ReplicaChange) => void): () => void;
  on(event: 'error', listener: (error: unknown) => void): () => void;
  on(
    event: 'change' | 'error',
    listener: ((change: ReplicaChange) => void) | ((error: unknown) => void),
  ): () => void {
    const set = this.#listeners[event] as Set<typeof listener>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Brings the copy to the server's head. Concurrent calls share one round trip. */
  sync(): Promise<SyncOutcome> {
    if (!this.#syncing) {
      const before = this.#state.revision;
      this.#syncing = syncReplica(this.#state, this.#source, this.doc)
        .then((outcome) => {
          if (outcome.changed && outcome.method !== 'none') {
            this.#emitChange({
              doc: this.doc,
              revision: outcome.revision,
              previousRevision: before,
              value: this.#state.value!,
              method: outcome.method,
            });
          }
          return outcome;
        })
        .finally(() => {
          this.#syncing = undefined;
        });
    }
    return this.#syncing;
  }

  /**
   * Follows the document: subscribes (`subscriptions/listen` on 2026-07-28 connections,
   * `resources/subscribe` on 2025 ones), syncs, then syncs again on every change notification that
   * names a newer revision. Missed or reordered notifications cost nothing: each sync diffs from the
   * replica's own revision to the head.
   */
  async watch(options: WatchOptions = {}): Promise<void> {
    if (this.#watch) return;
    const uri = stateUri(this.doc);
    const hub = updateHub(this.#client);
    const onUpdate: UpdateListener = (updated, revision) => {
      if (updated !== uri) return;
      if (revision !== undefined) this.#heard = Math.max(this.#heard, revision);
      // The notification says which revision it announces: one held already costs no round trip.
      if (revision !== undefined && revision <= this.#state.revision) return;
      this.#pull();
    };
    hub.add(onUpdate);
    let unsubscribe: () => Promise<void>;
    try {
      if (isModern(this.#client)) {
        const subscription = await this.#client.listen({ resourceSubscriptions: [uri] });
        unsubscribe = () => subscription.close();
      } else {
        await this.#client.subscribeResource({ uri });
        unsubscribe = async () => {
          await this.#client.unsubscribeResource({ uri });
        };
      }
    } catch (error) {
      hub.delete(onUpdate);
      throw error;
    }
    const resyncMs = options.resyncMs ?? 30_000;
    const timer = resyncMs > 0 ? setInterval(() => this.#pull(), resyncMs) : undefined;
    timer?.unref();
    this.#watch = {
      stop: async () => {
        hub.delete(onUpdate);
        if (timer) clearInterval(timer);
        await unsubscribe().catch(() => {});
      },
    };
    await this.sync();
  }

  /** Stops following. The value held stays, at its revision. */
  async unwatch(): Promise<void> {
    const watch = this.#watch;
    this.#watch = undefined;
    await watch?.stop();
  }

  /** Syncs in the background, coalescing bursts of notifications into as few round trips as possible. */
  #pull(): void {
    if (this.#syncing) {
      this.#dirty = true;
      return;
    }
    this.sync()
      .catch((error: unknown) => this.#emitError(error))
      .finally(() => {
        if (this.#dirty && this.#watch) {
          this.#dirty = false;
          this.#pull();
        }
      });
  }

  #emitChange(change: ReplicaChange): void {
    for (const listener of this.#listeners.change) {
      try {
        listener(change);
      } catch (error) {
        this.#emitError(error);
      }
    }
  }

  #emitError(error: unknown): void {
    for (const listener of this.#listeners.error) listener(error);
  }

  /**
   * The whole document at one revision: its value, then each collection that did not fit page by
   * page (every page read at the first one's revision), so a large document never travels as one
   * message.
   */
  async #readWhole(doc: string): Promise<DocumentState> {
    const { body, revision, meta } = await this.#read(stateUri(doc));
    const more = meta?.[META.more];
    if (!more || typeof more !== 'object' || Array.isArray(more)) return { doc, revision, value: body };
    const value = { ...(body as Record<string, JsonValue>) };
    for (const [collection, info] of Object.entries(more as Record<string, { cursor?: unknown }>)) {
      const entries = { ...(value[collection] as Record<string, JsonValue>) };
      let cursor = typeof info?.cursor === 'string' ? info.cursor : undefined;
      while (cursor !== undefined) {
        const uri = `${stateUri(doc)}/entries/${collection}?cursor=${encodeURIComponent(cursor)}&limit=1000`;
        const page = (await this.#read(uri)).body as { entries: Array<[string, JsonValue]>; cursor?: string };
        for (const [key, entry] of page.entries) entries[key] = entry;
        cursor = page.cursor;
      }
      value[collection] = entries;
    }
    return { doc, revision, value };
  }

  async #read(
    uri: string,
  ): Promise<{ body: JsonValue; revision: number; meta: Record<string, unknown> | undefined }> {
    const result = await this.#client.readResource({ uri });
    const content = result.contents[0];
    if (!content || !('text' in content))
      throw new StateError('state_invalid', `The server sent no JSON for ${uri}`);
    const meta = (content._meta ?? result._meta) as Record<string, unknown> | undefined;
    const revision = meta?.[META.revision];
    if (typeof revision !== 'number')
      throw new StateError('state_invalid', `The server sent no revision for ${uri}`);
    return { body: JSON.parse(content.text) as JsonValue, revision, meta };
  }
}

function isModern(client: Client): boolean {
  const version = client.getNegotiatedProtocolVersion();
  return version !== undefined && version >= '2026-07-28';
}
