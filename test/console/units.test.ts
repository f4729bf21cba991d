/** The console's parts with a clock of their own: session expiry and ending, and the metric series. */
import { localPrincipal } from 'coremcp';
import { describe, expect, it } from 'vitest';
import { MetricsSampler } from '../../src/console/metrics.js';
import { ConsoleSessions, type SessionEndReason } from '../../src/console/sessions.js';
import { CoreMetrics } from '../../src/observability/metrics.js';

const MINUTE = 60_000;

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('ConsoleSessions', () => {
  it('acts as the principal via console, found by cookie value and never by anything else', () => {
    const sessions = new ConsoleSessions();
    const { token, session } = sessions.create(localPrincipal('ada', ['viewer']), { kind: 'jwt' });
    expect(session.principal).toMatchObject({ id: 'ada', roles: ['viewer'], via: 'console' });
    expect(session.key).not.toContain(token);
    expect(session.csrfToken).not.toBe(token);
    expect(sessions.touch(token)).toBe(session);
    expect(sessions.touch(`${token}x`)).toBeUndefined();
    expect(sessions.touch(session.key)).toBeUndefined();
  });

  it('ends a session after the idle time, a request resetting it, and at its maximum age whatever happens', () => {
    const time = clock();
    const ended: SessionEndReason[] = [];
    const sessions = new ConsoleSessions({ idleMs: 10 * MINUTE, maxAgeMs: 50 * MINUTE, now: time.now });
    sessions.onEnd((_, reason) => ended.push(reason));
    const idle = sessions.create(localPrincipal('a'), { kind: 'jwt' });
    const busy = sessions.create(localPrincipal('b'), { kind: 'jwt' });
    for (let i = 0; i < 5; i++) {
      time.advance(9 * MINUTE);
      expect(sessions.touch(busy.token)).toBeDefined();
    }
    expect(sessions.touch(idle.token)).toBeUndefined();
    time.advance(5 * MINUTE - 1);
    sessions.sweep();
    expect(sessions.size).toBe(1);
    time.advance(1);
    expect(sessions.touch(busy.token)).toBeUndefined();
    expect(ended).toEqual(['expired', 'expired']);
  });

  it('ends no later than a JWT expires', () => {
    const time = clock();
    const sessions = new ConsoleSessions({ now: time.now });
    const { token, session } = sessions.create(
      localPrincipal('j'),
      { kind: 'jwt' },
      { notAfter: time.now() + 5000 },
    );
    expect(session.expiresAt).toBe(time.now() + 5000);
    time.advance(4999);
    expect(sessions.touch(token)).toBeDefined();
    time.advance(1);
    expect(sessions.touch(token)).toBeUndefined();
  });

  it('ends every session signed in with a key at once, once, with the reason', () => {
    const sessions = new ConsoleSessions();
    const ended: Array<[string, SessionEndReason]> = [];
    sessions.onEnd((s, reason) => ended.push([s.principal.id, reason]));
    sessions.create(localPrincipal('k1'), { kind: 'api_key', hash: 'h1' });
    sessions.create(localPrincipal('k1'), { kind: 'api_key', hash: 'h1' });
    const other = sessions.create(localPrincipal('k2'), { kind: 'api_key', hash: 'h2' });
    expect(sessions.apiKeyHashes()).toEqual(new Set(['h1', 'h2']));
    const matches = (s: { credential: { kind: string; hash?: string } }) => s.credential.hash === 'h1';
    expect(sessions.endWhere(matches, 'revoked')).toBe(2);
    expect(sessions.endWhere(matches, 'revoked')).toBe(0);
    sessions.end(other.session, 'signed_out');
    sessions.end(other.session, 'signed_out');
    expect(ended).toEqual([
      ['k1', 'revoked'],
      ['k1', 'revoked'],
      ['k2', 'signed_out'],
    ]);
  });

  it('refuses a sign-in past the session limit with too_many_sessions, after dropping expired ones', () => {
    const time = clock();
    const sessions = new ConsoleSessions({ maxSessions: 2, idleMs: MINUTE, now: time.now });
    sessions.create(localPrincipal('a'), { kind: 'jwt' });
    sessions.create(localPrincipal('b'), { kind: 'jwt' });
    expect(() => sessions.create(localPrincipal('c'), { kind: 'jwt' })).toThrow(
      expect.objectContaining({ code: 'too_many_sessions' }),
    );
    time.advance(MINUTE);
    expect(() => sessions.create(localPrincipal('c'), { kind: 'jwt' })).not.toThrow();
  });
});

describe('MetricsSampler', () => {
  it('turns the core’s cumulative series into commands/s, p50/p99 and errors by code per interval', async () => {
    const metrics = new CoreMetrics({ processMetrics: false });
    const sampler = new MetricsSampler(metrics.registry, { intervals: 3 });
    const report = (outcome: string, durationMs: number) =>
      metrics.recordCommand({
        command: 'x',
        principal: undefined,
        requestId: 'r',
        outcome,
        durationMs,
        committed: false,
        replayed: false,
      });
    await sampler.sample();
    expect(sampler.points()).toEqual([]);
    for (let i = 0; i < 89; i++) report('ok', 0.3);
    report('forbidden', 0.3);
    for (let i = 0; i < 10; i++) report('timeout', 3000);
    await sampler.sample();
    const [point] = sampler.points();
    expect(point!.commandsPerSecond).toBeGreaterThan(0);
    // 0.3 ms lies in the (0.25, 0.5] ms bucket; the slowest tenth, 3 s, in (2.5, 5] s.
    expect(point!.p50Ms).toBeGreaterThan(0.25);
    expect(point!.p50Ms).toBeLessThanOrEqual(0.5);
    expect(point!.p99Ms).toBeGreaterThan(2500);
    expect(point!.p99Ms).toBeLessThanOrEqual(5000);
    expect(point!.errors).toEqual({ forbidden: 1, timeout: 10 });
    await sampler.sample();
    expect(sampler.points()[1]).toMatchObject({ commandsPerSecond: 0, p50Ms: null, p99Ms: null, errors: {} });
    for (let i = 0; i < 5; i++) await sampler.sample();
    expect(sampler.points()).toHaveLength(3);
  });
});
