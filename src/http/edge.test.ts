/**
 * The HTTP edge on real sockets: the checks every route gets (Host/Origin, bearer authentication,
 * limits), the route table, and the one error writer.
 */
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { Authenticator, Principal } from '../core/access.js';
import { silentLogger } from '../core/log.js';
import { AuthThrottle, RateLimiter } from '../security/ratelimit.js';
import { type EdgeAccess, type RunningEdge, serveEdge } from './edge.js';
import { sendBody } from './respond.js';
import type { HttpRoute } from './route.js';

const alice: Principal = Object.freeze({ id: 'alice', roles: Object.freeze(['member']), via: 'api_key' });

/** Accepts the one token `good`, as alice. */
const authenticator: Authenticator = {
  authenticate: async (token) =>
    token === 'good' ? { ok: true, principal: alice } : { ok: false, reason: 'unknown_key' },
};

/** Answers with who the edge says is calling. */
const whoami: HttpRoute = {
  paths: ['/whoami'],
  access: 'authenticated',
  handle: async ({ res, principal }) =>
    sendBody(res, 200, 'application/json', JSON.stringify({ principal: principal?.id ?? null })),
};

const ping = (access: HttpRoute['access']): HttpRoute => ({
  paths: [`/${access}`],
  access,
  methods: ['GET', 'HEAD'],
  handle: async ({ res }) => sendBody(res, 200, 'text/plain', 'pong'),
});

const bearer = (extra: Partial<Extract<EdgeAccess, { kind: 'bearer' }>> = {}): EdgeAccess => ({
  kind: 'bearer',
  authenticator,
  protectedResource: { path: '/whoami', name: 'edge-test' },
  ...extra,
});

const edges: RunningEdge[] = [];
afterEach(async () => {
  for (const edge of edges.splice(0)) await edge.close();
});

async function edge(access: EdgeAccess, options: { host?: string; maxBodyBytes?: number } = {}) {
  const running = await serveEdge({
    port: 0,
    access,
    routes: [whoami, ping('public'), ping('host-checked')],
    logger: silentLogger,
    ...options,
  });
  edges.push(running);
  return running;
}

/** A request with headers fetch will not let a caller set (Host). */
function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const errorCode = (body: string) =>
  (JSON.parse(body) as { error: { data: { code: string } } }).error.data.code;

