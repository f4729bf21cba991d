import { decodeJwt } from 'jose';
import type { Authenticator, Authorizer, CommandGrant, DocumentAction, Principal } from '../core/access.js';
import { auditedAction, recordAction } from '../core/audit.js';
import type { CommandRegistry } from '../core/commands.js';
import { CONSENT_KEY } from '../core/consent.js';
import { DOCUMENT_ID_PATTERN } from '../core/document.js';
import { AccessError, CommandError, StateError, TransportError } from '../core/errors.js';
import type { CommandResult, ExecuteOptions } from '../core/executor.js';
import { timeOrderedId } from '../core/ids.js';
import type { ClientConnection } from '../core/input.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import type { Logger } from '../core/log.js';
import { type JsonPatch, touchedPaths } from '../core/patch.js';
import { laterThanHead, type StateDiff, type StateManager } from '../core/state.js';
import type { ApiKeyRecord, Store } from '../core/store.js';
import { HttpFailure, sendError } from '../http/respond.js';
import type { HttpExchange, HttpRoute } from '../http/route.js';
import type { HealthMonitor } from '../observability/health.js';
import { METRICS_GRANT } from '../observability/routes.js';
import { type ApiKeys, hashApiKey, looksLikeApiKey } from '../security/apikeys.js';
import { JwtAuthenticator } from '../security/jwt.js';
import type { AuthThrottle } from '../security/ratelimit.js';
import { rateLimited } from '../security/ratelimit.js';
import { AuditBrowser, type AuditFilter } from './audit.js';
import {
  CONSOLE_PATH,
  type ConsoleGate,
  integerParam,
  readJsonObject,
  SECURITY_HEADERS,
  sendJson,
  stringParam,
} from './http.js';
import type { MetricsSampler } from './metrics.js';
import type { ConsoleSession, SessionCredential } from './sessions.js';
import type {
  AuditResponse,
  AuditVerifyResponse,
  CommandResponse,
  CommitSummary,
  CreatedKeyResponse,
  DiffResponse,
  DocumentResponse,
  DocumentSummary,
  EntriesResponse,
  HistoryResponse,
  KeyView,
  MetricsResponse,
  SessionInfo,
} from './wire.js';

/** The console as the pipeline's client: a person at a screen, who can answer a consent question. */
const CONSOLE_CLIENT: ClientConnection = {
  capabilities: { elicitation: {} },
  canAsk: true,
  progress: async () => {},
  log: async () => {},
};

/** Reading the audit trail through the console: admins have it; a role may grant `admin.audit` alone. */
export const AUDIT_GRANT: CommandGrant = { name: 'admin.audit', permission: 'admin.audit' };
/** Listing, creating and revoking API keys through the console. */
export const KEYS_GRANT: CommandGrant = { name: 'admin.keys', permission: 'admin.keys' };

/** What the console's API needs of a core: the same parts the MCP surface runs on, and the audit trail. */
export interface ConsoleDeps {
  appName: string;
  state: StateManager;
  registry: CommandRegistry;
  authorizer: Authorizer & { readonly roleNames: string[] };
  /** The command pipeline: rollback and undo run through it exactly as MCP calls do. */
  execute(name: string, input: unknown, options?: ExecuteOptions): Promise<CommandResult>;
  keys: ApiKeys | undefined;
  store: Pick<Store, 'readAudit' | 'recordAttempt' | 'auditHeads'>;
  health: HealthMonitor;
  logger: Logger;
}

export interface ConsoleApiOptions {
  gate: ConsoleGate;
  /** Turns a pasted API key or JWT into a principal: the same authenticator as the MCP endpoint. */
  authenticator: Authenticator;
  /** The same failed-authentication throttle per address as the MCP endpoint. */
  authThrottle?: AuthThrottle | undefined;
  /** Without it (a core without metrics) the metrics charts are empty. */
  sampler?: MetricsSampler | undefined;
}

