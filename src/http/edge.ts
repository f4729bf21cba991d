import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Principal } from '../core/access.js';
import { isCoreMcpError, StateError, TransportError } from '../core/errors.js';
import { timeOrderedId } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { BearerAuth, type BearerAuthOptions } from './auth.js';
import { HostOriginCheck, type HostOriginOptions } from './host-origin.js';
import { isLoopback, type Listening, LOOPBACK_HOSTNAMES, listen } from './listen.js';
import { type ProtectedResourceOptions, protectedResource } from './protected-resource.js';
import { HttpFailure, sendError } from './respond.js';
import { Cancellation, HttpExchange, type HttpRoute } from './route.js';

/** How an edge learns who is calling, for routes with `access: 'authenticated'`. */
export type EdgeAccess =
  /** Bearer credentials, throttled and rate-limited; 401s point to the RFC 9728 metadata the edge serves. */
  | ({ kind: 'bearer'; protectedResource: ProtectedResourceOptions } & BearerAuthOptions)
  /** Every caller acts as this principal. Loopback only: for local tooling, never for shared state. */
  | { kind: 'anonymous'; principal: Principal }
  /** No principals at all. Loopback only, and every request's Host is checked: for scrapers and probes. */
  | { kind: 'open' };

export interface EdgeOptions extends Omit<HostOriginOptions, 'bindHost'> {
  /** Interface to bind (default 127.0.0.1). Only bearer access may bind beyond loopback. */
  host?: string | undefined;
  /** Port (default 3000; 0 picks a free one). */
  port?: number | undefined;
  access: EdgeAccess;
  routes: readonly HttpRoute[];
  /** Largest request body a route may read, in bytes (default 1 MiB). */
  maxBodyBytes?: number | undefined;
  /** False for an auxiliary listener: it does not keep the process alive on its own (default true). */
  keepsProcessAlive?: boolean | undefined;
  logger: Logger;
}

export interface RunningEdge {
  /** e.g. http://127.0.0.1:3000 */
  readonly origin: string;
  readonly port: number;
  readonly server: Server;
  /**
   * A graceful stop: no new connections; new requests on open ones get 503 `shutting_down` with
   * `Retry-After`; event streams end now; requests in flight may finish, at most `deadlineMs`, after
   * which they are aborted. True when every request finished in time.
   */
  drain(deadlineMs: number): Promise<boolean>;
  /** Drops open connections and stops listening. Routes with state of their own close separately. */
  close(): Promise<void>;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/**
 * Serves routes over HTTP. Every request passes the same checks, in this order, before its route
 * runs: a readable target; on an open edge, Host and Origin; a route for the path (else 404) and the
 * method (else 405); Host and Origin unless the route is `public`; for `authenticated` routes, the
 * caller's identity and rate. Every refusal and failure is answered by the one error writer.
 */
export async function serveEdge(options: EdgeOptions): Promise<RunningEdge> {
  const host = options.host ?? '127.0.0.1';
  if (options.access.kind !== 'bearer' && !isLoopback(host)) {
    throw new TypeError(
      `refusing to serve without authentication on ${host}: only loopback addresses may run without it`,
    );
  }
  const listening = await listen(host, options.port ?? 3000);
  let edge: HttpEdge;
  try {
    edge = new HttpEdge(options, host, listening);
  } catch (error) {
    await listening.close();
    throw error;
  }
  listening.server.on('request', edge.listener);
  if (options.keepsProcessAlive === false) listening.server.unref();
  return {
    origin: listening.origin,
    port: listening.port,
    server: listening.server,
    drain: (deadlineMs) => edge.drain(listening.server, deadlineMs),
    close: listening.close,
  };
}

/** One request being answered. */
interface Flight {
  cancellation: Cancellation;
  longLived: boolean;
}

class HttpEdge {
  readonly #routes = new Map<string, HttpRoute>();
  readonly #hostOrigin: HostOriginCheck;
  readonly #authenticate: ((req: IncomingMessage) => Promise<Principal>) | undefined;
  readonly #open: boolean;
  readonly #maxBody: number;
  readonly #log: Logger;
  readonly #flights = new Set<Flight>();
  #draining = false;
  #settled: (() => void) | undefined;

