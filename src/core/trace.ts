/**
 * W3C Trace Context `traceparent`: `version-traceid-parentid-flags`, lower-case hex. Version `ff` and
 * all-zero ids are invalid; later versions may append fields after the four known ones.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_PARENT = '0'.repeat(16);

export interface TraceContext {
  traceId: string;
  parentId: string;
  /** The trace flags byte (bit 0: sampled). */
  flags: number;
}

/** The fields of a valid `traceparent`, or undefined when it is malformed. */
export function parseTraceparent(value: unknown): TraceContext | undefined {
  if (typeof value !== 'string' || value.length > 256) return undefined;
  const match = TRACEPARENT.exec(value);
  if (!match || match[1] === 'ff' || match[2] === ZERO_TRACE || match[3] === ZERO_PARENT) return undefined;
  // Version 00 has exactly four fields.
  if (match[1] === '00' && match[5] !== undefined) return undefined;
  return { traceId: match[2]!, parentId: match[3]!, flags: Number.parseInt(match[4]!, 16) };
}

/**
 * The value if it is a valid `traceparent`, else undefined: a malformed one is dropped (the trace
 * restarts, as the spec asks) rather than carried into logs and the audit trail.
 */
export function validTraceparent(value: unknown): string | undefined {
  return parseTraceparent(value) ? (value as string) : undefined;
}
