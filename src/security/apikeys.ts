import { createHash, randomBytes } from 'node:crypto';
import type { AuthenticationResult, Authenticator } from '../core/access.js';
import { CommandError } from '../core/errors.js';
import type { ApiKeyRecord, CredentialStore } from '../core/store.js';

/** Every coremcp API key starts with this, so scanners and redaction can recognize one. */
export const API_KEY_PREFIX = 'cmcp_';
const API_KEY_PATTERN = /^cmcp_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/;
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
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

/**
 * API keys: random, shown once, stored as a SHA-256 hash (a key carries 256 bits of entropy, so a
 * slow password hash would add nothing). The key's name is the principal id it authenticates as.
 */
export class ApiKeys implements Authenticator {
  readonly #store: CredentialStore;
  readonly #roles: ReadonlySet<string> | undefined;
  readonly #clock: () => Date;

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
    const record = await this.#store.findApiKeyByHash(hash);
    return record !== undefined && record.revokedAt === undefined;
  }

  async authenticate(credential: string): Promise<AuthenticationResult> {
    if (!looksLikeApiKey(credential)) return { ok: false, reason: 'malformed' };
    const record = await this.#store.findApiKeyByHash(hashApiKey(credential));
    if (!record) return { ok: false, reason: 'unknown_key' };
    if (record.revokedAt !== undefined) return { ok: false, reason: 'revoked_key' };
    return {
      ok: true,
      principal: Object.freeze({
        id: record.name,
        name: record.name,
        roles: Object.freeze([record.role]),
        via: 'api_key',
      }),
    };
  }
}
