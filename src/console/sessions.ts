import { createHash, randomBytes } from 'node:crypto';
import type { Principal } from '../core/access.js';
import { AccessError } from '../core/errors.js';

/** What a session was signed in with, so the session ends when the credential does. */
export type SessionCredential =
  /** An API key, by its SHA-256 (what the store keeps): checked on every request, revocation ends it. */
  | { kind: 'api_key'; hash: string }
  /** A bearer JWT: the session ends no later than the token's `exp`. */
  | { kind: 'jwt' };

export interface ConsoleSession {
  /** Hash of the cookie value: the cookie itself is never kept. */
  readonly key: string;
  /** Mutating requests must echo this in `X-CSRF-Token`. */
  readonly csrfToken: string;
  /** The signed-in principal, `via: 'console'`. */
  readonly principal: Principal;
  readonly credential: SessionCredential;
  readonly createdAt: number;
  /** Absolute end, ms since the epoch: the session's maximum age, or the JWT's expiry if sooner. */
  readonly expiresAt: number;
  lastSeen: number;
}

export type SessionEndReason = 'signed_out' | 'expired' | 'revoked';

export interface ConsoleSessionsOptions {
  /** A session ends after this long without a request (default 30 minutes). */
  idleMs?: number | undefined;
  /** A session ends this long after sign-in whatever happens (default 12 hours). */
  maxAgeMs?: number | undefined;
  /** Most sessions at once (default 1,000); over it, sign-in is refused with `too_many_sessions`. */
  maxSessions?: number | undefined;
  now?: (() => number) | undefined;
}

const MINUTE = 60_000;

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/**
 * The console's sessions, in this process's memory: a restart signs everyone out. A session is found
 * by the hash of its cookie value, ends on sign-out, after `idleMs` without a request, at its absolute
 * expiry, or when its credential is revoked; listeners hear about every end (open event streams close).
 */
export class ConsoleSessions {
  readonly idleMs: number;
  readonly maxAgeMs: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #sessions = new Map<string, ConsoleSession>();
  readonly #listeners = new Set<(session: ConsoleSession, reason: SessionEndReason) => void>();

  constructor(options: ConsoleSessionsOptions = {}) {
    this.idleMs = options.idleMs ?? 30 * MINUTE;
    this.maxAgeMs = options.maxAgeMs ?? 12 * 60 * MINUTE;
    this.#max = options.maxSessions ?? 1000;
    this.#now = options.now ?? Date.now;
    if (!(this.idleMs > 0) || !(this.maxAgeMs > 0) || !(this.#max > 0))
      throw new TypeError('console session limits must be positive');
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Starts a session; returns the cookie value (shown to the browser only) and the session. */
  create(
    principal: Principal,
    credential: SessionCredential,
    options: { notAfter?: number | undefined } = {},
  ): { token: string; session: ConsoleSession } {
    this.sweep();
    if (this.#sessions.size >= this.#max)
      throw new AccessError('too_many_sessions', 'Too many console sessions are open; try again later');
    const now = this.#now();
    const token = randomBytes(32).toString('base64url');
    const session: ConsoleSession = {
      key: hashToken(token),
      csrfToken: randomBytes(32).toString('base64url'),
      principal: Object.freeze({ ...principal, via: 'console' }),
      credential,
      createdAt: now,
      expiresAt: Math.min(now + this.maxAgeMs, options.notAfter ?? Number.POSITIVE_INFINITY),
      lastSeen: now,
    };
    this.#sessions.set(session.key, session);
    return { token, session };
  }

  /** The live session a cookie value names, marked as seen now; undefined (and ended) if it expired. */
  touch(token: string): ConsoleSession | undefined {
    const session = this.#sessions.get(hashToken(token));
    if (!session) return undefined;
    if (this.#expired(session, this.#now())) {
      this.end(session, 'expired');
      return undefined;
    }
    session.lastSeen = this.#now();
    return session;
  }

  /** Ends a session (a second call does nothing). */
  end(session: ConsoleSession, reason: SessionEndReason): void {
    if (!this.#sessions.delete(session.key)) return;
    for (const listener of this.#listeners) listener(session, reason);
  }

  /** Ends every session `matches` selects; returns how many. */
  endWhere(matches: (session: ConsoleSession) => boolean, reason: SessionEndReason): number {
    let ended = 0;
    for (const session of [...this.#sessions.values()]) {
      if (!matches(session)) continue;
      this.end(session, reason);
      ended++;
    }
    return ended;
  }

  /** Ends the sessions that have expired by now. */
  sweep(): void {
    const now = this.#now();
    this.endWhere((session) => this.#expired(session, now), 'expired');
  }

  /** The distinct API-key hashes that sessions were signed in with (for revocation checks). */
  apiKeyHashes(): Set<string> {
    const hashes = new Set<string>();
    for (const s of this.#sessions.values())
      if (s.credential.kind === 'api_key') hashes.add(s.credential.hash);
    return hashes;
  }

  /** Called when a session ends, with why. Returns the unsubscribe function. */
  onEnd(listener: (session: ConsoleSession, reason: SessionEndReason) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #expired(session: ConsoleSession, now: number): boolean {
    return now >= session.expiresAt || now - session.lastSeen >= this.idleMs;
  }
}
