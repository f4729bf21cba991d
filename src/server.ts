import { userInfo } from 'node:os';
import type { Transport } from '@modelcontextprotocol/server';
import type { StdioServerHandle } from '@modelcontextprotocol/server/stdio';
import { type ConsoleRoutes, consoleRoutes } from './console/routes.js';
import type { ConsoleSessionsOptions } from './console/sessions.js';
import type { Authenticator, Principal } from './core/access.js';
import type { Logger } from './core/log.js';
import { startMaintenance } from './core/maintenance.js';
import type { RetentionPolicy } from './core/state.js';
import { type RunningEdge, serveEdge } from './http/edge.js';
import { type HttpServerOptions, type RunningHttpServer, serveHttp } from './mcp/serve-http.js';
import { serveStdio } from './mcp/stdio.js';
import { McpSurface } from './mcp/surface.js';
import { observabilityRoutes } from './observability/routes.js';
import { type Core, type CoreOptions, createCore } from './runtime.js';
import { BearerAuthenticator, JwtAuthenticator, type JwtConfig } from './security/jwt.js';
import {
  AuthThrottle,
  type AuthThrottleConfig,
  type RateLimitConfig,
  RateLimiter,
} from './security/ratelimit.js';

export const DEFAULT_SHUTDOWN_DEADLINE_MS = 10_000;

/** Streamable HTTP, as `coremcp serve --http` serves it. */
export interface HttpServe
  extends Pick<
    HttpServerOptions,
    | 'host'
    | 'port'
    | 'path'
    | 'allowedHosts'
    | 'allowedOrigins'
    | 'maxBodyBytes'
    | 'maxSessions'
    | 'maxSessionsPerPrincipal'
    | 'sessionIdleMs'
    | 'maxListenStreamsPerPrincipal'
    | 'pooledInstances'
  > {
  /**
   * `false` serves without authentication, every caller acting as admin (`--no-auth`): loopback only,
   * for local tooling. Default true: API keys, and bearer JWTs when `auth.jwt` is set.
   */
  authenticate?: boolean | undefined;
}

/** stdio, as `coremcp serve --stdio` serves it: one client, the local OS user. */
export interface StdioServe {
  /** Roles of the local user (default admin: the local user owns the data). */
  roles?: readonly string[] | undefined;
  /** A transport other than this process's stdin/stdout (tests, sockets). */
  transport?: Transport | undefined;
}

/** The web console: at `/console` beside the MCP endpoint, or on a loopback listener of its own. */
export interface ConsoleServe {
  /**
   * Serve the console alone on this loopback address (`coremcp console`), not on the MCP endpoint's
   * edge. Without it the console needs `http`, and shares its port.
   */
  listen?: { host: string; port: number } | undefined;
  /** Idle timeout, maximum age and count of sessions. */
  sessions?: ConsoleSessionsOptions | undefined;
  /** `Secure` cookies always (true), never (false), or when the request came over https (default). */
  secureCookies?: boolean | undefined;
}

/** Everything a server is started from: the core's options, and how it is served. */
export interface ServerOptions extends CoreOptions {
  /** Serve MCP over Streamable HTTP. */
  http?: HttpServe | undefined;
  /** Serve MCP over stdio. */
  stdio?: StdioServe | undefined;
  /** The web console for people, on the same authentication and roles as MCP calls. */
  console?: ConsoleServe | undefined;
  /** A second, loopback-only listener serving /metrics, /healthz and /readyz without credentials. */
  metricsListener?: { host: string; port: number } | undefined;
  /** Bearer JWTs besides API keys, and the RFC 9728 metadata naming where to get them. */
  auth?:
    | {
        jwt?: JwtConfig | undefined;
        /** This server's public MCP URL, as clients reach it (default: the listen URL). */
        resource?: string | undefined;
        /** Where clients get tokens (default: the JWT issuer, if any). */
        authorizationServers?: readonly string[] | undefined;
      }
    | undefined;
  /** The core's input and state limits, plus the per-principal request rate and failed-auth throttle. */
  limits?: CoreOptions['limits'] & {
    rate?: RateLimitConfig | undefined;
    authFailures?: AuthThrottleConfig | undefined;
  };
  /** History kept per document; older commits are compacted hourly. Without it, history is kept forever. */
  retention?: RetentionPolicy | undefined;
  /** How long an idempotency key is honoured, in ms (default 24 hours). */
  idempotencyTtlMs?: number | undefined;
  /** How long a graceful shutdown waits for calls in flight, in ms (default 10,000). */
  shutdownDeadlineMs?: number | undefined;
  /** Follow commits other processes make to the store (the CLI, another server). Default true. */
  followStore?: boolean | undefined;
  /**
   * On the first start over authenticated HTTP (the store has no API key yet), create an admin key
   * and print it once to stderr with a client configuration. Default true.
   */
  announceFirstKey?: boolean | undefined;
}

