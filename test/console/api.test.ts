/**
 * The console's server side over real HTTP, in process, on a real SQLite file: sessions and their
 * cookie, CSRF and origin checks, authorization by role and path rule, the history actions through
 * the pipeline and their audit records, the API's views, the event stream, and the static assets.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import {
  applyPatch,
  type JsonPatch,
  type JsonValue,
  type Logger,
  localPrincipal,
  SqliteStore,
  verifyAuditRecords,
} from 'coremcp';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import taskboard from '../../examples/taskboard/app.js';
import type {
  AuditResponse,
  AuditVerifyResponse,
  CommandResponse,
  CreatedKeyResponse,
  DiffResponse,
  DocumentResponse,
  DocumentsResponse,
  EntriesResponse,
  HistoryResponse,
  KeysResponse,
} from '../../src/console/wire.js';
import { httpClient, type InProcessServer, startInProcess } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { ConsoleClient } from './client.js';

/** The status of a GET sent with another Host header (a DNS-rebinding page's). */
function statusWithHost(url: string, host: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    request(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode);
    })
      .on('error', reject)
      .end();
  });
}

/** Every log line as JSON text, to show what never appears in the log. */
function capturingLogger(lines: string[]): Logger {
  const logger: Logger = {
    error: (fields, message) => void lines.push(JSON.stringify({ fields, message })),
    warn: (fields, message) => void lines.push(JSON.stringify({ fields, message })),
    info: (fields, message) => void lines.push(JSON.stringify({ fields, message })),
    debug: (fields, message) => void lines.push(JSON.stringify({ fields, message })),
    child: () => logger,
    isLevelEnabled: () => true,
  };
  return logger;
}

const tmp = tempDir();
const logLines: string[] = [];
let server: InProcessServer;
let origin: string;
const keys: Record<string, string> = {};

async function addTask(title: string, as = 'admin'): Promise<number> {
  const result = await server.core.execute('task.add', { title }, { principal: localPrincipal(as) });
  if (result.status !== 'success')
    throw new Error(`task.add failed: ${result.status === 'error' ? result.error.code : result.status}`);
  return result.revision;
}

beforeAll(async () => {
  server = await startInProcess({
    app: taskboard,
    store: new SqliteStore({ path: join(tmp.dir, 'coremcp.db') }),
    roles: {
      // May roll back, but a path rule keeps its commits away from the board's settings.
      operator: {
        commands: ['state.*'],
        queries: true,
        documents: { '*': ['read', 'follow', 'write', 'rollback'] },
        paths: { board: { deny: ['/settings/**'] } },
      },
      // May read the board but not follow it: no live events for it.
      reader: { queries: true, documents: { board: ['read'] } },
    },
    metrics: true,
    logger: capturingLogger(logLines),
    console: {},
  });
  origin = new URL(server.url).origin;
  for (const role of ['admin', 'member', 'viewer', 'operator', 'reader'])
    keys[role] = await server.key(role, role);
});

afterAll(async () => {
  await server.close();
  tmp.remove();
});

