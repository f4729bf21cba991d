import type { IncomingMessage } from 'node:http';
import type { Authenticator, Principal } from '../core/access.js';
import { AccessError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type AuthThrottle, type RateLimiter, rateLimited } from '../security/ratelimit.js';
import { HttpFailure } from './respond.js';

export interface BearerAuthOptions {
  /** Turns a bearer credential (an API key, a JWT) into a principal. */
  authenticator: Authenticator;
  /** Failed-authentication throttle per client address: once blocked, 429 without looking at the credential. */
  authThrottle?: AuthThrottle | undefined;
  /** Per-principal request limit: over it, 429 with `Retry-After` before any route runs. */
  rateLimiter?: RateLimiter | undefined;
  /** Called for each request refused for missing or invalid credentials (metrics); `reason` is bounded. */
  onAuthFailure?: ((reason: string) => void) | undefined;
}

const BEARER = /^Bearer[ ]+([^\s]+)\s*$/i;

/**
 * Bearer authentication at the edge, in the order that keeps guessing expensive: a throttled address
 * is refused before its credential is looked at; a credential is checked; the principal's request
 * rate is counted. Refusals are 401 with a challenge naming the RFC 9728 metadata, or 429.
 */
export class BearerAuth {
  readonly #options: BearerAuthOptions;
  readonly #challenge: string;
  readonly #log: Logger;

  /** `metadataUrl`: the protected-resource metadata every challenge points to. */
  constructor(options: BearerAuthOptions, metadataUrl: string | undefined, logger: Logger) {
    this.#options = options;
    this.#challenge = `Bearer realm="coremcp"${metadataUrl ? `, resource_metadata="${metadataUrl}"` : ''}`;
    this.#log = logger;
  }

  async authenticate(req: IncomingMessage): Promise<Principal> {
    const { authThrottle, rateLimiter, onAuthFailure } = this.#options;
    const address = req.socket.remoteAddress ?? 'unknown';
    const gate = authThrottle?.check(address);
    if (gate && !gate.ok) {
      onAuthFailure?.('address_throttled');
      throw tooManyRequests(gate.retryAfterSeconds);
    }
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? BEARER.exec(header) : null;
    if (!match) {
      onAuthFailure?.('missing_token');
      throw new HttpFailure(new AccessError('unauthenticated', 'A bearer token is required'), {
        headers: { 'www-authenticate': this.#challenge },
      });
    }
    const result = await this.#options.authenticator.authenticate(match[1]!);
    if (!result.ok) {
      onAuthFailure?.(result.reason);
      const blocked = authThrottle?.fail(address) ?? false;
      this.#log.info({ reason: result.reason, address, blocked }, 'authentication failed');
      throw new HttpFailure(
        new AccessError('unauthenticated', 'The bearer token is invalid, expired or revoked'),
        { headers: { 'www-authenticate': `${this.#challenge}, error="invalid_token"` } },
      );
    }
    const verdict = rateLimiter?.take(result.principal.id);
    if (verdict && !verdict.ok) throw tooManyRequests(verdict.retryAfterSeconds);
    return result.principal;
  }
}

function tooManyRequests(retryAfterSeconds: number): HttpFailure {
  return new HttpFailure(rateLimited(retryAfterSeconds), {
    headers: { 'retry-after': String(retryAfterSeconds) },
  });
}
