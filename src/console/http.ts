import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AccessError, CommandError, TransportError } from '../core/errors.js';
import type { JsonObject } from '../core/json.js';
import { HttpFailure, sendBody } from '../http/respond.js';
import type { HttpExchange } from '../http/route.js';
import { type RateLimiter, rateLimited } from '../security/ratelimit.js';
import type { ConsoleSession, ConsoleSessions } from './sessions.js';

/** Everything of the console lives under this path: the page, its assets, its API. */
export const CONSOLE_PATH = '/console';
export const SESSION_COOKIE = 'coremcp_console';
export const CSRF_HEADER = 'x-csrf-token';

/**
 * The page may load scripts, styles, images and connections from this origin only, nothing inline,
 * and assign no HTML from strings (Trusted Types with no policy): a value can only ever become text.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** Sent with every console answer (the error writer's JSON bodies aside). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

const NO_STORE = { 'cache-control': 'no-store' };

/** A JSON answer, never cached. */
export function sendJson(
  exchange: HttpExchange,
  body: unknown,
  options: { status?: number; headers?: Readonly<Record<string, string>> } = {},
): void {
  sendBody(exchange.res, options.status ?? 200, 'application/json; charset=utf-8', JSON.stringify(body), {
    ...SECURITY_HEADERS,
    ...NO_STORE,
    ...options.headers,
  });
}

/** Whether the request reached this server over TLS, directly or through a proxy that says so. */
function isHttps(req: IncomingMessage): boolean {
  return (
    (req.socket as { encrypted?: boolean }).encrypted === true || req.headers['x-forwarded-proto'] === 'https'
  );
}

/** The value of one cookie in the request's `Cookie` header. */
export function readCookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== 'string' || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim();
    return /^[A-Za-z0-9_-]{1,128}$/.test(value) ? value : undefined;
  }
  return undefined;
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface ConsoleGateOptions {
  sessions: ConsoleSessions;
  /** Whether the API key with this SHA-256 still exists unrevoked; asked on every request of its sessions. */
  keyIsActive?: ((hash: string) => Promise<boolean>) | undefined;
  /** The same per-principal limit as MCP calls. */
  rateLimiter?: RateLimiter | undefined;
  /** Mark the cookie `Secure` always (true), never (false), or when the request came over https (default). */
  secureCookies?: boolean | undefined;
}

/**
 * What every console API request passes: its session, found by cookie and still valid (not expired,
 * its API key not revoked), its principal within the rate limit; and for requests that change
 * anything, a same-origin request carrying the session's CSRF token.
 */
export class ConsoleGate {
  readonly sessions: ConsoleSessions;
  readonly #keyIsActive: ((hash: string) => Promise<boolean>) | undefined;
  readonly #rateLimiter: RateLimiter | undefined;
  readonly #secure: boolean | undefined;

  constructor(options: ConsoleGateOptions) {
    this.sessions = options.sessions;
    this.#keyIsActive = options.keyIsActive;
    this.#rateLimiter = options.rateLimiter;
    this.#secure = options.secureCookies;
  }

  /** The request's session, or 401 `unauthenticated` (clearing a stale cookie). */
  async session(exchange: HttpExchange): Promise<ConsoleSession> {
    const token = readCookie(exchange.req, SESSION_COOKIE);
    const session = token === undefined ? undefined : this.sessions.touch(token);
    if (!session) {
      throw new HttpFailure(new AccessError('unauthenticated', 'Sign in to the console'), {
        headers: token === undefined ? {} : { 'set-cookie': this.clearCookie(exchange) },
      });
    }
    if (session.credential.kind === 'api_key' && this.#keyIsActive) {
      if (!(await this.#keyIsActive(session.credential.hash))) {
        this.sessions.end(session, 'revoked');
        throw new HttpFailure(
          new AccessError('unauthenticated', 'The API key of this session was revoked; sign in again'),
          { headers: { 'set-cookie': this.clearCookie(exchange) } },
        );
      }
    }
    const verdict = this.#rateLimiter?.take(session.principal.id);
    if (verdict && !verdict.ok) {
      throw new HttpFailure(rateLimited(verdict.retryAfterSeconds), {
        headers: { 'retry-after': String(verdict.retryAfterSeconds) },
      });
    }
    return session;
  }

  /** A request that changes something: same origin, then its session, then the session's CSRF token. */
  async mutation(exchange: HttpExchange): Promise<ConsoleSession> {
    this.checkSameOrigin(exchange.req);
    const session = await this.session(exchange);
    const sent = exchange.req.headers[CSRF_HEADER];
    if (typeof sent !== 'string' || !sameString(sent, session.csrfToken))
      throw new AccessError('forbidden', 'The request lacks the CSRF token of this session');
    return session;
  }

  /**
   * Refuses a request a browser marks as coming from another site, or whose `Origin` is not this
   * server's own (the Host it was sent to). Requests without either header come from no web page.
   */
  checkSameOrigin(req: IncomingMessage): void {
    const site = req.headers['sec-fetch-site'];
    if (typeof site === 'string' && site !== 'same-origin' && site !== 'none')
      throw new AccessError('forbidden', 'Cross-site requests are refused');
    const origin = req.headers.origin;
    if (origin === undefined) return;
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host === undefined || host !== req.headers.host)
      throw new AccessError('forbidden', 'Requests from another origin are refused');
  }

  /** The `Set-Cookie` value that hands the browser its session. */
  sessionCookie(exchange: HttpExchange, token: string, expiresAt: number): string {
    const maxAge = Math.max(0, Math.floor((expiresAt - Date.now()) / 1000));
    return `${SESSION_COOKIE}=${token}; Path=${CONSOLE_PATH}; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${this.#secureFlag(exchange)}`;
  }

  clearCookie(exchange: HttpExchange): string {
    return `${SESSION_COOKIE}=; Path=${CONSOLE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict${this.#secureFlag(exchange)}`;
  }

  #secureFlag(exchange: HttpExchange): string {
    return (this.#secure ?? isHttps(exchange.req)) ? '; Secure' : '';
  }
}

/** The body of a POST as a JSON object; anything but `application/json` is refused. */
export async function readJsonObject(exchange: HttpExchange): Promise<JsonObject> {
  const type = exchange.req.headers['content-type'];
  if (typeof type !== 'string' || !/^application\/json\s*(;|$)/i.test(type))
    throw new TransportError('bad_request', 'The body must be application/json');
  const text = await exchange.readBody();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new TransportError('bad_request', 'The body is not valid JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new TransportError('bad_request', 'The body must be a JSON object');
  return body as JsonObject;
}

/** A query parameter as a string within `maxLength`, or undefined when absent or empty. */
export function stringParam(url: URL, name: string, maxLength = 200): string | undefined {
  const value = url.searchParams.get(name);
  if (value === null || value === '') return undefined;
  if (value.length > maxLength)
    throw new CommandError('invalid_input', `${name} is limited to ${maxLength} characters`, {
      details: { param: name },
    });
  return value;
}

/** A query parameter as an integer in [min, max], or undefined when absent. */
export function integerParam(
  url: URL,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const value = stringParam(url, name, 20);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw new CommandError('invalid_input', `${name} must be an integer from ${min} to ${max}`, {
      details: { param: name },
    });
  return n;
}
