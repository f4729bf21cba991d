import type { IncomingHttpHeaders } from 'node:http';
import {
  BAGGAGE_META_KEY,
  classifyInboundRequest,
  type InboundClassificationOutcome,
  isJsonContentType,
  type JSONRPCMessage,
  LOG_LEVEL_META_KEY,
  ProtocolErrorCode,
  RELATED_TASK_META_KEY,
  type RequestId,
  type Server,
  TRACEPARENT_META_KEY,
  TRACESTATE_META_KEY,
  type Transport,
} from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import type { Principal } from '../core/access.js';

/** The protocol revision the pooled instances serve; anything else takes the SDK's per-request path. */
const REVISION = '2026-07-28';

/**
 * The 2026-07-28 requests a pooled instance answers, with the params each may carry and the one
 * `Mcp-Name` mirrors. Everything else (a progress token, a log level, a task-augmented call, a retry
 * with `inputResponses`, a name in Base64 or with spaces) takes the SDK's per-request path, which
 * also answers every malformed request with its own status and message.
 */
const POOLED: ReadonlyMap<string, { params: ReadonlySet<string>; name?: 'name' | 'uri' }> = new Map([
  ['tools/call', { params: new Set(['name', 'arguments', '_meta']), name: 'name' }],
  ['tools/list', { params: new Set(['cursor', '_meta']) }],
  ['resources/list', { params: new Set(['cursor', '_meta']) }],
  ['resources/templates/list', { params: new Set(['cursor', '_meta']) }],
  ['resources/read', { params: new Set(['uri', '_meta']), name: 'uri' }],
  ['server/discover', { params: new Set(['_meta']) }],
]);

/** A JSON-RPC request's own keys: the SDK's request schema is strict, so any other key is refused. */
const REQUEST_KEYS: ReadonlySet<string> = new Set(['jsonrpc', 'id', 'method', 'params']);

/** Most distinct envelopes whose classification is remembered (clients send the same one each time). */
const MAX_CLASSIFIED = 1024;
/** Longest envelope (as JSON) remembered: a client's is a few hundred bytes; 1,024 of these stay small. */
const MAX_ENVELOPE_KEY = 4096;
/** Envelope keys that carry a new value with every request: an envelope holding one is not remembered. */
const PER_REQUEST_META: readonly string[] = [TRACEPARENT_META_KEY, TRACESTATE_META_KEY, BAGGAGE_META_KEY];

/**
 * The envelope as a memo key: its JSON, which stands for it exactly, except that a number too large
 * for a double (parsed as Infinity) is written as null, which the SDK judges differently; such an
 * envelope, a long one and one with per-request keys get none.
 */
function envelopeKey(meta: Record<string, unknown>): string | undefined {
  for (const key of PER_REQUEST_META) if (key in meta) return undefined;
  let exact = true;
  const text = JSON.stringify(meta, (_key, value: unknown) => {
    if (typeof value === 'number' && !Number.isFinite(value)) exact = false;
    return value;
  });
  return exact && text.length <= MAX_ENVELOPE_KEY ? text : undefined;
}

export interface PooledInstancesOptions {
  /** A long-lived SDK server serving `principal` (its handlers close over the principal). */
  createServer: (principal: Principal) => Server;
  /** Whether a tool declares `x-mcp-header` parameters (those calls take the SDK's path, which checks them). */
  declaresParamHeaders: (tool: string) => boolean;
  /** Most principals with an instance at once; the least recently used makes room (default 256). */
  maxInstances?: number | undefined;
  /** An instance idle this long is closed (default 10 minutes). */
  idleMs?: number | undefined;
  onerror?: ((error: Error) => void) | undefined;
}

/**
 * The HTTP status of a JSON-RPC error, as the SDK's per-request transport picks it for an error from a
 * request's handler: 200 (the error is the payload), except a missing client capability, which is
 * 400 wherever it comes from. (The SDK's other non-200 answers come before dispatch — a method it
 * does not know, a malformed message — and no request `eligible` accepts can meet them.)
 */
function errorStatus(code: number | undefined): number {
  return code === ProtocolErrorCode.MissingRequiredClientCapability ? 400 : 200;
}

/** Tells a pooled call that its caller went away (the HTTP exchange's `Cancellation`). */
export interface CancelSource {
  readonly cancelled: boolean;
  /** Calls `listener` once on cancellation; returns its removal. */
  onCancel(listener: () => void): () => void;
}

/** What a pooled call answers: the JSON-RPC response as it goes on the wire. */
export interface PooledAnswer {
  status: number;
  body: string;
}

