import { randomBytes } from 'node:crypto';
import {
  type AuthInfo,
  createMcpHandler,
  isInitializeRequest,
  isLegacyRequest,
  type LegacyHttpHandler,
  legacyStatelessFallback,
  type McpHandlerRequestOptions,
  type McpHttpHandler,
  type McpRequestContext,
  type Server,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
import type { Principal } from '../core/access.js';
import { AccessError, TransportError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { toWebRequest, writeWebResponse } from '../http/bridge.js';
import { HttpFailure } from '../http/respond.js';
import type { HttpExchange, HttpRoute } from '../http/route.js';
import { batchRefusal, findMessageProblem, invalidMessage } from './guard.js';
import { ListenStreams } from './listen.js';
import { META } from './meta.js';
import { PooledInstances, type PooledRequest } from './pooled.js';
import type { McpSurface } from './surface.js';

export interface McpRouteOptions {
  /** Path of the MCP endpoint (default /mcp). */
  path?: string | undefined;
  /** The edge's body limit: the SDK reads bodies under the same bound. */
  maxBodyBytes: number;
  /** Most concurrent 2025-era sessions (default 1,000). */
  maxSessions?: number | undefined;
  /** Most 2025-era sessions one principal holds; its least recently used makes room (default 32). */
  maxSessionsPerPrincipal?: number | undefined;
  /** A 2025-era session idle this long is closed (default 30 minutes). */
  sessionIdleMs?: number | undefined;
  /** Most open 2026-era `subscriptions/listen` streams per principal (default 16). */
  maxListenStreamsPerPrincipal?: number | undefined;
  /**
   * Serve well-formed 2026-07-28 `tools/call`, `tools/list`, `resources/list`, `resources/templates/list`
   * and `resources/read` requests through one long-lived SDK instance per principal (default true);
   * false builds an SDK instance for every request.
   */
  pooledInstances?: boolean | undefined;
  logger: Logger;
}

const AUTH_INFO_PRINCIPAL = 'coremcp/principal';

function principalOf(authInfo: AuthInfo | undefined): Principal {
  const principal = authInfo?.extra?.[AUTH_INFO_PRINCIPAL] as Principal | undefined;
  // The edge authenticates every request before the SDK sees it; reaching here without a principal
  // is a wiring bug, and must not become an anonymous call.
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
 * The MCP endpoint as a route on the HTTP edge, which has checked Host, Origin, credentials and rate
 * before `handle` runs. It dispatches by protocol era: 2026-07-28 requests go to the SDK's stateless
 * handler; 2025-era clients get sessions bound to the principal that opened them (so
 * `resources/subscribe` works), and session-less 2025 calls the SDK's stateless fallback.
 */
export class McpHttpRoute implements HttpRoute {
  readonly paths: readonly string[];
  readonly access = 'authenticated';
  readonly #surface: McpSurface;
  readonly #maxBody: number;
  readonly #modern: McpHttpHandler;
  readonly #legacyStateless: LegacyHttpHandler;
  readonly #sessions: LegacySessionPool;
  readonly #listens: ListenStreams;
  readonly #pooled: PooledInstances | undefined;
  /** Open listen streams per principal, for the fair share. */
  readonly #streams = new Map<string, number>();
  readonly #maxStreams: number;

  constructor(surface: McpSurface, options: McpRouteOptions) {
    this.paths = [options.path ?? '/mcp'];
    this.#surface = surface;
    this.#maxBody = options.maxBodyBytes;
    const log = options.logger;
    const onerror = (error: Error) => log.debug({ err: error }, 'MCP transport reported an error');
    const factory = (ctx: McpRequestContext) => surface.createServer(principalOf(ctx.authInfo), 'request');
    this.#modern = createMcpHandler(factory, {
      legacy: 'reject',
      onerror,
      maxRequestBodySize: this.#maxBody,
    });
    this.#legacyStateless = legacyStatelessFallback(factory, onerror, { maxRequestBodySize: this.#maxBody });
    this.#sessions = new LegacySessionPool({
      createServer: (principal) => surface.createServer(principal, 'session'),
      maxSessions: options.maxSessions,
      maxPerPrincipal: options.maxSessionsPerPrincipal,
      idleMs: options.sessionIdleMs,
    });
    this.#maxStreams = options.maxListenStreamsPerPrincipal ?? 16;
    this.#listens = new ListenStreams(surface, { serverInfo: surface.serverInfo });
    this.#pooled =
      options.pooledInstances === false
        ? undefined
        : new PooledInstances({
            createServer: (principal) => surface.createServer(principal, 'pooled'),
            declaresParamHeaders: (tool) => surface.declaresParamHeaders(tool),
            onerror,
          });
  }

  /** Open 2025-era sessions. */
  get sessions(): number {
    return this.#sessions.size;
  }

  async handle(exchange: HttpExchange): Promise<void> {
    const { req, principal } = exchange;
    // An open edge has no principals; the MCP endpoint is never served without one.
    if (!principal) throw new AccessError('unauthenticated');
    const method = (req.method ?? 'GET').toUpperCase();
    let text: string | undefined;
    let parsed: unknown;
    if (method === 'POST') {
      text = await exchange.readBody();
      try {
        parsed = text.length === 0 ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    // Batches left MCP in 2025-06-18: an array (even an empty one) is refused whole, and nothing runs.
    if (Array.isArray(parsed)) throw new HttpFailure(batchRefusal());
    const problem = parsed === undefined ? undefined : findMessageProblem(parsed);
    if (problem) {
      const id = isRecord(parsed) ? parsed.id : null;
      throw new HttpFailure(invalidMessage(problem), {
        id: typeof id === 'string' || typeof id === 'number' ? id : null,
      });
    }
    const sessionId = req.headers['mcp-session-id'];
    // A well-formed 2026-07-28 call: a long-lived instance answers it, with no web Request built.
    if (typeof sessionId !== 'string' && method === 'POST' && this.#pooled?.eligible(parsed, req.headers))
      return this.#answerPooled(exchange, parsed, principal);
    // A parsed body travels as `parsedBody`; the raw text only when it did not parse, so the SDK
    // answers with its own parse error.
    const body = parsed === undefined && text !== undefined && text.length > 0 ? text : undefined;
    const request = toWebRequest(req, exchange.url, method, body, exchange.signal);
    const options: McpHandlerRequestOptions = { authInfo: authInfoFor(principal), parsedBody: parsed };

    const legacy =
      typeof sessionId === 'string' ||
      (method === 'POST' &&
        parsed !== undefined &&
        (await isLegacyRequest(request, parsed, { maxRequestBodySize: this.#maxBody })));
    let response: Response;
    if (!legacy && isListen(parsed)) {
      return this.#listen(exchange, parsed, principal);
    } else if (!legacy) {
      const mismatch = this.#paramHeaderMismatch(parsed, req.headers);
      if (mismatch) {
        const id =
          isRecord(parsed) && (typeof parsed.id === 'string' || typeof parsed.id === 'number')
            ? parsed.id
            : null;
        exchange.res.writeHead(400, { 'content-type': 'application/json' });
        exchange.res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id,
            error: { code: -32020, message: `Bad Request: ${mismatch}` },
          }),
        );
        return;
      }
      response = await this.#modern.fetch(request, options);
    } else if (typeof sessionId === 'string') {
      response = await this.#sessions.handle(sessionId, principal, request, options);
    } else if (isInitialize(parsed)) {
      response = await this.#sessions.open(principal, request, options);
    } else {
      response = await this.#legacyStateless(request, options);
    }
    // A 2025 session's GET is its standing event stream: it stays open, like a listen stream.
    if (legacy && method === 'GET') exchange.markLongLived();
    return writeWebResponse(exchange.res, response, exchange.signal);
  }

  /**
   * A 2026-era `subscriptions/listen`: checked like any modern request (headers, envelope), then
   * served by coremcp's own streams, which carry task notifications and know the principal. The
   * open stream counts as a subscription.
   */
  async #listen(
    exchange: HttpExchange,
    parsed: Record<string, unknown>,
    principal: Principal,
  ): Promise<void> {
    const id = typeof parsed.id === 'string' || typeof parsed.id === 'number' ? parsed.id : null;
    const params = isRecord(parsed.params) ? parsed.params : {};
    const problem = modernListenProblem(exchange.req.headers, params);
    if (problem || id === null) {
      const body = {
        jsonrpc: '2.0',
        id,
        error: problem?.error ?? { code: -32600, message: 'Invalid Request: a listen request needs an id' },
      };
      exchange.res.writeHead(problem?.status ?? 400, { 'content-type': 'application/json' });
      exchange.res.end(JSON.stringify(body));
      return;
    }
    this.#refuseUnfollowable(parsed, principal);
    const releaseStream = this.#takeStream(principal);
    let answer: Awaited<ReturnType<ListenStreams['serve']>>;
    try {
      answer = await this.#listens.serve({ id, params }, principal, exchange.signal);
    } catch (error) {
      releaseStream();
      throw error;
    }
    if (!(answer instanceof Response)) {
      releaseStream();
      exchange.res.writeHead(answer.status, { 'content-type': 'application/json' });
      exchange.res.end(JSON.stringify(answer.error));
      return;
    }
    exchange.markLongLived();
    const release = this.#surface.openSubscriptionStream();
    try {
      await writeWebResponse(exchange.res, answer, exchange.signal);
    } finally {
      release();
      releaseStream();
    }
  }

  /** A request a long-lived instance answers: the SDK's own JSON-RPC response, written as it would. */
  async #answerPooled(exchange: HttpExchange, request: PooledRequest, principal: Principal): Promise<void> {
    // The trace context of the HTTP header travels in `_meta`, under a key only this endpoint sets.
    const traceparent = exchange.req.headers.traceparent;
    if (typeof traceparent === 'string') request.params._meta[META.httpTraceparent] = traceparent;
    else delete request.params._meta[META.httpTraceparent];
    const answer = await this.#pooled!.call(principal, request, exchange.cancellation);
    // Cancelled: the client is gone, and the SDK's path answers nothing either.
    if (answer === undefined) {
      if (!exchange.res.headersSent) exchange.res.writeHead(499).end();
      return;
    }
    exchange.res.writeHead(answer.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(answer.body),
    });
    exchange.res.end(answer.body);
  }

  /** Takes one of the principal's listen-stream slots, or refuses with `too_many_streams`. */
  #takeStream(principal: Principal): () => void {
    const held = this.#streams.get(principal.id) ?? 0;
    if (held >= this.#maxStreams) {
      throw new AccessError(
        'too_many_streams',
        `At most ${this.#maxStreams} open listen streams per principal`,
        {
          details: { limit: this.#maxStreams },
        },
      );
    }
    this.#streams.set(principal.id, held + 1);
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      const now = (this.#streams.get(principal.id) ?? 1) - 1;
      if (now === 0) this.#streams.delete(principal.id);
      else this.#streams.set(principal.id, now);
    };
  }

  /** Stops publishing to listen streams and closes the SDK handler and every session. */
  async close(): Promise<void> {
    this.#listens.close();
    await this.#pooled?.close();
    await this.#modern.close();
    await this.#sessions.close();
  }

  /** A tools/call whose `Mcp-Param-*` headers disagree with its arguments: why, or undefined. */
  #paramHeaderMismatch(
    parsed: unknown,
    headers: Record<string, string | string[] | undefined>,
  ): string | undefined {
    if (!isRecord(parsed) || parsed.method !== 'tools/call' || !isRecord(parsed.params)) return undefined;
    return this.#surface.paramHeaderMismatch(parsed.params.name, parsed.params.arguments ?? {}, (name) => {
      const value = headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    });
  }

  /** 2026-era `subscriptions/listen`: refuse documents the principal may not follow before the SDK acks. */
  #refuseUnfollowable(parsed: unknown, principal: Principal): void {
    if (!isListen(parsed)) return;
    const params = isRecord(parsed.params) ? parsed.params : {};
    const notifications = isRecord(params.notifications) ? params.notifications : {};
    const uris = Array.isArray(notifications.resourceSubscriptions)
      ? notifications.resourceSubscriptions
      : [];
    for (const uri of uris) {
      if (typeof uri !== 'string' || !this.#surface.canFollow(principal, uri)) {
        const shown = String(uri).slice(0, 200);
        throw new AccessError('forbidden', `Not allowed to follow ${shown}`, { details: { uri: shown } });
      }
    }
  }
}

