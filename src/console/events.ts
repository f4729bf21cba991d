import type { ServerResponse } from 'node:http';
import type { Authorizer } from '../core/access.js';
import type { CommitEvent } from '../core/document.js';
import { AccessError } from '../core/errors.js';
import { touchedPaths } from '../core/patch.js';
import type { HttpExchange, HttpRoute } from '../http/route.js';
import { CONSOLE_PATH, type ConsoleGate, SECURITY_HEADERS } from './http.js';
import type { ConsoleSession, SessionEndReason } from './sessions.js';
import type { CommitEventView, SessionEndedEvent } from './wire.js';

export interface ConsoleEventsOptions {
  gate: ConsoleGate;
  authorizer: Authorizer;
  /** Subscribes to every commit, this process's and those discovered in the store. */
  onCommit: (listener: (event: CommitEvent) => void) => () => void;
  /** A comment line this often keeps proxies from closing a quiet stream (default 15 s). */
  heartbeatMs?: number | undefined;
  /** Most streams per session (default 8) and in all (default 1,000). */
  maxPerSession?: number | undefined;
  maxStreams?: number | undefined;
}

interface Stream {
  session: ConsoleSession;
  res: ServerResponse;
  end: () => void;
}

/** A slow reader that lets this much pile up is cut off; its browser reconnects and reloads. */
const MAX_BUFFERED = 1024 * 1024;

/**
 * `/console/api/events`: server-sent events for one session. `commit` for every commit to a document
 * the principal may follow (the SSE twin of MCP's resource notifications); `session` once, when the
 * session ends (sign-out, expiry, revoked key), after which the stream closes.
 */
export class ConsoleEvents {
  readonly #options: ConsoleEventsOptions;
  readonly #streams = new Set<Stream>();
  readonly #unsubscribe: Array<() => void>;
  readonly #heartbeat: NodeJS.Timeout;

  constructor(options: ConsoleEventsOptions) {
    this.#options = options;
    this.#unsubscribe = [
      options.onCommit((event) => this.#commit(event)),
      options.gate.sessions.onEnd((session, reason) => this.#ended(session, reason)),
    ];
    this.#heartbeat = setInterval(() => {
      for (const stream of this.#streams) this.#write(stream, ': ping\n\n');
    }, options.heartbeatMs ?? 15_000);
    this.#heartbeat.unref();
  }

  get open(): number {
    return this.#streams.size;
  }

  readonly route: HttpRoute = {
    paths: [`${CONSOLE_PATH}/api/events`],
    access: 'host-checked',
    methods: ['GET'],
    handle: (exchange) => this.#serve(exchange),
  };

  /** Closes every stream and stops listening. */
  close(): void {
    clearInterval(this.#heartbeat);
    for (const off of this.#unsubscribe) off();
    for (const stream of [...this.#streams]) stream.end();
  }

  async #serve(exchange: HttpExchange): Promise<void> {
    const session = await this.#options.gate.session(exchange);
    let mine = 0;
    for (const s of this.#streams) if (s.session === session) mine++;
    if (
      mine >= (this.#options.maxPerSession ?? 8) ||
      this.#streams.size >= (this.#options.maxStreams ?? 1000)
    )
      throw new AccessError('too_many_sessions', 'Too many event streams are open');
    const { res } = exchange;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    await new Promise<void>((resolve) => {
      const stream: Stream = {
        session,
        res,
        end: () => {
          if (!this.#streams.delete(stream)) return;
          res.end();
          resolve();
        },
      };
      this.#streams.add(stream);
      exchange.signal.addEventListener('abort', () => stream.end(), { once: true });
      res.once('close', () => stream.end());
    });
  }

  #commit(event: CommitEvent): void {
    let data: string | undefined;
    for (const stream of this.#streams) {
      if (!this.#options.authorizer.canAccessDocument(stream.session.principal, event.doc, 'follow'))
        continue;
      if (data === undefined) {
        const view: CommitEventView = {
          doc: event.doc,
          revision: event.revision,
          at: event.at,
          principal: event.principal,
          command: event.command,
          commandId: event.commandId,
          external: event.external,
          paths: touchedPaths(event.patches).slice(0, 20),
        };
        data = `event: commit\ndata: ${JSON.stringify(view)}\n\n`;
      }
      this.#write(stream, data);
    }
  }

  #ended(session: ConsoleSession, reason: SessionEndReason): void {
    const body: SessionEndedEvent = { reason };
    for (const stream of [...this.#streams]) {
      if (stream.session !== session) continue;
      this.#write(stream, `event: session\ndata: ${JSON.stringify(body)}\n\n`);
      stream.end();
    }
  }

  #write(stream: Stream, text: string): void {
    if (stream.res.writableLength > MAX_BUFFERED) {
      stream.end();
      return;
    }
    stream.res.write(text);
  }
}
