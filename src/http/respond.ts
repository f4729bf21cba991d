import type { ServerResponse } from 'node:http';
import { type CoreMcpError, isCoreMcpError, jsonRpcErrorBody, toPublicError } from '../core/errors.js';

export interface HttpFailureOptions {
  /**
   * The status, when it is not the catalog's `http` for the code. Only for a documented reason (405
   * for a method a route does not serve: the catalog has no code of its own for that).
   */
  status?: number;
  /** Headers the answer needs: `WWW-Authenticate`, `Retry-After`, `Allow`, `Connection: close`. */
  headers?: Readonly<Record<string, string>>;
  /** The JSON-RPC id of the message refused, when it is known (a message refused before dispatch). */
  id?: string | number | null;
}

/**
 * A typed error that ends an HTTP request, with what the answer needs beyond its code. Routes may
 * also throw a plain `CoreMcpError`: its status is the catalog's.
 */
export class HttpFailure extends Error {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly id: string | number | null;

  constructor(
    readonly error: CoreMcpError,
    options: HttpFailureOptions = {},
  ) {
    super(error.message);
    this.status = options.status ?? error.spec.http;
    this.headers = options.headers ?? {};
    this.id = options.id ?? null;
  }
}

/**
 * The one writer of error answers on the edge: a JSON-RPC error body with the code's public form
 * (anything not a typed, exposable error becomes `internal_error`), and the catalog's HTTP status
 * unless an `HttpFailure` names another. An answer already under way cannot change: it is cut off.
 */
export function sendError(res: ServerResponse, error: unknown, requestId: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const failure = error instanceof HttpFailure ? error : undefined;
  const cause = failure ? failure.error : error;
  const status = failure?.status ?? (isCoreMcpError(cause) ? cause.spec.http : 500);
  const text = JSON.stringify(jsonRpcErrorBody(toPublicError(cause, requestId), failure?.id ?? null));
  res.writeHead(status, {
    ...failure?.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** A complete body in one write, with its length. (Node leaves the body out of answers to HEAD.) */
export function sendBody(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  res.writeHead(status, {
    ...headers,
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
