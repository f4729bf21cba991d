import type { Logger } from './log.js';
import type { RetentionPolicy, StateManager } from './state.js';

export interface MaintenanceOptions {
  /** Compact each document by this policy; without it, history is kept forever. */
  retention?: RetentionPolicy;
  /** How long an idempotency key is honoured (default 24 hours). */
  idempotencyTtlMs?: number;
  /** How often to run (default hourly). The first run is one interval after start. */
  intervalMs?: number;
  logger: Logger;
}

export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * One maintenance pass: retention on every document, then expired idempotency records, consumed
 * request-state ids past their expiry and MCP tasks past their time to live.
 */
export async function runMaintenance(state: StateManager, options: MaintenanceOptions): Promise<void> {
  const log = options.logger;
  if (options.retention) {
    for (const { doc } of await state.listDocuments()) {
      try {
        const result = await state.compact(doc, options.retention);
        if (result.removed > 0)
          log.info(
            { doc, removed: result.removed, oldestRevision: result.oldestRevision },
            'compacted history',
          );
      } catch (error) {
        log.error({ err: error, doc }, 'compaction failed');
      }
    }
  }
  const before = new Date(
    Date.now() - (options.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS),
  ).toISOString();
  const expired = await state.store.expireIdempotency(before);
  if (expired > 0) log.debug({ expired }, 'expired idempotency records');
  const now = new Date().toISOString();
  const consumed = await state.store.expireConsumed(now);
  if (consumed > 0) log.debug({ expired: consumed }, 'forgot consumed request states');
  const tasks = await state.store.expireTasks(now);
  if (tasks > 0) log.debug({ expired: tasks }, 'deleted expired tasks');
}

/**
 * Runs maintenance periodically, off the request path (one pass at a time). Idempotency keys are
 * honoured at least `idempotencyTtlMs`, at most one interval longer. Returns the stop function.
 */
export function startMaintenance(state: StateManager, options: MaintenanceOptions): () => void {
  let running = false;
  const timer = setInterval(
    () => {
      if (running) return;
      running = true;
      runMaintenance(state, options)
        .catch((error: unknown) => options.logger.error({ err: error }, 'maintenance failed'))
        .finally(() => {
          running = false;
        });
    },
    options.intervalMs ?? 60 * 60 * 1000,
  );
  timer.unref();
  return () => clearInterval(timer);
}
