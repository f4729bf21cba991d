import { userInfo } from 'node:os';
import type { Authenticator, Principal } from '../core/access.js';
import type { Logger } from '../core/log.js';
import { startMaintenance } from '../core/maintenance.js';
import { type RunningEdge, serveEdge } from '../http/edge.js';
import { isLoopback } from '../http/listen.js';
import { type RunningHttpServer, serveHttp } from '../mcp/serve-http.js';
import { serveStdio } from '../mcp/stdio.js';
import { McpSurface } from '../mcp/surface.js';
import { observabilityRoutes } from '../observability/routes.js';
import { type Core, createCore } from '../runtime.js';
import { BearerAuthenticator, JwtAuthenticator } from '../security/jwt.js';
import { AuthThrottle, RateLimiter } from '../security/ratelimit.js';
import type { CoreMcpConfig } from './config.js';
import { type CommonOptions, configOf, createLogger, openSqlite } from './context.js';
import { loadApp } from './load-app.js';
import { UsageError } from './usage.js';

export interface ServeOptions extends CommonOptions {
  /** `true` for the default address, or `[host:]port`. */
  http?: string | boolean;
  stdio?: boolean;
  /** `false` (from `--no-auth`) serves without authentication: loopback only, for local tooling. */
  auth?: boolean;
  /** `[host:]port` of a loopback listener serving /metrics, /healthz and /readyz without credentials. */
  metrics?: string;
}

export const DEFAULT_HTTP = { host: '127.0.0.1', port: 3000 };

