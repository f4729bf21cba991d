import type { Server as NodeHttpServer } from 'node:http';
import type { Authenticator, Principal } from '../core/access.js';
import type { Logger } from '../core/log.js';
import type { BearerAuthOptions } from '../http/auth.js';
import { DEFAULT_BODY_LIMIT, type EdgeAccess, serveEdge } from '../http/edge.js';
import type { HttpRoute } from '../http/route.js';
import { McpHttpRoute } from './http.js';
import type { McpSurface } from './surface.js';

export interface HttpServerOptions extends Omit<BearerAuthOptions, 'authenticator'> {
  /** Interface to bind (default 127.0.0.1). Binding a non-loopback address needs authentication. */
  host?: string | undefined;
  /** Port (default 3000; 0 picks a free one). */
  port?: number | undefined;
  /** Path of the MCP endpoint (default /mcp). */
  path?: string | undefined;
  /** Turns bearer credentials into principals. Required unless `anonymous` is set. */
  authenticator?: Authenticator | undefined;
  /**
   * Serve without authentication as this principal. Only allowed on a loopback address; for local
   * tooling such as the conformance suite, never for shared state.
   */
  anonymous?: Principal | undefined;
  /** Host header names accepted besides localhost, 127.0.0.1 and [::1] (DNS rebinding defence). */
  allowedHosts?: readonly string[] | undefined;
  /** Origin hostnames accepted besides the loopback ones. Requests without Origin are accepted. */
  allowedOrigins?: readonly string[] | undefined;
  /** Largest request body, in bytes (default 1 MiB). Larger bodies get 413. */
  maxBodyBytes?: number | undefined;
  /** Most concurrent 2025-era sessions (default 1,000). */
  maxSessions?: number | undefined;
  /** Most 2025-era sessions one principal holds (default 32); its least recently used makes room. */
  maxSessionsPerPrincipal?: number | undefined;
  /** A 2025-era session idle this long is closed (default 30 minutes). */
  sessionIdleMs?: number | undefined;
  /** Most open 2026-era `subscriptions/listen` streams per principal (default 16). */
  maxListenStreamsPerPrincipal?: number | undefined;
  /** Serve well-formed 2026-07-28 calls through one long-lived SDK instance per principal (default true). */
  pooledInstances?: boolean | undefined;
  /**
   * RFC 9728 protected-resource metadata, served at `/.well-known/oauth-protected-resource` and named in
   * every 401's `WWW-Authenticate`. `resource` defaults to this server's MCP URL.
   */
  resourceMetadata?: { resource?: string | undefined; authorizationServers?: readonly string[] } | undefined;
  /** More routes on the same edge (health, metrics), with the same authentication. */
  routes?: readonly HttpRoute[] | undefined;
  logger: Logger;
}

export interface RunningHttpServer {
  /** The MCP endpoint, e.g. http://127.0.0.1:3000/mcp. */
  readonly url: string;
  readonly port: number;
  readonly server: NodeHttpServer;
  /** Open 2025-era sessions. */
  readonly sessions: number;
  /** Stops taking requests and lets those in flight finish, at most `deadlineMs` (see `RunningEdge.drain`). */
  drain(deadlineMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Serves a surface over Streamable HTTP: the MCP endpoint as a route on an HTTP edge, beside the
 * RFC 9728 metadata (with bearer authentication) and any other routes given.
 */
export async function serveHttp(surface: McpSurface, options: HttpServerOptions): Promise<RunningHttpServer> {
  const { authenticator, anonymous } = options;
  if (!authenticator && !anonymous)
    throw new TypeError('serveHttp needs an authenticator (or an anonymous principal on loopback)');
  const path = options.path ?? '/mcp';
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_BODY_LIMIT;
  const logger = options.logger.child({ component: 'http' });
  const access: EdgeAccess = anonymous
    ? { kind: 'anonymous', principal: anonymous }
    : {
        kind: 'bearer',
        authenticator: authenticator!,
        authThrottle: options.authThrottle,
        rateLimiter: options.rateLimiter,
        onAuthFailure: options.onAuthFailure,
        protectedResource: {
          path,
          resource: options.resourceMetadata?.resource,
          authorizationServers: options.resourceMetadata?.authorizationServers,
          name: surface.app.name,
        },
      };
  const mcp = new McpHttpRoute(surface, {
    path,
    maxBodyBytes,
    maxSessions: options.maxSessions,
    maxSessionsPerPrincipal: options.maxSessionsPerPrincipal,
    sessionIdleMs: options.sessionIdleMs,
    maxListenStreamsPerPrincipal: options.maxListenStreamsPerPrincipal,
    pooledInstances: options.pooledInstances,
    logger,
  });
  const edge = await serveEdge({
    host: options.host,
    port: options.port,
    access,
    routes: [mcp, ...(options.routes ?? [])],
    allowedHosts: options.allowedHosts,
    allowedOrigins: options.allowedOrigins,
    maxBodyBytes,
    logger,
  }).catch(async (error: unknown) => {
    await mcp.close();
    throw error;
  });
  const url = `${edge.origin}${path}`;
  logger.info({ url }, 'listening');
  return {
    url,
    port: edge.port,
    server: edge.server,
    get sessions() {
      return mcp.sessions;
    },
    drain: (deadlineMs) => edge.drain(deadlineMs),
    async close() {
      await mcp.close();
      await edge.close();
    },
  };
}
