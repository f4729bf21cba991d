import type { Registry } from 'prom-client';
import type { Authenticator } from '../core/access.js';
import type { HttpRoute } from '../http/route.js';
import type { AuthThrottle, RateLimiter } from '../security/ratelimit.js';
import { ConsoleApi, type ConsoleDeps } from './api.js';
import { builtConsoleDir, consoleAssetRoutes } from './assets.js';
import { ConsoleEvents } from './events.js';
import { ConsoleGate } from './http.js';
import { MetricsSampler } from './metrics.js';
import { ConsoleSessions, type ConsoleSessionsOptions } from './sessions.js';

export type { ConsoleDeps } from './api.js';
export { CONSOLE_PATH } from './http.js';

export interface ConsoleOptions {
  /** Turns a pasted API key or JWT into a principal (the MCP endpoint's authenticator). */
  authenticator: Authenticator;
  /** Whether an API key, by SHA-256, still exists unrevoked: sessions signed in with it end when it does not. */
  keyIsActive?: ((hash: string) => Promise<boolean>) | undefined;
  authThrottle?: AuthThrottle | undefined;
  rateLimiter?: RateLimiter | undefined;
  sessions?: ConsoleSessionsOptions | undefined;
  /** `Secure` cookies always, never, or (default) when the request came over https. */
  secureCookies?: boolean | undefined;
  /** The core's metrics registry, for the charts. */
  metricsRegistry?: Registry | undefined;
  /** The built front-end (default: `dist/console` of this package). */
  assetsDir?: string | undefined;
  /** How often sessions are checked for expiry and revoked keys between requests (default 2 s). */
  sweepMs?: number | undefined;
}

export interface ConsoleRoutes {
  readonly routes: HttpRoute[];
  readonly sessions: ConsoleSessions;
  /** Ends every event stream and stops the timers. */
  close(): void;
}

/**
 * The web console as route modules for an HTTP edge: the built page and its hashed assets, the JSON
 * API, and the event stream, all under `/console`. Its routes are `host-checked`: the console
 * authenticates people itself, by session cookie, with the same authenticator, roles, path rules and
 * rate limit as MCP calls.
 */
export function consoleRoutes(core: ConsoleDeps, options: ConsoleOptions): ConsoleRoutes {
  const dir = options.assetsDir ?? builtConsoleDir();
  if (dir === undefined)
    throw new TypeError(
      'the console front-end is not built (dist/console is missing): run `npm run build`, or serve with --no-console',
    );
  const sessions = new ConsoleSessions(options.sessions);
  const gate = new ConsoleGate({
    sessions,
    keyIsActive: options.keyIsActive,
    rateLimiter: options.rateLimiter,
    secureCookies: options.secureCookies,
  });
  const sampler = options.metricsRegistry ? new MetricsSampler(options.metricsRegistry) : undefined;
  const api = new ConsoleApi(core, {
    gate,
    authenticator: options.authenticator,
    authThrottle: options.authThrottle,
    sampler,
  });
  const events = new ConsoleEvents({
    gate,
    authorizer: core.authorizer,
    onCommit: (listener) => core.state.onCommit(listener),
  });
  sampler?.start();

  // Between requests, sessions still end on time, and when their key is revoked elsewhere (the CLI,
  // another instance): their event streams close within one sweep.
  let sweeping = false;
  const sweep = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    void (async () => {
      sessions.sweep();
      if (!options.keyIsActive) return;
      for (const hash of sessions.apiKeyHashes()) {
        const active = await options.keyIsActive(hash).catch(() => true);
        if (!active)
          sessions.endWhere((s) => s.credential.kind === 'api_key' && s.credential.hash === hash, 'revoked');
      }
    })().finally(() => {
      sweeping = false;
    });
  }, options.sweepMs ?? 2000);
  sweep.unref();

  return {
    routes: [...consoleAssetRoutes(dir), ...api.routes(), events.route],
    sessions,
    close: () => {
      clearInterval(sweep);
      sampler?.stop();
      events.close();
    },
  };
}
