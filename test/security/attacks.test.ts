/**
 * The attack table: each row is one attack on a real server process (HTTP, real SQLite file, JWTs
 * checked against a real JWKS endpoint), asserting the exact outcome, that the state did not move, and
 * what the audit trail holds afterwards.
 */

import { writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AuditRecord, SqliteStore } from 'coremcp';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type ServerProcess, startServerProcess, stdioClient } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const APP = fileURLToPath(new URL('../fixtures/attack-app.ts', import.meta.url));
const ISSUER = 'https://issuer.test';
const AUDIENCE = 'https://board.example.test/mcp';

const tmp = tempDir();
let server: ServerProcess;
let jwks: Server;
type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let signingKey: PrivateKey;
let foreignKey: PrivateKey;
const keys: Record<'admin' | 'member' | 'viewer' | 'revoked' | 'burst', string> = {
  admin: '',
  member: '',
  viewer: '',
  revoked: '',
  burst: '',
};

// --- plumbing ----------------------------------------------------------------------------------------

const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'attacker', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

function callBody(tool: string, args: unknown): string {
  return JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: tool, arguments: args, _meta: ENVELOPE },
  });
}

interface Outcome {
  status: number;
  /** The typed error code: of the JSON-RPC error, or of a tool result with isError. */
  code: string | undefined;
  headers: Headers;
  text: string;
}

async function send(
  body: string,
  options: { token?: string | null; tool?: string; headers?: Record<string, string> } = {},
): Promise<Outcome> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2026-07-28',
    'mcp-method': 'tools/call',
    'mcp-name': options.tool ?? 'task.list',
    ...options.headers,
  };
  if (options.token !== null) headers.authorization = `Bearer ${options.token ?? keys.admin}`;
  const response = await fetch(server.url, { method: 'POST', headers, body });
  const text = await response.text();
  return { status: response.status, code: codeIn(text), headers: response.headers, text };
}

function codeIn(text: string): string | undefined {
  try {
    const json = JSON.parse(text) as {
      error?: { data?: { code?: string } };
      result?: { isError?: boolean; structuredContent?: { error?: { code?: string } } };
    };
    if (json.error) return json.error.data?.code ?? 'protocol_error';
    if (json.result?.isError) return json.result.structuredContent?.error?.code;
    return undefined;
  } catch {
    return undefined;
  }
}

const call = (tool: string, args: unknown, token?: string | null) =>
  send(callBody(tool, args), { tool, ...(token === undefined ? {} : { token }) });