interface LegacySession {
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  principal: Principal;
  lastSeen: number;
}

export interface LegacySessionPoolOptions {
  /** The server instance a new session talks to. */
  createServer: (principal: Principal) => Server;
  /** Most concurrent sessions (default 1,000). */
  maxSessions?: number | undefined;
  /**
   * Most sessions one principal holds (default 32): opening one more closes that principal's least
   * recently used, so a flood from one principal only ever displaces its own sessions.
   */
  maxPerPrincipal?: number | undefined;
  /** A session idle this long is closed (default 30 minutes). */
  idleMs?: number | undefined;
}

/** When the pool is full, the least recently seen session is closed for a new one if idle this long. */
const EVICTABLE_AFTER_MS = 60_000;

/**
 * 2025-11-25 Streamable HTTP sessions. Each is bound to the principal that opened it: to anyone
 * else it does not exist. The pool is bounded (when full, an idle session makes room, or the new
 * one is refused with `too_many_sessions`), and idle sessions are swept.
 */
export class LegacySessionPool {
  readonly #sessions = new Map<string, LegacySession>();
  readonly #createServer: (principal: Principal) => Server;
  readonly #maxSessions: number;
  readonly #maxPerPrincipal: number;
  readonly #sweep: NodeJS.Timeout;

  constructor(options: LegacySessionPoolOptions) {
    this.#createServer = options.createServer;
    this.#maxSessions = options.maxSessions ?? 1000;
    this.#maxPerPrincipal = options.maxPerPrincipal ?? 32;
    const idleMs = options.idleMs ?? 30 * 60 * 1000;
    this.#sweep = setInterval(
      () => {
        const cutoff = Date.now() - idleMs;
        for (const [id, session] of this.#sessions)
          if (session.lastSeen < cutoff) void this.#close(id, session);
      },
      Math.min(idleMs, 60_000),
    );
    this.#sweep.unref();
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Answers a request in session `id`, if `principal` opened it; otherwise `session_not_found`. */
  async handle(
    id: string,
    principal: Principal,
    request: Request,
    options: McpHandlerRequestOptions,
  ): Promise<Response> {
    const session = this.#sessions.get(id);
    if (!session || session.principal.id !== principal.id) throw new TransportError('session_not_found');
    session.lastSeen = Date.now();
    return session.transport.handleRequest(request, options);
  }

  /** Opens a session for `principal` with its `initialize` request, making room or refusing when full. */
  async open(principal: Principal, request: Request, options: McpHandlerRequestOptions): Promise<Response> {
    await this.#makeRoomFor(principal);
    if (this.#sessions.size >= this.#maxSessions) await this.#evictIdle();
    const server = this.#createServer(principal);
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomBytes(24).toString('base64url'),
      onsessioninitialized: (id) => {
        this.#sessions.set(id, { transport, server, principal, lastSeen: Date.now() });
      },
      onsessionclosed: (id) => {
        this.#sessions.delete(id);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) this.#sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    const response = await transport.handleRequest(request, options);
    if (!transport.sessionId) await server.close().catch(() => {});
    return response;
  }

  /** Stops the sweep and closes every session. */
  async close(): Promise<void> {
    clearInterval(this.#sweep);
    await Promise.all([...this.#sessions].map(([id, session]) => this.#close(id, session)));
  }

  /** At the principal's share, its own least recently used session goes. */
  async #makeRoomFor(principal: Principal): Promise<void> {
    let held = 0;
    let oldest: [string, LegacySession] | undefined;
    for (const entry of this.#sessions) {
      if (entry[1].principal.id !== principal.id) continue;
      held++;
      if (!oldest || entry[1].lastSeen < oldest[1].lastSeen) oldest = entry;
    }
    if (held >= this.#maxPerPrincipal && oldest) await this.#close(oldest[0], oldest[1]);
  }

  async #evictIdle(): Promise<void> {
    let oldest: [string, LegacySession] | undefined;
    for (const entry of this.#sessions) if (!oldest || entry[1].lastSeen < oldest[1].lastSeen) oldest = entry;
    if (!oldest || oldest[1].lastSeen >= Date.now() - EVICTABLE_AFTER_MS)
      throw new AccessError('too_many_sessions');
    await this.#close(oldest[0], oldest[1]);
  }

  async #close(id: string, session: LegacySession): Promise<void> {
    this.#sessions.delete(id);
    await session.transport.close().catch(() => {});
    await session.server.close().catch(() => {});
  }
}

const ENVELOPE_KEYS = [
  'io.modelcontextprotocol/protocolVersion',
  'io.modelcontextprotocol/clientInfo',
  'io.modelcontextprotocol/clientCapabilities',
];

/**
 * What the SDK would refuse in a modern listen request before serving it: the standard headers
 * (SEP-2243) and the per-request `_meta` envelope.
 */
function modernListenProblem(
  headers: Record<string, string | string[] | undefined>,
  params: Record<string, unknown>,
): { status: number; error: { code: number; message: string; data?: unknown } } | undefined {
  const method = headers['mcp-method'];
  if (method !== 'subscriptions/listen') {
    return {
      status: 400,
      error: {
        code: -32020,
        message: `Bad Request: the Mcp-Method header must name subscriptions/listen, not ${JSON.stringify(method ?? null)}`,
      },
    };
  }
  const meta = isRecord(params._meta) ? params._meta : {};
  const version = meta['io.modelcontextprotocol/protocolVersion'];
  if (headers['mcp-protocol-version'] !== version) {
    return {
      status: 400,
      error: { code: -32020, message: 'Bad Request: the MCP-Protocol-Version header and the body disagree' },
    };
  }
  if (version !== '2026-07-28') {
    return {
      status: 400,
      error: {
        code: -32022,
        message: 'Unsupported protocol version',
        data: { supported: ['2026-07-28'], requested: version },
      },
    };
  }
  const missing = ENVELOPE_KEYS.filter((key) => meta[key] === undefined);
  if (missing.length > 0) {
    return {
      status: 400,
      error: { code: -32602, message: `Invalid _meta envelope: missing ${missing.join(', ')}` },
    };
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isListen(parsed: unknown): parsed is Record<string, unknown> {
  return isRecord(parsed) && parsed.method === 'subscriptions/listen';
}

function isInitialize(parsed: unknown): boolean {
  return isInitializeRequest(parsed);
}
