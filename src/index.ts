/**
 * coremcp's public API. Importing this module opens nothing and starts nothing: stores open and
 * servers listen only when you call them.
 */

export {
  type ConsoleDeps,
  type ConsoleOptions,
  type ConsoleRoutes,
  consoleRoutes,
} from './console/routes.js';
export type { ConsoleSessionsOptions } from './console/sessions.js';
export type {
  AuthenticationResult,
  Authenticator,
  AuthMethod,
  Authorizer,
  CommandGrant,
  DocumentAction,
  Principal,
} from './core/access.js';
export { SYSTEM_PRINCIPAL } from './core/access.js';
export {
  type AuditVerdict,
  type ChainPlacement,
  type ChainPosition,
  checkAuditHeads,
  digestAuditHeads,
  GENESIS_HASH,
  hashAuditRecord,
  sealAuditRecord,
  verifyAuditRecords,
} from './core/audit.js';
export {
  type ClientChannel,
  type CommandDefinition,
  type CommandLogger,
  CommandRegistry,
  type ConsentPreview,
  type DocumentRef,
  defineCommand,
  type QueryCommandSpec,
  type QueryContext,
  type WriteCommandSpec,
  type WriteContext,
} from './core/commands.js';
export { CONSENT_KEY, type ConsentGrant, hashChanges } from './core/consent.js';
export {
  type CollectionDefinition,
  type CollectionSpec,
  collection,
  DEFAULT_DOCUMENT,
  type DocumentDefinition,
  type DocumentDraft,
  type DocumentView,
  defineDocument,
  type Entry,
  type EntryPage,
  type IndexField,
  type IndexValue,
  type ListOptions,
  type QueryOptions,
  type ReadableCollection,
  type WritableCollection,
} from './core/document.js';
export {
  AccessError,
  CommandError,
  CoreMcpError,
  type CoreMcpErrorOptions,
  ERROR_CATALOG,
  type ErrorFamily,
  type ErrorSpec,
  errorForCode,
  errorSpec,
  InternalError,
  isCoreMcpError,
  type PublicError,
  RecoveryError,
  RevisionConflictError,
  SetupError,
  StateError,
  TransportError,
  toPublicError,
} from './core/errors.js';
export {
  CommandExecutor,
  type CommandFailure,
  type CommandInputRequired,
  type CommandResult,
  type CommandSuccess,
  type ExecuteOptions,
  type ExecutionReport,
} from './core/executor.js';
export type {
  AskOptions,
  ClientCapability,
  ClientConnection,
  ElicitAnswer,
  ElicitForm,
  ElicitUrl,
  InputRequest,
  InputRequests,
  Root,
  SampleAnswer,
  SampleRequest,
} from './core/input.js';
export type { JsonLimits, JsonObject, JsonPrimitive, JsonValue } from './core/json.js';
export { type Logger, silentLogger } from './core/log.js';
export { applyPatch, type JsonPatch, type JsonPatchOperation } from './core/patch.js';
export {
  type CollectionPage,
  type CommitEvent,
  type CompactionResult,
  type DocumentRead,
  type DocumentState,
  type HistoryCallOptions,
  type HistoryPage,
  type RetentionPolicy,
  type StateDiff,
  type StateLimits,
  StateManager,
  type StateManagerOptions,
  type TransactResult,
  type WriteSession,
} from './core/state.js';
export type * from './core/store.js';
export { type ReplicaSource, ReplicaState, type SyncOutcome } from './core/sync.js';
export type { BearerAuthOptions } from './http/auth.js';
export { type EdgeAccess, type EdgeOptions, type RunningEdge, serveEdge } from './http/edge.js';
export type { ProtectedResourceOptions } from './http/protected-resource.js';
export { HttpFailure, type HttpFailureOptions } from './http/respond.js';
export type { HttpExchange, HttpRoute, RouteAccess } from './http/route.js';
export {
  type AppCallContext,
  type AppDefinition,
  type AppPrompt,
  type AppResource,
  type AppResourceTemplate,
  type AppSpec,
  defineApp,
  isAppDefinition,
} from './mcp/app.js';
export { META, STATE_URI_PREFIX, stateUri } from './mcp/meta.js';
export {
  type ReplicaChange,
  StateReplica,
  type StateReplicaOptions,
  type WatchOptions,
} from './mcp/replica.js';
export { type HttpServerOptions, type RunningHttpServer, serveHttp } from './mcp/serve-http.js';
export { type StdioServeOptions, serveStdio } from './mcp/stdio.js';
export {
  type Channel,
  McpSurface,
  type McpSurfaceOptions,
  type SurfaceDeps,
  toCallToolResult,
} from './mcp/surface.js';
export {
  type CheckReport,
  type HealthCheck,
  type HealthCheckResult,
  HealthMonitor,
  type HealthReport,
  type HealthStatus,
} from './observability/health.js';
// A type only: prom-client loads when a core is created with `metrics`, not on import.
export type { CoreMetrics, MetricsOptions } from './observability/metrics.js';
export {
  METRICS_GRANT,
  type ObservabilityRoutesOptions,
  observabilityRoutes,
} from './observability/routes.js';
export { type Core, type CoreOptions, createCore, localPrincipal } from './runtime.js';
export { ApiKeys, type CreatedApiKey } from './security/apikeys.js';
export { DEFAULT_ROLES, RoleAuthorizer, type RoleDefinition, type RolesConfig } from './security/rbac.js';
export {
  type ConsoleServe,
  type HttpServe,
  type RunningServer,
  type ServerOptions,
  type StdioServe,
  startServer,
} from './server.js';
export { MemoryStore } from './store/memory.js';
export { openStore, type StoreConfig, StoreConfigError } from './store/open.js';
export { PostgresStore, type PostgresStoreOptions } from './store/postgres.js';
export { SqliteStore, type SqliteStoreOptions } from './store/sqlite.js';