const API = `${CONSOLE_PATH}/api`;
const MAX_DOCUMENTS = 1000;
const FIRST_PAGE = 100;
const MAX_DIFF_OPS = 5000;
const HISTORY_WINDOW = 500;
const HISTORY_MAX_SCAN = 10_000;
const MAX_CREDENTIAL = 16_384;

interface Call {
  exchange: HttpExchange;
  session: ConsoleSession;
  principal: Principal;
  url: URL;
}

function docParam(url: URL, name = 'doc'): string {
  const doc = stringParam(url, name, 128);
  if (doc === undefined || !DOCUMENT_ID_PATTERN.test(doc))
    throw new CommandError('invalid_input', `${name} must be a document id`, { details: { param: name } });
  return doc;
}

function isoParam(url: URL, name: string): string | undefined {
  const value = stringParam(url, name, 40);
  if (value === undefined) return undefined;
  const time = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(time.getTime()))
    throw new CommandError('invalid_input', `${name} must be an ISO date or time`, {
      details: { param: name },
    });
  return time.toISOString();
}

function keyView(record: ApiKeyRecord): KeyView {
  const view: KeyView = { id: record.id, name: record.name, role: record.role, createdAt: record.createdAt };
  if (record.revokedAt !== undefined) view.revokedAt = record.revokedAt;
  return view;
}

function withoutMembers(value: JsonValue, names: Iterable<string>): JsonValue {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out: JsonObject = { ...value };
  for (const name of names) delete out[name];
  return out;
}

/**
 * The console's JSON API as route modules under `/console/api/`: the session (sign in, who am I,
 * sign out), documents, a document at a revision and its collection pages, diffs, history, the
 * audit trail (pages, verify, export), health, metrics, keys, and the two history actions. Every
 * read is authorized as the signed-in principal with the document actions MCP uses; rollback and
 * undo go through the command pipeline as that principal (`via: console`), so their permissions,
 * path rules and audit records are those of the same MCP calls.
 */
export class ConsoleApi {
  readonly #deps: ConsoleDeps;
  readonly #options: ConsoleApiOptions;
  readonly #gate: ConsoleGate;
  readonly #audit: AuditBrowser;
  readonly #sizes = new Map<string, { revision: number; bytes: number }>();

  constructor(deps: ConsoleDeps, options: ConsoleApiOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#gate = options.gate;
    this.#audit = new AuditBrowser(deps.store);
  }