/** A started server. */
export interface RunningServer {
  readonly core: Core;
  readonly surface: McpSurface;
  /** The MCP endpoint over HTTP, when `http` was given. */
  readonly http: RunningHttpServer | undefined;
  /** The loopback metrics listener, when `metricsListener` was given. */
  readonly metricsListener: RunningEdge | undefined;
  /** Where the web console is, when `console` was given, e.g. http://127.0.0.1:3000/console. */
  readonly consoleUrl: string | undefined;
  /**
   * A graceful stop: no new calls (HTTP answers 503 `shutting_down` with `Retry-After`, stdio and
   * in-process callers get `shutting_down`), event streams end, calls in flight may finish — at most
   * `deadlineMs` (default `shutdownDeadlineMs`, 10 s), after which they are cancelled and commit
   * nothing — then every transport and listener closes, and the store (SQLite checkpoints its log).
   */
  close(options?: { deadlineMs?: number }): Promise<void>;
}

/**
 * The composition root: builds a core from `options` and serves it. In order: the core (store opened,
 * documents loaded), the registry frozen (no command may be registered once serving starts), the
 * MCP surface, following the store and periodic maintenance, HTTP (with the first admin key, on a
 * first start), the loopback metrics listener, stdio. What `coremcp serve` runs, and what an app
 * embedding coremcp calls. If a step fails, what was started is closed again.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const core = await createCore(options);
  const { logger } = core;
  core.registry.freeze();
  const rateLimiter = new RateLimiter(options.limits?.rate);
  const surface = new McpSurface(core, { rateLimiter, clock: options.clock });
  core.metrics?.countSubscriptions(() => surface.activeSubscriptions);
  const unfollow = options.followStore === false ? undefined : core.state.followStore();
  const stopMaintenance = startMaintenance(core.state, {
    retention: options.retention,
    idempotencyTtlMs: options.idempotencyTtlMs,
    logger,
  });
  let http: RunningHttpServer | undefined;
  let metricsListener: RunningEdge | undefined;
  let consoleEdge: RunningEdge | undefined;
  let webConsole: ConsoleRoutes | undefined;
  let consoleUrl: string | undefined;
  let stdio: StdioServerHandle | undefined;

  let closing: Promise<void> | undefined;
  const close = (request: { deadlineMs?: number } = {}) => {
    closing ??= (async () => {
      const deadlineMs = request.deadlineMs ?? options.shutdownDeadlineMs ?? DEFAULT_SHUTDOWN_DEADLINE_MS;
      const started = Date.now();
      stopMaintenance();
      unfollow?.();
      // Stop taking calls everywhere at once, then wait for those in flight (HTTP's and the rest).
      const drained = await Promise.all([http?.drain(deadlineMs) ?? true, core.executor.drain(deadlineMs)]);
      if (drained.includes(false))
        logger.warn(
          { deadlineMs, running: core.executor.running },
          'calls still running at the shutdown deadline were cancelled',
        );
      else logger.info({ ms: Date.now() - started }, 'calls in flight finished');
      // Answers computed but not yet written (a stdio response, a resource read) go out first.
      await surface.idle(Math.max(0, deadlineMs - (Date.now() - started)));
      await new Promise((resolve) => setImmediate(resolve));
      webConsole?.close();
      await stdio?.close().catch(() => {});
      await http?.close().catch(() => {});
      await consoleEdge?.close().catch(() => {});
      await metricsListener?.close().catch(() => {});
      await surface.close();
      await core.close();
    })();
    return closing;
  };

  try {
    const observability = () =>
      observabilityRoutes({ health: core.health, metrics: core.metrics, authorizer: core.authorizer });
    const authThrottle = new AuthThrottle(options.limits?.authFailures);
    const anonymous = options.http?.authenticate === false ? anonymousAdmin(logger) : undefined;
    // The console always signs people in with a key or token, even beside an unauthenticated MCP endpoint.
    const authenticator =
      (options.http && !anonymous) || options.console
        ? await bearerAuthenticator(core, options.auth?.jwt)
        : undefined;
    if (options.console) {
      if (!options.console.listen && !options.http)
        throw new TypeError(
          'the console is served beside HTTP (`http`) or on a listener of its own (`console.listen`)',
        );
      const keys = core.keys;
      webConsole = consoleRoutes(
        { ...core, appName: core.app.name },
        {
          authenticator: authenticator!,
          keyIsActive: keys ? (hash) => keys.isActive(hash) : undefined,
          authThrottle,
          rateLimiter,
          sessions: options.console.sessions,
          secureCookies: options.console.secureCookies,
          metricsRegistry: core.metrics?.registry,
        },
      );
    }
    if (options.http) {
      http = await serveHttp(surface, {
        host: options.http.host,
        port: options.http.port,
        path: options.http.path,
        allowedHosts: options.http.allowedHosts,
        allowedOrigins: options.http.allowedOrigins,
        maxBodyBytes: options.http.maxBodyBytes,
        maxSessions: options.http.maxSessions,
        maxSessionsPerPrincipal: options.http.maxSessionsPerPrincipal,
        sessionIdleMs: options.http.sessionIdleMs,
        maxListenStreamsPerPrincipal: options.http.maxListenStreamsPerPrincipal,
        pooledInstances: options.http.pooledInstances,
        anonymous,
        authenticator: anonymous ? undefined : authenticator,
        rateLimiter,
        authThrottle,
        onAuthFailure: (reason) => core.metrics?.recordAuthFailure(reason),
        resourceMetadata: {
          resource: options.auth?.resource ?? options.auth?.jwt?.audience,
          authorizationServers:
            options.auth?.authorizationServers ?? (options.auth?.jwt ? [options.auth.jwt.issuer] : []),
        },
        routes: [...observability(), ...(webConsole && !options.console?.listen ? webConsole.routes : [])],
        logger,
      });
      if (webConsole && !options.console?.listen) consoleUrl = `${new URL(http.url).origin}/console`;
      if (!anonymous && options.announceFirstKey !== false) await announceFirstKey(core, http.url);
    }
    if (webConsole && options.console?.listen) {
      consoleEdge = await serveEdge({
        ...options.console.listen,
        access: { kind: 'open' },
        routes: [...observability().filter((route) => route.access === 'public'), ...webConsole.routes],
        logger: logger.child({ component: 'console-http' }),
      });
      consoleUrl = `${consoleEdge.origin}/console`;
      if (!options.http && options.announceFirstKey !== false) await announceFirstKey(core, undefined);
    }
    if (options.metricsListener) {
      metricsListener = await serveEdge({
        ...options.metricsListener,
        access: { kind: 'open' },
        routes: observability(),
        // An auxiliary listener never keeps the process alive by itself: stdio mode still ends with stdin.
        keepsProcessAlive: false,
        logger: logger.child({ component: 'metrics-http' }),
      });
    }
    if (options.stdio) {
      stdio = serveStdio(surface, {
        principal: localUser(options.stdio.roles ?? ['admin']),
        logger,
        transport: options.stdio.transport,
        // At end of input, answers still in progress are written before the connection closes.
        beforeEnd: () => surface.idle(options.shutdownDeadlineMs ?? DEFAULT_SHUTDOWN_DEADLINE_MS),
      });
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { core, surface, http, metricsListener, consoleUrl, close };
}

/** API keys always; bearer JWTs too when configured. */
async function bearerAuthenticator(core: Core, jwt: JwtConfig | undefined): Promise<Authenticator> {
  return new BearerAuthenticator(
    core.keys,
    jwt ? await JwtAuthenticator.create(jwt, core.authorizer.roleNames) : undefined,
  );
}

