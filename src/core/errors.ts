import type { JsonObject, JsonValue } from './json.js';

/**
 * The error catalog. Codes are stable: once published, a code never changes meaning. Tests and
 * clients match on codes, never on messages. `docs/errors.md` is checked against this table.
 *
 * - `family`: which seed error family the code belongs to (CommandError, StateError, RecoveryError),
 *   plus `access` (who may call) and `internal` (our fault, never detailed to clients).
 * - `jsonRpc`: the JSON-RPC error code used when the error travels as a protocol error, and stamped
 *   into tool-error results so both shapes carry it. It follows the 2026-07-28 allocation policy
 *   (`JSON_RPC_CODE_POLICY`): a standard JSON-RPC code (-32700, -32600..-32603) or a spec-defined MCP
 *   code used with its spec meaning, and otherwise a code of coremcp's own outside the reserved
 *   -32768..-32000 range: -31000..-31099, whose last two digits are those of the pre-2026 -320xx code.
 * - `http`: the status used when the error ends an HTTP request before MCP handles it.
 * - `expose`: whether the thrower's message and details may reach the client. When false the client
 *   gets `message` from this table and nothing else.
 */
export const ERROR_CATALOG = {
  unauthenticated: {
    family: 'access',
    jsonRpc: -31001,
    http: 401,
    expose: true,
    message: 'Authentication required',
    description: 'The request carried no credentials, or credentials that are invalid, expired or revoked.',
  },
  forbidden: {
    family: 'access',
    jsonRpc: -31003,
    http: 403,
    expose: true,
    message: 'Not allowed',
    description:
      "The principal's roles do not grant this command, document operation or state path. Details name the permission or path.",
  },
  rate_limited: {
    family: 'access',
    jsonRpc: -31029,
    http: 429,
    expose: true,
    message: 'Too many requests',
    description:
      'The principal or client address exceeded its request rate. Details carry `retryAfterSeconds`.',
  },
  too_many_sessions: {
    family: 'access',
    jsonRpc: -31033,
    http: 503,
    expose: true,
    message: 'Too many sessions; try again later',
    description:
      'Every 2025-11-25 session slot is taken by recently active sessions. Retry later, or use the 2026-07-28 protocol, which needs no session.',
  },
  too_many_streams: {
    family: 'access',
    jsonRpc: -31034,
    http: 429,
    expose: true,
    message: 'Too many open subscription streams',
    description:
      'The principal already holds as many `subscriptions/listen` streams as one principal may (a fair share, so one cannot lock others out). Close one first.',
  },
  shutting_down: {
    family: 'transport',
    jsonRpc: -31035,
    http: 503,
    expose: true,
    message: 'The server is shutting down; retry on another instance or after it restarts',
    description:
      'The server stopped taking new calls to finish the ones in flight before it exits (HTTP: 503 with `Retry-After`). Nothing ran.',
  },
  payload_too_large: {
    family: 'transport',
    jsonRpc: -31013,
    http: 413,
    expose: true,
    message: 'Request body too large',
    description: 'The HTTP request body exceeded the configured limit.',
  },
  parse_error: {
    family: 'transport',
    jsonRpc: -32700,
    http: 400,
    expose: true,
    message: 'Parse error',
    description: 'A message was not valid JSON (over stdio: one line). Nothing ran.',
  },
  batch_not_supported: {
    family: 'transport',
    jsonRpc: -32600,
    http: 400,
    expose: true,
    message: 'JSON-RPC batches are not supported',
    description:
      'A message was a JSON array. MCP removed batching in 2025-06-18: send one request per message (a JSON object). Nothing in the batch ran.',
  },
  bad_request: {
    family: 'transport',
    jsonRpc: -32600,
    http: 400,
    expose: true,
    message: 'Bad request',
    description:
      'The HTTP request could not be read: a malformed request target, or a body that ended early.',
  },
  session_not_found: {
    family: 'transport',
    jsonRpc: -31004,
    http: 404,
    expose: true,
    message: 'Session not found',
    description:
      'The `Mcp-Session-Id` names no open 2025-11-25 session of this principal (it expired, was closed, or belongs to someone else). Start a new session.',
  },
  invalid_input: {
    family: 'command',
    jsonRpc: -32602,
    http: 400,
    expose: true,
    message: 'Invalid input',
    description:
      'Arguments failed the command schema or the input limits (size, depth, string length, forbidden keys). Details list `issues` with JSON paths.',
  },
  unknown_command: {
    family: 'command',
    jsonRpc: -32602,
    http: 404,
    expose: true,
    message: 'Unknown command',
    description: 'No command (tool) has this name. Travels as a JSON-RPC protocol error, not a tool result.',
  },
  command_failed: {
    family: 'command',
    jsonRpc: -31000,
    http: 422,
    expose: true,
    message: 'Command failed',
    description:
      "A command's handler refused the request for a reason of its own. Apps usually throw their own codes (e.g. `task_already_claimed`), which travel the same way.",
  },
  timeout: {
    family: 'command',
    jsonRpc: -31016,
    http: 504,
    expose: true,
    message: 'Command timed out',
    description: 'The handler did not finish within its time limit; nothing was committed.',
  },
  cancelled: {
    family: 'command',
    jsonRpc: -31025,
    http: 408,
    expose: true,
    message: 'The request was cancelled',
    description:
      'The client cancelled the request (or disconnected) before the handler finished; nothing was committed.',
  },
  idempotency_key_reused: {
    family: 'command',
    jsonRpc: -31011,
    http: 422,
    expose: true,
    message: 'Idempotency key already used with different input',
    description: 'The idempotency key was already used by this principal for a different command or input.',
  },
  missing_client_capability: {
    family: 'command',
    jsonRpc: -32021,
    http: 400,
    expose: true,
    message: 'Missing required client capability',
    description:
      'The command asks the client for input (elicitation, sampling, roots) that the client did not declare it can give. Travels as a JSON-RPC error whose `data.requiredCapabilities` names what to declare.',
  },
  input_unavailable: {
    family: 'command',
    jsonRpc: -31041,
    http: 400,
    expose: true,
    message: 'This connection cannot carry a question to the client',
    description:
      'The command needs an answer from the client, but the call came without a way to ask: in process, or over 2025-11-25 HTTP without a session. Use the 2026-07-28 protocol or open a session.',
  },
  request_state_invalid: {
    family: 'command',
    jsonRpc: -32602,
    http: 400,
    expose: true,
    message: 'Invalid requestState',
    description:
      "A retried call's `requestState` was not issued by this server, was altered, or belongs to another principal, command or input. Travels as a JSON-RPC error; nothing was run. Start the call again without it.",
  },
  request_state_expired: {
    family: 'command',
    jsonRpc: -32602,
    http: 400,
    expose: true,
    message: 'Expired requestState',
    description:
      "A retried call's `requestState` is older than its time to live (10 minutes by default). Travels as a JSON-RPC error; nothing was run. Start the call again without it.",
  },
  request_state_replayed: {
    family: 'command',
    jsonRpc: -32602,
    http: 409,
    expose: true,
    message: 'requestState already used',
    description:
      'A `requestState` is good for one retry; this one was used before (a replayed consent, a duplicated retry). Travels as a JSON-RPC error; nothing was run.',
  },
  consent_declined: {
    family: 'command',
    jsonRpc: -31040,
    http: 409,
    expose: true,
    message: 'The change was not approved',
    description:
      'A command that asks for consent showed its changes and the answer was no (declined, cancelled, or not confirmed). Nothing was committed; the decision is audited with the hash of the diff shown.',
  },
  unknown_prompt: {
    family: 'command',
    jsonRpc: -32602,
    http: 404,
    expose: true,
    message: 'Prompt not found',
    description:
      'No prompt has this name, or the principal may not use it. Travels as a JSON-RPC protocol error.',
  },
  not_found: {
    family: 'state',
    jsonRpc: -31002,
    http: 404,
    expose: true,
    message: 'Not found',
    description: 'The document, resource, commit or key does not exist.',
  },
  resource_not_found: {
    family: 'state',
    jsonRpc: -32602,
    http: 404,
    expose: true,
    message: 'Resource not found',
    description:
      'No resource has this URI, or the principal may not read it (the spec gives resource-not-found -32602). Details carry the `uri`.',
  },
  mcp_task_not_found: {
    family: 'state',
    jsonRpc: -32602,
    http: 404,
    expose: true,
    message: 'Task not found',
    description:
      "No MCP task (the tasks extension; not an app's own tasks) has this id for this principal: it never existed, its time to live passed, or another principal created it. Travels as a JSON-RPC error.",
  },
  already_exists: {
    family: 'state',
    jsonRpc: -31026,
    http: 409,
    expose: true,
    message: 'Already exists',
    description: 'Something with this name or id exists already (an API key name, for example).',
  },
  revision_conflict: {
    family: 'state',
    jsonRpc: -31009,
    http: 409,
    expose: true,
    message: 'The document is not at the expected revision',
    description:
      'The call carried `_meta["coremcp/expected-revision"]` and the document had moved on. Details carry `expectedRevision` and `currentRevision`. Nothing was committed.',
  },
  revision_compacted: {
    family: 'state',
    jsonRpc: -31010,
    http: 410,
    expose: true,
    message: 'That revision is no longer kept',
    description:
      'The revision lies before the retention point. Details carry `oldestRevision`, the oldest readable one.',
  },
  invalid_revision: {
    family: 'state',
    jsonRpc: -32602,
    http: 400,
    expose: true,
    message: 'Invalid revision',
    description: 'A revision was negative, fractional, not a number, or later than the head.',
  },
  invalid_cursor: {
    family: 'state',
    jsonRpc: -32602,
    http: 400,
    expose: true,
    message: 'Invalid cursor',
    description:
      'A page was asked for with a cursor this server did not issue for that read (altered, or from another collection). Start again from the first page.',
  },
  unknown_index: {
    family: 'state',
    jsonRpc: -32602,
    http: 400,
    expose: true,
    message: 'No such index',
    description:
      'A collection was counted or queried by an index it does not declare. Details name the collection and its indexes.',
  },
  invalid_query: {
    family: 'state',
    jsonRpc: -32602,
    http: 400,
    expose: true,
    message: 'Invalid query',
    description:
      "A collection query's prefix has more values than the index has fields, or values that are not strings, numbers, booleans or null.",
  },
  range_too_large: {
    family: 'state',
    jsonRpc: -31024,
    http: 413,
    expose: true,
    message: 'The requested range is too large',
    description:
      'A diff or history request spans more commits than the limit allows. Details carry `limit`; ask for a smaller range or read the whole value.',
  },
  precondition_failed: {
    family: 'state',
    jsonRpc: -31027,
    http: 412,
    expose: true,
    message: "The command's precondition does not hold",
    description:
      'A precondition the command declares failed on the current state. Details carry the `reason`. Nothing was committed.',
  },
  undo_conflict: {
    family: 'state',
    jsonRpc: -31012,
    http: 409,
    expose: true,
    message: 'A later commit touched the same paths',
    description: 'Undo was refused because later commits changed the same paths. Details list those commits.',
  },
  state_invalid: {
    family: 'state',
    jsonRpc: -31014,
    http: 422,
    expose: true,
    message: 'The command produced a value that is not plain JSON',
    description:
      'A handler wrote `undefined`, a function, a class instance, a non-finite number or a forbidden key into the state, or returned such a result. Nothing was committed.',
  },
  state_too_large: {
    family: 'state',
    jsonRpc: -31015,
    http: 413,
    expose: true,
    message: 'The document would exceed its size limit',
    description:
      'The commit would make the document larger than the configured limit. Nothing was committed.',
  },
  store_unavailable: {
    family: 'recovery',
    jsonRpc: -31017,
    http: 503,
    expose: false,
    message: 'Storage is unavailable; try again',
    description:
      'The store failed (an I/O error, a file that cannot be opened) and retries did not help. Nothing was committed.',
  },
  store_busy: {
    family: 'recovery',
    jsonRpc: -31030,
    http: 503,
    expose: false,
    message: 'Storage is busy; try again',
    description:
      'Another process held the write lock (a backup, the CLI, a second server) past the wait allowed (2 s by default, waited without blocking the server). Nothing was committed; retry shortly.',
  },
  storage_full: {
    family: 'recovery',
    jsonRpc: -31031,
    http: 507,
    expose: false,
    message: 'Storage is full',
    description:
      'The disk (or the database quota) is full. Nothing was committed; reads still answer. Writes work again as soon as space is freed, without a restart.',
  },
  store_read_only: {
    family: 'recovery',
    jsonRpc: -31036,
    http: 503,
    expose: false,
    message: 'Storage is read-only',
    description:
      'The database file or its file system became read-only (a remount, a permission change). Nothing was committed; reads still answer.',
  },
  store_corrupt: {
    family: 'recovery',
    jsonRpc: -31032,
    http: 500,
    expose: false,
    message: 'Storage is damaged',
    description:
      'The database file is corrupt, truncated, replaced or lost under the server. Writes stop until an operator restores it.',
  },
  circuit_open: {
    family: 'recovery',
    jsonRpc: -31018,
    http: 503,
    expose: true,
    message: 'Storage is failing; requests are paused',
    description:
      'A store fault opened the circuit breaker: writes fail fast (50 ms at a time) until one probe write succeeds, which closes it. Details carry `retryAfterSeconds` and the `fault` (busy, full, read_only, io, corrupt, replaced).',
  },
  conflict_retries_exhausted: {
    family: 'recovery',
    jsonRpc: -31019,
    http: 503,
    expose: true,
    message: 'Too many concurrent writers; try again',
    description: 'The commit lost the race to other writers more times than allowed. Nothing was committed.',
  },
  registry_frozen: {
    family: 'setup',
    jsonRpc: -32603,
    http: 500,
    expose: false,
    message: 'Internal error',
    description:
      'A command was registered after serving started. Register every command before `createCore` returns (or in the app).',
  },
  duplicate_command: {
    family: 'setup',
    jsonRpc: -32603,
    http: 500,
    expose: false,
    message: 'Internal error',
    description: 'Two commands were registered under one name. Command names are unique.',
  },
  document_too_new: {
    family: 'setup',
    jsonRpc: -32603,
    http: 500,
    expose: true,
    message: 'A document is at a newer schema version than this app declares',
    description:
      'The store holds a document written by a newer version of the app (its schema version is above the one declared). The server refuses to start: upgrade the app.',
  },
  store_too_new: {
    family: 'setup',
    jsonRpc: -32603,
    http: 500,
    expose: true,
    message: 'The store was written by a newer coremcp',
    description:
      "The database's schema version is newer than this coremcp knows. The server refuses to start: upgrade coremcp.",
  },
  internal_error: {
    family: 'internal',
    jsonRpc: -32603,
    http: 500,
    expose: false,
    message: 'Internal error',
    description:
      'Anything unexpected. The client gets only this code and a request id; the server log has the full story under that id.',
  },
} as const satisfies Record<string, ErrorSpec>;