  routes(): HttpRoute[] {
    return [
      {
        paths: [`${API}/session`],
        access: 'host-checked',
        methods: ['GET', 'POST', 'DELETE'],
        handle: (exchange) => this.#session(exchange),
      },
      this.#get('documents', (call) => this.#documents(call)),
      this.#get('document', (call) => this.#document(call)),
      this.#get('entries', (call) => this.#entries(call)),
      this.#get('diff', (call) => this.#diff(call)),
      this.#get('history', (call) => this.#history(call)),
      this.#get('audit', (call) => this.#auditPage(call)),
      this.#get('audit/verify', (call) => this.#auditVerify(call)),
      {
        paths: [`${API}/audit/export`],
        access: 'host-checked',
        methods: ['GET'],
        handle: async (exchange) => this.#auditExport(await this.#call(exchange, false)),
      },
      this.#get('health', async () => this.#deps.health.check()),
      this.#get('metrics', async ({ principal }) => {
        this.#require(principal, METRICS_GRANT, 'Reading metrics needs the admin.metrics permission');
        const { sampler } = this.#options;
        const series: MetricsResponse = {
          intervalMs: sampler?.intervalMs ?? 0,
          intervals: sampler?.intervals ?? 0,
          points: sampler?.points() ?? [],
        };
        return series;
      }),
      {
        paths: [`${API}/keys`],
        access: 'host-checked',
        methods: ['GET', 'POST'],
        handle: async (exchange) => {
          const call = await this.#call(exchange, exchange.req.method === 'POST');
          sendJson(
            exchange,
            exchange.req.method === 'POST' ? await this.#createKey(call) : await this.#keys(call),
          );
        },
      },
      this.#post('keys/revoke', (call) => this.#revokeKey(call)),
      this.#post('rollback', (call) => this.#rollback(call)),
      this.#post('undo', (call) => this.#undo(call)),
    ];
  }

  // --- plumbing ---------------------------------------------------------------------------------

  async #call(exchange: HttpExchange, mutation: boolean): Promise<Call> {
    const session = mutation ? await this.#gate.mutation(exchange) : await this.#gate.session(exchange);
    return { exchange, session, principal: session.principal, url: exchange.url };
  }

  #get(name: string, handler: (call: Call) => Promise<unknown>): HttpRoute {
    return {
      paths: [`${API}/${name}`],
      access: 'host-checked',
      methods: ['GET', 'HEAD'],
      handle: async (exchange) => sendJson(exchange, await handler(await this.#call(exchange, false))),
    };
  }

  /** A POST whose handler either answers itself (a command result) or returns the JSON to send. */
  #post(name: string, handler: (call: Call) => Promise<unknown>): HttpRoute {
    return {
      paths: [`${API}/${name}`],
      access: 'host-checked',
      methods: ['POST'],
      handle: async (exchange) => {
        const body = await handler(await this.#call(exchange, true));
        if (!exchange.res.headersSent) sendJson(exchange, body);
      },
    };
  }

  #require(principal: Principal, grant: CommandGrant, message: string): void {
    if (!this.#deps.authorizer.canExecute(principal, grant)) throw new AccessError('forbidden', message);
  }

  #requireDocument(principal: Principal, doc: string, action: DocumentAction): void {
    if (!this.#deps.authorizer.canAccessDocument(principal, doc, action))
      throw new AccessError('forbidden', `Principal may not ${action} document "${doc}"`, {
        details: { doc, action },
      });
  }

  /** Whether the principal could run a registered command at all (the document is checked apart). */
  #mayRun(principal: Principal, command: string): boolean {
    const definition = this.#deps.registry.get(command);
    return definition !== undefined && this.#deps.authorizer.canExecute(principal, definition);
  }

  // --- session ----------------------------------------------------------------------------------

  async #session(exchange: HttpExchange): Promise<void> {
    const method = exchange.req.method;
    if (method === 'POST') return this.#signIn(exchange);
    if (method === 'DELETE') {
      const session = await this.#gate.mutation(exchange);
      this.#gate.sessions.end(session, 'signed_out');
      await this.#record(session.principal, 'console.sign-out', { via: 'console' }, 'ok');
      exchange.res.writeHead(204, {
        ...SECURITY_HEADERS,
        'cache-control': 'no-store',
        'set-cookie': this.#gate.clearCookie(exchange),
      });
      exchange.res.end();
      return;
    }
    const session = await this.#gate.session(exchange);
    sendJson(exchange, this.#sessionInfo(session));
  }

  /**
   * Exchanges a pasted API key or JWT for a session cookie. The credential travels once, in a POST
   * body, and is not kept: the session remembers an API key by its hash, a JWT by its expiry.
   */
  async #signIn(exchange: HttpExchange): Promise<void> {
    this.#gate.checkSameOrigin(exchange.req);
    const address = exchange.req.socket.remoteAddress ?? 'unknown';
    const gate = this.#options.authThrottle?.check(address);
    if (gate && !gate.ok)
      throw new HttpFailure(rateLimited(gate.retryAfterSeconds), {
        headers: { 'retry-after': String(gate.retryAfterSeconds) },
      });
    const body = await readJsonObject(exchange);
    const credential = typeof body.credential === 'string' ? body.credential.trim() : '';
    if (credential.length === 0 || credential.length > MAX_CREDENTIAL)
      throw new TransportError('bad_request', 'Send {"credential": "<API key or JWT>"}');
    const result = await this.#options.authenticator.authenticate(credential);
    if (!result.ok) {
      const blocked = this.#options.authThrottle?.fail(address) ?? false;
      this.#deps.logger.info({ reason: result.reason, address, blocked }, 'console sign-in failed');
      throw new AccessError('unauthenticated', 'The API key or token is invalid, expired or revoked');
    }
    let kind: SessionCredential;
    let notAfter: number | undefined;
    if (looksLikeApiKey(credential)) kind = { kind: 'api_key', hash: hashApiKey(credential) };
    else {
      kind = { kind: 'jwt' };
      if (JwtAuthenticator.looksLikeJwt(credential)) {
        const exp = decodeJwt(credential).exp;
        if (typeof exp === 'number') notAfter = exp * 1000;
      }
    }
    const { token, session } = this.#gate.sessions.create(result.principal, kind, { notAfter });
    this.#deps.logger.info({ principal: session.principal.id }, 'console sign-in');
    await this.#record(session.principal, 'console.sign-in', { via: 'console', credential: kind.kind }, 'ok');
    sendJson(exchange, this.#sessionInfo(session), {
      headers: { 'set-cookie': this.#gate.sessionCookie(exchange, token, session.expiresAt) },
    });
  }

  /** One audit record of a console action that is not a command: a sign-in, a sign-out. */
  async #record(principal: Principal, command: string, input: JsonObject, outcome: string): Promise<void> {
    await recordAction(this.#deps.store, { principal, command, input, outcome });
  }

  #sessionInfo(session: ConsoleSession): SessionInfo {
    const { principal } = session;
    const { authorizer } = this.#deps;
    return {
      app: this.#deps.appName,
      principal: { id: principal.id, name: principal.name ?? principal.id, roles: [...principal.roles] },
      csrfToken: session.csrfToken,
      expiresAt: new Date(session.expiresAt).toISOString(),
      idleTimeoutMs: this.#gate.sessions.idleMs,
      permissions: {
        audit: authorizer.canExecute(principal, AUDIT_GRANT),
        keys: this.#deps.keys !== undefined && authorizer.canExecute(principal, KEYS_GRANT),
        metrics: authorizer.canExecute(principal, METRICS_GRANT),
      },
    };
  }

  // --- documents --------------------------------------------------------------------------------

  async #documents({ principal }: Call): Promise<{ documents: DocumentSummary[] }> {
    const { state, authorizer } = this.#deps;
    const infos = (await state.listDocuments())
      .filter((info) => authorizer.canAccessDocument(principal, info.doc, 'read'))
      .slice(0, MAX_DOCUMENTS);
    const documents: DocumentSummary[] = [];
    for (const info of infos) {
      const collections: Record<string, number> = {};
      for (const [name, c] of Object.entries(await state.collectionsOf(info.doc))) collections[name] = c.size;
      const summary: DocumentSummary = {
        doc: info.doc,
        revision: info.revision,
        oldestRevision: info.oldestRevision,
        bytes: await this.#plainBytes(info.doc, info.revision, Object.keys(collections)),
        collections,
      };
      if (info.revision > info.oldestRevision) {
        const last = (await state.history(info.doc, info.revision - 1, 1)).commits[0];
        if (last) summary.lastChange = { at: last.at, principal: last.principal, command: last.command };
      }
      documents.push(summary);
    }
    return { documents };
  }

  /** The serialized size of a document's plain part at head, remembered per revision. */
  async #plainBytes(doc: string, revision: number, collections: string[]): Promise<number> {
    const known = this.#sizes.get(doc);
    if (known?.revision === revision) return known.bytes;
    const read = await this.#deps.state.read(doc, { limit: 1 });
    const bytes = Buffer.byteLength(JSON.stringify(withoutMembers(read.value, collections)));
    if (this.#sizes.size >= MAX_DOCUMENTS) this.#sizes.clear();
    this.#sizes.set(doc, { revision: read.revision, bytes });
    return bytes;
  }

  async #document({ principal, url }: Call): Promise<DocumentResponse> {
    const doc = docParam(url);
    this.#requireDocument(principal, doc, 'read');
    const { state } = this.#deps;
    const read = await state.read(doc, { revision: integerParam(url, 'revision'), limit: FIRST_PAGE });
    const { head, oldestRevision } = await state.history(doc, 0, 1);
    const mayRollback = this.#deps.authorizer.canAccessDocument(principal, doc, 'rollback');
    return {
      doc,
      revision: read.revision,
      head: Math.max(head, read.revision),
      oldestRevision,
      value: read.value,
      more: read.more,
      actions: {
        rollback: mayRollback && this.#mayRun(principal, 'state.rollback'),
        undo: mayRollback && this.#mayRun(principal, 'state.undo'),
      },
    };
  }

  async #entries({ principal, url }: Call): Promise<EntriesResponse> {
    const doc = docParam(url);
    this.#requireDocument(principal, doc, 'read');
    const collection = stringParam(url, 'collection', 64);
    if (collection === undefined)
      throw new CommandError('invalid_input', 'collection is required', { details: { param: 'collection' } });
    const options: { collection: string; cursor?: string; limit: number; revision?: number } = {
      collection,
      limit: integerParam(url, 'limit', 1, 1000) ?? FIRST_PAGE,
    };
    const cursor = stringParam(url, 'cursor', 4096);
    if (cursor !== undefined) options.cursor = cursor;
    const revision = integerParam(url, 'revision');
    if (revision !== undefined) options.revision = revision;
    const page = await this.#deps.state.page(doc, options);
    const response: EntriesResponse = {
      doc,
      collection,
      revision: page.revision,
      entries: page.entries,
      size: page.size,
    };
    if (page.cursor !== undefined) response.cursor = page.cursor;
    return response;
  }

  /**
   * The patches from one revision to another. Forwards they compose the commits' patches; backwards
   * (`from` later than `to`) their inverses, newest first: exactly what a rollback from `from` to
   * `to` applies, so a confirmation can show it.
   */
  async #diff({ principal, url }: Call): Promise<DiffResponse & { totalOps: number }> {
    const doc = docParam(url);
    this.#requireDocument(principal, doc, 'read');
    const from = integerParam(url, 'from');
    if (from === undefined)
      throw new CommandError('invalid_input', 'from is required', { details: { param: 'from' } });
    const to = integerParam(url, 'to');
    const diff =
      to !== undefined && to < from
        ? await this.#backwards(doc, from, to)
        : await this.#deps.state.diff(doc, from, to);
    return {
      doc,
      from: diff.from,
      to: diff.to,
      patches: diff.patches.slice(0, MAX_DIFF_OPS),
      paths: touchedPaths(diff.patches).slice(0, MAX_DIFF_OPS),
      compacted: diff.compacted,
      totalOps: diff.patches.length,
    };
  }

  async #backwards(doc: string, from: number, to: number): Promise<StateDiff> {
    const { state } = this.#deps;
    if (from - to > state.limits.maxRangeCommits)
      throw new StateError(
        'range_too_large',
        `A diff spans at most ${state.limits.maxRangeCommits} commits`,
        {
          details: { from, to, limit: state.limits.maxRangeCommits },
        },
      );
    const page = await state.history(doc, to, from - to);
    if (from > page.head) throw laterThanHead('from', from, page.head);
    if (page.commits.length !== from - to || page.commits[0]?.revision !== to + 1)
      throw new StateError(
        'revision_compacted',
        `History before revision ${page.oldestRevision} of "${doc}" was compacted`,
        {
          details: { to, oldestRevision: page.oldestRevision },
        },
      );
    const patches: JsonPatch = [];
    for (let i = page.commits.length - 1; i >= 0; i--) patches.push(...page.commits[i]!.inverse);
    return { doc, from, to, patches, compacted: false };
  }

  /**
   * Commits newest first, `limit` per page, optionally only one principal's or one command's: read
   * backwards in windows from `before`, scanning at most `HISTORY_MAX_SCAN` commits per request.
   */
  async #history({ principal, url }: Call): Promise<HistoryResponse> {
    const doc = docParam(url);
    this.#requireDocument(principal, doc, 'read');
    const limit = integerParam(url, 'limit', 1, 200) ?? 25;
    const byPrincipal = stringParam(url, 'principal');
    const byCommand = stringParam(url, 'command');
    const { state } = this.#deps;
    const first = await state.history(doc, 0, 1);
    const before = integerParam(url, 'before');
    let hi = before === undefined ? first.head : Math.min(before - 1, first.head);
    const commits: CommitSummary[] = [];
    let scanned = 0;
    while (hi > first.oldestRevision && scanned < HISTORY_MAX_SCAN) {
      const lo = Math.max(first.oldestRevision, hi - HISTORY_WINDOW);
      const page = await state.history(doc, lo, hi - lo);
      for (let i = page.commits.length - 1; i >= 0; i--) {
        const commit = page.commits[i]!;
        if (commit.revision > hi) continue;
        if (byPrincipal !== undefined && commit.principal !== byPrincipal) continue;
        if (byCommand !== undefined && commit.command !== byCommand) continue;
        const paths = touchedPaths(commit.patches);
        commits.push({
          revision: commit.revision,
          at: commit.at,
          principal: commit.principal,
          command: commit.command,
          commandId: commit.commandId,
          paths: paths.slice(0, 20),
          pathCount: paths.length,
        });
        if (commits.length === limit) {
          const response: HistoryResponse = {
            doc,
            head: first.head,
            oldestRevision: first.oldestRevision,
            commits,
          };
          if (commit.revision - 1 > first.oldestRevision) response.next = commit.revision;
          return response;
        }
      }
      scanned += hi - lo;
      hi = lo;
    }
    const response: HistoryResponse = {
      doc,
      head: first.head,
      oldestRevision: first.oldestRevision,
      commits,
    };
    if (hi > first.oldestRevision) response.next = hi + 1;
    return response;
  }

  // --- audit ------------------------------------------------------------------------------------

  #auditFilter(url: URL): AuditFilter {
    return {
      principal: stringParam(url, 'principal'),
      command: stringParam(url, 'command'),
      outcome: stringParam(url, 'outcome', 64),
      since: isoParam(url, 'since'),
      until: isoParam(url, 'until'),
    };
  }

  async #auditPage({ principal, url }: Call): Promise<AuditResponse> {
    this.#require(principal, AUDIT_GRANT, 'Reading the audit trail needs the admin.audit permission');
    const page = await this.#audit.page(this.#auditFilter(url), {
      before: integerParam(url, 'before', 1),
      limit: integerParam(url, 'limit', 1, 500) ?? 50,
    });
    return page as AuditResponse;
  }

  async #auditVerify({ principal }: Call): Promise<AuditVerifyResponse> {
    this.#require(principal, AUDIT_GRANT, 'Checking the audit trail needs the admin.audit permission');
    const verdict = await this.#audit.verify();
    return verdict.ok
      ? { ok: true, records: verdict.checked, lastSeq: verdict.lastSeq, lastHash: verdict.lastHash }
      : { ok: false, records: verdict.checked, seq: verdict.seq, reason: verdict.reason };
  }

  /** Every matching record as JSON lines, as `coremcp audit export` prints them, streamed page by page. */
  async #auditExport({ exchange, principal, url }: Call): Promise<void> {
    this.#require(principal, AUDIT_GRANT, 'Exporting the audit trail needs the admin.audit permission');
    const filter = this.#auditFilter(url);
    const { res } = exchange;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'cache-control': 'no-store',
      'content-type': 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="audit-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.jsonl"`,
    });
    for await (const records of this.#audit.all(filter)) {
      if (exchange.signal.aborted) break;
      const text = records.map((r) => `${JSON.stringify(r)}\n`).join('');
      if (!res.write(text)) await new Promise((resolve) => res.once('drain', resolve));
    }
    res.end();
  }

  // --- keys -------------------------------------------------------------------------------------

  #keysOrRefuse(principal: Principal): ApiKeys {
    this.#require(principal, KEYS_GRANT, 'Managing API keys needs the admin.keys permission');
    if (!this.#deps.keys) throw new StateError('not_found', 'This store keeps no API keys');
    return this.#deps.keys;
  }

  async #keys({ principal }: Call): Promise<{ keys: KeyView[]; roles: string[] }> {
    const keys = this.#keysOrRefuse(principal);
    return { keys: (await keys.list()).map(keyView), roles: this.#deps.authorizer.roleNames };
  }

  /** Key changes are audited as the signed-in principal, like commands: one record per attempt. */
  #audited<T>(call: Call, command: string, input: JsonObject, work: () => Promise<T>): Promise<T> {
    return auditedAction(this.#deps.store, { principal: call.principal, command, input }, work);
  }

  async #createKey(call: Call): Promise<CreatedKeyResponse> {
    const body = await readJsonObject(call.exchange);
    const name = typeof body.name === 'string' ? body.name : '';
    const role = typeof body.role === 'string' ? body.role : '';
    return this.#audited(call, 'admin.keys.create', { name, role }, async () => {
      const { key, record } = await this.#keysOrRefuse(call.principal).create(name, role);
      this.#deps.logger.info({ keyId: record.id, name, by: call.principal.id }, 'console created an API key');
      return { key, record: keyView(record) };
    });
  }

  async #revokeKey(call: Call): Promise<{ record: KeyView; endedSessions: number }> {
    const body = await readJsonObject(call.exchange);
    const id = typeof body.id === 'string' ? body.id.slice(0, 64) : '';
    return this.#audited(call, 'admin.keys.revoke', { id }, async () => {
      const record = await this.#keysOrRefuse(call.principal).revoke(id);
      if (!record) throw new StateError('not_found', `No API key "${id}"`, { details: { id } });
      // Its sessions end now, the reviewer's own included if it was signed in with that key.
      const endedSessions = this.#gate.sessions.endWhere(
        (s) => s.credential.kind === 'api_key' && s.credential.hash === record.hash,
        'revoked',
      );
      this.#deps.logger.info({ keyId: record.id, by: call.principal.id }, 'console revoked an API key');
      return { record: keyView(record), endedSessions };
    });
  }

  // --- history actions --------------------------------------------------------------------------

  /** Runs a command through the pipeline as the session's principal; a refusal is answered with its code. */
  async #command(call: Call, name: string, input: JsonObject, expectedRevision?: number): Promise<unknown> {
    const options: ExecuteOptions = {
      principal: call.principal,
      requestId: timeOrderedId(),
      client: CONSOLE_CLIENT,
    };
    if (expectedRevision !== undefined) options.expectedRevision = expectedRevision;
    let result = await this.#deps.execute(name, input, options);
    // A command asking for consent (rollback, undo) answers first with its dry run. The person has
    // just confirmed this very change in the console's dialog, which showed it: that is the consent,
    // given once, bound by the pipeline to the revisions and the hash of the changes shown.
    if (
      result.status === 'input_required' &&
      result.consent &&
      Object.keys(result.requests).every((k) => k === CONSENT_KEY)
    ) {
      result = await this.#deps.execute(name, input, {
        ...options,
        answers: { ...result.answers, [CONSENT_KEY]: { action: 'accept', content: { approve: true } } },
        consent: result.consent,
      });
    }
    if (result.status === 'input_required') {
      const refusal = new CommandError(
        'input_unavailable',
        `"${name}" asked for more than the console can answer`,
      );
      sendError(call.exchange.res, refusal, result.requestId);
      return undefined;
    }
    if (result.status === 'error') {
      sendError(call.exchange.res, result.error, result.requestId);
      return undefined;
    }
    const response: CommandResponse = {
      command: result.command,
      requestId: result.requestId,
      commandId: result.commandId,
      doc: result.doc,
      revision: result.revision,
      committed: result.committed,
      result: result.result,
    };
    return response;
  }

  async #rollback(call: Call): Promise<unknown> {
    const body = await readJsonObject(call.exchange);
    const expected = body.expectedRevision;
    return this.#command(
      call,
      'state.rollback',
      { doc: body.doc ?? null, toRevision: body.toRevision ?? null },
      typeof expected === 'number' && Number.isSafeInteger(expected) && expected >= 0 ? expected : undefined,
    );
  }

  async #undo(call: Call): Promise<unknown> {
    const body = await readJsonObject(call.exchange);
    return this.#command(call, 'state.undo', { commandId: body.commandId ?? null });
  }
}
