import { z } from 'zod';
import type { Principal } from '../core/access.js';
import type { JsonObject } from '../core/json.js';
import type { TaskRecord } from '../core/store.js';
import type { McpSurface } from './surface.js';
import { declaresTasks, detailedTask } from './tasks.js';

/**
 * 2026-07-28 `subscriptions/listen` over HTTP, served by coremcp rather than the SDK's router, which
 * knows neither the tasks extension's `taskIds` nor principals. One long POST answered with an event
 * stream: the acknowledgement with the honoured filter, then `notifications/resources/updated` for
 * the documents followed (with the new revision in `_meta`, so a follower knows whether it is
 * behind without a round trip) and `notifications/tasks` for the principal's own tasks, each stamped
 * with the subscription id, and keep-alive comments. There is no replay: a follower that reconnects
 * syncs from its own revision.
 */

const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';

const filterSchema = z
  .object({
    toolsListChanged: z.boolean().optional(),
    promptsListChanged: z.boolean().optional(),
    resourcesListChanged: z.boolean().optional(),
    resourceSubscriptions: z.array(z.string().max(4096)).max(1000).optional(),
    taskIds: z.array(z.string().max(200)).max(1000).optional(),
  })
  .loose();

export interface ListenRequest {
  id: string | number;
  params: Record<string, unknown>;
}

/** Why a listen request is refused before its stream opens: a JSON-RPC error and its HTTP status. */
export interface ListenRefusal {
  status: number;
  error: JsonObject;
}

interface Stream {
  principal: Principal;
  uris: ReadonlySet<string>;
  tasks: ReadonlySet<string>;
  write(method: string, params: JsonObject): void;
}

export interface ListenStreamsOptions {
  /** A keep-alive comment this often, in ms (default 15,000). */
  keepAliveMs?: number;
  serverInfo: { name: string; version: string };
}

export class ListenStreams {
  readonly #surface: McpSurface;
  readonly #keepAliveMs: number;
  readonly #serverInfo: { name: string; version: string };
  readonly #streams = new Set<Stream>();
  readonly #detach: Array<() => void>;

  constructor(surface: McpSurface, options: ListenStreamsOptions) {
    this.#surface = surface;
    this.#keepAliveMs = options.keepAliveMs ?? 15_000;
    this.#serverInfo = options.serverInfo;
    this.#detach = [
      surface.addPublisher((uri, meta) => {
        for (const stream of this.#streams)
          if (stream.uris.has(uri)) stream.write('notifications/resources/updated', { uri, _meta: meta });
      }),
      surface.onTaskChange((task) => this.#taskChanged(task)),
    ];
  }

  /** Open streams. */
  get size(): number {
    return this.#streams.size;
  }

  /**
   * Answers a listen request: a refusal (invalid filter; task ids without the extension), or the
   * event stream. Documents the principal may not follow were refused before (HTTP 403).
   */
  async serve(
    request: ListenRequest,
    principal: Principal,
    signal: AbortSignal,
  ): Promise<Response | ListenRefusal> {
    const parsed = filterSchema.safeParse(request.params.notifications);
    if (!parsed.success) {
      return refusal(
        200,
        request.id,
        -32602,
        "Invalid params: 'notifications' is required and must be a valid filter",
      );
    }
    const filter = parsed.data;
    const meta = isObject(request.params._meta) ? request.params._meta : {};
    const capabilities = meta['io.modelcontextprotocol/clientCapabilities'];
    if (filter.taskIds !== undefined && !declaresTasks(isObject(capabilities) ? capabilities : undefined)) {
      return {
        status: 400,
        error: {
          jsonrpc: '2.0',
          id: request.id,
          error: {
            code: -32021,
            message: 'Task notifications need the io.modelcontextprotocol/tasks extension',
            data: { requiredCapabilities: { extensions: { 'io.modelcontextprotocol/tasks': {} } } },
          },
        },
      };
    }
    const uris = new Set(filter.resourceSubscriptions ?? []);
    const tasks = new Set<string>();
    // Only the principal's own tasks are honoured; other ids are left out of the acknowledgement.
    for (const id of filter.taskIds ?? []) if (await this.#surface.ownsTask(principal, id)) tasks.add(id);
    const honored: JsonObject = {};
    if (uris.size > 0) honored.resourceSubscriptions = [...uris];
    if (tasks.size > 0) honored.taskIds = [...tasks];
    return this.#open(request.id, principal, uris, tasks, honored, signal);
  }

  /** Ends every stream gracefully and stops listening for changes. */
  close(): void {
    for (const detach of this.#detach) detach();
    for (const stream of [...this.#streams]) (stream as Stream & { end(): void }).end();
  }

  #open(
    id: string | number,
    principal: Principal,
    uris: ReadonlySet<string>,
    tasks: ReadonlySet<string>,
    honored: JsonObject,
    signal: AbortSignal,
  ): Response {
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let keepAlive: NodeJS.Timeout | undefined;
    let closed = false;
    const frame = (text: string) => {
      if (closed) return;
      try {
        controller.enqueue(encoder.encode(text));
      } catch {
        finish(false);
      }
    };
    const message = (body: JsonObject) => frame(`event: message\ndata: ${JSON.stringify(body)}\n\n`);
    const stream: Stream & { end(): void } = {
      principal,
      uris,
      tasks,
      write: (method, params) => {
        const _meta = { ...(isObject(params._meta) ? params._meta : {}), [SUBSCRIPTION_ID]: id };
        message({ jsonrpc: '2.0', method, params: { ...params, _meta } });
      },
      end: () => finish(true),
    };
    const finish = (graceful: boolean) => {
      if (closed) return;
      if (graceful) {
        message({
          jsonrpc: '2.0',
          id,
          result: {
            resultType: 'complete',
            _meta: { [SUBSCRIPTION_ID]: id, [SERVER_INFO]: this.#serverInfo },
          },
        });
      }
      closed = true;
      if (keepAlive) clearInterval(keepAlive);
      signal.removeEventListener('abort', onAbort);
      this.#streams.delete(stream);
      try {
        controller.close();
      } catch {
        // Already closed by the reader.
      }
    };
    const onAbort = () => finish(false);
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
        stream.write('notifications/subscriptions/acknowledged', { notifications: honored });
        // Nothing to deliver: acknowledged and closed at once, as the spec has it.
        if (Object.keys(honored).length === 0) {
          finish(true);
          return;
        }
        this.#streams.add(stream);
        keepAlive = setInterval(() => frame(': keepalive\n\n'), this.#keepAliveMs);
        keepAlive.unref();
      },
      cancel: () => finish(false),
    });
    if (signal.aborted) finish(false);
    else signal.addEventListener('abort', onAbort, { once: true });
    return new Response(body, {
      status: 200,
      headers: {
        'Content-Type': 'text/event-stream',
        'Cache-Control': 'no-cache, no-transform',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      },
    });
  }

  #taskChanged(task: TaskRecord): void {
    for (const stream of this.#streams) {
      if (stream.tasks.has(task.taskId) && stream.principal.id === task.principal)
        stream.write('notifications/tasks', detailedTask(task));
    }
  }
}

function refusal(status: number, id: string | number, code: number, message: string): ListenRefusal {
  return { status, error: { jsonrpc: '2.0', id, error: { code, message } } };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
