import { useState } from 'preact/hooks';
import type { SessionInfo } from '../../../src/console/wire';
import { api, describeError } from '../api';

/**
 * Sign-in with an API key or a bearer JWT. The credential goes once, in the body of a POST; the
 * server answers with an HttpOnly session cookie. Nothing is put in the URL or in storage.
 */
export function SignIn(props: { notice: string | undefined; onSignedIn: (session: SessionInfo) => void }) {
  const [credential, setCredential] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const session = await api.post<SessionInfo>('session', { credential });
      setCredential('');
      props.onSignedIn(session);
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in">
      <form onSubmit={submit} class="card" aria-labelledby="sign-in-title">
        <h1 id="sign-in-title">coremcp console</h1>
        {props.notice && (
          <p class="notice" role="status">
            {props.notice}
          </p>
        )}
        <label for="credential">API key or bearer token</label>
        <input
          id="credential"
          name="credential"
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          value={credential}
          onInput={(e) => setCredential((e.target as HTMLInputElement).value)}
          placeholder="cmcp_…"
        />
        <button type="submit" class="primary" disabled={busy || credential.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="muted small">
          The first start of <code>coremcp serve</code> prints an admin key; make more with{' '}
          <code>coremcp keys create --name NAME --role ROLE</code>.
        </p>
      </form>
    </main>
  );
}
