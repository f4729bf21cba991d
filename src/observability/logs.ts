import type { ExecutionReport } from '../core/executor.js';
import type { Logger } from '../core/log.js';

/**
 * One log line per command: who, what, outcome, how long, which revision, and the W3C trace it
 * belongs to. Never the input (the audit trail keeps a redacted copy). Costs a level check when info
 * is off.
 */
export function commandLogger(logger: Logger): (report: ExecutionReport) => void {
  const log = logger.child({ component: 'command' });
  return (report) => {
    if (!log.isLevelEnabled('info')) return;
    const fields: Record<string, unknown> = {
      requestId: report.requestId,
      principal: report.principal?.id ?? null,
      command: report.command,
      outcome: report.outcome,
      durationMs: Math.round(report.durationMs * 1000) / 1000,
    };
    if (report.doc !== undefined) fields.doc = report.doc;
    if (report.revision !== undefined) fields.revision = report.revision;
    if (report.committed) fields.committed = true;
    if (report.replayed) fields.replayed = true;
    if (report.traceparent !== undefined) fields.traceparent = report.traceparent;
    log.info(fields, 'command');
  };
}
