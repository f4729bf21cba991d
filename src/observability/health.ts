import { isCoreMcpError } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/log.js';
import type { Store } from '../core/store.js';

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

/** What a check says. `detail` is public (it is served on /readyz): never put secrets or paths in it. */
export interface HealthCheckResult {
  status: HealthStatus;
  detail?: string;
}

/**
 * A readiness check. Return nothing (or `true`) for healthy, `false` for unhealthy, a status, or a
 * result with a detail. A throw, or running past the timeout, is unhealthy. The signal aborts at the
 * timeout.
 */
export type HealthCheck = (
  signal: AbortSignal,
) =>
  | HealthCheckResult
  | HealthStatus
  | boolean
  | undefined
  | Promise<HealthCheckResult | HealthStatus | boolean | undefined>;

export interface CheckReport {
  status: HealthStatus;
  detail?: string;
  durationMs: number;
}

/** The body of /readyz. The overall status is the worst of the checks'. */
export interface HealthReport {
  status: HealthStatus;
  checks: Record<string, CheckReport>;
}

export interface HealthMonitorOptions {
  /** A check running longer than this is unhealthy (default 2,000 ms). */
  timeoutMs?: number;
  logger?: Logger;
}

const RANK: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 };
const CHECK_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;

/** Readiness: named checks run together; concurrent callers share one run. */
export class HealthMonitor {
  readonly #checks = new Map<string, HealthCheck>();
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  #running: Promise<HealthReport> | undefined;

  constructor(options: HealthMonitorOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#logger = options.logger ?? silentLogger;
  }

  /** Adds a check. Names are lower case (`store`, `upstream_api`) and unique. */
  add(name: string, check: HealthCheck): void {
    if (!CHECK_NAME.test(name))
      throw new TypeError(`health check name "${name}" must match ${CHECK_NAME} (lower case, no spaces)`);
    if (this.#checks.has(name)) throw new TypeError(`health check "${name}" is defined twice`);
    if (typeof check !== 'function') throw new TypeError(`health check "${name}" must be a function`);
    this.#checks.set(name, check);
  }

  get names(): string[] {
    return [...this.#checks.keys()];
  }

  /** Runs every check (in parallel, each bounded by the timeout). */
  check(): Promise<HealthReport> {
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #run(): Promise<HealthReport> {
    const entries = [...this.#checks];
    const results = await Promise.all(entries.map(([name, check]) => this.#one(name, check)));
    const report: HealthReport = { status: 'healthy', checks: {} };
    entries.forEach(([name], i) => {
      const result = results[i]!;
      report.checks[name] = result;
      if (RANK[result.status] > RANK[report.status]) report.status = result.status;
    });
    return report;
  }

  async #one(name: string, check: HealthCheck): Promise<CheckReport> {
    const started = performance.now();
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<HealthCheckResult>((resolve) => {
      timer = setTimeout(() => {
        controller.abort();
        resolve({ status: 'unhealthy', detail: `timed out after ${this.#timeoutMs} ms` });
      }, this.#timeoutMs);
    });
    let result: HealthCheckResult;
    try {
      result = await Promise.race([
        Promise.resolve()
          .then(() => check(controller.signal))
          .then(normalize),
        timeout,
      ]);
    } catch (error) {
      // The error may name files or hosts: it goes to the log, the body gets a public message only.
      this.#logger.warn({ err: error, check: name }, 'health check failed');
      result = {
        status: 'unhealthy',
        detail: isCoreMcpError(error) && error.spec.expose ? error.message : 'check failed',
      };
    } finally {
      clearTimeout(timer);
    }
    const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    return result.detail === undefined
      ? { status: result.status, durationMs }
      : { status: result.status, detail: String(result.detail).slice(0, 200), durationMs };
  }
}

function normalize(value: HealthCheckResult | HealthStatus | boolean | undefined): HealthCheckResult {
  if (value === undefined || value === true) return { status: 'healthy' };
  if (value === false) return { status: 'unhealthy' };
  if (typeof value === 'string') return { status: value in RANK ? value : 'unhealthy' };
  if (typeof value === 'object' && value !== null && value.status in RANK) return value;
  return { status: 'unhealthy', detail: 'the check returned an invalid result' };
}

/**
 * The store's checks: reachable (`store`), able to write now (`store_write`, when the store can probe),
 * and, when the store has a schema, migrations applied (`migrations`).
 */
export function storeHealthChecks(store: Store, logger: Logger = silentLogger): Record<string, HealthCheck> {
  const checks: Record<string, HealthCheck> = {
    store: async () => {
      try {
        await store.ping();
        return { status: 'healthy', detail: store.kind };
      } catch (error) {
        logger.warn({ err: error }, 'readiness: the store did not answer a ping');
        return { status: 'unhealthy', detail: `${store.kind} store unreachable` };
      }
    },
  };
  const probeWrite = store.probeWrite?.bind(store);
  if (probeWrite) {
    // Reachable is not enough: a full disk or a read-only file still answers reads.
    checks.store_write = async () => {
      try {
        await probeWrite();
        return { status: 'healthy', detail: 'a write committed' };
      } catch (error) {
        logger.warn({ err: error }, 'readiness: the store cannot write');
        return {
          status: 'unhealthy',
          detail: `cannot write: ${isCoreMcpError(error) ? error.code : 'store failed'}`,
        };
      }
    };
  }
  const schemaStatus = store.schemaStatus?.bind(store);
  if (schemaStatus) {
    checks.migrations = async () => {
      try {
        const { version, expected } = await schemaStatus();
        if (version === expected) return { status: 'healthy', detail: `schema version ${version}` };
        return {
          status: 'unhealthy',
          detail:
            version < expected
              ? `schema version ${version}, migrations up to ${expected} pending`
              : `schema version ${version} is newer than this coremcp (${expected})`,
        };
      } catch (error) {
        logger.warn({ err: error }, 'readiness: could not read the schema version');
        return { status: 'unhealthy', detail: 'schema version unreadable' };
      }
    };
  }
  return checks;
}