/**
 * Which seed error family a code belongs to (CommandError, StateError, RecoveryError), plus `access`
 * (who may call), `transport` (the HTTP request itself), `setup` (an app or registry wired wrongly,
 * raised at start-up) and `internal` (our fault, never detailed to clients).
 */
export type ErrorFamily = 'command' | 'state' | 'recovery' | 'access' | 'transport' | 'setup' | 'internal';

export interface ErrorSpec {
  family: ErrorFamily;
  jsonRpc: number;
  http: number;
  expose: boolean;
  message: string;
  description: string;
}

type Catalog = typeof ERROR_CATALOG;
export type CatalogCode = keyof Catalog;
/** The catalog codes of one family. */
export type FamilyCode<F extends ErrorFamily> = {
  [K in CatalogCode]: Catalog[K]['family'] extends F ? K : never;
}[CatalogCode];
export type CommandCode = FamilyCode<'command'>;
export type StateCode = FamilyCode<'state'>;
export type RecoveryCode = FamilyCode<'recovery'>;
export type AccessCode = FamilyCode<'access'>;
export type TransportCode = FamilyCode<'transport'>;
export type SetupCode = FamilyCode<'setup'>;
/**
 * A code a `CommandError` accepts: the command family's, or an app's own (any lower-snake code that
 * is not a catalog code of another family). Resolves to `never` for another family's code.
 */