function anonymousAdmin(logger: Logger): Principal {
  logger.warn({}, 'authentication is OFF (--no-auth): anyone who can reach this loopback port acts as admin');
  return Object.freeze({ id: 'anonymous', name: 'anonymous', roles: Object.freeze(['admin']), via: 'none' });
}

/** The OS user running the server: who a stdio client acts as. */
function localUser(roles: readonly string[]): Principal {
  const name = userInfo().username || 'local';
  return Object.freeze({ id: name, name, roles: Object.freeze([...roles]), via: 'stdio' });
}

/**
 * On the first start (no API key was ever made) creates the operator's admin key and, when serving
 * MCP over HTTP, an agent key with a least-privilege role (the configured `agent` role if there is
 * one, else `member`), and prints both once to stderr. The client configuration it prints carries the
 * agent key, so a model is not handed the admin tools (rollback, undo) by default. Later starts find
 * keys and print nothing.
 */
async function announceFirstKey(core: Core, url: string | undefined): Promise<void> {
  if (!core.keys || (await core.keys.list()).length > 0) return;
  const admin = await core.keys.create('admin', 'admin');
  core.logger.info({ keyId: admin.record.id, name: admin.record.name }, 'created the first admin API key');
  const agentRole = core.authorizer.roleNames.includes('agent') ? 'agent' : 'member';
  const agent = url ? await core.keys.create('agent', agentRole) : undefined;
  if (agent) core.logger.info({ keyId: agent.record.id, role: agentRole }, 'created the first agent API key');
  const config = url &&
    agent && {
      mcpServers: {
        [core.app.name]: { type: 'http', url, headers: { Authorization: `Bearer ${agent.key}` } },
      },
    };
  process.stderr.write(
    [
      '',
      `coremcp: first start: created ${agent ? 'two API keys. They are' : 'an admin API key. It is'} shown ONCE; store ${agent ? 'them' : 'it'} now:`,
      '',
      '  admin (role admin: everything; for you and the web console):',
      '',
      `  ${admin.key}`,
      '',
      ...(agent && config
        ? [
            `  agent (role ${agentRole}: the app's commands; no rollback, undo or key management):`,
            '',
            `  ${agent.key}`,
            '',
            'Client configuration for agents, with the agent key (paste into your MCP client):',
            '',
            JSON.stringify(config, null, 2),
            '',
          ]
        : ['Sign in to the console with it.', '']),
      `More keys: coremcp keys create --name NAME --role ${agentRole}`,
      '',
    ].join('\n'),
  );
}
