import { randomBytes } from 'node:crypto';
import type { AuthenticationResult, Authenticator } from '../core/access.js';
import { sha256 } from '../core/digest.js';
import { CommandError } from '../core/errors.js';
import type { ApiKeyRecord, CredentialStore } from '../core/store.js';

/** Every coremcp API key starts with this, so scanners and redaction can recognize one. */
export const API_KEY_PREFIX = 'cmcp_';
const API_KEY_PATTERN = /^cmcp_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/;
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export function hashApiKey(key: string): string {
  return sha256(key);
}

/** Whether a string has the shape of a coremcp API key (for redaction; says nothing of validity). */
export function looksLikeApiKey(value: string): boolean {
  return API_KEY_PATTERN.test(value);
}

export interface CreatedApiKey {
  /** The key itself. Shown once; only its hash is stored. */
  key: string;
  record: ApiKeyRecord;
}

/** Most active keys remembered at once (the oldest looked up makes room). */
const MAX_CACHED_KEYS = 4096;

/**
 * API keys: random, shown once, stored as a SHA-256 hash (a key carries 256 bits of entropy, so a
 * slow password hash would add nothing). The key's name is the principal id it authenticates as.
 *
 * An active key's lookup is cached, with its principal (one frozen object per key, reused by every
 * request), for as long as the store's `credentialsEpoch` stays the same: any key created or revoked
 * anywhere moves it, so a revoked key is refused from the next request on. Unknown and revoked keys
 * are never cached (a flood of made-up keys cannot fill memory), and a store that cannot tell when
 * keys change gets a lookup per request.
 */
export class ApiKeys implements Authenticator {
  readonly #store: CredentialStore;
  readonly #roles: ReadonlySet<string> | undefined;
  readonly #clock: () => Date;
  readonly #cache = new Map<string, { epoch: number; result: AuthenticationResult }>();

  /** `roles`: the role names keys may be given (unknown roles are refused at creation). */
  constructor(store: CredentialStore, options: { roles?: Iterable<string>; clock?: () => Date } = {}) {
    this.#store = store;
    this.#roles = options.roles ? new Set(options.roles) : undefined;
    this.#clock = options.clock ?? (() => new Date());
  }

  async create(name: string, role: string): Promise<CreatedApiKey> {
    if (!KEY_NAME_PATTERN.test(name)) {
      throw new CommandError(
        'invalid_input',
        `Key name "${name}" must be 1-64 letters, digits or _ . @ -, starting with a letter or digit`,
      );
    }
    if (this.#roles && !this.#roles.has(role)) {
      throw new CommandError(
        'invalid_input',
        `Unknown role "${role}"; known roles: ${[...this.#roles].join(', ')}`,
      );
    }
    const id = randomBytes(6).toString('hex');
    const key = `${API_KEY_PREFIX}${id}_${randomBytes(32).toString('base64url')}`;
    const record: ApiKeyRecord = {
      id,
      name,
      role,
      hash: hashApiKey(key),
      createdAt: this.#clock().toISOString(),
    };
    await this.#store.insertApiKey(record);
    return { key, record };
  }

  async list(): Promise<ApiKeyRecord[]> {
    return this.#store.listApiKeys();
  }

  async revoke(idOrName: string): Promise<ApiKeyRecord | undefined> {
    return this.#store.revokeApiKey(idOrName, this.#clock().toISOString());
  }

  /** Whether the key with this SHA-256 exists and is not revoked (a console session checks its key so). */
  async isActive(hash: string): Promise<boolean> {
    return (await this.#lookUp(hash)).ok;
  }

  async authenticate(credential: string): Promise<AuthenticationResult> {
    if (!looksLikeApiKey(credential)) return { ok: false, reason: 'malformed' };
    return this.#lookUp(hashApiKey(credential));
  }

  async #lookUp(hash: string): Promise<AuthenticationResult> {
    // Read before the lookup: a change committed while it runs leaves what it found uncached.
    const epoch = this.#store.credentialsEpoch?.();
    const cached = this.#cache.get(hash);
    if (cached && epoch !== undefined && cached.epoch === epoch) return cached.result;
    if (cached) this.#cache.delete(hash);
    const record = await this.#store.findApiKeyByHash(hash);
    if (!record) return { ok: false, reason: 'unknown_key' };
    if (record.revokedAt !== undefined) return { ok: false, reason: 'revoked_key' };
    const result: AuthenticationResult = {
      ok: true,
      principal: Object.freeze({
        id: record.name,
        name: record.name,
        roles: Object.freeze([record.role]),
        via: 'api_key',
      }),
    };
    if (epoch !== undefined) {
      if (this.#cache.size >= MAX_CACHED_KEYS) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(hash, { epoch, result });
    }
    return result;
  }
}
