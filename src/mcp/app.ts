import type {
  BlobResourceContents,
  GetPromptResult,
  TextResourceContents,
} from '@modelcontextprotocol/server';
import { UriTemplate } from '@modelcontextprotocol/server';
import type { Principal } from '../core/access.js';
import type { ClientChannel, CommandDefinition } from '../core/commands.js';
import { type DocumentDefinition, defineDocument } from '../core/document.js';
import type { JsonValue } from '../core/json.js';
import type { HealthCheck } from '../observability/health.js';
import type { RolesConfig } from '../security/rbac.js';

/** One piece of a resource: text or base64 data. */
export type ResourceContents = TextResourceContents | BlobResourceContents;

/** What app resources and prompts learn about the call. */
export interface AppCallContext {
  principal: Principal;
  signal: AbortSignal;
  /**
   * The client, for prompts that ask it something (elicitation, sampling, roots): the same channel
   * commands have, re-running `get` with the answers (2026-07-28 retries, 2025-11-25 requests).
   */
  client?: ClientChannel;
}

/** A fixed resource the app offers beside its documents. */
export interface AppResource {
  uri: string;
  name: string;
  title?: string;
  description?: string;
  mimeType?: string;
  /** A permission the principal's roles must grant; without one, any authenticated principal may read. */
  permission?: string;
  read(ctx: AppCallContext): ResourceContents[] | Promise<ResourceContents[]>;
}

/** A family of resources addressed by an RFC 6570 URI template. */
export interface AppResourceTemplate {
  uriTemplate: string;
  name: string;
  title?: string;
  description?: string;
  mimeType?: string;
  permission?: string;
  read(
    uri: string,
    variables: Record<string, string>,
    ctx: AppCallContext,
  ): ResourceContents[] | Promise<ResourceContents[]>;
  /** Completions for template variables, by variable name. */
  complete?: Record<string, (value: string, context: Record<string, string>) => string[] | Promise<string[]>>;
}

export interface AppPromptArgument {
  name: string;
  description?: string;
  required?: boolean;
}

export interface AppPrompt {
  name: string;
  title?: string;
  description?: string;
  arguments?: AppPromptArgument[];
  permission?: string;
  get(args: Record<string, string>, ctx: AppCallContext): GetPromptResult | Promise<GetPromptResult>;
  /** Completions for arguments, by argument name. */
  complete?: Record<string, (value: string, context: Record<string, string>) => string[] | Promise<string[]>>;
}

export interface AppSpec {
  name: string;
  version?: string;
  title?: string;
  /** Shown to clients at initialization: how agents should use this server. */
  instructions?: string;
  /** Documents: `defineDocument(...)` results, or initial values by id (`{ notes: { items: {} } }`). */
  documents?: Record<string, JsonValue> | Array<DocumentDefinition<unknown>>;
  commands?: CommandDefinition[];
  resources?: AppResource[];
  resourceTemplates?: AppResourceTemplate[];
  prompts?: AppPrompt[];
  /** Roles for this app; they replace the built-in roles of the same name. */
  roles?: RolesConfig;
  /**
   * Readiness checks beside the store's, by name (lower case): `/readyz` runs them all. Return nothing
   * for healthy, or `'degraded'`/`'unhealthy'` or `{ status, detail }`; a throw is unhealthy.
   */
  healthChecks?: Record<string, HealthCheck>;
}

/** A validated app, ready to serve. */
export interface AppDefinition {
  readonly name: string;
  readonly version: string;
  readonly title: string | undefined;
  readonly instructions: string | undefined;
  readonly documents: ReadonlyArray<DocumentDefinition<unknown>>;
  readonly commands: readonly CommandDefinition[];
  readonly resources: readonly AppResource[];
  readonly resourceTemplates: ReadonlyArray<AppResourceTemplate & { readonly matcher: UriTemplate }>;
  readonly prompts: readonly AppPrompt[];
  readonly roles: RolesConfig | undefined;
  readonly healthChecks: Readonly<Record<string, HealthCheck>>;
}

const APP_BRAND = Symbol.for('coremcp.app');

function unique(kind: string, names: string[]): void {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new TypeError(`${kind} "${name}" is defined twice`);
    seen.add(name);
  }
}

/**
 * Declares an app: its commands (tools), documents (state), and optional resources and prompts.
 * Export the result as the module's default export and serve it with `coremcp serve ./app.ts`.
 */
export function defineApp(spec: AppSpec): AppDefinition {
  if (typeof spec?.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.@/-]{0,127}$/.test(spec.name)) {
    throw new TypeError('defineApp needs a name (letters, digits and _ . @ / -)');
  }
  const documents: Array<DocumentDefinition<unknown>> = Array.isArray(spec.documents)
    ? [...spec.documents]
    : Object.entries(spec.documents ?? {}).map(([id, initial]) => defineDocument(id, initial));
  unique(
    'document',
    documents.map((d) => d.id),
  );
  const commands = spec.commands ?? [];
  for (const command of commands) {
    if (typeof command?.run !== 'function')
      throw new TypeError('commands must be what defineCommand() returns');
  }
  unique(
    'command',
    commands.map((c) => c.name),
  );
  const resources = spec.resources ?? [];
  for (const resource of resources) {
    try {
      new URL(resource.uri);
    } catch {
      throw new TypeError(`resource "${resource.name}" has an invalid URI: ${resource.uri}`);
    }
    if (resource.uri.startsWith('coremcp:'))
      throw new TypeError(`resource URI ${resource.uri}: the coremcp: scheme is reserved for state`);
  }
  unique(
    'resource',
    resources.map((r) => r.uri),
  );
  const templates = (spec.resourceTemplates ?? []).map((t) => {
    if (t.uriTemplate.startsWith('coremcp:'))
      throw new TypeError(`template ${t.uriTemplate}: the coremcp: scheme is reserved for state`);
    return Object.freeze({ ...t, matcher: new UriTemplate(t.uriTemplate) });
  });
  unique(
    'resource template',
    templates.map((t) => t.uriTemplate),
  );
  const prompts = spec.prompts ?? [];
  unique(
    'prompt',
    prompts.map((p) => p.name),
  );
  const healthChecks = { ...spec.healthChecks };
  for (const [name, check] of Object.entries(healthChecks)) {
    if (typeof check !== 'function') throw new TypeError(`health check "${name}" must be a function`);
  }
  const app: AppDefinition = {
    name: spec.name,
    version: spec.version ?? '0.0.0',
    title: spec.title,
    instructions: spec.instructions,
    documents: Object.freeze(documents),
    commands: Object.freeze([...commands]),
    resources: Object.freeze([...resources]),
    resourceTemplates: Object.freeze(templates),
    prompts: Object.freeze([...prompts]),
    roles: spec.roles,
    healthChecks: Object.freeze(healthChecks),
  };
  Object.defineProperty(app, APP_BRAND, { value: true });
  return Object.freeze(app);
}

/** Whether a module export is an app made by `defineApp` (from any copy of coremcp). */
export function isAppDefinition(value: unknown): value is AppDefinition {
  return (
    typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[APP_BRAND] === true
  );
}
