/**
 * A console API client for tests, over real HTTP: it signs in like the page does (a POST with the
 * credential, then the session cookie and the CSRF token), and can leave out any of its defences to
 * show they are needed.
 */
import type { SessionInfo } from '../../src/console/wire.js';

export interface ConsoleAnswer<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  /** The error code of an error answer (the edge's error writer puts it in `error.data.code`). */
  code: string | undefined;
}

export interface SendOptions {
  /** Leave out the session cookie. */
  cookie?: boolean;
  /** Leave out (false) or replace the CSRF token. */
  csrf?: boolean | string;
  headers?: Record<string, string>;
}

async function answer<T>(response: Response): Promise<ConsoleAnswer<T>> {
  const text = await response.text();
  // JSON answers parsed; anything else (JSON lines, the page) as text.
  const json = /^application\/json\b/.test(response.headers.get('content-type') ?? '') && text !== '';
  const body: unknown = json ? JSON.parse(text) : text === '' ? undefined : text;
  const code = (body as { error?: { data?: { code?: string } } } | undefined)?.error?.data?.code;
  return { status: response.status, headers: response.headers, body: body as T, code };
}

export class ConsoleClient {
  cookie: string | undefined;
  session: SessionInfo | undefined;
  /** The `Set-Cookie` of the last sign-in. */
  setCookie: string | undefined;

  constructor(readonly origin: string) {}

  static async signIn(origin: string, credential: string, headers: Record<string, string> = {}) {
    const client = new ConsoleClient(origin);
    const signed = await client.signIn(credential, headers);
    if (signed.status !== 200) throw new Error(`sign-in failed: ${signed.status} ${signed.code}`);
    return client;
  }

  async signIn(
    credential: string,
    headers: Record<string, string> = {},
  ): Promise<ConsoleAnswer<SessionInfo>> {
    const response = await fetch(`${this.origin}/console/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ credential }),
    });
    const result = await answer<SessionInfo>(response);
    if (response.status === 200) {
      this.setCookie = response.headers.get('set-cookie') ?? undefined;
      this.cookie = this.setCookie?.split(';')[0];
      this.session = result.body;
    }
    return result;
  }

  #headers(options: SendOptions, mutation: boolean): Record<string, string> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.cookie !== false && this.cookie) headers.cookie = this.cookie;
    if (mutation && options.csrf !== false && this.session)
      headers['x-csrf-token'] = typeof options.csrf === 'string' ? options.csrf : this.session.csrfToken;
    return headers;
  }

  async get<T = unknown>(
    path: string,
    query: Record<string, string | number> = {},
    options: SendOptions = {},
  ): Promise<ConsoleAnswer<T>> {
    const params = new URLSearchParams(
      Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]),
    );
    const search = params.size > 0 ? `?${params}` : '';
    return answer<T>(
      await fetch(`${this.origin}${path}${search}`, { headers: this.#headers(options, false) }),
    );
  }

  api<T = unknown>(name: string, query: Record<string, string | number> = {}, options: SendOptions = {}) {
    return this.get<T>(`/console/api/${name}`, query, options);
  }

  async post<T = unknown>(name: string, body: unknown, options: SendOptions = {}): Promise<ConsoleAnswer<T>> {
    return answer<T>(
      await fetch(`${this.origin}/console/api/${name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...this.#headers(options, true) },
        body: JSON.stringify(body),
      }),
    );
  }

  async signOut(options: SendOptions = {}): Promise<ConsoleAnswer> {
    return answer(
      await fetch(`${this.origin}/console/api/session`, {
        method: 'DELETE',
        headers: this.#headers(options, true),
      }),
    );
  }

  /** Opens the event stream; `events` collects every event as it comes, `closed` settles when it ends. */
  async events(): Promise<EventStream> {
    const controller = new AbortController();
    const response = await fetch(`${this.origin}/console/api/events`, {
      headers: this.#headers({}, false),
      signal: controller.signal,
    });
    return new EventStream(response, controller);
  }
}

export interface StreamEvent {
  event: string;
  data: unknown;
}

/** A server-sent event stream read as it arrives. */
export class EventStream {
  readonly events: StreamEvent[] = [];
  readonly status: number;
  readonly closed: Promise<void>;
  #ended = false;

  constructor(
    readonly response: Response,
    readonly controller: AbortController,
  ) {
    this.status = response.status;
    this.closed = this.#read().finally(() => {
      this.#ended = true;
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  async #read(): Promise<void> {
    if (!this.response.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of this.response.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) this.events.push({ event, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch {
      // Aborted by the test.
    }
  }

  close(): void {
    this.controller.abort();
  }
}