/**
 * 2026-07-28 requests served by one long-lived SDK server per principal instead of one per request.
 * The SDK's per-request path builds a `Server` with every handler, a transport, a web `Request` and
 * `Response` and an `AbortController` for each call; here the SDK's own modern serving entry
 * (`serveStdio`, which pins one instance per connection) runs over an in-process transport, so each
 * request is the SDK's own parse, dispatch and result encoding, and nothing else. Only requests whose
 * headers and envelope the SDK would accept as they are take this path (`eligible`); the answer is
 * the same JSON-RPC response, byte for byte (a test compares every method).
 */
export class PooledInstances {
  readonly #options: PooledInstancesOptions;
  readonly #instances = new Map<string, PooledInstance>();
  readonly #max: number;
  readonly #idleMs: number;
  readonly #sweep: NodeJS.Timeout;
  /** `classifyInboundRequest`'s verdicts by envelope (see `#modern`), oldest first. */
  readonly #classified = new Map<string, boolean>();

  constructor(options: PooledInstancesOptions) {
    this.#options = options;
    this.#max = options.maxInstances ?? 256;
    this.#idleMs = options.idleMs ?? 10 * 60_000;
    this.#sweep = setInterval(() => this.#closeIdle(), Math.min(this.#idleMs, 60_000));
    this.#sweep.unref();
  }

  /**
   * Whether a parsed request can be answered by a pooled instance: a well-formed 2026-07-28 request
   * (by the SDK's own classification) of a pooled method, whose standard headers name exactly what
   * its body does, and which asks for nothing a per-request exchange alone can carry.
   */
  eligible(parsed: unknown, headers: IncomingHttpHeaders): parsed is PooledRequest {
    if (!isRecord(parsed) || typeof parsed.method !== 'string') return false;
    const shape = POOLED.get(parsed.method);
    if (!shape || (typeof parsed.id !== 'string' && typeof parsed.id !== 'number')) return false;
    if (!isJsonContentType(single(headers['content-type']))) return false;
    const params = parsed.params;
    if (!isRecord(params) || !isRecord(params._meta)) return false;
    for (const key of Object.keys(params)) if (!shape.params.has(key)) return false;
    const meta = params._meta;
    if ('progressToken' in meta || LOG_LEVEL_META_KEY in meta || RELATED_TASK_META_KEY in meta) return false;
    if (params.cursor !== undefined && typeof params.cursor !== 'string') return false;
    if (single(headers['mcp-protocol-version']) !== REVISION) return false;
    if (single(headers['mcp-method']) !== parsed.method) return false;
    const nameHeader = single(headers['mcp-name']);
    if (shape.name === undefined) {
      if (nameHeader !== undefined) return false;
    } else {
      const value = params[shape.name];
      // The header must be the plain value: a Base64 sentinel, spaces or a mismatch take the SDK path.
      if (typeof value !== 'string' || nameHeader !== value || !PLAIN_HEADER.test(value)) return false;
    }
    if (parsed.method === 'tools/call') {
      if (params.arguments !== undefined && !isRecord(params.arguments)) return false;
      if (this.#options.declaresParamHeaders(params.name as string)) return false;
    }
    return this.#modern(parsed as unknown as PooledRequest, nameHeader);
  }

  /**
   * Whether the SDK classifies the request as a well-formed 2026-07-28 request (~8 µs a request).
   * For a request `eligible` has checked, the verdict depends on nothing but its JSON-RPC frame (the
   * `jsonrpc` value, the kind of id, the keys beside them: the SDK's request schema is strict there
   * and loose in `params`), its method and its `_meta` envelope, which a client sends unchanged with
   * every request; so it is remembered by those (~1 µs to key). Anything else is classified afresh.
   */
  #modern(request: PooledRequest, nameHeader: string | undefined): boolean {
    const { id } = request;
    let key: string | undefined;
    if (
      request.jsonrpc === '2.0' &&
      (typeof id === 'string' || Number.isSafeInteger(id)) &&
      Object.keys(request).every((k) => REQUEST_KEYS.has(k))
    ) {
      const envelope = envelopeKey(request.params._meta);
      if (envelope !== undefined) {
        key = `${typeof id}\u0000${request.method}\u0000${nameHeader === undefined ? '-' : '+'}\u0000${envelope}`;
        const known = this.#classified.get(key);
        if (known !== undefined) return known;
      }
    }
    const outcome: InboundClassificationOutcome = classifyInboundRequest({
      httpMethod: 'POST',
      body: request,
      protocolVersionHeader: REVISION,
      mcpMethodHeader: request.method,
      ...(nameHeader === undefined ? {} : { mcpNameHeader: nameHeader }),
    });
    const modern =
      outcome.kind === 'modern' &&
      outcome.messageKind === 'request' &&
      outcome.classification.revision === REVISION;
    if (key !== undefined) {
      if (this.#classified.size >= MAX_CLASSIFIED)
        this.#classified.delete(this.#classified.keys().next().value as string);
      this.#classified.set(key, modern);
    }
    return modern;
  }

  /** Answers an eligible request through the principal's instance; undefined when the call was cancelled. */
  call(
    principal: Principal,
    request: PooledRequest,
    cancel: CancelSource,
  ): Promise<PooledAnswer | undefined> {
    // The caller is gone already: no instance is made (or evicted) for it, and nothing is sent.
    if (cancel.cancelled) return Promise.resolve(undefined);
    return this.#instanceFor(principal).call(request, cancel);
  }

  /** Envelopes whose classification is remembered (see `#modern`). */
  get remembered(): number {
    return this.#classified.size;
  }

  /** Open instances (one per principal that called recently). */
  get size(): number {
    return this.#instances.size;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep);
    const all = [...this.#instances.values()];
    this.#instances.clear();
    await Promise.all(all.map((instance) => instance.close()));
  }

  #instanceFor(principal: Principal): PooledInstance {
    // Roles and the way in are part of the key: a key re-created with another role gets a new instance.
    const key = `${principal.via}\u0000${principal.id}\u0000${principal.roles.join(',')}\u0000${principal.name ?? ''}`;
    let instance = this.#instances.get(key);
    if (instance && !instance.closed) {
      // Most recently used last: the map's order is the eviction order.
      this.#instances.delete(key);
      this.#instances.set(key, instance);
      return instance;
    }
    if (this.#instances.size >= this.#max) {
      const [oldestKey, oldest] = this.#instances.entries().next().value as [string, PooledInstance];
      this.#instances.delete(oldestKey);
      void oldest.close();
    }
    instance = new PooledInstance(() => this.#options.createServer(principal), this.#options.onerror);
    this.#instances.set(key, instance);
    return instance;
  }

  #closeIdle(): void {
    const cutoff = Date.now() - this.#idleMs;
    for (const [key, instance] of this.#instances) {
      if (instance.lastUsed < cutoff && instance.inFlight === 0) {
        this.#instances.delete(key);
        void instance.close();
      }
    }
  }
}

/** A request `PooledInstances.eligible` accepted. */
export interface PooledRequest {
  jsonrpc: '2.0';
  id: RequestId;
  method: string;
  params: Record<string, unknown> & { _meta: Record<string, unknown> };
}

interface Pending {
  id: RequestId;
  resolve: (answer: PooledAnswer | undefined) => void;
}

/**
 * One principal's instance: the SDK's modern serving entry over an in-process transport. Requests
 * get ids of the transport's own (clients' ids may collide), and answers get the client's id back in
 * the same place, so the bytes are what the SDK would have written.
 */
class PooledInstance implements Transport {
  onmessage?: Transport['onmessage'];
  onclose?: () => void;
  onerror?: (error: Error) => void;
  closed = false;
  lastUsed = Date.now();
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  readonly #handle: { close(): Promise<void> };

