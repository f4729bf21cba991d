import { deepFreeze, type JsonValue } from './json.js';
import { applyPatch } from './patch.js';
import type { DocumentState, StateDiff } from './state.js';

/** Where a replica gets a document from: the server's value and diffs, over whatever transport. */
export interface ReplicaSource {
  read(doc: string): Promise<DocumentState>;
  diff(doc: string, from: number): Promise<StateDiff>;
}

export interface SyncOutcome {
  revision: number;
  /** Whether the replica's value changed. */
  changed: boolean;
  /** `full`: the whole value was read; `diff`: patches were applied; `none`: already current. */
  method: 'full' | 'diff' | 'none';
}

/**
 * A replica's copy of one document, transport-agnostic. Its revision always matches its value:
 * a diff applies only when it starts at the replica's revision, all at once or not at all.
 */
export class ReplicaState {
  #revision = -1;
  #value: JsonValue | undefined;

  /** -1 until the first sync. */
  get revision(): number {
    return this.#revision;
  }

  /** Deeply frozen; undefined until the first sync. */
  get value(): JsonValue | undefined {
    return this.#value;
  }

  reset(state: DocumentState): void {
    this.#value = deepFreeze(state.value);
    this.#revision = state.revision;
  }

  /** Applies a diff that starts at this replica's revision; returns false (changing nothing) otherwise. */
  apply(diff: StateDiff): boolean {
    if (this.#value === undefined || diff.from !== this.#revision || diff.to < diff.from) return false;
    if (diff.to === diff.from) return true;
    const first = diff.patches[0];
    const next =
      diff.compacted && first?.op === 'replace' && first.path === ''
        ? deepFreeze(first.value)
        : applyPatch(this.#value, diff.patches);
    this.#value = next;
    this.#revision = diff.to;
    return true;
  }
}

/** Error codes that mean "read the whole value instead": history before our revision is gone, or we are ahead. */
const RELOAD_CODES = new Set(['revision_compacted', 'invalid_revision']);

/** Brings a replica to the server's head: a diff from its revision, or a full read when that cannot work. */
export async function syncReplica(
  replica: ReplicaState,
  source: ReplicaSource,
  doc: string,
): Promise<SyncOutcome> {
  if (replica.revision >= 0) {
    try {
      const diff = await source.diff(doc, replica.revision);
      if (diff.to === replica.revision) return { revision: replica.revision, changed: false, method: 'none' };
      if (replica.apply(diff)) return { revision: replica.revision, changed: true, method: 'diff' };
    } catch (error) {
      if (!RELOAD_CODES.has(errorCode(error) ?? '')) throw error;
    }
  }
  const before = replica.revision;
  replica.reset(await source.read(doc));
  return { revision: replica.revision, changed: replica.revision !== before, method: 'full' };
}

/** The coremcp error code carried by an error, whether raised locally or received over the wire. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, data } = error as { code?: unknown; data?: { code?: unknown } };
  if (typeof data?.code === 'string') return data.code;
  return typeof code === 'string' ? code : undefined;
}
