import type { ErrorBody, Json } from '../../src/console/wire';

/** A refusal or failure from the console API, with the error code the server's catalog gave it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
    readonly details?: Json,
  ) {
    super(message);
  }
}

let csrfToken = '';
const unauthenticatedListeners = new Set<() => void>();

/** The token every POST and DELETE carries; held in memory only, never stored. */
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

/** Called when a request finds the session gone (expired, revoked, signed out elsewhere). */
export function onUnauthenticated(listener: () => void): () => void {
  unauthenticatedListeners.add(listener);
  return () => unauthenticatedListeners.delete(listener);
}

export type Query = Record<string, string | number | undefined>;

/** The URL of an API path with its query (empty values left out). */
export function apiUrl(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query))
    if (value !== undefined && value !== '') params.set(name, String(value));
  const search = params.toString();
  return `/console/api/${path}${search ? `?${search}` : ''}`;
}

async function call<T>(method: string, path: string, query: Query, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(apiUrl(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const error = (json as Partial<ErrorBody> | undefined)?.error;
    const failure = new ApiError(
      response.status,
      error?.data?.code ?? `http_${response.status}`,
      error?.message ?? `The server answered ${response.status}`,
      error?.data?.requestId,
      error?.data?.details,
    );
    if (response.status === 401 && !(path === 'session' && method === 'POST'))
      for (const listener of unauthenticatedListeners) listener();
    throw failure;
  }
  return json as T;
}

export const api = {
  get: <T>(path: string, query: Query = {}) => call<T>('GET', path, query),
  post: <T>(path: string, body: unknown) => call<T>('POST', path, {}, body),
  delete: <T>(path: string) => call<T>('DELETE', path, {}),
};

/** A message for any thrown value, for a person. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}
