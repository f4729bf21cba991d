import {
  type CallToolResult,
  type GetPromptResult,
  inputRequired,
  type ListResourcesResult,
  type ListResourceTemplatesResult,
  ProtocolError,
  type ReadResourceResult,
  type InputRequests as SdkInputRequests,
  Server,
  type ServerCapabilities,
  type ServerContext,
  type Tool,
} from '@modelcontextprotocol/server';
import { z } from 'zod';
import type { Authorizer, Principal } from '../core/access.js';
import type { CommandDefinition, CommandRegistry } from '../core/commands.js';
import {
  type CoreMcpError,
  isCoreMcpError,
  jsonRpcCode,
  type PublicError,
  toPublicError,
} from '../core/errors.js';
import type { CommandExecutor, CommandInputRequired, CommandResult } from '../core/executor.js';
import { timeOrderedId } from '../core/ids.js';
import { type ClientConnection, ClientInput, InputNeeded } from '../core/input.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import type { Logger } from '../core/log.js';
import type { CommitEvent, StateManager } from '../core/state.js';
import type { TaskRecord } from '../core/store.js';
import { validTraceparent } from '../core/trace.js';
import { type RateLimiter, rateLimited } from '../security/ratelimit.js';
import type { AppCallContext, AppDefinition } from './app.js';
import { META, STATE_URI_PREFIX, stateUri } from './meta.js';
import { type ParamHeader, paramHeaderMismatch, paramHeaders } from './param-headers.js';
import { firstRoundInput, RequestStates, type RoundBinding, type RoundInput } from './request-state.js';
import { parseStateUri, readStateResource, STATE_RESOURCE_TEMPLATES, type StateUri } from './resources.js';
import {
  createTaskResult,
  declaresTasks,
  detailedTask,
  TASKS_EXTENSION,
  TaskRunner,
  type TaskRunnerOptions,
  tasksCapabilityMissing,
} from './tasks.js';

export type Era = 'legacy' | 'modern';

/** Where a server instance lives, which decides how change notifications reach its client. */
export type Channel =
  /** One instance per HTTP request (2026-07-28, or 2025 without a session): no notifications. */
  | 'request'
  /** A 2025-era HTTP session or stdio connection: notifications for `resources/subscribe`d URIs. */
  | 'session'
  /** A 2026-era stdio connection: every followable change, filtered by the SDK per `subscriptions/listen`. */
  | 'listen'
  /**
   * A long-lived instance answering one principal's 2026-07-28 HTTP requests (`PooledInstances`):
   * no notifications, and requests were counted by the edge's rate limit already.
   */
  | 'pooled';

/** A live instance that wants change notifications. */
interface Follower {
  server: Server;
  principal: Principal;
  /** URIs subscribed with resources/subscribe; undefined means "all followable" (the SDK filters). */
  subscriptions: Set<string> | undefined;
}

/**
 * What the surface needs from the runtime: a `Core` from `createCore` is one. The registry must be
 * frozen (serving has started): the surface lists tools from it once per set of roles.
 */
export interface SurfaceDeps {
  readonly app: AppDefinition;
  readonly registry: Pick<CommandRegistry, 'get' | 'frozen'>;
  readonly executor: Pick<CommandExecutor, 'execute' | 'visibleCommands'>;
  readonly state: StateManager;
  readonly authorizer: Authorizer;
  readonly logger: Logger;
}

export interface McpSurfaceOptions {
  serverName?: string;
  serverVersion?: string;
  /**
   * Per-principal request limit for connections without an HTTP edge (stdio); over it, requests fail
   * with `rate_limited`. HTTP servers take the same limiter and answer 429 before the SDK runs.
   */
  rateLimiter?: RateLimiter;
  /** How long an MRTR `requestState` is good for, in ms (default 10 minutes). */
  requestStateTtlMs?: number;
  /** The clock request states and tasks expire by (default: the system clock). */
  clock?: () => Date;
  /** MCP tasks: time to live, poll interval, runner lease. */
  tasks?: Omit<TaskRunnerOptions, 'clock'>;
}

/**
 * Failures that travel as JSON-RPC errors rather than as tool results with `isError`: the call was
 * not one the server could run (an unknown tool, a capability the client lacks, a bad requestState).
 */
