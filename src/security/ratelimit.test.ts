import { describe, expect, it } from 'vitest';
import { AuthThrottle, RateLimiter } from './ratelimit.js';

describe('RateLimiter', () => {
  it('allows a burst, then refills at the sustained rate, per key', () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 2, burst: 3 }, () => now);
    expect([1, 2, 3, 4].map(() => limiter.take('a').ok)).toEqual([true, true, true, false]);
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSeconds: 1 });
    expect(limiter.take('b').ok).toBe(true);
    now += 500;
    expect(limiter.take('a').ok).toBe(true);
    expect(limiter.take('a').ok).toBe(false);
    now += 10_000;
    expect([1, 2, 3, 4].map(() => limiter.take('a').ok)).toEqual([true, true, true, false]);
  });

  it('says how long to wait when the rate is slow', () => {
    const limiter = new RateLimiter({ perSecond: 0.1, burst: 1 }, () => 0);
    limiter.take('a');
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSeconds: 10 });
  });
});

describe('AuthThrottle', () => {
  it('blocks an address after maxFailures within the window, for one window', () => {
    let now = 0;
    const throttle = new AuthThrottle({ maxFailures: 3, windowSeconds: 10 }, () => now);
    expect([1, 2, 3].map(() => throttle.fail('1.2.3.4'))).toEqual([false, false, true]);
    expect(throttle.check('1.2.3.4')).toEqual({ ok: false, retryAfterSeconds: 10 });
    expect(throttle.check('5.6.7.8')).toEqual({ ok: true });
    now += 10_001;
    expect(throttle.check('1.2.3.4')).toEqual({ ok: true });
  });

  it('forgets failures older than the window', () => {
    let now = 0;
    const throttle = new AuthThrottle({ maxFailures: 2, windowSeconds: 1 }, () => now);
    throttle.fail('a');
    now += 1500;
    expect(throttle.fail('a')).toBe(false);
    expect(throttle.check('a').ok).toBe(true);
  });
});