  constructor(createServer: () => Server, onerror?: (error: Error) => void) {
    this.#handle = serveStdio(() => createServer(), {
      transport: this,
      legacy: 'reject',
      ...(onerror ? { onerror } : {}),
    });
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  async start(): Promise<void> {}

  async send(message: JSONRPCMessage): Promise<void> {
    // Only answers to our requests come back: the instance follows nothing and asks nothing.
    if (!('id' in message) || !('result' in message || 'error' in message)) return;
    if (typeof message.id !== 'number') return;
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    const answer = { ...message, id: pending.id };
    const code = 'error' in message ? message.error.code : undefined;
    pending.resolve({ status: errorStatus(code), body: JSON.stringify(answer) });
  }

  call(request: PooledRequest, cancel: CancelSource): Promise<PooledAnswer | undefined> {
    this.lastUsed = Date.now();
    if (this.closed || !this.onmessage) return Promise.resolve(undefined);
    const id = ++this.#next;
    return new Promise((resolve) => {
      let stopListening = () => {};
      this.#pending.set(id, {
        id: request.id,
        resolve: (answer) => {
          stopListening();
          resolve(answer);
        },
      });
      stopListening = cancel.onCancel(() => {
        if (!this.#pending.delete(id)) return;
        resolve(undefined);
        this.onmessage?.({
          jsonrpc: '2.0',
          method: 'notifications/cancelled',
          params: { requestId: id, reason: 'The HTTP request was closed' },
        });
      });
      if (!this.#pending.has(id)) return;
      this.onmessage!({ ...request, id } as JSONRPCMessage);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const pending of this.#pending.values()) pending.resolve(undefined);
    this.#pending.clear();
    await this.#handle.close().catch(() => {});
    this.onclose?.();
  }
}

/** A header value as the SDK compares it: printable ASCII, no surrounding spaces, not a Base64 sentinel. */
const PLAIN_HEADER = /^(?!=\?base64\?)[!-~](?:[ -~]*[!-~])?$/;

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
