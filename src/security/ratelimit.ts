import { z } from 'zod';
import { AccessError } from '../core/errors.js';

export const rateLimitSchema = z.strictObject({
  /** Sustained requests per second per principal (default 50). */
  perSecond: z.number().positive().max(100_000).optional(),
  /** Requests a principal may send at once after being idle (default 100). */
  burst: z.number().int().min(1).max(1_000_000).optional(),
});

export const authThrottleSchema = z.strictObject({
  /** Failed authentications from one address before it is blocked (default 20). */
  maxFailures: z.number().int().min(1).max(100_000).optional(),
  /** Window in which failures are counted, and how long a block lasts, in seconds (default 60). */
  windowSeconds: z.number().int().min(1).max(86_400).optional(),
});

export type RateLimitConfig = z.infer<typeof rateLimitSchema>;
export type AuthThrottleConfig = z.infer<typeof authThrottleSchema>;

/** Verdict of a limiter: allowed, or refused with how long to wait. */
export type LimitVerdict = { ok: true } | { ok: false; retryAfterSeconds: number };

/** The typed refusal of a request over a limit: `rate_limited`, saying when to retry. */
export function rateLimited(retryAfterSeconds: number): AccessError {
  return new AccessError('rate_limited', `Too many requests; retry in ${retryAfterSeconds} s`, {
    details: { retryAfterSeconds },
  });
}

/** Tracks at most this many keys; the least recently seen are forgotten first (a forgotten key starts full). */
const MAX_KEYS = 10_000;

/** A map that forgets its least recently used entries beyond a bound, so attackers cannot grow it. */
class BoundedMap<V> {
  readonly #map = new Map<string, V>();
  constructor(readonly max: number) {}

  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.max) this.#map.delete(this.#map.keys().next().value!);
  }

  delete(key: string): void {
    this.#map.delete(key);
  }
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token bucket per key (a principal id): `burst` tokens, refilled at `perSecond`. Each request takes
 * one; an empty bucket refuses with the seconds until the next token.
 */
export class RateLimiter {
  readonly perSecond: number;
  readonly burst: number;
  readonly #buckets = new BoundedMap<Bucket>(MAX_KEYS);
  readonly #now: () => number;

  constructor(config: RateLimitConfig = {}, now: () => number = () => performance.now()) {
    this.perSecond = config.perSecond ?? 50;
    this.burst = config.burst ?? 100;
    this.#now = now;
  }

  take(key: string): LimitVerdict {
    const now = this.#now();
    const bucket = this.#buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      this.#buckets.set(key, bucket);
      return { ok: true };
    }
    this.#buckets.set(key, bucket);
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond)) };
  }
}

interface FailureWindow {
  failures: number;
  since: number;
  blockedUntil: number;
}

/**
 * Failed-authentication throttle per client address: after `maxFailures` failures within the window,
 * the address is refused (before its credential is even looked at) until the window has passed.
 * Successful authentication does not reset the count, so valid keys cannot be used to mask guessing.
 */
export class AuthThrottle {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly #windows = new BoundedMap<FailureWindow>(MAX_KEYS);
  readonly #now: () => number;

  constructor(config: AuthThrottleConfig = {}, now: () => number = () => performance.now()) {
    this.maxFailures = config.maxFailures ?? 20;
    this.windowMs = (config.windowSeconds ?? 60) * 1000;
    this.#now = now;
  }

  /** Whether an address may try to authenticate now. */
  check(address: string): LimitVerdict {
    const window = this.#windows.get(address);
    const now = this.#now();
    if (!window || window.blockedUntil <= now) return { ok: true };
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((window.blockedUntil - now) / 1000)) };
  }

  /** Records a failure; returns true when it made the address blocked. */
  fail(address: string): boolean {
    const now = this.#now();
    let window = this.#windows.get(address);
    if (!window || now - window.since > this.windowMs) window = { failures: 0, since: now, blockedUntil: 0 };
    window.failures++;
    const blocked = window.failures >= this.maxFailures && window.blockedUntil <= now;
    if (window.failures >= this.maxFailures) window.blockedUntil = now + this.windowMs;
    this.#windows.set(address, window);
    return blocked;
  }
}
