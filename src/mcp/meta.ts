/** The `_meta` keys coremcp reads on requests and writes on results and notifications. */
export const META = {
  /** Result/notification: the document's revision after the call. */
  revision: 'coremcp/revision',
  doc: 'coremcp/doc',
  commandId: 'coremcp/command-id',
  requestId: 'coremcp/request-id',
  /** Result: this is the stored outcome of an earlier call with the same idempotency key. */
  replayed: 'coremcp/replayed',
  /** Request: run at most once per (principal, key). */
  idempotencyKey: 'coremcp/idempotency-key',
  /** Request: commit only if the document is at this revision. */
  expectedRevision: 'coremcp/expected-revision',
  /** Request: the command input version the client speaks (older ones are upgraded). Tool: the current one. */
  commandVersion: 'coremcp/command-version',
  /** Result of a diff read: the range predates the retention point; patches are one whole-value replace. */
  compacted: 'coremcp/compacted',
  /**
   * Result of a document read: collections whose entries did not all fit, each with its size and the
   * cursor of the next page (`coremcp://state/{doc}/entries/{collection}?cursor=…`).
   */
  more: 'coremcp/more',
  /**
   * Request, set by the HTTP endpoint only: the `traceparent` header of a request served by a pooled
   * instance (which sees the message, not the HTTP request). Whatever a client sends here is replaced.
   */
  httpTraceparent: 'coremcp/http-traceparent',
} as const;

/** State documents are resources under this prefix: `coremcp://state/{doc}`. */
export const STATE_URI_PREFIX = 'coremcp://state/';

export function stateUri(doc: string): string {
  return `${STATE_URI_PREFIX}${doc}`;
}