export type CommandErrorCode<C extends string> = C extends Exclude<CatalogCode, CommandCode> ? never : C;

/**
 * Which JSON-RPC error numbers a catalog entry may carry (the 2026-07-28 allocation policy,
 * basic/index.mdx "Error codes"): -32768..-32000 is reserved (-32000..-32019 legacy, -32020..-32099
 * for the spec), so coremcp's own codes live outside it, in `own`. Inside it only the standard
 * JSON-RPC codes and the spec-defined MCP codes appear, the latter only under the code that names
 * the condition the spec gave them.
 */
export const JSON_RPC_CODE_POLICY = {
  reserved: { from: -32768, to: -32000 },
  standard: [-32700, -32600, -32601, -32602, -32603] as readonly number[],
  /** Spec-defined codes, by the catalog code that may carry each. */
  spec: {
    header_mismatch: -32020,
    missing_client_capability: -32021,
    unsupported_protocol_version: -32022,
    url_elicitation_required: -32042,
  } as Readonly<Record<string, number>>,
  own: { from: -31099, to: -31000 },
} as const;

/** Why a catalog entry's JSON-RPC code breaks the allocation policy, or undefined when it keeps it. */
export function jsonRpcPolicyViolation(code: string, jsonRpc: number): string | undefined {
  const { reserved, standard, spec, own } = JSON_RPC_CODE_POLICY;
  if (!Number.isInteger(jsonRpc)) return `${jsonRpc} is not an integer`;
  if (jsonRpc < reserved.from || jsonRpc > reserved.to) {
    return jsonRpc >= own.from && jsonRpc <= own.to
      ? undefined
      : `${jsonRpc} is outside coremcp's block ${own.from}..${own.to}`;
  }
  if (standard.includes(jsonRpc)) return undefined;
  const owner = Object.entries(spec).find(([, n]) => n === jsonRpc)?.[0];
  if (owner === code) return undefined;
  return owner
    ? `${jsonRpc} is the spec's code for ${owner}, not for ${code}`
    : `${jsonRpc} lies in the reserved range ${reserved.from}..${reserved.to}`;
}

