import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { ExecutionReport } from '../core/executor.js';
import { parseTraceparent } from '../core/trace.js';

/** The caller's span from a W3C `traceparent`, as the parent context of the command's span. */
function parentContext(traceparent: string | undefined): Context {
  const parent = parseTraceparent(traceparent);
  if (!parent) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: parent.traceId,
    spanId: parent.parentId,
    traceFlags: parent.flags as TraceFlags,
    isRemote: true,
  });
}

/**
 * One OpenTelemetry span per command, through `@opentelemetry/api` only: with no tracer provider
 * registered the API hands out non-recording spans and this costs a few object allocations. The span
 * is made when the command has finished (with its real start and end times), as a child of the
 * caller's `traceparent`; work inside a handler is not parented to it.
 */
export function commandTracer(
  tracer: Tracer = trace.getTracer('coremcp'),
): (report: ExecutionReport) => void {
  return (report) => {
    const end = performance.timeOrigin + performance.now();
    const attributes: Attributes = {
      'coremcp.command': report.command,
      'coremcp.outcome': report.outcome,
      'coremcp.request_id': report.requestId,
      'coremcp.committed': report.committed,
    };
    if (report.doc !== undefined) attributes['coremcp.doc'] = report.doc;
    if (report.revision !== undefined) attributes['coremcp.revision'] = report.revision;
    if (report.principal) attributes['coremcp.auth_method'] = report.principal.via;
    const span = tracer.startSpan(
      `coremcp ${report.command}`,
      { kind: SpanKind.SERVER, startTime: end - report.durationMs, attributes },
      parentContext(report.traceparent),
    );
    if (span.isRecording() && report.outcome !== 'ok') {
      span.setStatus({ code: SpanStatusCode.ERROR, message: report.outcome });
    }
    span.end(end);
  };
}