  constructor(options: EdgeOptions, host: string, listening: Listening) {
    this.#log = options.logger;
    this.#maxBody = options.maxBodyBytes ?? DEFAULT_BODY_LIMIT;
    this.#hostOrigin = new HostOriginCheck({
      bindHost: host,
      allowedHosts: options.allowedHosts,
      allowedOrigins: options.allowedOrigins,
    });
    const { access } = options;
    this.#open = access.kind === 'open';
    const routes = [...options.routes];
    if (access.kind === 'bearer') {
      const resource = protectedResource(access.protectedResource, listening.origin);
      routes.push(resource.route);
      const bearer = new BearerAuth(access, resource.metadataUrl, this.#log);
      this.#authenticate = (req) => bearer.authenticate(req);
    } else if (access.kind === 'anonymous') {
      const { principal } = access;
      this.#authenticate = () => Promise.resolve(principal);
    }
    for (const route of routes) {
      for (const path of route.paths) {
        if (this.#routes.has(path)) throw new TypeError(`two routes answer ${path}`);
        this.#routes.set(path, route);
      }
    }
  }

  readonly listener = (req: IncomingMessage, res: ServerResponse): void => {
    const flight: Flight = { cancellation: new Cancellation(), longLived: false };
    let finished = false;
    res.on('close', () => {
      if (!finished) flight.cancellation.cancel();
    });
    this.#flights.add(flight);
    void this.#serve(req, res, flight).finally(() => {
      finished = true;
      this.#flights.delete(flight);
      if (this.#settled && this.#pending() === 0) this.#settled();
    });
  };

  /** Requests in flight that a drain waits for (event streams are ended, not waited for). */
  #pending(): number {
    let count = 0;
    for (const flight of this.#flights) if (!flight.longLived) count++;
    return count;
  }

  async drain(server: Server, deadlineMs: number): Promise<boolean> {
    this.#draining = true;
    server.close();
    for (const flight of this.#flights) if (flight.longLived) flight.cancellation.cancel();
    let finished = this.#pending() === 0;
    if (!finished) {
      let timer: NodeJS.Timeout | undefined;
      finished = await Promise.race([
        new Promise<boolean>((resolve) => {
          this.#settled = () => resolve(true);
        }),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      this.#settled = undefined;
    }
    // Past the deadline, what still runs is cancelled (a handler's signal aborts; nothing commits).
    for (const flight of this.#flights) flight.cancellation.cancel();
    server.closeIdleConnections();
    return finished;
  }

  async #serve(req: IncomingMessage, res: ServerResponse, flight: Flight): Promise<void> {
    try {
      if (this.#draining) {
        throw new HttpFailure(new TransportError('shutting_down'), {
          headers: { 'retry-after': '1', connection: 'close' },
        });
      }
      const url = requestUrl(req);
      if (this.#open) this.#hostOrigin.check(req);
      const route = this.#routes.get(url.pathname);
      if (!route) throw new StateError('not_found');
      if (route.methods && !route.methods.includes(req.method ?? 'GET')) {
        // 405 is HTTP's answer to a method a path does not serve; the catalog has no code of its own for it.
        throw new HttpFailure(new TransportError('bad_request', 'Method not allowed'), {
          status: 405,
          headers: { allow: route.methods.join(', ') },
        });
      }
      if (!this.#open && route.access !== 'public') this.#hostOrigin.check(req);
      const principal =
        route.access === 'authenticated' && this.#authenticate ? await this.#authenticate(req) : undefined;
      const exchange = new HttpExchange(req, res, url, principal, flight.cancellation, this.#maxBody, () => {
        flight.longLived = true;
        if (this.#draining) flight.cancellation.cancel();
      });
      await route.handle(exchange);
    } catch (error) {
      const requestId = timeOrderedId();
      const cause = error instanceof HttpFailure ? error.error : error;
      if (!isCoreMcpError(cause) || !cause.spec.expose)
        this.#log.error({ err: error, requestId }, 'HTTP request failed');
      sendError(res, error, requestId);
    }
  }
}

/** The request's URL. Its base is `localhost` unless the Host header is a bare loopback name. */
function requestUrl(req: IncomingMessage): URL {
  const host = req.headers.host;
  try {
    return new URL(
      req.url ?? '/',
      `http://${host !== undefined && LOOPBACK_HOSTNAMES.includes(host) ? host : 'localhost'}`,
    );
  } catch {
    throw new TransportError('bad_request', 'Malformed request target');
  }
}