/** Codes apps may use for their own errors: lower snake case, 2-64 characters. */
export const ERROR_CODE_PATTERN = /^[a-z][a-z0-9_]{1,63}$/;

/** Spec for codes that are not in the catalog: an app's own command errors. */
const APP_ERROR_SPEC: ErrorSpec = {
  family: 'command',
  jsonRpc: -31000,
  http: 422,
  expose: true,
  message: 'Command failed',
  description: 'An error code defined by the app.',
};

function catalogSpec(code: string): ErrorSpec | undefined {
  return Object.hasOwn(ERROR_CATALOG, code) ? (ERROR_CATALOG as Record<string, ErrorSpec>)[code] : undefined;
}

export function errorSpec(code: string): ErrorSpec {
  return catalogSpec(code) ?? APP_ERROR_SPEC;
}

/** The JSON-RPC error number of a code: what every protocol error coremcp sends carries. */
export function jsonRpcCode(code: string): number {
  return errorSpec(code).jsonRpc;
}

/** The shape of an error as a client sees it. */
export interface PublicError {
  code: string;
  message: string;
  requestId?: string;
  details?: JsonObject;
}

const BRAND = Symbol.for('coremcp.error');

export interface CoreMcpErrorOptions {
  details?: JsonObject;
  cause?: unknown;
}