describe('sessions', () => {
  it('signs in with an API key: an HttpOnly, SameSite=Strict cookie scoped to /console, Secure only over https', async () => {
    const client = await ConsoleClient.signIn(origin, keys.admin!);
    expect(client.setCookie).toMatch(
      /^coremcp_console=[A-Za-z0-9_-]{43}; Path=\/console; Max-Age=\d+; HttpOnly; SameSite=Strict$/,
    );
    expect(client.session).toMatchObject({
      principal: { id: 'admin', roles: ['admin'] },
      permissions: { audit: true, keys: true, metrics: true },
    });
    const behindTls = await ConsoleClient.signIn(origin, keys.admin!, { 'x-forwarded-proto': 'https' });
    expect(behindTls.setCookie).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
    const me = await client.api('session');
    expect(me.status).toBe(200);
    expect(me.headers.get('cache-control')).toBe('no-store');
  });

  it('refuses a wrong credential with 401 and no cookie, and anything without a session with 401', async () => {
    const client = new ConsoleClient(origin);
    const refused = await client.signIn('cmcp_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    expect(refused.status).toBe(401);
    expect(refused.code).toBe('unauthenticated');
    expect(refused.headers.get('set-cookie')).toBeNull();
    for (const name of ['session', 'documents', 'audit', 'keys', 'events'])
      expect((await client.api(name)).status).toBe(401);
    const forged = await client.api('documents', {}, { headers: { cookie: 'coremcp_console=forged' } });
    expect(forged.status).toBe(401);
  });

  it('never writes the key or the session cookie to the log', async () => {
    const client = await ConsoleClient.signIn(origin, keys.admin!);
    await client.api('documents');
    await new ConsoleClient(origin).signIn(`${keys.admin!.slice(0, -1)}x`);
    const log = logLines.join('\n');
    expect(log).toContain('console sign-in');
    expect(log).toContain('console sign-in failed');
    for (const secret of Object.values(keys)) expect(log).not.toContain(secret);
    expect(log).not.toContain(client.cookie!.split('=')[1]!);
  });

  it('signs out: the cookie is cleared and stops working, and the event stream says why and closes', async () => {
    const client = await ConsoleClient.signIn(origin, keys.viewer!);
    const stream = await client.events();
    expect(stream.status).toBe(200);
    const out = await client.signOut();
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(
      /^coremcp_console=; Path=\/console; Max-Age=0; HttpOnly; SameSite=Strict$/,
    );
    await stream.closed;
    expect(stream.events).toContainEqual({ event: 'session', data: { reason: 'signed_out' } });
    expect((await client.api('session')).status).toBe(401);
  });

  it('audits every sign-in and sign-out as the principal, via console, never with the credential', async () => {
    const client = await ConsoleClient.signIn(origin, keys.reader!);
    await client.signOut();
    const records = await server.core.store.readAudit({ principal: 'reader' });
    const signIns = records.filter((r) => r.command === 'console.sign-in');
    const signOuts = records.filter((r) => r.command === 'console.sign-out');
    expect(signIns.length).toBeGreaterThan(0);
    expect(signOuts.length).toBeGreaterThan(0);
    expect(signIns.at(-1)).toMatchObject({ outcome: 'ok', input: { via: 'console', credential: 'api_key' } });
    expect(JSON.stringify(records)).not.toContain(keys.reader!);
  });

  it('ends the sessions of a key revoked in the console at once, and of one revoked elsewhere within a sweep', async () => {
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const temp = (await admin.post<CreatedKeyResponse>('keys', { name: 'temp-a', role: 'viewer' })).body;
    const victim = await ConsoleClient.signIn(origin, temp.key);
    const stream = await victim.events();
    const revoked = await admin.post<{ endedSessions: number }>('keys/revoke', { id: temp.record.id });
    expect(revoked.status).toBe(200);
    expect(revoked.body.endedSessions).toBe(1);
    await stream.closed;
    expect(stream.events).toContainEqual({ event: 'session', data: { reason: 'revoked' } });
    expect((await victim.api('documents')).status).toBe(401);

    // Revoked by the CLI's code path (another process would do the same to the store).
    const other = await server.core.keys!.create('temp-b', 'viewer');
    const second = await ConsoleClient.signIn(origin, other.key);
    const secondStream = await second.events();
    await server.core.keys!.revoke('temp-b');
    await secondStream.closed;
    expect(secondStream.events).toContainEqual({ event: 'session', data: { reason: 'revoked' } });
    expect((await second.api('session')).status).toBe(401);
  });
});

describe('CSRF and origin', () => {
  it('refuses a change without the session CSRF token, with another session’s token, or from another origin', async () => {
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const other = await ConsoleClient.signIn(origin, keys.admin!);
    const head = (await admin.api<DocumentResponse>('document', { doc: 'board' })).body.head;
    const body = { doc: 'board', toRevision: head };
    const attempts = [
      await admin.post('rollback', body, { csrf: false }),
      await admin.post('rollback', body, { csrf: other.session!.csrfToken }),
      await admin.post('rollback', body, { headers: { origin: 'http://evil.example' } }),
      await admin.post('rollback', body, { headers: { 'sec-fetch-site': 'cross-site' } }),
      await admin.post('keys', { name: 'csrf-test', role: 'admin' }, { csrf: false }),
      await admin.signOut({ csrf: false }),
    ];
    for (const attempt of attempts) {
      expect(attempt.status).toBe(403);
      expect(attempt.code).toBe('forbidden');
    }
    expect((await admin.api<KeysResponse>('keys')).body.keys.map((k) => k.name)).not.toContain('csrf-test');
    expect((await admin.api('session')).status).toBe(200);
  });

  it('refuses a sign-in posted from another origin (login CSRF) and a body that is not JSON', async () => {
    const cross = await new ConsoleClient(origin).signIn(keys.admin!, { origin: 'http://evil.example' });
    expect(cross.status).toBe(403);
    const form = await fetch(`${origin}/console/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `credential=${keys.admin}`,
    });
    expect(form.status).toBe(400);
  });
});

describe('history actions through the pipeline', () => {
  it('rolls back as the signed-in principal: a new revision, audited via console', async () => {
    const target = await addTask('before the mistake');
    await addTask('the mistake');
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const head = (await admin.api<DocumentResponse>('document', { doc: 'board' })).body.head;
    const done = await admin.post<CommandResponse>('rollback', {
      doc: 'board',
      toRevision: target,
      expectedRevision: head,
    });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ command: 'state.rollback', committed: true, revision: head + 1 });
    expect(done.body.result).toMatchObject({ to: target, reverted: head - target });
    const now = await server.core.state.get('board', { revision: target });
    expect((await server.core.state.get('board')).value).toEqual(now.value);
    const [record] = await server.core.store
      .readAudit({ command: 'state.rollback', principal: 'admin' })
      .then((r) => r.slice(-1));
    expect(record).toMatchObject({
      principal: 'admin',
      via: 'console',
      outcome: 'ok',
      doc: 'board',
      revision: head + 1,
    });
  });

  it('refuses a rollback when the document moved since the confirmation (revision_conflict)', async () => {
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const seen = (await admin.api<DocumentResponse>('document', { doc: 'board' })).body.head;
    await addTask('someone else, meanwhile');
    const stale = await admin.post('rollback', {
      doc: 'board',
      toRevision: seen - 1,
      expectedRevision: seen,
    });
    expect(stale.status).toBe(409);
    expect(stale.code).toBe('revision_conflict');
  });

  it('undoes one commit, and names the conflict when later commits touched the same paths', async () => {
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    await addTask('to be undone');
    const history = (await admin.api<HistoryResponse>('history', { doc: 'board', limit: 1 })).body;
    const undone = await admin.post<CommandResponse>('undo', { commandId: history.commits[0]!.commandId });
    expect(undone.status).toBe(200);
    expect(undone.body).toMatchObject({ command: 'state.undo', committed: true });
    const again = await admin.post('undo', { commandId: history.commits[0]!.commandId });
    expect(again.code).toBe('undo_conflict');
  });

  it('shows a viewer no history actions and refuses its direct POST with 403, audited as forbidden via console', async () => {
    const viewer = await ConsoleClient.signIn(origin, keys.viewer!);
    const doc = (await viewer.api<DocumentResponse>('document', { doc: 'board' })).body;
    expect(doc.actions).toEqual({ rollback: false, undo: false });
    expect(viewer.session!.permissions).toEqual({ audit: false, keys: false, metrics: false });
    const refused = await viewer.post('rollback', { doc: 'board', toRevision: 0 });
    expect(refused.status).toBe(403);
    expect(refused.code).toBe('forbidden');
    const member = await ConsoleClient.signIn(origin, keys.member!);
    expect((await member.post('undo', { commandId: 'nope' })).status).toBe(403);
    const records = await server.core.store.readAudit({ principal: 'viewer', command: 'state.rollback' });
    expect(records.at(-1)).toMatchObject({ via: 'console', outcome: 'forbidden' });
    expect(await server.core.state.get('board')).toMatchObject({ revision: doc.head });
  });

  it('applies path rules to a rollback as to any command: an operator may not revert the settings', async () => {
    const before = (await server.core.state.get('board')).revision;
    const changed = await server.core.execute(
      'board.settings',
      { wipLimit: 7 },
      { principal: localPrincipal('admin') },
    );
    expect(changed.status).toBe('success');
    const operator = await ConsoleClient.signIn(origin, keys.operator!);
    const refused = await operator.post('rollback', { doc: 'board', toRevision: before });
    expect(refused.status).toBe(403);
    expect(refused.code).toBe('forbidden');
    expect((await server.core.state.get('board')).value).toMatchObject({ settings: { wipLimit: 7 } });
    await addTask('an operator may revert this');
    const head = (await server.core.state.get('board')).revision;
    const allowed = await operator.post<CommandResponse>('rollback', { doc: 'board', toRevision: head - 1 });
    expect(allowed.status).toBe(200);
  });
});

describe('views', () => {
  it('lists documents with revision, size, last change and who made it', async () => {
    await addTask('listed', 'lister');
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const { documents } = (await admin.api<DocumentsResponse>('documents')).body;
    const board = documents.find((d) => d.doc === 'board')!;
    expect(board.revision).toBe((await server.core.state.get('board')).revision);
    expect(board.bytes).toBeGreaterThan(10);
    expect(board.collections.tasks).toBeGreaterThan(0);
    expect(board.lastChange).toMatchObject({ principal: 'lister', command: 'task.add' });
  });

  it('reads a document at an old revision and diffs two revisions, naming the paths', async () => {
    const from = await addTask('first of two');
    const to = await addTask('second of two');
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const old = (await admin.api<DocumentResponse>('document', { doc: 'board', revision: from })).body;
    expect(old.revision).toBe(from);
    expect(Object.values(old.value as { tasks: Record<string, { title: string }> }).length).toBeGreaterThan(
      0,
    );
    const diff = (await admin.api<DiffResponse>('diff', { doc: 'board', from, to })).body;
    expect(diff.paths.some((p) => p.startsWith('/tasks/'))).toBe(true);
    expect(diff.patches.some((op) => JSON.stringify(op.value ?? '').includes('second of two'))).toBe(true);
    // Backwards: what a rollback from `to` to `from` applies, and applying it gives the older value.
    const back = (await admin.api<DiffResponse>('diff', { doc: 'board', from: to, to: from })).body;
    expect(back).toMatchObject({ from: to, to: from, compacted: false });
    const atTo = (await server.core.state.get('board', { revision: to })).value;
    const atFrom = (await server.core.state.get('board', { revision: from })).value;
    expect(applyPatch(structuredClone(atTo) as JsonValue, back.patches as JsonPatch)).toEqual(atFrom);
    const bad = await admin.api('diff', { doc: 'board', from: to + 1000 });
    expect(bad.code).toBe('invalid_revision');
    const unknown = await admin.api('document', { doc: 'no-such-doc' });
    expect(unknown.status).toBe(404);
  });

  it('reads a large collection page by page, every page at the first page’s revision', async () => {
    for (let i = 0; i < 120; i++) await addTask(`bulk ${i}`);
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const first = (await admin.api<DocumentResponse>('document', { doc: 'board' })).body;
    const tasks = first.value as { tasks: Record<string, unknown> };
    expect(Object.keys(tasks.tasks)).toHaveLength(100);
    const more = first.more.tasks!;
    await addTask('after the first page');
    const next = (
      await admin.api<EntriesResponse>('entries', { doc: 'board', collection: 'tasks', cursor: more.cursor })
    ).body;
    expect(next.revision).toBe(first.revision);
    expect(Object.keys(tasks.tasks).length + next.entries.length).toBe(more.size);
  });

  it('pages history newest first and filters it by principal and command', async () => {
    await addTask('by alice', 'alice');
    await addTask('by bob', 'bob');
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const page = (await admin.api<HistoryResponse>('history', { doc: 'board', limit: 5 })).body;
    expect(page.commits).toHaveLength(5);
    expect(page.commits[0]!.revision).toBe(page.head);
    expect(page.commits.map((c) => c.revision)).toEqual([0, 1, 2, 3, 4].map((i) => page.head - i));
    const older = (
      await admin.api<HistoryResponse>('history', { doc: 'board', limit: 5, before: page.next! })
    ).body;
    expect(older.commits[0]!.revision).toBe(page.head - 5);
    const alice = (await admin.api<HistoryResponse>('history', { doc: 'board', principal: 'alice' })).body;
    expect(alice.commits.map((c) => c.principal)).toEqual(['alice']);
    expect(alice.commits[0]!.paths.some((p) => p.startsWith('/tasks/'))).toBe(true);
    const rollbacks = (
      await admin.api<HistoryResponse>('history', { doc: 'board', command: 'state.rollback' })
    ).body;
    expect(rollbacks.commits.length).toBeGreaterThan(0);
    expect(new Set(rollbacks.commits.map((c) => c.command))).toEqual(new Set(['state.rollback']));
  });

  it('filters the audit by principal, command, outcome and time; verify names the last hash; export is JSON lines', async () => {
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const all = await server.core.store.readAudit({});
    const verdict = verifyAuditRecords(all);
    const verified = (await admin.api<AuditVerifyResponse>('audit/verify')).body;
    expect(verdict.ok).toBe(true);
    expect(verified).toEqual({
      ok: true,
      records: all.length,
      lastSeq: all.at(-1)!.seq,
      lastHash: verdict.ok ? verdict.lastHash : '',
    });
    const newest = (await admin.api<AuditResponse>('audit', { limit: 3 })).body;
    expect(newest.records.map((r) => r.seq)).toEqual([0, 1, 2].map((i) => all.at(-1)!.seq - i));
    const older = (await admin.api<AuditResponse>('audit', { limit: 3, before: newest.next! })).body;
    expect(older.records[0]!.seq).toBe(all.at(-1)!.seq - 3);
    const forbidden = (await admin.api<AuditResponse>('audit', { outcome: 'forbidden', principal: 'viewer' }))
      .body;
    expect(forbidden.records.length).toBeGreaterThan(0);
    expect(forbidden.records.every((r) => r.outcome === 'forbidden' && r.principal === 'viewer')).toBe(true);
    const errors = (await admin.api<AuditResponse>('audit', { outcome: 'error', limit: 500 })).body;
    expect(errors.records.every((r) => r.outcome !== 'ok')).toBe(true);
    const rollbacks = (await admin.api<AuditResponse>('audit', { command: 'state.rollback', limit: 500 }))
      .body;
    expect(rollbacks.records.every((r) => r.command === 'state.rollback')).toBe(true);
    const middle = all[Math.floor(all.length / 2)]!.at;
    const since = (await admin.api<AuditResponse>('audit', { since: middle, limit: 500 })).body;
    expect(since.records.every((r) => r.at >= middle)).toBe(true);
    const until = (await admin.api<AuditResponse>('audit', { until: middle, limit: 500 })).body;
    expect(until.records.every((r) => r.at <= middle)).toBe(true);
    expect(since.records.length + until.records.length).toBeGreaterThanOrEqual(all.length);
    const exported = await admin.get<string>('/console/api/audit/export', { command: 'state.rollback' });
    expect(exported.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    expect(exported.headers.get('content-disposition')).toMatch(/^attachment; filename="audit-.*\.jsonl"$/);
    const lines = exported.body
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { command: string });
    expect(lines.length).toBe(all.filter((r) => r.command === 'state.rollback').length);
    const viewer = await ConsoleClient.signIn(origin, keys.viewer!);
    for (const name of ['audit', 'audit/verify', 'audit/export', 'keys', 'metrics'])
      expect((await viewer.api(name)).status).toBe(403);
  });

  it('serves health to everyone signed in and metric series to those who may read metrics', async () => {
    const viewer = await ConsoleClient.signIn(origin, keys.viewer!);
    const health = await viewer.api<{ status: string; checks: Record<string, unknown> }>('health');
    expect(health.body.status).toBe('healthy');
    expect(Object.keys(health.body.checks)).toEqual(expect.arrayContaining(['store', 'migrations']));
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const metrics = await admin.api<{ intervalMs: number; intervals: number; points: unknown[] }>('metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatchObject({ intervalMs: 5000, intervals: 120 });
  });

  it('manages keys for admins: a created key is shown once and works for MCP; creation and revocation are audited', async () => {
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const created = await admin.post<CreatedKeyResponse>('keys', { name: 'agent-7', role: 'member' });
    expect(created.status).toBe(200);
    expect(created.body.key).toMatch(/^cmcp_/);
    const listed = (await admin.api<KeysResponse>('keys')).body;
    expect(listed.roles).toEqual(expect.arrayContaining(['admin', 'member', 'viewer']));
    expect(JSON.stringify(listed)).not.toContain(created.body.key);
    expect(JSON.stringify(listed)).not.toContain('hash');
    const client = await httpClient(server.url, created.body.key);
    const call = await client.callTool({ name: 'task.add', arguments: { title: 'from agent-7' } });
    expect(call.isError).toBeFalsy();
    await client.close();
    const invalid = await admin.post('keys', { name: 'bad name!', role: 'member' });
    expect(invalid.code).toBe('invalid_input');
    expect((await admin.post('keys/revoke', { id: created.body.record.id })).status).toBe(200);
    const member = await ConsoleClient.signIn(origin, keys.member!);
    expect((await member.post('keys', { name: 'sneaky', role: 'admin' })).status).toBe(403);
    const audit = await server.core.store.readAudit({ command: 'admin.keys.create' });
    expect(audit.map((r) => [r.principal, r.via, r.outcome, r.input])).toEqual(
      expect.arrayContaining([
        ['admin', 'console', 'ok', { name: 'agent-7', role: 'member' }],
        ['admin', 'console', 'invalid_input', { name: 'bad name!', role: 'member' }],
        ['member', 'console', 'forbidden', { name: 'sneaky', role: 'admin' }],
      ]),
    );
    const revocations = await server.core.store.readAudit({
      command: 'admin.keys.revoke',
      principal: 'admin',
    });
    expect(revocations.at(-1)).toMatchObject({
      via: 'console',
      outcome: 'ok',
      input: { id: created.body.record.id },
    });
    expect(JSON.stringify(await server.core.store.readAudit({}))).not.toContain(created.body.key);
  });
});

describe('live events', () => {
  it('streams a commit made by an SDK client to a principal who may follow the document, not to one who may not', async () => {
    const admin = await ConsoleClient.signIn(origin, keys.admin!);
    const reader = await ConsoleClient.signIn(origin, keys.reader!);
    expect((await reader.api('document', { doc: 'board' })).status).toBe(200);
    const adminStream = await admin.events();
    const readerStream = await reader.events();
    const client = await httpClient(server.url, keys.member!);
    await client.callTool({ name: 'task.add', arguments: { title: 'seen live' } });
    await client.close();
    const head = (await server.core.state.get('board')).revision;
    const event = await waitFor(() =>
      adminStream.events.find(
        (e) => e.event === 'commit' && (e.data as { revision: number }).revision === head,
      ),
    );
    expect(event.data).toMatchObject({
      doc: 'board',
      principal: 'member',
      command: 'task.add',
      external: false,
    });
    expect((event.data as { paths: string[] }).paths.some((p) => p.startsWith('/tasks/'))).toBe(true);
    adminStream.close();
    // Signing out ends the reader's stream after everything written to it before: nothing but that.
    await reader.signOut();
    await readerStream.closed;
    expect(readerStream.events).toEqual([{ event: 'session', data: { reason: 'signed_out' } }]);
  });
});

describe('assets', () => {
  it('serves the page with a strict CSP and no caching, and hashed assets as immutable, gzipped when asked', async () => {
    const page = await fetch(`${origin}/console`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('cache-control')).toBe('no-store');
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("require-trusted-types-for 'script'");
    expect(csp).not.toContain('unsafe');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await page.text();
    const assets = [...html.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThanOrEqual(2);
    expect(html).not.toMatch(/<script>|<style>|https?:\/\//);
    for (const asset of assets) {
      expect(asset).toMatch(/-[A-Za-z0-9_-]{8}\.(js|css)$/);
      const response = await fetch(`${origin}${asset}`, { headers: { 'accept-encoding': 'gzip' } });
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(response.headers.get('content-encoding')).toBe('gzip');
    }
    expect((await fetch(`${origin}/console/assets/nope.js`)).status).toBe(404);
    expect(await statusWithHost(`${origin}/console`, 'evil.example')).toBe(403);
  });
});

describe('a JWT session', () => {
  const jwtTmp = tempDir();
  let jwtServer: InProcessServer;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    privateKey = pair.privateKey;
    jwtServer = await startInProcess({
      app: taskboard,
      store: new SqliteStore({ path: join(jwtTmp.dir, 'coremcp.db') }),
      auth: {
        jwt: {
          issuer: 'https://issuer.test',
          audience: 'https://coremcp.test/mcp',
          publicKey: await exportSPKI(pair.publicKey),
        },
      },
      console: {},
    });
  });

  afterAll(async () => {
    await jwtServer.close();
    jwtTmp.remove();
  });

  it('signs in with a bearer JWT as its subject, and ends no later than the token expires', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await new SignJWT({ roles: ['viewer'], name: 'Ada' })
      .setProtectedHeader({ alg: 'ES256' })
      .setSubject('ada')
      .setIssuer('https://issuer.test')
      .setAudience('https://coremcp.test/mcp')
      .setExpirationTime(exp)
      .sign(privateKey);
    const client = await ConsoleClient.signIn(new URL(jwtServer.url).origin, token);
    expect(client.session).toMatchObject({ principal: { id: 'jwt:ada', name: 'Ada', roles: ['viewer'] } });
    expect(Date.parse(client.session!.expiresAt)).toBe(exp * 1000);
    await waitFor(async () => (await client.api('session')).status === 401, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });
});