const PROTOCOL_FAILURES: ReadonlySet<string> = new Set([
  'unknown_command',
  'missing_client_capability',
  'request_state_invalid',
  'request_state_expired',
  'request_state_replayed',
]);

/** Rounds of questions one call may take on a 2025-11-25 session (the SDK asks, then re-enters). */
const MAX_INPUT_ROUNDS = 16;

/** Publishes a resource change to 2026-era `subscriptions/listen` streams (the HTTP handler's bus). */
export type ResourceUpdatePublisher = (uri: string, meta: JsonObject) => void;

/**
 * coremcp's MCP surface: builds a low-level SDK `Server` for one principal, whose tools are the
 * commands it may call and whose resources are the documents it may read. Every tool call goes
 * through the core's pipeline; every handler turns failures into sanitized, typed errors.
 */
// Built once: a server instance per request must not build schemas per request.
const TASK_PARAMS = { params: z.object({ taskId: z.string() }).loose() };
const TASK_UPDATE_PARAMS = {
  params: z.object({ taskId: z.string(), inputResponses: z.unknown().optional() }).loose(),
};

export class McpSurface {
  readonly app: AppDefinition;
  readonly #deps: SurfaceDeps;
  readonly #logger: Logger;
  readonly #serverInfo: { name: string; version: string; title?: string | undefined };
  readonly #capabilities: ServerCapabilities;
  readonly #toolsByRoles = new Map<string, Tool[]>();
  readonly #followers = new Set<Follower>();
  readonly #publishers = new Set<ResourceUpdatePublisher>();
  readonly #unsubscribe: () => void;
  #streams = 0;
  readonly #limiter: RateLimiter | undefined;
  #answering = 0;
  #idle: Array<() => void> = [];
  readonly #states: RequestStates;
  readonly #tasks: TaskRunner;
  readonly #taskListeners = new Set<(task: TaskRecord) => void>();
  /** Tools with parameters mirrored into `Mcp-Param-*` headers, by name. */
  readonly #paramHeaders = new Map<string, ParamHeader[]>();