/** Parses `[host:]port`: `3000`, `0.0.0.0:8080`, `[::1]:3000`. */
export function parseListen(value: string, flag = '--http'): { host: string; port: number } {
  const match = /^(?:(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):)?(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new UsageError(`${flag} takes [host:]port, e.g. 3000 or 127.0.0.1:3000, not "${value}"`);
  return { host: match[1] ?? match[2] ?? DEFAULT_HTTP.host, port };
}

/** Runs the server until SIGINT/SIGTERM (or, for stdio alone, until the client closes stdin). */
export async function serve(appPath: string | undefined, options: ServeOptions): Promise<void> {
  const config = configOf(options);
  const logger = createLogger(options.logLevel);
  const listen = typeof options.http === 'string' ? parseListen(options.http) : DEFAULT_HTTP;
  const wantStdio = options.stdio === true;
  const wantHttp = options.http !== undefined || !wantStdio;
  if (options.auth === false && wantHttp && !isLoopback(listen.host)) {
    throw new UsageError('--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost)');
  }
  const metricsListen = options.metrics === undefined ? undefined : parseListen(options.metrics, '--metrics');
  if (metricsListen && !isLoopback(metricsListen.host)) {
    throw new UsageError(
      '--metrics serves without authentication, so only on loopback; elsewhere scrape /metrics on the --http port with an admin key',
    );
  }
  const app = await loadApp(appPath);
  const core = await createCore({
    app,
    store: openSqlite(options, config),
    ...(config.roles === undefined ? {} : { roles: config.roles }),
    logger,
    metrics: true,
    ...(config.store?.snapshotEvery === undefined ? {} : { snapshotEvery: config.store.snapshotEvery }),
  });
  // Serving starts here: no command may be registered from now on.
  core.registry.freeze();
  const rateLimiter = new RateLimiter(config.limits?.rate);
  const surface = new McpSurface(core, { rateLimiter });
  core.metrics?.countSubscriptions(() => surface.activeSubscriptions);
  const observability = () =>
    observabilityRoutes({ health: core.health, metrics: core.metrics, authorizer: core.authorizer });
  // Another process (the CLI's rollback, a second server on the same file) may commit: follow it.
  const unfollow = core.state.followStore();
  const stopMaintenance = startMaintenance(core.state, {
    ...(config.retention ? { retention: config.retention } : {}),
    ...(config.idempotencyHours === undefined
      ? {}
      : { idempotencyTtlMs: config.idempotencyHours * 60 * 60 * 1000 }),
    logger,
  });
  let http: RunningHttpServer | undefined;
  let metricsServer: RunningEdge | undefined;
  let stdio: { close(): Promise<void> } | undefined;

  const shutdown = async (signal: string) => {
    logger.info({ signal }, 'shutting down');
    stopMaintenance();
    unfollow();
    await stdio?.close().catch(() => {});
    await http?.close().catch(() => {});
    await metricsServer?.close().catch(() => {});
    surface.close();
    await core.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

  if (wantHttp) {
    let anonymous: Principal | undefined;
    if (options.auth === false) {
      logger.warn(
        {},
        'authentication is OFF (--no-auth): anyone who can reach this loopback port acts as admin',
      );
      anonymous = Object.freeze({
        id: 'anonymous',
        name: 'anonymous',
        roles: Object.freeze(['admin']),
        via: 'none',
      });
    }
    http = await serveHttp(surface, {
      ...listen,
      ...(anonymous ? { anonymous } : { authenticator: await bearerAuthenticator(core, config) }),
      rateLimiter,
      authThrottle: new AuthThrottle(config.limits?.authFailures),
      resourceMetadata: {
        ...(config.auth?.resource || config.auth?.jwt
          ? { resource: config.auth.resource ?? config.auth.jwt!.audience }
          : {}),
        authorizationServers:
          config.auth?.authorizationServers ?? (config.auth?.jwt ? [config.auth.jwt.issuer] : []),
      },
      ...(config.http?.allowedHosts ? { allowedHosts: config.http.allowedHosts } : {}),
      ...(config.http?.allowedOrigins ? { allowedOrigins: config.http.allowedOrigins } : {}),
      ...(config.http?.maxBodyBytes ? { maxBodyBytes: config.http.maxBodyBytes } : {}),
      ...(config.http?.maxSessions ? { maxSessions: config.http.maxSessions } : {}),
      routes: observability(),
      onAuthFailure: (reason) => core.metrics?.recordAuthFailure(reason),
      logger,
    });
    if (!anonymous) await announceFirstKey(core, app.name, http.url, logger);
    process.stderr.write(`coremcp: serving "${app.name}" at ${http.url}\n`);
  }
  if (metricsListen) {
    metricsServer = await serveEdge({
      ...metricsListen,
      access: { kind: 'open' },
      routes: observability(),
      // An auxiliary listener never keeps the process alive by itself: stdio mode still ends with stdin.
      keepsProcessAlive: false,
      logger: logger.child({ component: 'metrics-http' }),
    });
    process.stderr.write(`coremcp: metrics at ${metricsServer.origin}/metrics\n`);
  }
  if (wantStdio) {
    const principal: Principal = Object.freeze({
      id: userInfo().username || 'local',
      name: userInfo().username || 'local',
      roles: Object.freeze(config.stdio?.roles ?? ['admin']),
      via: 'stdio',
    });
    stdio = serveStdio(surface, { principal, logger });
  }
}

/** API keys always; bearer JWTs too when `auth.jwt` is configured. */
async function bearerAuthenticator(core: Core, config: CoreMcpConfig): Promise<Authenticator> {
  const jwt = config.auth?.jwt
    ? await JwtAuthenticator.create(config.auth.jwt, core.authorizer.roleNames)
    : undefined;
  return new BearerAuthenticator(core.keys, jwt);
}

/**
 * On the first start (no API key was ever made) creates an admin key and prints it, once, to stderr
 * with a client configuration ready to paste. Later starts find keys and print nothing.
 */
async function announceFirstKey(core: Core, appName: string, url: string, logger: Logger): Promise<void> {
  if (!core.keys || (await core.keys.list()).length > 0) return;
  const { key, record } = await core.keys.create('admin', 'admin');
  logger.info({ keyId: record.id, name: record.name }, 'created the first admin API key');
  const config = {
    mcpServers: { [appName]: { type: 'http', url, headers: { Authorization: `Bearer ${key}` } } },
  };
  process.stderr.write(
    [
      '',
      'coremcp: first start: created an admin API key. It is shown ONCE; store it now:',
      '',
      `  ${key}`,
      '',
      'Client configuration (paste into your MCP client):',
      '',
      JSON.stringify(config, null, 2),
      '',
      'More keys: coremcp keys create --name NAME --role member',
      '',
    ].join('\n'),
  );
}
