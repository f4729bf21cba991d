import { randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type Server as NodeHttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AuthInfo,
  createMcpHandler,
  isInitializeRequest,
  isLegacyRequest,
  legacyStatelessFallback,
  type McpHttpHandler,
  type McpRequestContext,
  type Server,
  validateHostHeader,
  validateOriginHeader,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
import type { Authenticator, Principal } from '../core/access.js';
import {
  AccessError,
  type CoreMcpError,
  jsonRpcErrorBody,
  TransportError,
  toPublicError,
} from '../core/errors.js';
import { timeOrderedId } from '../core/ids.js';
import type { JsonValue } from '../core/json.js';
import type { Logger } from '../core/log.js';
import { type AuthThrottle, type RateLimiter, rateLimited } from '../security/ratelimit.js';
import { findMessageProblem, messageProblemError } from './guard.js';
import type { McpSurface } from './surface.js';

export interface HttpServerOptions {
  /** Interface to bind (default 127.0.0.1). Binding a non-loopback address needs authentication. */
  host?: string;
  /** Port (default 3000; 0 picks a free one). */
  port?: number;
  /** Path of the MCP endpoint (default /mcp). */
  path?: string;
  /** Turns bearer credentials into principals. Required unless `anonymous` is set. */
  authenticator?: Authenticator;
  /**
   * Serve without authentication as this principal. Only allowed on a loopback address; for local
   * tooling such as the conformance suite, never for shared state.
   */
  anonymous?: Principal;
  /** Host header names accepted besides localhost, 127.0.0.1 and [::1] (DNS rebinding defence). */
  allowedHosts?: string[];
  /** Origin hostnames accepted besides the loopback ones. Requests without Origin are accepted. */
  allowedOrigins?: string[];
  /** Largest request body, in bytes (default 1 MiB). Larger bodies get 413. */
  maxBodyBytes?: number;
  /** Most concurrent 2025-era sessions (default 1,000). */
  maxSessions?: number;
  /** A 2025-era session idle this long is closed (default 30 minutes). */
  sessionIdleMs?: number;
  /** Per-principal request limit: over it, 429 with `Retry-After` before the SDK sees the request. */
  rateLimiter?: RateLimiter;
  /** Failed-authentication throttle per client address: once blocked, 429 without checking credentials. */
  authThrottle?: AuthThrottle;
  /**
   * RFC 9728 protected-resource metadata, served at `/.well-known/oauth-protected-resource` and named in
   * every 401's `WWW-Authenticate`. `resource` defaults to this server's MCP URL.
   */
  resourceMetadata?: { resource?: string; authorizationServers?: string[] };
  /** Extra routes (health, metrics, metadata) tried before 404; return true when handled. */
  routes?: HttpRoute[];
  /** Called for each request refused for missing or invalid credentials (metrics); `reason` is bounded. */
  onAuthFailure?: (reason: string) => void;
  logger: Logger;
}

/** What an extra route may ask of the server: the same authentication as the MCP endpoint. */
export interface RouteContext {
  /** Checks Host/Origin and the bearer credential like /mcp does; throws (answered as 401/403/429) if refused. */
  authenticate(): Promise<Principal>;
}

export type HttpRoute = (
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: RouteContext,
) => boolean | Promise<boolean>;

export interface RunningHttpServer {
  /** The MCP endpoint, e.g. http://127.0.0.1:3000/mcp. */
  readonly url: string;
  readonly port: number;
  readonly server: NodeHttpServer;
  /** Open 2025-era sessions. */
  readonly sessions: number;
  close(): Promise<void>;
}

interface LegacySession {
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  principal: Principal;
  lastSeen: number;
}

const LOOPBACK = ['localhost', '127.0.0.1', '[::1]', '::1'];
const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Bodies over the limit are read and dropped up to this size (so the client sees the 413), then cut off. */
const DISCARD_LIMIT = 16 * 1024 * 1024;

export function isLoopback(host: string): boolean {
  return LOOPBACK.includes(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly error: CoreMcpError,
    readonly headers: Record<string, string> = {},
  ) {
    super(error.message);
  }
}

function tooManyRequests(retryAfterSeconds: number): HttpFailure {
  return new HttpFailure(429, rateLimited(retryAfterSeconds), { 'retry-after': String(retryAfterSeconds) });
}

const AUTH_INFO_PRINCIPAL = 'coremcp/principal';
const WELL_KNOWN = '/.well-known/oauth-protected-resource';

function principalOf(authInfo: AuthInfo | undefined): Principal {
  const principal = authInfo?.extra?.[AUTH_INFO_PRINCIPAL] as Principal | undefined;
  // The HTTP layer authenticates every request before the SDK sees it; reaching here without a
  // principal is a wiring bug, and must not become an anonymous call.
  if (!principal) throw new AccessError('unauthenticated');
  return principal;
}

function authInfoFor(principal: Principal): AuthInfo {
  return {
    token: '',
    clientId: principal.id,
    scopes: [...principal.roles],
    extra: { [AUTH_INFO_PRINCIPAL]: principal },
  };
}

/**
 * Serves a surface over Streamable HTTP. Every request is checked (Host, Origin, credentials, body
 * size) before the SDK sees it. 2026-07-28 requests go to the SDK's stateless handler; 2025-era
 * clients get sessions bound to the principal that opened them (so `resources/subscribe` works),
 * and session-less 2025 calls the SDK's stateless fallback.
 */
export async function serveHttp(surface: McpSurface, options: HttpServerOptions): Promise<RunningHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const path = options.path ?? '/mcp';
  const maxBody = options.maxBodyBytes ?? DEFAULT_BODY_LIMIT;
  const maxSessions = options.maxSessions ?? 1000;
  const idleMs = options.sessionIdleMs ?? 30 * 60 * 1000;
  const log = options.logger.child({ component: 'http' });
  if (!options.authenticator && !options.anonymous)
    throw new TypeError('serveHttp needs an authenticator (or an anonymous principal on loopback)');
  if (options.anonymous && !isLoopback(host)) {
    throw new TypeError(
      `refusing to serve without authentication on ${host}: only loopback addresses may run without it`,
    );
  }
  const allowedHosts = [...LOOPBACK, ...(options.allowedHosts ?? [])];
  if (!isLoopback(host) && host !== '0.0.0.0' && host !== '::')
    allowedHosts.push(host.includes(':') ? `[${host}]` : host);
  const allowedOrigins = [...LOOPBACK, ...(options.allowedOrigins ?? [])];
  const onerror = (error: Error) => log.debug({ err: error }, 'MCP transport reported an error');

  const factory = (ctx: McpRequestContext) => surface.createServer(principalOf(ctx.authInfo), 'request');
  const modern: McpHttpHandler = createMcpHandler(factory, {
    legacy: 'reject',
    onerror,
    maxRequestBodySize: maxBody,
  });
  const legacyStateless = legacyStatelessFallback(factory, onerror, { maxRequestBodySize: maxBody });
  const detachPublisher = surface.addPublisher((uri, meta) => {
    modern.bus.publish({ kind: 'resource_updated', uri, params: { _meta: meta } });
  });
  const sessions = new Map<string, LegacySession>();

  const sweep = setInterval(
    () => {
      const cutoff = Date.now() - idleMs;
      for (const [id, session] of sessions) if (session.lastSeen < cutoff) void closeSession(id, session);
    },
    Math.min(idleMs, 60_000),
  );
  sweep.unref();

  async function closeSession(id: string, session: LegacySession): Promise<void> {
    sessions.delete(id);
    await session.transport.close().catch(() => {});
    await session.server.close().catch(() => {});
  }

  /** Set once listening: the metadata document and the challenge that points to it. */
  let metadata: { url: string; body: JsonValue } | undefined;
  const challenge = (extra = '') =>
    `Bearer realm="coremcp"${metadata ? `, resource_metadata="${metadata.url}"` : ''}${extra}`;

  async function authenticate(req: IncomingMessage): Promise<Principal> {
    if (options.anonymous) return options.anonymous;
    const address = req.socket.remoteAddress ?? 'unknown';
    const gate = options.authThrottle?.check(address);
    if (gate && !gate.ok) {
      options.onAuthFailure?.('address_throttled');
      throw tooManyRequests(gate.retryAfterSeconds);
    }
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer[ ]+([^\s]+)\s*$/i.exec(header) : null;
    if (!match) {
      options.onAuthFailure?.('missing_token');
      throw new HttpFailure(401, new AccessError('unauthenticated', 'A bearer token is required'), {
        'www-authenticate': challenge(),
      });
    }
    const result = await options.authenticator!.authenticate(match[1]!);
    if (!result.ok) {
      options.onAuthFailure?.(result.reason);
      const blocked = options.authThrottle?.fail(address) ?? false;
      log.info({ reason: result.reason, address, blocked }, 'authentication failed');
      throw new HttpFailure(
        401,
        new AccessError('unauthenticated', 'The bearer token is invalid, expired or revoked'),
        { 'www-authenticate': challenge(', error="invalid_token"') },
      );
    }
    const verdict = options.rateLimiter?.take(result.principal.id);
    if (verdict && !verdict.ok) throw tooManyRequests(verdict.retryAfterSeconds);
    return result.principal;
  }

  /** RFC 9728: `/.well-known/oauth-protected-resource`, and the same with the endpoint's path appended. */
  function serveMetadata(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    if (!metadata || (url.pathname !== WELL_KNOWN && url.pathname !== `${WELL_KNOWN}${path}`)) return false;
    checkHostAndOrigin(req);
    res.setHeader('cache-control', 'public, max-age=3600');
    sendJson(res, 200, metadata.body);
    return true;
  }

  function checkHostAndOrigin(req: IncomingMessage): void {
    const hostCheck = validateHostHeader(req.headers.host, allowedHosts);
    if (!hostCheck.ok) throw new HttpFailure(403, new AccessError('forbidden', 'Host not allowed'));
    const origin = req.headers.origin;
    const originCheck = validateOriginHeader(typeof origin === 'string' ? origin : undefined, allowedOrigins);
    if (!originCheck.ok) throw new HttpFailure(403, new AccessError('forbidden', 'Origin not allowed'));
  }

  /**
   * Reads the body up to `maxBody`. A larger body is read on and discarded up to `DISCARD_LIMIT`, so the
   * client, still sending, gets to read the 413 rather than a reset; past that the connection is dropped.
   */
  function readBody(req: IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length']);
      let over = Number.isFinite(declared) && declared > maxBody;
      if (over && declared > DISCARD_LIMIT) return reject(tooLarge());
      const chunks: Buffer[] = [];
      let size = 0;
      let ended = false;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBody) over = true;
        if (!over) chunks.push(chunk);
        else if (size > DISCARD_LIMIT) {
          req.pause();
          reject(tooLarge());
        }
      });
      req.on('end', () => {
        ended = true;
        if (over) reject(tooLarge());
        else resolve(Buffer.concat(chunks, size).toString('utf8'));
      });
      req.on('error', reject);
      req.on('close', () => {
        if (!ended)
          reject(new HttpFailure(400, new TransportError('bad_request', 'The request body ended early')));
      });
    });
  }

  function tooLarge(): HttpFailure {
    return new HttpFailure(
      413,
      new TransportError('payload_too_large', `Request bodies are limited to ${maxBody} bytes`),
      { connection: 'close' },
    );
  }

  async function handleMcp(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    signal: AbortSignal,
  ): Promise<void> {
    checkHostAndOrigin(req);
    const principal = await authenticate(req);
    const authInfo = authInfoFor(principal);
    const method = (req.method ?? 'GET').toUpperCase();
    let text: string | undefined;
    let parsed: unknown;
    if (method === 'POST') {
      text = await readBody(req);
      try {
        parsed = text.length === 0 ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    const problem = parsed === undefined ? undefined : findMessageProblem(parsed);
    if (problem) {
      sendJson(res, 400, messageProblemError(isRecord(parsed) ? parsed.id : null, problem));
      return;
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || name.startsWith(':')) continue;
      if (Array.isArray(value)) for (const item of value) headers.append(name, item);
      else headers.set(name, value);
    }
    // A parsed body travels as `parsedBody`; the raw text only when it did not parse, so the SDK
    // answers with its own parse error.
    const body = parsed === undefined && text !== undefined && text.length > 0 ? text : undefined;
    if (body === undefined) headers.delete('content-length');
    const request = new Request(url, { method, headers, signal, ...(body === undefined ? {} : { body }) });
    const requestOptions = { authInfo, ...(parsed === undefined ? {} : { parsedBody: parsed }) };

    const sessionId = req.headers['mcp-session-id'];
    const legacy =
      typeof sessionId === 'string' ||
      (method === 'POST' &&
        parsed !== undefined &&
        (await isLegacyRequest(request, parsed, { maxRequestBodySize: maxBody })));
    let response: Response;
    if (!legacy) {
      refuseUnfollowable(parsed, principal);
      response = await modern.fetch(request, requestOptions);
    } else if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId);
      // A session answers only the principal that opened it; to anyone else it does not exist.
      if (!session || session.principal.id !== principal.id) {
        const error = new TransportError('session_not_found');
        response = Response.json(jsonRpcErrorBody(toPublicError(error, timeOrderedId())), {
          status: error.spec.http,
        });
      } else {
        session.lastSeen = Date.now();
        response = await session.transport.handleRequest(request, requestOptions);
      }
    } else if (isInitialize(parsed)) {
      response = await openSession(principal, request, requestOptions);
    } else {
      response = await legacyStateless(request, requestOptions);
    }
    // A 2026-era `subscriptions/listen` stream stays open while the client follows: count it as a subscription.
    const release = !legacy && isListen(parsed) ? surface.openSubscriptionStream() : undefined;
    await writeResponse(res, response, signal).finally(() => release?.());
  }

  /** 2026-era `subscriptions/listen`: refuse documents the principal may not follow before the SDK acks. */
  function refuseUnfollowable(parsed: unknown, principal: Principal): void {
    if (!isListen(parsed)) return;
    const params = isRecord(parsed.params) ? parsed.params : {};
    const notifications = isRecord(params.notifications) ? params.notifications : {};
    const uris = Array.isArray(notifications.resourceSubscriptions)
      ? notifications.resourceSubscriptions
      : [];
    for (const uri of uris) {
      if (typeof uri !== 'string' || !surface.canFollow(principal, uri)) {
        throw new HttpFailure(
          403,
          new AccessError('forbidden', `Not allowed to follow ${String(uri).slice(0, 200)}`, {
            details: { uri: String(uri).slice(0, 200) },
          }),
        );
      }
    }
  }

  async function openSession(
    principal: Principal,
    request: Request,
    requestOptions: { authInfo: AuthInfo; parsedBody?: unknown },
  ): Promise<Response> {
    if (sessions.size >= maxSessions) {
      const oldest = [...sessions.entries()].sort((a, b) => a[1].lastSeen - b[1].lastSeen)[0];
      if (oldest && oldest[1].lastSeen < Date.now() - 60_000) await closeSession(oldest[0], oldest[1]);
      else
        return Response.json(
          jsonRpcErrorBody(toPublicError(new AccessError('too_many_sessions'), timeOrderedId())),
          {
            status: 503,
          },
        );
    }
    const server = surface.createServer(principal, 'session');
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomBytes(24).toString('base64url'),
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server, principal, lastSeen: Date.now() });
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    const response = await transport.handleRequest(request, requestOptions);
    if (!transport.sessionId) await server.close().catch(() => {});
    return response;
  }

  const node = createServer((req, res) => {
    const controller = new AbortController();
    let finished = false;
    res.on('close', () => {
      if (!finished) controller.abort();
    });
    void route(req, res, controller.signal).finally(() => {
      finished = true;
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    let url: URL;
    try {
      url = new URL(
        req.url ?? '/',
        `http://${LOOPBACK.includes(String(req.headers.host)) ? req.headers.host : 'localhost'}`,
      );
    } catch {
      return sendError(
        res,
        new HttpFailure(400, new TransportError('bad_request', 'Malformed request target')),
      );
    }
    try {
      if (url.pathname === path) return await handleMcp(req, res, url, signal);
      if (serveMetadata(req, res, url)) return;
      const ctx: RouteContext = {
        authenticate: async () => {
          checkHostAndOrigin(req);
          return authenticate(req);
        },
      };
      for (const extra of options.routes ?? []) if (await extra(req, res, url, ctx)) return;
      sendJson(res, 404, { error: { code: 'not_found', message: 'Not found' } });
    } catch (error) {
      if (error instanceof HttpFailure) return sendError(res, error);
      const requestId = timeOrderedId();
      log.error({ err: error, requestId }, 'HTTP request failed');
      if (!res.headersSent) sendJson(res, 500, jsonRpcErrorBody(toPublicError(error, requestId)));
      else res.destroy();
    }
  }

  function sendError(res: ServerResponse, failure: HttpFailure): void {
    if (res.headersSent) return void res.destroy();
    const requestId = timeOrderedId();
    for (const [name, value] of Object.entries(failure.headers)) res.setHeader(name, value);
    sendJson(res, failure.status, jsonRpcErrorBody(toPublicError(failure.error, requestId)));
  }

  await new Promise<void>((resolve, reject) => {
    node.once('error', reject);
    node.listen(options.port ?? 3000, host, () => {
      node.off('error', reject);
      resolve();
    });
  });
  const port = (node.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  log.info({ url: `http://${urlHost}:${port}${path}` }, 'listening');
  if (!options.anonymous) {
    const resource = options.resourceMetadata?.resource ?? `http://${urlHost}:${port}${path}`;
    const resourceUrl = new URL(resource);
    const body: JsonValue = {
      resource,
      authorization_servers: options.resourceMetadata?.authorizationServers ?? [],
      bearer_methods_supported: ['header'],
      resource_name: surface.app.name,
    };
    const suffix = resourceUrl.pathname === '/' ? '' : resourceUrl.pathname;
    metadata = { url: `${resourceUrl.origin}${WELL_KNOWN}${suffix}`, body };
  }

  return {
    url: `http://${urlHost}:${port}${path}`,
    port,
    server: node,
    get sessions() {
      return sessions.size;
    },
    async close() {
      clearInterval(sweep);
      detachPublisher();
      await modern.close();
      await Promise.all([...sessions.entries()].map(([id, s]) => closeSession(id, s)));
      node.closeAllConnections();
      await new Promise<void>((resolve) => node.close(() => resolve()));
    },
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isListen(parsed: unknown): parsed is Record<string, unknown> {
  return isRecord(parsed) && parsed.method === 'subscriptions/listen';
}

function isInitialize(parsed: unknown): boolean {
  return Array.isArray(parsed) ? parsed.some((m) => isInitializeRequest(m)) : isInitializeRequest(parsed);
}

function sendJson(res: ServerResponse, status: number, body: JsonValue): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Streams a web Response (JSON or SSE) to a Node response, honouring backpressure and disconnects. */
async function writeResponse(res: ServerResponse, response: Response, signal: AbortSignal): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  if (response.body === null) {
    res.writeHead(response.status, headers);
    res.end();
    return;
  }
  if (!headers['content-type']?.startsWith('text/event-stream')) {
    // A plain body is read whole and sent in one write, headers and all, with its length.
    const body = Buffer.from(await response.arrayBuffer());
    headers['content-length'] = String(body.length);
    res.writeHead(response.status, headers);
    res.end(body);
    return;
  }
  res.writeHead(response.status, headers);
  const reader = response.body.getReader();
  const onAbort = () => void reader.cancel().catch(() => {});
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || signal.aborted) break;
      if (!res.write(value))
        await new Promise<void>((resolve) => {
          const resume = () => {
            res.off('drain', resume);
            signal.removeEventListener('abort', resume);
            resolve();
          };
          res.on('drain', resume);
          signal.addEventListener('abort', resume, { once: true });
        });
    }
  } catch {
    // The client went away mid-stream; nothing to tell it.
  } finally {
    signal.removeEventListener('abort', onAbort);
    res.end();
  }
}
