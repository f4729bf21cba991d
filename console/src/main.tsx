import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import type { SessionEndedEvent, SessionInfo } from '../../src/console/wire';
import { ApiError, api, onUnauthenticated, setCsrfToken } from './api';
import { connectLive, type LiveStatus } from './live';
import { href, type Route, useRoute } from './router';
import { AuditView } from './views/Audit';
import { DocumentView } from './views/Document';
import { DocumentsView } from './views/Documents';
import { HealthView } from './views/Health';
import { HistoryView } from './views/History';
import { KeysView } from './views/Keys';
import { SignIn } from './views/SignIn';
import './styles.css';

const ENDED: Record<SessionEndedEvent['reason'] | 'closed' | 'unauthenticated', string> = {
  signed_out: 'You signed out.',
  expired: 'Your session expired. Sign in again.',
  revoked: 'The key this session signed in with was revoked.',
  closed: 'Your session ended. Sign in again.',
  unauthenticated: 'Your session ended. Sign in again.',
};

function App() {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>();

  const signedIn = useCallback((info: SessionInfo) => {
    setCsrfToken(info.csrfToken);
    setNotice(undefined);
    setSession(info);
  }, []);
  const signedOut = useCallback((why: keyof typeof ENDED) => {
    setCsrfToken('');
    setNotice(ENDED[why]);
    setSession(null);
  }, []);

  useEffect(() => {
    api
      .get<SessionInfo>('session')
      .then(signedIn)
      .catch((error: unknown) => {
        if (!(error instanceof ApiError) || error.status !== 401) setNotice(String(error));
        setSession(null);
      });
    return onUnauthenticated(() => signedOut('unauthenticated'));
  }, [signedIn, signedOut]);

  if (session === undefined) return <p class="muted loading">Loading…</p>;
  if (session === null) return <SignIn notice={notice} onSignedIn={signedIn} />;
  return <Shell session={session} onEnded={signedOut} />;
}

function Shell({ session, onEnded }: { session: SessionInfo; onEnded: (why: keyof typeof ENDED) => void }) {
  const route = useRoute();
  const [live, setLive] = useState<LiveStatus>('connecting');
  useEffect(
    () =>
      connectLive({
        status: setLive,
        ended: (reason) => {
          if (reason !== 'closed') return onEnded(reason);
          // The stream was refused: find out whether the session is gone or the server was away.
          api
            .get('session')
            .then(() => setLive('closed'))
            .catch(() => {});
        },
      }),
    [onEnded],
  );
  const signOut = async () => {
    await api.delete('session').catch(() => {});
    onEnded('signed_out');
  };
  const links: Array<[Route, string, boolean]> = [
    [{ view: 'documents' }, 'Documents', true],
    [{ view: 'history', doc: undefined }, 'History', true],
    [{ view: 'audit' }, 'Audit', session.permissions.audit],
    [{ view: 'health' }, 'Health', true],
    [{ view: 'keys' }, 'Keys', session.permissions.keys],
  ];
  const current = route.view === 'document' ? 'documents' : route.view;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href({ view: 'documents' })}>
          coremcp <span class="app">{session.app}</span>
        </a>
        <nav aria-label="Views">
          {links
            .filter(([, , shown]) => shown)
            .map(([target, label]) => (
              <a key={label} href={href(target)} aria-current={target.view === current ? 'page' : undefined}>
                {label}
              </a>
            ))}
        </nav>
        <div class="who">
          <span class={`live-status ${live}`} role="status" title="Live updates">
            {live === 'live' ? '● live' : live === 'closed' ? '○ offline' : '◌ connecting'}
          </span>
          <span class="principal" title={`roles: ${session.principal.roles.join(', ')}`}>
            {session.principal.name} <span class="muted">({session.principal.roles.join(', ')})</span>
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <View route={route} session={session} />
      </main>
    </>
  );
}

function View({ route, session }: { route: Route; session: SessionInfo }) {
  switch (route.view) {
    case 'document':
      return <DocumentView key={route.doc} doc={route.doc} />;
    case 'history':
      return <HistoryView doc={route.doc} />;
    case 'audit':
      return <AuditView />;
    case 'health':
      return <HealthView metrics={session.permissions.metrics} />;
    case 'keys':
      return <KeysView />;
    default:
      return <DocumentsView />;
  }
}

render(<App />, document.getElementById('app')!);