  constructor(deps: SurfaceDeps, options: McpSurfaceOptions = {}) {
    if (!deps.registry.frozen) {
      throw new TypeError(
        'an MCP surface serves a fixed set of commands: freeze the registry first (registry.freeze(); startServer does)',
      );
    }
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'mcp' });
    this.#limiter = options.rateLimiter;
    this.#states = new RequestStates(deps.state.store, {
      ttlMs: options.requestStateTtlMs,
      clock: options.clock,
    });
    this.#tasks = new TaskRunner(
      {
        store: deps.state.store,
        executor: deps.executor,
        toolResult: (result, command) => toCallToolResult(result, command) as unknown as JsonObject,
        isProtocolFailure: (code) => PROTOCOL_FAILURES.has(code),
        logger: this.#logger,
        onChange: (task) => {
          for (const listener of this.#taskListeners) listener(task);
        },
      },
      { ...options.tasks, clock: options.clock },
    );
    const app = deps.app;
    this.app = app;
    // A tool whose x-mcp-header annotations break the spec's rules would be dropped by clients: refuse to serve it.
    for (const command of app.commands) {
      const declared = paramHeaders(command.name, command.inputJsonSchema);
      if (declared.length > 0) this.#paramHeaders.set(command.name, declared);
    }
    this.#serverInfo = {
      name: options.serverName ?? app.name,
      version: options.serverVersion ?? app.version,
      title: app.title,
    };
    const hasCompletions =
      app.prompts.some((p) => p.complete) || app.resourceTemplates.some((t) => t.complete);
    this.#capabilities = {
      tools: { listChanged: false },
      resources: { subscribe: true, listChanged: false },
      prompts: app.prompts.length > 0 ? { listChanged: false } : undefined,
      completions: hasCompletions ? {} : undefined,
      logging: {},
      // Long-running commands run as tasks for clients that declare the extension.
      extensions: { [TASKS_EXTENSION]: {} },
    };
    this.#unsubscribe = deps.state.onCommit((event) => this.#onCommit(event));
  }

  /** Whether a tool declares `x-mcp-header` parameters (its calls carry `Mcp-Param-*` headers). */
  declaresParamHeaders(tool: string): boolean {
    return this.#paramHeaders.has(tool);
  }

  /**
   * Why a 2026-07-28 tools/call's `Mcp-Param-*` headers disagree with its arguments (SEP-2243), or
   * undefined when they agree or the tool mirrors nothing.
   */
  paramHeaderMismatch(
    tool: unknown,
    args: unknown,
    header: (name: string) => string | undefined,
  ): string | undefined {
    const declared = typeof tool === 'string' ? this.#paramHeaders.get(tool) : undefined;
    return declared && paramHeaderMismatch(declared, args, header);
  }

  /** Who this server says it is (`serverInfo`). */
  get serverInfo(): { name: string; version: string } {
    return { name: this.#serverInfo.name, version: this.#serverInfo.version };
  }

  /** Calls `listener` after every change this process makes to an MCP task. Returns the detach function. */
  onTaskChange(listener: (task: TaskRecord) => void): () => void {
    this.#taskListeners.add(listener);
    return () => this.#taskListeners.delete(listener);
  }

  /** Whether `taskId` names a task of `principal`'s that is still kept (for listen subscriptions). */
  async ownsTask(principal: Principal, taskId: unknown): Promise<boolean> {
    return this.#tasks
      .get(principal, taskId, () => undefined)
      .then(
        () => true,
        () => false,
      );
  }

  /** Routes change notifications to 2026-era listen streams through `publish`. Returns the detach function. */
  addPublisher(publish: ResourceUpdatePublisher): () => void {
    this.#publishers.add(publish);
    return () => this.#publishers.delete(publish);
  }

  /**
   * Subscriptions open now: URIs subscribed with `resources/subscribe` and open HTTP
   * `subscriptions/listen` streams. (Over stdio the SDK keeps 2026-era listens to itself: not counted.)
   */
  get activeSubscriptions(): number {
    let count = this.#streams;
    for (const follower of this.#followers) count += follower.subscriptions?.size ?? 0;
    return count;
  }

  /** Counts an open HTTP `subscriptions/listen` stream; call the returned function when it closes. */
  openSubscriptionStream(): () => void {
    this.#streams++;
    let open = true;
    return () => {
      if (open) this.#streams--;
      open = false;
    };
  }

  /** Whether the principal may follow a URI: a state document it may follow, or an app resource it may read. */
  canFollow(principal: Principal, uri: string): boolean {
    if (uri.startsWith(STATE_URI_PREFIX)) {
      const parsed = parseStateUri(uri);
      return (
        parsed?.kind === 'value' && this.#deps.authorizer.canAccessDocument(principal, parsed.doc, 'follow')
      );
    }
    return this.#appResourcePermitted(principal, uri);
  }

  #appResourcePermitted(principal: Principal, uri: string): boolean {
    const { app } = this;
    const fixed = app.resources.find((r) => r.uri === uri);
    if (fixed) return this.#permits(principal, fixed.permission);
    return app.resourceTemplates.some(
      (t) => t.matcher.match(uri) !== null && this.#permits(principal, t.permission),
    );
  }

  /** A server instance serving `principal`. `channel` decides how it receives change notifications. */
  createServer(principal: Principal, channel: Channel): Server {
    const server = new Server(this.#serverInfo, {
      capabilities: this.#capabilities,
      instructions: this.app.instructions,
      inputRequired: { maxRounds: MAX_INPUT_ROUNDS },
    });
    const follower: Follower | undefined =
      channel === 'request' || channel === 'pooled'
        ? undefined
        : { server, principal, subscriptions: channel === 'session' ? new Set() : undefined };
    if (follower) {
      this.#followers.add(follower);
      const previous = server.onclose;
      server.onclose = () => {
        this.#followers.delete(follower);
        previous?.();
      };
    }
    // HTTP requests were counted at the edge (and refused with 429 there); stdio is counted here.
    const countHere = channel !== 'pooled';
    const guard = <Req, Res>(handler: (request: Req, ctx: ServerContext) => Res | Promise<Res>) =>
      this.#guard(principal, handler, countHere);

    server.setRequestHandler(
      'tools/list',
      guard(() => ({ tools: this.#tools(principal) })),
    );
    server.setRequestHandler(
      'tools/call',
      guard(async (request, ctx) => {
        const { name } = request.params;
        const args = request.params.arguments ?? {};
        const binding: RoundBinding = {
          principal: principal.id,
          target: `tools/call ${name}`,
          arguments: args,
        };
        const result = await this.#callTool(principal, name, args, ctx, server, channel, binding);
        if ('task' in result) return createTaskResult(result.task) as unknown as CallToolResult;
        if (result.status === 'input_required') return this.#inputRequired(binding, result);
        if (result.status === 'error' && PROTOCOL_FAILURES.has(result.error.code)) {
          throw protocolFailure(
            result.error.code === 'unknown_command'
              ? { ...result.publicError, message: `Tool ${name} not found` }
              : result.publicError,
          );
        }
        const command = this.#deps.registry.get(name);
        return server.projectCallToolResult(toCallToolResult(result, command), command?.outputJsonSchema);
      }),
    );
    server.setRequestHandler(
      'resources/list',
      guard(() => this.#listResources(principal)),
    );
    server.setRequestHandler(
      'resources/templates/list',
      guard(() => this.#listTemplates(principal)),
    );
    server.setRequestHandler(
      'resources/read',
      guard((request, ctx) => this.#readResource(principal, request.params.uri, ctx)),
    );
    server.setRequestHandler(
      'resources/subscribe',
      guard(async (request) => {
        const { uri } = request.params;
        await this.#checkFollow(principal, uri);
        follower?.subscriptions?.add(uri);
        return {};
      }),
    );
    server.setRequestHandler(
      'resources/unsubscribe',
      guard((request) => {
        follower?.subscriptions?.delete(request.params.uri);
        return {};
      }),
    );
    const taskClient = (ctx: ServerContext) => {
      if (!declaresTasks(clientConnection(ctx, undefined, server, channel).capabilities))
        throw tasksCapabilityMissing(ctx.mcpReq.method);
    };
    const lookUp = (name: string) => this.#deps.registry.get(name);
    server.setRequestHandler(
      'tasks/get',
      TASK_PARAMS,
      guard(async (params: { taskId: string }, ctx) => {
        taskClient(ctx);
        return detailedTask(await this.#tasks.get(principal, params.taskId, lookUp));
      }),
    );
    server.setRequestHandler(
      'tasks/update',
      TASK_UPDATE_PARAMS,
      guard(async (params: { taskId: string; inputResponses?: unknown }, ctx) => {
        taskClient(ctx);
        // The SDK lifts `inputResponses` out of the params, as for MRTR retries.
        const responses = ctx.mcpReq.inputResponses ?? params.inputResponses;
        await this.#tasks.update(principal, params.taskId, responses, lookUp);
        return {};
      }),
    );
    server.setRequestHandler(
      'tasks/cancel',
      TASK_PARAMS,
      guard(async (params: { taskId: string }, ctx) => {
        taskClient(ctx);
        await this.#tasks.cancel(principal, params.taskId);
        return {};
      }),
    );
    if (this.app.prompts.length > 0) {
      server.setRequestHandler(
        'prompts/list',
        guard(() => this.#listPrompts(principal)),
      );
      server.setRequestHandler(
        'prompts/get',
        guard((request, ctx) =>
          this.#getPrompt(
            principal,
            request.params.name,
            request.params.arguments ?? {},
            ctx,
            server,
            channel,
          ),
        ),
      );
    }
    if (this.#capabilities.completions) {
      server.setRequestHandler(
        'completion/complete',
        guard(async (request) => ({
          completion: await this.#complete(
            principal,
            request.params.ref,
            request.params.argument,
            request.params.context?.arguments ?? {},
          ),
        })),
      );
    }
    return server;
  }

  /** Stops following commits and lets go of the tasks this process runs (another instance, or the next start, picks them up). */
  async close(): Promise<void> {
    this.#unsubscribe();
    this.#followers.clear();
    this.#publishers.clear();
    this.#taskListeners.clear();
    await this.#tasks.close();
  }

  // --- tools -----------------------------------------------------------------------------------

  #tools(principal: Principal): Tool[] {
    const key = [...principal.roles].sort().join('\u0000');
    let tools = this.#toolsByRoles.get(key);
    if (!tools) {
      const { authorizer } = this.#deps;
      tools = this.#deps.executor.visibleCommands(principal).map((command) => {
        const tool = toTool(command);
        // Say up front what this caller's path rules will refuse, rather than let an agent find out.
        const denied =
          command.readOnly || command.fixedDoc === undefined
            ? []
            : (authorizer.deniedPaths?.(principal, command, command.fixedDoc) ?? []);
        if (denied.length > 0)
          tool.description = `${tool.description} (You may not change ${denied.join(', ')} in "${command.fixedDoc}": such a call is refused as forbidden.)`;
        return tool;
      });
      this.#toolsByRoles.set(key, tools);
    }
    return tools;
  }

  async #callTool(
    principal: Principal,
    name: string,
    args: unknown,
    ctx: ServerContext,
    server: Server,
    channel: Channel,
    binding: RoundBinding,
  ): Promise<CommandResult | { task: TaskRecord }> {
    const meta = (ctx.mcpReq._meta ?? {}) as Record<string, unknown>;
    const envelope = (ctx.mcpReq.envelope ?? {}) as Record<string, unknown>;
    // The request's own trace context first, then the HTTP header's; a malformed one is skipped.
    const traceparent =
      validTraceparent(envelope['io.modelcontextprotocol/traceparent']) ??
      validTraceparent(meta.traceparent) ??
      validTraceparent(ctx.http?.req ? ctx.http.req.headers.get('traceparent') : meta[META.httpTraceparent]);
    let round: RoundInput | undefined;
    let refusal: CoreMcpError | undefined;
    try {
      round = await this.#round(binding, ctx);
    } catch (error) {
      if (!isCoreMcpError(error)) throw error;
      refusal = error;
    }
    const client = clientConnection(ctx, meta.progressToken, server, channel);
    const command = this.#deps.registry.get(name);
    if (command?.task && !refusal) {
      if (declaresTasks(client.capabilities)) {
        const outcome = await this.#tasks.call({
          principal,
          command,
          input: args as JsonValue,
          client,
          answers: round?.answers,
          consent: round?.consent,
          options: { meta, traceparent, requestId: timeOrderedId() },
          signal: ctx.mcpReq.signal,
        });
        return 'sync' in outcome ? outcome.sync : outcome;
      }
      if (command.task === 'required') refusal = tasksCapabilityMissing(`"${name}"`);
    }
    return this.#deps.executor.execute(name, args, {
      principal,
      requestId: timeOrderedId(),
      signal: ctx.mcpReq.signal,
      meta,
      traceparent,
      client,
      answers: round?.answers,
      consent: round?.consent,
      refusal,
    });
  }

  /**
   * The answers a call may use: on a retry, those its verified (and now consumed) `requestState`
   * carries plus the ones just given for the questions it last asked; on a first call, whatever the
   * client answered up front.
   */
  #round(binding: RoundBinding, ctx: ServerContext): Promise<RoundInput> {
    const state = ctx.mcpReq.requestState();
    const responses = ctx.mcpReq.inputResponses;
    if (state === undefined) return Promise.resolve(firstRoundInput(responses));
    return this.#states.redeem(state, binding, responses);
  }

  /** The `input_required` answer: the questions, and the state the retry must bring back. */
  async #inputRequired(
    binding: RoundBinding,
    result: Pick<CommandInputRequired, 'requests' | 'answers' | 'consent'>,
  ) {
    const requestState = await this.#states.mint(binding, {
      asked: Object.keys(result.requests),
      answers: result.answers,
      consent: result.consent,
    });
    return inputRequired({ inputRequests: result.requests as unknown as SdkInputRequests, requestState });
  }

  // --- resources -------------------------------------------------------------------------------

  async #listResources(principal: Principal): Promise<ListResourcesResult> {
    const { authorizer } = this.#deps;
    const docs = await this.#deps.state.listDocuments();
    const resources: ListResourcesResult['resources'] = docs
      .filter((d) => authorizer.canAccessDocument(principal, d.doc, 'read'))
      .map((d) => ({
        uri: stateUri(d.doc),
        name: d.doc,
        title: `State: ${d.doc}`,
        description: `The JSON document "${d.doc}". Its revision is in _meta["${META.revision}"]; subscribe to follow changes.`,
        mimeType: 'application/json',
      }));
    for (const r of this.app.resources) {
      if (!this.#permits(principal, r.permission)) continue;
      resources.push({
        uri: r.uri,
        name: r.name,
        title: r.title,
        description: r.description,
        mimeType: r.mimeType,
      });
    }
    return { resources };
  }

  #listTemplates(principal: Principal): ListResourceTemplatesResult {
    const resourceTemplates: ListResourceTemplatesResult['resourceTemplates'] = [...STATE_RESOURCE_TEMPLATES];
    for (const t of this.app.resourceTemplates) {
      if (!this.#permits(principal, t.permission)) continue;
      resourceTemplates.push({
        uriTemplate: t.uriTemplate,
        name: t.name,
        title: t.title,
        description: t.description,
        mimeType: t.mimeType,
      });
    }
    return { resourceTemplates };
  }

  async #readResource(principal: Principal, uri: string, ctx: ServerContext): Promise<ReadResourceResult> {
    if (uri.startsWith(STATE_URI_PREFIX)) {
      const parsed = parseStateUri(uri);
      if (!parsed) throw resourceNotFound(uri);
      this.#checkRead(principal, parsed);
      return readStateResource(this.#deps.state, uri, parsed);
    }
    const call: AppCallContext = { principal, signal: ctx.mcpReq.signal };
    const fixed = this.app.resources.find((r) => r.uri === uri);
    if (fixed) {
      if (!this.#permits(principal, fixed.permission)) throw resourceNotFound(uri);
      return { contents: await fixed.read(call) };
    }
    for (const template of this.app.resourceTemplates) {
      const variables = template.matcher.match(uri);
      if (!variables || !this.#permits(principal, template.permission)) continue;
      const flat: Record<string, string> = {};
      for (const [k, v] of Object.entries(variables)) flat[k] = Array.isArray(v) ? v.join(',') : v;
      return { contents: await template.read(uri, flat, call) };
    }
    throw resourceNotFound(uri);
  }

  #checkRead(principal: Principal, parsed: StateUri): void {
    if (!this.#deps.authorizer.canAccessDocument(principal, parsed.doc, 'read')) {
      throw new ProtocolError(jsonRpcCode('forbidden'), `Not allowed to read document "${parsed.doc}"`, {
        code: 'forbidden',
      });
    }
  }

  async #checkFollow(principal: Principal, uri: string): Promise<void> {
    if (!uri.startsWith(STATE_URI_PREFIX)) {
      // App resources may be followed by whoever may read them; the app decides whether they change.
      if (this.#appResourcePermitted(principal, uri)) return;
      throw resourceNotFound(uri);
    }
    const parsed = parseStateUri(uri);
    if (parsed?.kind !== 'value') {
      throw new ProtocolError(
        jsonRpcCode('invalid_input'),
        `Only state documents (${STATE_URI_PREFIX}{doc}) can be followed`,
        {
          code: 'invalid_input',
          uri,
        },
      );
    }
    if (!this.#deps.authorizer.canAccessDocument(principal, parsed.doc, 'follow')) {
      throw new ProtocolError(jsonRpcCode('forbidden'), `Not allowed to follow document "${parsed.doc}"`, {
        code: 'forbidden',
        uri,
      });
    }
    await this.#deps.state.get(parsed.doc);
  }

  // --- prompts and completion ------------------------------------------------------------------

  #listPrompts(principal: Principal) {
    return {
      prompts: this.app.prompts
        .filter((p) => this.#permits(principal, p.permission))
        .map((p) => ({
          name: p.name,
          title: p.title,
          description: p.description,
          arguments: p.arguments,
        })),
    };
  }

  async #getPrompt(
    principal: Principal,
    name: string,
    args: Record<string, string>,
    ctx: ServerContext,
    server: Server,
    channel: Channel,
  ): Promise<GetPromptResult> {
    const prompt = this.app.prompts.find((p) => p.name === name);
    if (!prompt || !this.#permits(principal, prompt.permission)) {
      throw new ProtocolError(jsonRpcCode('unknown_prompt'), `Prompt ${name} not found`, {
        code: 'unknown_prompt',
      });
    }
    for (const argument of prompt.arguments ?? []) {
      if (argument.required && typeof args[argument.name] !== 'string') {
        throw new ProtocolError(
          jsonRpcCode('invalid_input'),
          `Missing required argument "${argument.name}"`,
          { code: 'invalid_input' },
        );
      }
    }
    const binding: RoundBinding = { principal: principal.id, target: `prompts/get ${name}`, arguments: args };
    const round = await this.#round(binding, ctx);
    const client = new ClientInput(clientConnection(ctx, undefined, server, channel), round.answers);
    let result: GetPromptResult | undefined;
    try {
      result = await prompt.get(args, { principal, signal: ctx.mcpReq.signal, client });
    } catch (error) {
      if (!(error instanceof InputNeeded) || !client.waiting) throw error;
    }
    if (client.waiting || !result) {
      return this.#inputRequired(binding, { requests: client.pending, answers: client.used }) as never;
    }
    return result;
  }

  async #complete(
    principal: Principal,
    ref: { type: string; name?: string; uri?: string },
    argument: { name: string; value: string },
    context: Record<string, string>,
  ): Promise<{ values: string[]; total?: number; hasMore?: boolean }> {
    let completer:
      | ((value: string, context: Record<string, string>) => string[] | Promise<string[]>)
      | undefined;
    if (ref.type === 'ref/prompt') {
      const prompt = this.app.prompts.find((p) => p.name === ref.name);
      if (prompt && this.#permits(principal, prompt.permission)) completer = prompt.complete?.[argument.name];
    } else if (ref.type === 'ref/resource') {
      const template = this.app.resourceTemplates.find((t) => t.uriTemplate === ref.uri);
      if (template && this.#permits(principal, template.permission))
        completer = template.complete?.[argument.name];
    }
    const values = completer ? (await completer(argument.value, context)).slice(0, 100) : [];
    return { values, total: values.length, hasMore: false };
  }

  #permits(principal: Principal, permission: string | undefined): boolean {
    return (
      permission === undefined ||
      this.#deps.authorizer.canExecute(principal, { name: permission, permission })
    );
  }

  // --- notifications ---------------------------------------------------------------------------

  #onCommit(event: CommitEvent): void {
    const uri = stateUri(event.doc);
    const meta: JsonObject = { [META.revision]: event.revision, [META.doc]: event.doc };
    for (const publish of this.#publishers) publish(uri, meta);
    for (const follower of this.#followers) {
      if (
        follower.subscriptions ? !follower.subscriptions.has(uri) : !this.canFollow(follower.principal, uri)
      )
        continue;
      follower.server.sendResourceUpdated({ uri, _meta: meta }).catch((error: unknown) => {
        // An instance that cannot take notifications (closed, or a discarded probe) stops following.
        this.#followers.delete(follower);
        this.#logger.debug({ err: error, uri }, 'could not deliver a resource update');
      });
    }
  }

  // --- errors ----------------------------------------------------------------------------------

  /**
   * Wraps a request handler so nothing unsanitized reaches the wire: the SDK sends a thrown error's
   * message as is. Typed errors keep their public message; anything else becomes `internal_error`.
   */
  #guard<Req, Res>(
    principal: Principal,
    handler: (request: Req, ctx: ServerContext) => Res | Promise<Res>,
    countHere: boolean,
  ) {
    return async (request: Req, ctx: ServerContext): Promise<Res> => {
      this.#answering++;
      try {
        if (countHere && this.#limiter && ctx.http === undefined) {
          const verdict = this.#limiter.take(principal.id);
          if (!verdict.ok) throw rateLimited(verdict.retryAfterSeconds);
        }
        return await handler(request, ctx);
      } catch (error) {
        if (error instanceof ProtocolError) throw error;
        const requestId = timeOrderedId();
        const publicError = toPublicError(error, requestId);
        if (!isCoreMcpError(error) || !error.spec.expose) {
          this.#logger.error({ err: error, requestId, method: ctx.mcpReq.method }, 'MCP request failed');
        }
        throw protocolFailure(publicError);
      } finally {
        if (--this.#answering === 0) for (const wake of this.#idle.splice(0)) wake();
      }
    };
  }

  /**
   * Resolves once no request is being answered (or after `timeoutMs`): what a transport waits for
   * before it closes, so answers in progress are not lost. Requests read but not yet dispatched get
   * one turn of the event loop to start.
   */
  async idle(timeoutMs: number): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#answering === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#idle.push(resolve)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

function resourceNotFound(uri: string): ProtocolError {
  return new ProtocolError(jsonRpcCode('resource_not_found'), 'Resource not found', {
    code: 'resource_not_found',
    uri,
  });
}

function toTool(command: CommandDefinition): Tool {
  const tool: Tool = {
    name: command.name,
    description: command.description,
    inputSchema: command.inputJsonSchema as Tool['inputSchema'],
    annotations: {
      title: command.title,
      readOnlyHint: command.readOnly,
      destructiveHint: command.destructive,
      idempotentHint: command.idempotent || command.readOnly,
      openWorldHint: false,
    },
  };
  if (command.title !== undefined) tool.title = command.title;
  if (command.outputJsonSchema) tool.outputSchema = command.outputJsonSchema as Tool['outputSchema'];
  // A command whose input changed says which version it speaks (older inputs are upgraded).
  if (command.version > 1) tool._meta = { [META.commandVersion]: command.version };
  return tool;
}

/**
 * A command's outcome as an MCP tool result: failures are results with `isError`, not protocol
 * errors. The content is the command's own rendering of its result, or the result's JSON text.
 */
export function toCallToolResult(
  result: Exclude<CommandResult, { status: 'input_required' }>,
  command?: CommandDefinition,
): CallToolResult {
  const meta: JsonObject = { [META.requestId]: result.requestId };
  if (result.revision !== undefined) meta[META.revision] = result.revision;
  if (result.status === 'success') {
    meta[META.doc] = result.doc;
    meta[META.commandId] = result.commandId;
    if (result.replayed) meta[META.replayed] = true;
    const value = result.result;
    const content = command?.content
      ? (command.content(value) as CallToolResult['content'])
      : [{ type: 'text' as const, text: JSON.stringify(value) }];
    const out: CallToolResult = { content, _meta: meta };
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) out.structuredContent = value;
    return out;
  }
  const error = result.publicError as unknown as JsonValue;
  return {
    isError: true,
    content: [{ type: 'text', text: JSON.stringify({ error }) }],
    structuredContent: { error },
    _meta: meta,
  };
}