describe('the HTTP edge', () => {
  it('authenticates for routes that ask, and hands them the principal', async () => {
    const { origin } = await edge(bearer());
    const ok = await send(`${origin}/whoami`, { headers: { authorization: 'Bearer good' } });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ principal: 'alice' });

    const missing = await send(`${origin}/whoami`);
    expect(missing.status).toBe(401);
    expect(errorCode(missing.body)).toBe('unauthenticated');
    expect(missing.headers['www-authenticate']).toBe(
      `Bearer realm="coremcp", resource_metadata="${origin}/.well-known/oauth-protected-resource/whoami"`,
    );
    const invalid = await send(`${origin}/whoami`, { headers: { authorization: 'Bearer bad' } });
    expect(invalid.status).toBe(401);
    expect(invalid.headers['www-authenticate']).toMatch(/error="invalid_token"$/);
  });

  it('serves the RFC 9728 metadata its challenges point to', async () => {
    const { origin } = await edge(bearer());
    for (const path of [
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/whoami',
    ]) {
      const metadata = await send(`${origin}${path}`);
      expect(metadata.status).toBe(200);
      expect(JSON.parse(metadata.body)).toEqual({
        resource: `${origin}/whoami`,
        authorization_servers: [],
        bearer_methods_supported: ['header'],
        resource_name: 'edge-test',
      });
    }
  });

  it('answers 429 with Retry-After over the per-principal rate, and throttles failing addresses', async () => {
    const limited = await edge(bearer({ rateLimiter: new RateLimiter({ perSecond: 0.001, burst: 1 }) }));
    const call = () => send(`${limited.origin}/whoami`, { headers: { authorization: 'Bearer good' } });
    expect((await call()).status).toBe(200);
    const refused = await call();
    expect(refused.status).toBe(429);
    expect(errorCode(refused.body)).toBe('rate_limited');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    const guarded = await edge(
      bearer({ authThrottle: new AuthThrottle({ maxFailures: 2, windowSeconds: 60 }) }),
    );
    const guess = () => send(`${guarded.origin}/whoami`, { headers: { authorization: 'Bearer bad' } });
    expect((await guess()).status).toBe(401);
    expect((await guess()).status).toBe(401);
    const blocked = await send(`${guarded.origin}/whoami`, { headers: { authorization: 'Bearer good' } });
    expect(blocked.status).toBe(429);
  });

  it('checks Host and Origin unless a route is public', async () => {
    const { origin } = await edge(bearer());
    expect((await send(`${origin}/host-checked`, { headers: { host: 'evil.example' } })).status).toBe(403);
    expect(
      (await send(`${origin}/host-checked`, { headers: { origin: 'https://evil.example' } })).status,
    ).toBe(403);
    expect((await send(`${origin}/public`, { headers: { host: '10.1.2.3:8080' } })).status).toBe(200);
    expect((await send(`${origin}/host-checked`, { headers: { host: 'localhost' } })).status).toBe(200);
  });

  it('answers under the loopback address it is bound to, not only 127.0.0.1', async () => {
    // A page cannot rebind a name to an IP literal, so every loopback literal is a valid Host.
    const { origin } = await edge({ kind: 'anonymous', principal: alice }, { host: '127.0.0.2' });
    expect(origin).toMatch(/^http:\/\/127\.0\.0\.2:/);
    const answer = await send(`${origin}/whoami`);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ principal: 'alice' });
  });

  it('on an open edge checks every Host and gives routes no principal', async () => {
    const { origin } = await edge({ kind: 'open' });
    expect(JSON.parse((await send(`${origin}/whoami`)).body)).toEqual({ principal: null });
    expect((await send(`${origin}/public`, { headers: { host: 'evil.example' } })).status).toBe(403);
  });

  it('refuses to serve without authentication beyond loopback', async () => {
    await expect(edge({ kind: 'open' }, { host: '0.0.0.0' })).rejects.toThrow(/only loopback/);
    await expect(edge({ kind: 'anonymous', principal: alice }, { host: '0.0.0.0' })).rejects.toThrow(
      /only loopback/,
    );
  });

  it('writes every refusal as a JSON-RPC error body with the catalog status', async () => {
    const { origin } = await edge(bearer());
    const missing = await send(`${origin}/nowhere`);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toMatchObject({
      jsonrpc: '2.0',
      id: null,
      error: { code: -31002, data: { code: 'not_found' } },
    });
    const method = await send(`${origin}/public`, { method: 'POST' });
    expect(method.status).toBe(405);
    expect(method.headers.allow).toBe('GET, HEAD');
    const target = await send(`${origin}//[`);
    expect(target.status).toBe(400);
    expect(errorCode(target.body)).toBe('bad_request');
  });

  it('answers a body over the limit with 413 after reading it, so the client sees the answer', async () => {
    const upload: HttpRoute = {
      paths: ['/upload'],
      access: 'public',
      handle: async (exchange) =>
        sendBody(exchange.res, 200, 'text/plain', String((await exchange.readBody()).length)),
    };
    const running = await serveEdge({
      port: 0,
      access: { kind: 'open' },
      routes: [upload],
      maxBodyBytes: 1024,
      logger: silentLogger,
    });
    edges.push(running);
    expect((await send(`${running.origin}/upload`, { method: 'POST', body: 'x'.repeat(1024) })).body).toBe(
      '1024',
    );
    const large = await send(`${running.origin}/upload`, { method: 'POST', body: 'x'.repeat(200_000) });
    expect(large.status).toBe(413);
    expect(errorCode(large.body)).toBe('payload_too_large');
    expect(large.headers.connection).toBe('close');
  });

  it('refuses two routes on one path', async () => {
    await expect(
      serveEdge({ port: 0, access: { kind: 'open' }, routes: [whoami, whoami], logger: silentLogger }),
    ).rejects.toThrow(/two routes answer \/whoami/);
  });
});
