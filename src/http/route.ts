import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../core/access.js';
import { readBody } from './body.js';

/**
 * What the edge checks before a route runs. The edge does it, once, the same way for every route:
 * a route only declares which it needs.
 */
export type RouteAccess =
  /** Anyone, under any Host name: liveness and readiness probes address a server by its IP. */
  | 'public'
  /** Anyone, but only under an allowed Host and Origin (DNS rebinding): documents a browser may fetch. */
  | 'host-checked'
  /** Host and Origin checked, then the caller authenticated and rate-limited: the route gets the principal. */
  | 'authenticated';

/** A route module: the exact paths it answers and what the edge must check first. */
export interface HttpRoute {
  readonly paths: readonly string[];
  readonly access: RouteAccess;
  /** The methods served; any other gets 405 with `Allow`. Without it, every method reaches `handle`. */
  readonly methods?: readonly string[];
  /**
   * Answers the request. A thrown `CoreMcpError` (or `HttpFailure`) is answered by the edge's error
   * writer with its catalog status.
   */
  handle(exchange: HttpExchange): Promise<void>;
}

/**
 * When an exchange is cancelled (the client went away, or a shutdown ends it). Most requests are
 * answered without anyone asking, so the `AbortSignal` is made only when asked for; plain callbacks
 * (`onCancel`) cost an array at most.
 */
export class Cancellation {
  #controller: AbortController | undefined;
  #listeners: Array<() => void> | undefined;
  #cancelled = false;

  get cancelled(): boolean {
    return this.#cancelled;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#cancelled) this.#controller.abort();
    }
    return this.#controller.signal;
  }

  /** Calls `listener` once on cancellation (at once if that happened already); returns its removal. */
  onCancel(listener: () => void): () => void {
    if (this.#cancelled) {
      listener();
      return () => {};
    }
    this.#listeners ??= [];
    this.#listeners.push(listener);
    return () => {
      const index = this.#listeners?.indexOf(listener) ?? -1;
      if (index !== -1) this.#listeners!.splice(index, 1);
    };
  }

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#controller?.abort();
    const listeners = this.#listeners;
    this.#listeners = undefined;
    for (const listener of listeners ?? []) listener();
  }
}

/** One request as a route sees it, after the edge's checks passed. */
export class HttpExchange {
  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly url: URL,
    /**
     * Who is calling, for `authenticated` routes. Undefined on an open edge (a loopback listener for
     * scrapers, without authentication): there the route serves whoever reached this machine's port.
     */
    readonly principal: Principal | undefined,
    /** Fires when the client goes away before the answer is complete. */
    readonly cancellation: Cancellation,
    /** The edge's body limit, in bytes. */
    readonly maxBodyBytes: number,
    /** Tells the edge this exchange stays open (an event stream): a graceful shutdown ends it at once. */
    readonly markLongLived: () => void = () => {},
  ) {}

  /** Aborts when the client goes away before the answer is complete. */
  get signal(): AbortSignal {
    return this.cancellation.signal;
  }

  /** The body as text, within the edge's limit (over it: 413, read and discarded up to 16 MiB). */
  readBody(): Promise<string> {
    return readBody(this.req, this.maxBodyBytes);
  }
}