/**
 * A failure as a JSON-RPC error: the catalog's number, the public message, and the public error as
 * `data` (spec-defined fields, such as -32021's `requiredCapabilities`, lifted to the top of `data`).
 */
function protocolFailure(error: PublicError): ProtocolError {
  const data: JsonObject = { ...(error as unknown as JsonObject) };
  const required = error.details?.requiredCapabilities;
  if (required !== undefined) data.requiredCapabilities = required;
  return new ProtocolError(jsonRpcCode(error.code), error.message, data);
}

/** The client as a call sees it: its declared capabilities and whether a question can reach it. */
function clientConnection(
  ctx: ServerContext,
  progressToken: unknown,
  server: Server,
  channel: Channel,
): ClientConnection {
  const envelope = ctx.mcpReq.envelope as Record<string, unknown> | undefined;
  const modern = envelope?.['io.modelcontextprotocol/protocolVersion'] !== undefined;
  const declared = modern
    ? envelope?.['io.modelcontextprotocol/clientCapabilities']
    : server.getClientCapabilities();
  return {
    capabilities:
      typeof declared === 'object' && declared !== null ? (declared as Record<string, unknown>) : undefined,
    // 2025-11-25 HTTP without a session has no way back to the client; every other connection does.
    canAsk: modern || channel !== 'request',
    progress: async (progress, total, message) => {
      if (typeof progressToken !== 'string' && typeof progressToken !== 'number') return;
      await ctx.mcpReq.notify({
        method: 'notifications/progress',
        params: {
          progressToken,
          progress,
          total,
          message,
        },
      });
    },
    log: (level, data) => ctx.mcpReq.log(level, data),
  };
}