/**
 * The base of every error coremcp raises on purpose. Recognized across copies of the library by a
 * brand (an app may import a different copy than the CLI serving it). Raise one of the family
 * classes below; each accepts only its family's codes.
 */
export abstract class CoreMcpError extends Error {
  readonly code: string;
  readonly details: JsonObject | undefined;

  protected constructor(
    code: string,
    family: ErrorFamily,
    message?: string,
    options: CoreMcpErrorOptions = {},
  ) {
    if (!ERROR_CODE_PATTERN.test(code)) {
      throw new TypeError(`error code "${code}" must match ${ERROR_CODE_PATTERN} (lower snake case)`);
    }
    const spec = errorSpec(code);
    if (spec.family !== family) {
      throw new TypeError(`error code "${code}" belongs to the ${spec.family} family, not ${family}`);
    }
    super(message ?? spec.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
    this.name = new.target.name;
    Object.defineProperty(this, BRAND, { value: true });
  }

  get spec(): ErrorSpec {
    return errorSpec(this.code);
  }
}

/** The command was refused or failed: bad input, unknown command, an app's own refusal. */
export class CommandError<C extends string = string> extends CoreMcpError {
  /** `code`: a command-family catalog code, or an app's own (lower snake case, no other family's). */
  constructor(code: CommandErrorCode<C>, message?: string, options: CoreMcpErrorOptions = {}) {
    super(code, 'command', message, options);
  }
}

/** The state could not be read or changed as asked. */
export class StateError extends CoreMcpError {
  constructor(code: StateCode, message?: string, options: CoreMcpErrorOptions = {}) {
    super(code, 'state', message, options);
  }
}

/** Storage failed and recovery (retry, breaker) could not hide it. */
export class RecoveryError extends CoreMcpError {
  constructor(code: RecoveryCode, message?: string, options: CoreMcpErrorOptions = {}) {
    super(code, 'recovery', message, options);
  }
}

/** Authentication, authorization and abuse limits. */
export class AccessError extends CoreMcpError {
  constructor(code: AccessCode, message?: string, options: CoreMcpErrorOptions = {}) {
    super(code, 'access', message, options);
  }
}

/** An HTTP request that could not be read or routed (body too large, malformed, unknown session). */
export class TransportError extends CoreMcpError {
  constructor(code: TransportCode, message?: string, options: CoreMcpErrorOptions = {}) {
    super(code, 'transport', message, options);
  }
}

/** An app or registry wired wrongly: raised at start-up, never by a client's call. */
export class SetupError extends CoreMcpError {
  constructor(code: SetupCode, message?: string, options: CoreMcpErrorOptions = {}) {
    super(code, 'setup', message, options);
  }
}

/** Wraps an unexpected exception: clients see only `internal_error` and the request id. */
export class InternalError extends CoreMcpError {
  constructor(cause: unknown) {
    super('internal_error', 'internal', undefined, { cause });
  }
}

/** The document moved on from the revision the caller expected. */
export class RevisionConflictError extends StateError {
  readonly expectedRevision: number;
  readonly currentRevision: number;

