import type { Principal } from './core/access.js';
import { CommandRegistry } from './core/commands.js';
import { CommandExecutor, type CommandResult, type ExecuteOptions } from './core/executor.js';
import { historyCommands } from './core/history.js';
import type { JsonLimits } from './core/json.js';
import { type Logger, silentLogger } from './core/log.js';
import { type StateLimits, StateManager } from './core/state.js';
import type { CredentialStore, Store } from './core/store.js';
import { type AppDefinition, defineApp } from './mcp/app.js';
import { HealthMonitor, storeHealthChecks } from './observability/health.js';
import { commandLogger } from './observability/logs.js';
import type { CoreMetrics, MetricsOptions } from './observability/metrics.js';
import { reportStoreErrors } from './observability/store-errors.js';
import { commandTracer } from './observability/tracing.js';
import { ApiKeys } from './security/apikeys.js';
import { DEFAULT_ROLES, RoleAuthorizer, type RolesConfig } from './security/rbac.js';
import { createRedactor } from './security/redact.js';
import { MemoryStore } from './store/memory.js';

export interface CoreOptions {
  /** The app to serve; without one the core starts empty (register commands yourself). */
  app?: AppDefinition;
  /** Where state lives; an in-memory store by default. The core opens it and closes it. */
  store?: Store;
  /** Roles; replace the app's and the built-in roles of the same name. */
  roles?: RolesConfig;
  logger?: Logger;
  clock?: () => Date;
  limits?: {
    input?: Partial<JsonLimits> | undefined;
    state?: Partial<StateLimits> | undefined;
    /** Stored idempotency records kept per principal (default 10,000); the oldest go first. */
    idempotencyKeysPerPrincipal?: number | undefined;
  };
  /** Snapshot every this many commits per document (default 1,000). */
  snapshotEvery?: number;
  /**
   * Group commit (default true; SQLite and PostgreSQL): concurrent writers' commits go to the store
   * in one transaction, each caller answered once its own commit is durable. False commits each
   * write alone.
   */
  groupCommit?: boolean;
  /**
   * Run the document migrations that are due when the store opens (default true). `coremcp migrate
   * --dry-run` opens without them, to show what they would change.
   */
  migrate?: boolean;
  /** Register the `state.rollback` and `state.undo` tools (admin-only by default). Default true. */
  historyTools?: boolean;
  /**
   * Prometheus metrics (`core.metrics`), in a registry of this core's own. Off by default: an embedded
   * core pays nothing for them; `coremcp serve` turns them on.
   */
  metrics?: boolean | MetricsOptions;
}

/** A wired runtime: registry, state, pipeline and access control over one store. */
export interface Core {
  readonly app: AppDefinition;
  readonly store: Store;
  readonly registry: CommandRegistry;
  readonly state: StateManager;
  readonly executor: CommandExecutor;
  readonly authorizer: RoleAuthorizer;
  /** API keys, when the store can keep credentials. */
  readonly keys: ApiKeys | undefined;
  readonly logger: Logger;
  /** Metrics, when `metrics` was set. */
  readonly metrics: CoreMetrics | undefined;
  /** Readiness checks: the store's, the app's, and any added with `health.add(name, check)`. */
  readonly health: HealthMonitor;
  /** Milliseconds the start took to open the store and load the declared documents. */
  readonly recoveryMs: number;
  /** Runs a command through the pipeline. */
  execute(name: string, input: unknown, options?: ExecuteOptions): Promise<CommandResult>;
  close(): Promise<void>;
}

function isCredentialStore(store: Store): store is Store & CredentialStore {
  return typeof (store as Partial<CredentialStore>).findApiKeyByHash === 'function';
}

/**
 * Opens the store and wires a runtime around it. Nothing runs and nothing is opened before this is
 * called; importing coremcp has no side effects.
 */
export async function createCore(options: CoreOptions = {}): Promise<Core> {
  const app = options.app ?? defineApp({ name: 'coremcp' });
  const logger = options.logger ?? silentLogger;
  // prom-client is loaded only for a core that wants metrics (it costs ~60 ms to import).
  const metrics = options.metrics
    ? new (await import('./observability/metrics.js')).CoreMetrics(
        options.metrics === true ? {} : options.metrics,
      )
    : undefined;
  const given: Store = options.store ?? new MemoryStore();
  const store = metrics ? reportStoreErrors(given, (kind) => metrics.recordStoreError(kind)) : given;
  const roles = { ...DEFAULT_ROLES, ...app.roles, ...options.roles };
  const authorizer = new RoleAuthorizer(roles);
  const registry = new CommandRegistry();
  for (const command of app.commands) registry.register(command);

  const started = performance.now();
  const stopWatchingFaults = metrics && given.watchFaults?.((event) => metrics.recordStoreFault(event));
  const stopWatchingCheckpoints =
    metrics && given.watchCheckpoints?.((event) => metrics.recordCheckpoint(event));
  try {
    await store.open();
  } catch (error) {
    stopWatchingFaults?.();
    stopWatchingCheckpoints?.();
    throw error;
  }
  try {
    const state = new StateManager(store, {
      documents: app.documents,
      limits: options.limits?.state,
      snapshotEvery: options.snapshotEvery,
      groupCommit: options.groupCommit,
      clock: options.clock,
      onBackgroundError: (error, what) => logger.error({ err: error }, `background work failed: ${what}`),
      onWarning: (message, details) => logger.warn(details, message),
    });
    await state.open({ migrate: options.migrate !== false });
    // Loading the declared documents now makes the start pay the replay, not the first call.
    for (const doc of state.declaredDocuments) await state.view(doc);
    const recoveryMs = performance.now() - started;
    if (options.historyTools !== false)
      for (const command of historyCommands(store)) registry.register(command);
    const executor = new CommandExecutor({
      registry,
      state,
      authorizer,
      redactInput: createRedactor(),
      inputLimits: options.limits?.input,
      idempotencyKeysPerPrincipal: options.limits?.idempotencyKeysPerPrincipal,
      logger,
      clock: options.clock,
    });
    if (options.logger) executor.observe(commandLogger(logger));
    executor.observe(commandTracer());
    metrics?.bind(executor, state);
    metrics?.recordRecovery(recoveryMs / 1000);
    const health = new HealthMonitor({ logger });
    for (const [name, check] of Object.entries(storeHealthChecks(store, logger))) health.add(name, check);
    for (const [name, check] of Object.entries(app.healthChecks)) health.add(name, check);
    const keys = isCredentialStore(store)
      ? new ApiKeys(store, { roles: authorizer.roleNames, clock: options.clock })
      : undefined;
    return {
      app,
      store,
      registry,
      state,
      executor,
      authorizer,
      keys,
      logger,
      metrics,
      health,
      recoveryMs,
      execute: (name, input, executeOptions) => executor.execute(name, input, executeOptions),
      close: () => {
        stopWatchingFaults?.();
        stopWatchingCheckpoints?.();
        return store.close();
      },
    };
  } catch (error) {
    stopWatchingFaults?.();
    stopWatchingCheckpoints?.();
    await store.close();
    throw error;
  }
}

/** A principal for trusted in-process callers (tests, scripts): the given roles, audited under `id`. */
export function localPrincipal(id: string, roles: readonly string[] = ['admin']): Principal {
  return Object.freeze({ id, name: id, roles: Object.freeze([...roles]), via: 'internal' });
}
