import { useCallback, useEffect, useState } from 'preact/hooks';
import type { CreatedKeyResponse, KeysResponse, KeyView } from '../../../src/console/wire';
import { api, describeError } from '../api';
import { Confirm } from '../components/Confirm';
import { localTime } from '../format';

/** API keys (admins): list, create (the key is shown once, here), revoke (its sessions end at once). */
export function KeysView() {
  const [data, setData] = useState<KeysResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [name, setName] = useState('');
  const [role, setRole] = useState('member');
  const [created, setCreated] = useState<CreatedKeyResponse | undefined>();
  const [revoking, setRevoking] = useState<KeyView | undefined>();
  const load = useCallback(async () => {
    try {
      setData(await api.get<KeysResponse>('keys'));
      setError(undefined);
    } catch (failure) {
      setError(describeError(failure));
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  const create = async (event: Event) => {
    event.preventDefault();
    try {
      setCreated(await api.post<CreatedKeyResponse>('keys', { name, role }));
      setName('');
      void load();
    } catch (failure) {
      setError(describeError(failure));
    }
  };
  return (
    <section aria-labelledby="keys-title">
      <h1 id="keys-title">API keys</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <form class="inline-form" onSubmit={create} aria-label="Create a key">
        <label>
          name{' '}
          <input
            name="name"
            required
            pattern="[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}"
            value={name}
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          role{' '}
          <select name="role" value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value)}>
            {(data?.roles ?? ['admin', 'member', 'viewer']).map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary">
          Create key
        </button>
      </form>
      {created && (
        <div class="created-key" role="status">
          <p>
            Key <strong>{created.record.name}</strong> ({created.record.role}) created. It is shown{' '}
            <strong>once</strong>: copy it now.
          </p>
          <code class="secret">{created.key}</code>
          <div class="actions">
            <button type="button" onClick={() => void navigator.clipboard?.writeText(created.key)}>
              Copy
            </button>
            <button type="button" onClick={() => setCreated(undefined)}>
              Done
            </button>
          </div>
        </div>
      )}
      {data && (
        <div class="table-wrap">
          <table class="keys">
            <thead>
              <tr>
                <th scope="col">name</th>
                <th scope="col">role</th>
                <th scope="col">id</th>
                <th scope="col">created</th>
                <th scope="col">status</th>
                <th scope="col">
                  <span class="sr-only">actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.keys.map((k) => (
                <tr key={k.id} data-key={k.name}>
                  <td>{k.name}</td>
                  <td>{k.role}</td>
                  <td class="mono">{k.id}</td>
                  <td>
                    <time dateTime={k.createdAt}>{localTime(k.createdAt)}</time>
                  </td>
                  <td>
                    {k.revokedAt ? (
                      <span class="badge bad" title={localTime(k.revokedAt)}>
                        revoked
                      </span>
                    ) : (
                      <span class="badge ok">active</span>
                    )}
                  </td>
                  <td>
                    {!k.revokedAt && (
                      <button type="button" class="danger" onClick={() => setRevoking(k)}>
                        Revoke…
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {revoking && (
        <Confirm
          title={`Revoke the key "${revoking.name}"?`}
          confirmLabel="Revoke"
          danger
          onClose={() => setRevoking(undefined)}
          onConfirm={async () => {
            await api.post('keys/revoke', { id: revoking.id });
            // Revoking the key this session signed in with ends this session too: the reload's 401 says so.
            await load();
          }}
        >
          <p>
            Key <strong>{revoking.name}</strong> ({revoking.role}, id <code>{revoking.id}</code>) stops
            working now: MCP clients using it get 401, and console sessions signed in with it end. This cannot
            be undone; make a new key instead.
          </p>
        </Confirm>
      )}
    </section>
  );
}