  constructor(doc: string, expectedRevision: number, currentRevision: number) {
    super(
      'revision_conflict',
      `Document "${doc}" is at revision ${currentRevision}, not ${expectedRevision}`,
      {
        details: { doc, expectedRevision, currentRevision },
      },
    );
    this.expectedRevision = expectedRevision;
    this.currentRevision = currentRevision;
  }
}

/**
 * The error for a code, as its family's class: for outcomes known only by their code (a stored
 * refusal replayed to an idempotent repeat, an error received over the wire).
 */
export function errorForCode(
  code: string,
  message?: string,
  options: CoreMcpErrorOptions = {},
): CoreMcpError {
  switch (catalogSpec(code)?.family) {
    case 'state':
      return new StateError(code as StateCode, message, options);
    case 'recovery':
      return new RecoveryError(code as RecoveryCode, message, options);
    case 'access':
      return new AccessError(code as AccessCode, message, options);
    case 'transport':
      return new TransportError(code as TransportCode, message, options);
    case 'setup':
      return new SetupError(code as SetupCode, message, options);
    case 'internal':
      return new InternalError(new Error(message));
    default:
      return new CommandError(code, message, options);
  }
}

export function isCoreMcpError(error: unknown): error is CoreMcpError {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[BRAND] === true;
}

/** Builds the error a client sees. Unknown exceptions become `internal_error`; nothing else leaks. */
export function toPublicError(error: unknown, requestId?: string): PublicError {
  const out: PublicError =
    isCoreMcpError(error) && error.spec.expose
      ? { code: error.code, message: error.message }
      : { code: isCoreMcpError(error) ? error.code : 'internal_error', message: '' };
  if (out.message === '') out.message = errorSpec(out.code).message;
  if (requestId !== undefined) out.requestId = requestId;
  if (isCoreMcpError(error) && error.spec.expose && error.details !== undefined) out.details = error.details;
  return out;
}

/** A JSON body for errors raised outside JSON-RPC dispatch (HTTP 401/403/413/429). */
export function jsonRpcErrorBody(error: PublicError, id: JsonValue = null): JsonObject {
  const data: JsonObject = { code: error.code };
  if (error.requestId !== undefined) data.requestId = error.requestId;
  if (error.details !== undefined) data.details = error.details;
  return { jsonrpc: '2.0', id, error: { code: jsonRpcCode(error.code), message: error.message, data } };
}

/** The catalog as a markdown table: what `docs/errors.md` holds (a test keeps the two equal). */
export function errorCatalogMarkdown(): string {
  const rows = Object.entries(ERROR_CATALOG as Record<string, ErrorSpec>).map(
    ([code, spec]) =>
      `| \`${code}\` | ${spec.family} | ${spec.jsonRpc} | ${spec.http} | ${spec.expose ? 'yes' : 'no'} | ${spec.message} | ${spec.description.replace(/\|/g, '\\|')} |`,
  );
  return [
    '# Error codes',
    '',
    '<!-- Generated from src/core/errors.ts by `npm run docs:errors`; a test fails when it is out of date. -->',
    '',
    'Every error a client can see carries one of these codes (or an app-defined one). Codes never change meaning.',
    'Invalid arguments and failed commands arrive as tool results with `isError: true` and',
    '`structuredContent.error = { code, message, requestId, details? }`; unknown tools and malformed requests arrive',
    'as JSON-RPC errors whose `data.code` is the code. Requests refused before MCP handles them (401, 403, 413, 429)',
    'get a JSON-RPC error body with the HTTP status below. "Shows details" says whether the message and details',
    'written by the code that raised the error reach the client; when it does not, the client sees the message here',
    'and a request id to find the rest in the server log.',
    '',
    'Apps define their own codes with `new CommandError(code, message, { details })` (lower snake case); they travel',
    'like `command_failed`: JSON-RPC code -31000, HTTP 422, details shown.',
    '',
    '## JSON-RPC numbers',
    '',
    'The numbers follow the 2026-07-28 allocation policy: -32768..-32000 is reserved (-32000..-32019 legacy,',
    '-32020..-32099 for the MCP specification), so coremcp uses only the standard JSON-RPC codes (-32700, -32600,',
    '-32601, -32602, -32603) and the spec-defined codes with their spec meaning (-32021 missing client capability)',
    'there. Its own codes are -31000..-31099; a test checks every entry. Clients should match on `data.code` (the',
    'name below), which never changes.',
    '',
    'Until the 2026-07-28 release coremcp used -32000..-32032 for its own codes. Each moved to -310xx with the same',
    'last two digits (`rate_limited` -32029 is now -31029, `revision_conflict` -32009 is now -31009, app codes',
    '-32000 are now -31000); the two that shared a number with another code got one of their own (`too_many_sessions`',
    '-32000 is now -31033, `session_not_found` -32001 is now -31004). Names, HTTP statuses and meanings are unchanged.',
    '',
    '| code | family | JSON-RPC | HTTP | shows details | message | meaning |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
