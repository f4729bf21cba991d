import type { CommitEventView, SessionEndedEvent } from '../../src/console/wire';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'closed';

const commitListeners = new Set<(event: CommitEventView) => void>();

/** Hears every commit the server streams (documents this principal may follow). */
export function onCommit(listener: (event: CommitEventView) => void): () => void {
  commitListeners.add(listener);
  return () => commitListeners.delete(listener);
}

/**
 * One EventSource for the signed-in session. The browser sends the session cookie with it and
 * reconnects by itself; a `session` event (sign-out, expiry, revoked key) or a refused reconnect
 * ends it.
 */
export function connectLive(handlers: {
  status: (status: LiveStatus) => void;
  ended: (reason: SessionEndedEvent['reason'] | 'closed') => void;
}): () => void {
  const source = new EventSource('/console/api/events');
  handlers.status('connecting');
  source.addEventListener('open', () => handlers.status('live'));
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      handlers.status('closed');
      handlers.ended('closed');
    } else handlers.status('reconnecting');
  });
  source.addEventListener('commit', (event) => {
    const commit = JSON.parse((event as MessageEvent<string>).data) as CommitEventView;
    for (const listener of commitListeners) listener(commit);
  });
  source.addEventListener('session', (event) => {
    const { reason } = JSON.parse((event as MessageEvent<string>).data) as SessionEndedEvent;
    source.close();
    handlers.status('closed');
    handlers.ended(reason);
  });
  return () => source.close();
}

/**
 * Like `onCommit`, but calls `listener` at most once per `ms` (trailing), with the commits seen
 * since: a burst of commits costs one reload, and the last of them is never missed.
 */
export function onCommits(
  listener: (events: CommitEventView[]) => void,
  options: { ms?: number; filter?: (event: CommitEventView) => boolean } = {},
): () => void {
  let pending: CommitEventView[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const off = onCommit((event) => {
    if (options.filter && !options.filter(event)) return;
    pending.push(event);
    timer ??= setTimeout(() => {
      timer = undefined;
      const events = pending;
      pending = [];
      listener(events);
    }, options.ms ?? 250);
  });
  return () => {
    off();
    clearTimeout(timer);
  };
}