async function readStore<T>(work: (store: SqliteStore) => Promise<T>): Promise<T> {
  const store = new SqliteStore({ path: join(tmp.dir, 'coremcp.db') });
  await store.open();
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

async function snapshot(): Promise<{ board: number; labels: number; auditSeq: number }> {
  return readStore(async (store) => {
    const docs = await store.listDocuments();
    const revision = (doc: string) => docs.find((d) => d.doc === doc)?.revision ?? -1;
    const audit = await store.readAudit({});
    return { board: revision('board'), labels: revision('labels'), auditSeq: audit.at(-1)?.seq ?? 0 };
  });
}

async function auditAfter(seq: number): Promise<AuditRecord[]> {
  return readStore((store) => store.readAudit({ afterSeq: seq }));
}

async function token(
  claims: Record<string, unknown>,
  options: {
    key?: PrivateKey;
    alg?: string;
    expiresIn?: string | number;
    audience?: string;
    issuer?: string;
  } = {},
): Promise<string> {
  const jwt = new SignJWT({ roles: ['member'], ...claims })
    .setProtectedHeader({ alg: options.alg ?? 'ES256', kid: 'k1' })
    .setSubject((claims.sub as string | undefined) ?? 'agent-7')
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt();
  jwt.setExpirationTime(options.expiresIn ?? '5m');
  return jwt.sign(options.key ?? signingKey);
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

// --- set-up --------------------------------------------------------------------------------------------

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  signingKey = pair.privateKey;
  foreignKey = (await generateKeyPair('ES256')).privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  jwks = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  const config = join(tmp.dir, 'coremcp.config.json');
  writeFileSync(
    config,
    JSON.stringify({
      auth: {
        jwt: {
          issuer: ISSUER,
          audience: AUDIENCE,
          jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`,
        },
      },
      limits: { rate: { perSecond: 20, burst: 200 }, authFailures: { maxFailures: 10_000 } },
    }),
  );
  for (const role of ['member', 'viewer', 'revoked', 'burst'] as const) {
    const created = await runCli([
      'keys',
      'create',
      '--name',
      role,
      '--role',
      role === 'viewer' ? 'viewer' : 'member',
      '--data-dir',
      tmp.dir,
    ]);
    keys[role] = created.stdout.trim();
  }
  await runCli(['keys', 'revoke', 'revoked', '--data-dir', tmp.dir]);
  const created = await runCli(['keys', 'create', '--name', 'ops', '--role', 'admin', '--data-dir', tmp.dir]);
  keys.admin = created.stdout.trim();
  server = await startServerProcess([APP, '--data-dir', tmp.dir, '--config', config]);
  // Something to attack: one task on the board.
  expect((await call('task.add', { title: 'ship it' })).code).toBeUndefined();
});

afterAll(async () => {
  await server?.stop();
  await new Promise((resolve) => jwks?.close(resolve));
  tmp.remove();
});

// --- the table ----------------------------------------------------------------------------------------

/** What the audit trail must hold after an attack. */
type AuditExpectation =
  /** Refused before anyone was authenticated: nothing is written (an attacker cannot fill the disk). */
  | 'nothing'
  /** One record of the refused attempt. */
  | { principal: string; outcome: string; via?: string };

interface Attack {
  name: string;
  run: () => Promise<Outcome>;
  status: number;
  code: string | undefined;
  audit: AuditExpectation;
  /** Further checks on the answer. */
  check?: (outcome: Outcome) => void;
}

const unauthenticated = (name: string, run: () => Promise<Outcome>): Attack => ({
  name,
  run,
  status: 401,
  code: 'unauthenticated',
  audit: 'nothing',
  check: (o) =>
    expect(o.headers.get('www-authenticate')).toMatch(/^Bearer .*resource_metadata="https:\/\/board/),
});

const ATTACKS: Attack[] = [
  unauthenticated('no token', () => call('task.list', {}, null)),
  unauthenticated('malformed token', () => call('task.list', {}, 'not-a-token')),
  unauthenticated('malformed JWT', () => call('task.list', {}, 'eyJhbGciOiJFUzI1NiJ9.e30.AAAA')),
  unauthenticated('JWT with a wrong signature', async () =>
    call('task.list', {}, await token({}, { key: foreignKey })),
  ),
  unauthenticated('expired JWT', async () =>
    call('task.list', {}, await token({}, { expiresIn: Math.floor(Date.now() / 1000) - 120 })),
  ),
  unauthenticated('JWT not yet valid', async () =>
    call('task.list', {}, await token({ nbf: Math.floor(Date.now() / 1000) + 600 })),
  ),
  unauthenticated('JWT for another audience', async () =>
    call('task.list', {}, await token({}, { audience: 'https://other.example/mcp' })),
  ),
  unauthenticated('JWT from another issuer', async () =>
    call('task.list', {}, await token({}, { issuer: 'https://evil.example' })),
  ),
  unauthenticated('JWT with alg: none', () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: 'root', iss: ISSUER, aud: AUDIENCE, exp: now + 300, roles: ['admin'] };
    return call('task.list', {}, `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`);
  }),
  unauthenticated('JWT with alg: HS256 keyed with the public JWK (algorithm confusion)', async () => {
    const { createHmac } = await import('node:crypto');
    const now = Math.floor(Date.now() / 1000);
    const head = `${b64url({ alg: 'HS256', kid: 'k1' })}.${b64url({ sub: 'root', iss: ISSUER, aud: AUDIENCE, exp: now + 300, roles: ['admin'] })}`;
    const publicJwk = await fetch(`http://127.0.0.1:${(jwks.address() as AddressInfo).port}/`).then((r) =>
      r.text(),
    );
    return call(
      'task.list',
      {},
      `${head}.${createHmac('sha256', publicJwk).update(head).digest('base64url')}`,
    );
  }),
  unauthenticated('JWT naming no known role', async () =>
    call('task.list', {}, await token({ roles: ['superuser'] })),
  ),
  unauthenticated('revoked API key', () => call('task.list', {}, keys.revoked)),
  unauthenticated('made-up API key', () =>
    call('task.list', {}, 'cmcp_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
  ),
  {
    name: 'viewer calling a write command',
    run: () => call('task.add', { title: 'sneaky' }, keys.viewer),
    status: 200,
    code: 'forbidden',
    audit: { principal: 'viewer', outcome: 'forbidden', via: 'api_key' },
  },
  {
    name: 'member writing /settings through a command an admin may use for it',
    run: () => call('board.settings', { wipLimit: 99 }, keys.member),
    status: 200,
    code: 'forbidden',
    audit: { principal: 'member', outcome: 'forbidden' },
    check: (o) => expect(o.text).toContain('/settings/wipLimit'),
  },
  {
    name: 'member (by JWT) writing /settings',
    run: async () => call('board.settings', { wipLimit: 99 }, await token({ sub: 'agent-9' })),
    status: 200,
    code: 'forbidden',
    audit: { principal: 'jwt:agent-9', outcome: 'forbidden', via: 'jwt' },
  },
  {
    name: 'member rolling back',
    run: () => call('state.rollback', { doc: 'board', toRevision: 0 }, keys.member),
    status: 200,
    code: 'forbidden',
    audit: { principal: 'member', outcome: 'forbidden' },
  },
  {
    name: 'member undoing a command',
    run: () => call('state.undo', { commandId: '00000000-0000-7000-8000-000000000000' }, keys.member),
    status: 200,
    code: 'forbidden',
    audit: { principal: 'member', outcome: 'forbidden' },
  },
  ...['__proto__', 'constructor', 'prototype'].map(
    (key): Attack => ({
      name: `"${key}" as a member of the input`,
      run: () =>
        send(
          `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"task.add","arguments":{"title":"x","${key}":{"admin":true}},"_meta":${JSON.stringify(ENVELOPE)}}}`,
          {
            tool: 'task.add',
          },
        ),
      status: 400,
      code: 'invalid_input',
      audit: 'nothing',
    }),
  ),
  // A handler writing a caller-chosen key: `constructor`/`prototype` are caught in the patch check;
  // assigning `__proto__` on a draft throws inside the handler (the draft library refuses to change a
  // prototype), so the caller sees a plain internal_error. Either way nothing is committed.
  ...(
    [
      ['__proto__', 'internal_error'],
      ['constructor', 'state_invalid'],
      ['prototype', 'state_invalid'],
    ] as const
  ).map(
    ([key, code]): Attack => ({
      name: `"${key}" as a key a handler writes into the state (a patch path)`,
      run: () => call('label.set', { key, value: 'pwned' }),
      status: 200,
      code,
      audit: { principal: 'ops', outcome: code },
    }),
  ),
  {
    name: '10 MB body',
    run: () => send(callBody('task.add', { title: 'x'.repeat(10 * 1024 * 1024) }), { tool: 'task.add' }),
    status: 413,
    code: 'payload_too_large',
    audit: 'nothing',
  },
  {
    name: 'JSON nested 10,000 deep',
    run: () =>
      send(
        // Built as text: JSON.stringify itself cannot go this deep.
        callBody('task.add', { title: 'x', description: 'DEEP' }).replace(
          '"DEEP"',
          `${'['.repeat(10_000)}${']'.repeat(10_000)}`,
        ),
        { tool: 'task.add' },
      ),
    status: 400,
    code: 'invalid_input',
    audit: 'nothing',
  },
  {
    name: 'string over the input limit',
    run: () => call('task.add', { title: 'x', description: 'y'.repeat(200_000) }),
    status: 200,
    code: 'invalid_input',
    audit: { principal: 'ops', outcome: 'invalid_input' },
  },
  {
    name: 'foreign Origin (a web page driving the local server)',
    run: () =>
      send(callBody('task.add', { title: 'csrf' }), {
        tool: 'task.add',
        headers: { origin: 'https://evil.example' },
      }),
    status: 403,
    code: 'forbidden',
    audit: 'nothing',
  },
  {
    name: 'DNS rebinding Host',
    run: () => rawPost({ host: 'evil.example:3000' }, callBody('task.add', { title: 'rebound' })),
    status: 403,
    code: 'forbidden',
    audit: 'nothing',
  },
  {
    name: 'handler error carrying a database path and a token',
    run: () => call('label.leak', {}),
    status: 200,
    code: 'internal_error',
    audit: { principal: 'ops', outcome: 'internal_error' },
    check: (o) => {
      for (const secret of ['/srv/coremcp', 'state.db', 'SQLITE', 'cmcp_0123', 'SECRET', 'Error:']) {
        expect(o.text).not.toContain(secret);
      }
      expect(o.text).toMatch(/"requestId":"[0-9a-f-]{36}"/);
    },
  },
];

function rawPost(headers: Record<string, string>, body: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = request(
      server.url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${keys.admin}`,
          ...headers,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, code: codeIn(text), headers: new Headers(), text }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('attack table', () => {
  it.each(ATTACKS.map((a) => [a.name, a] as const))('%s', async (_name, attack) => {
    const before = await snapshot();
    const outcome = await attack.run();
    expect({ status: outcome.status, code: outcome.code }).toEqual({
      status: attack.status,
      code: attack.code,
    });
    attack.check?.(outcome);
    const after = await snapshot();
    expect({ board: after.board, labels: after.labels }).toEqual({
      board: before.board,
      labels: before.labels,
    });
    const written = await auditAfter(before.auditSeq);
    if (attack.audit === 'nothing') expect(written).toEqual([]);
    else {
      expect(written).toHaveLength(1);
      expect(written[0]).toMatchObject(attack.audit);
      expect(written[0]!.patchHash).toBeUndefined();
    }
  });
});

describe('attacks that need more than one request', () => {
  it('a burst of 1,000 requests from one principal: the excess gets 429 with Retry-After; others are unaffected', async () => {
    const before = await snapshot();
    const outcomes = await Promise.all(Array.from({ length: 1000 }, () => call('task.list', {}, keys.burst)));
    const ok = outcomes.filter((o) => o.status === 200 && o.code === undefined);
    const limited = outcomes.filter((o) => o.status === 429);
    expect(ok.length + limited.length).toBe(1000);
    expect(ok.length).toBeGreaterThanOrEqual(200);
    expect(limited.length).toBeGreaterThan(500);
    for (const o of limited) {
      expect(o.code).toBe('rate_limited');
      expect(Number(o.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    // Another principal is not slowed by the first one's limit.
    expect((await call('task.list', {}, keys.member)).status).toBe(200);
    const written = await auditAfter(before.auditSeq);
    expect(written.filter((r) => r.principal === 'burst')).toHaveLength(ok.length);
    expect((await snapshot()).board).toBe(before.board);
  });

  it('a JWT with a known role works, is audited as jwt, and is never echoed back', async () => {
    const jwt = await token({ sub: 'agent-42', name: 'Agent 42' });
    const before = await snapshot();
    const outcome = await call('task.claim', { id: 'T-1' }, jwt);
    expect(outcome.code).toBeUndefined();
    expect(outcome.text).not.toContain(jwt.split('.')[2]!);
    const [record] = await auditAfter(before.auditSeq);
    expect(record).toMatchObject({
      principal: 'jwt:agent-42',
      via: 'jwt',
      command: 'task.claim',
      outcome: 'ok',
    });
    expect(JSON.stringify(record)).not.toContain(jwt.split('.')[2]!);
  });

  it('a credential pasted into an input: the command runs, the audit keeps it redacted', async () => {
    const before = await snapshot();
    const outcome = await call('task.add', { title: 'rotate keys', description: keys.member });
    expect(outcome.code).toBeUndefined();
    const [record] = await auditAfter(before.auditSeq);
    expect(record).toMatchObject({
      command: 'task.add',
      input: { title: 'rotate keys', description: '[REDACTED]' },
    });
    expect(JSON.stringify(await auditAfter(0))).not.toContain(keys.member);
  });

  it('serves RFC 9728 metadata naming the resource and the issuer', async () => {
    const base = new URL(server.url).origin;
    for (const path of [
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/mcp',
    ]) {
      const response = await fetch(`${base}${path}`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({
        resource: AUDIENCE,
        authorization_servers: [ISSUER],
        bearer_methods_supported: ['header'],
      });
    }
  });

  it('tampering with an audit record: verify finds it and names it', async () => {
    expect((await runCli(['audit', 'verify', '--data-dir', tmp.dir])).code).toBe(0);
    const copy = join(tmp.dir, 'tampered');
    const { mkdirSync, copyFileSync, existsSync } = await import('node:fs');
    mkdirSync(copy);
    // The copy takes the WAL along, so it holds every record.
    for (const suffix of ['', '-wal', '-shm'])
      if (existsSync(join(tmp.dir, `coremcp.db${suffix}`)))
        copyFileSync(join(tmp.dir, `coremcp.db${suffix}`), join(copy, `coremcp.db${suffix}`));
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(join(copy, 'coremcp.db'));
    const row = db
      .prepare("SELECT seq, record FROM audit WHERE json_extract(record, '$.outcome') = 'forbidden' LIMIT 1")
      .get() as {
      seq: number;
      record: string;
    };
    const forged = { ...JSON.parse(row.record), outcome: 'ok' };
    db.prepare('UPDATE audit SET record = ? WHERE seq = ?').run(JSON.stringify(forged), row.seq);
    db.close();
    const verdict = await runCli(['audit', 'verify', '--data-dir', copy]);
    expect(verdict.code).toBe(1);
    expect(verdict.stderr).toContain(`audit chain broken at record ${row.seq}: hash does not match`);
  });
});

describe('failed-authentication throttling per address', () => {
  it('blocks an address after repeated failures, even for a valid key, then lets it back', async () => {
    const dir = tempDir();
    const config = join(dir.dir, 'coremcp.config.json');
    // The shortest window the config allows: the test waits for the block to lift, not for a time.
    const windowMs = 1000;
    writeFileSync(
      config,
      JSON.stringify({ limits: { authFailures: { maxFailures: 5, windowSeconds: windowMs / 1000 } } }),
    );
    const guarded = await startServerProcess([APP, '--data-dir', dir.dir, '--config', config]);
    try {
      const attempt = (key: string) =>
        fetch(guarded.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-protocol-version': '2026-07-28',
            'mcp-method': 'tools/list',
            authorization: `Bearer ${key}`,
          },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: ENVELOPE } }),
        });
      const statuses: number[] = [];
      let lastFailureSent = 0;
      for (let i = 0; i < 7; i++) {
        if (i === 4) lastFailureSent = performance.now();
        statuses.push((await attempt(`cmcp_${'0'.repeat(12)}_${'A'.repeat(43)}`)).status);
      }
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
      const blocked = await attempt(guarded.firstKey!);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      // Poll with the valid key until the block lifts. A refused attempt is not looked at, so it
      // neither counts as a failure nor extends the block; anything but 429 or 200 fails at once.
      const seen: number[] = [];
      await waitFor(
        async () => {
          const { status } = await attempt(guarded.firstKey!);
          seen.push(status);
          if (status !== 200 && status !== 429) throw new Error(`unexpected status ${status} while blocked`);
          return status === 200;
        },
        {
          timeoutMs: windowMs + 10_000,
          intervalMs: 50,
          message: () => `the address to be let back in (${seen.length} attempts, all refused with 429)`,
        },
      );
      // The block lasts the window from the fifth failure; the server saw that failure after we sent it.
      expect(performance.now() - lastFailureSent).toBeGreaterThanOrEqual(windowMs);
      expect(seen.at(-1)).toBe(200);
      expect((await attempt(guarded.firstKey!)).status).toBe(200);
    } finally {
      await guarded.stop();
      dir.remove();
    }
  });
});

describe('rate limit over stdio', () => {
  it('answers requests over the limit with a typed rate_limited error and runs none of them', async () => {
    const dir = tempDir();
    const config = join(dir.dir, 'coremcp.config.json');
    writeFileSync(config, JSON.stringify({ limits: { rate: { perSecond: 1, burst: 5 } } }));
    const { client } = await stdioClient([APP, '--data-dir', dir.dir, '--config', config]);
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          client.callTool({ name: 'task.add', arguments: { title: `t${i}` } }),
        ),
      );
      const refused = results.filter((r) => r.status === 'rejected');
      expect(refused.length).toBeGreaterThanOrEqual(6);
      for (const r of refused) {
        expect((r as PromiseRejectedResult).reason).toMatchObject({
          code: -31029,
          data: { code: 'rate_limited', details: { retryAfterSeconds: expect.any(Number) } },
        });
      }
      const done = results.length - refused.length;
      const store = new SqliteStore({ path: join(dir.dir, 'coremcp.db') });
      await store.open();
      try {
        expect((await store.listDocuments()).find((d) => d.doc === 'board')?.revision).toBe(done);
      } finally {
        await store.close();
      }
    } finally {
      await client.close();
      dir.remove();
    }
  });
});
