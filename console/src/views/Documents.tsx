import { useCallback, useEffect, useState } from 'preact/hooks';
import type { DocumentsResponse } from '../../../src/console/wire';
import { api, describeError } from '../api';
import { ago, bytes, localTime } from '../format';
import { onCommits } from '../live';
import { href } from '../router';

/** Every document the principal may read: revision, size, last change and who made it; live. */
export function DocumentsView() {
  const [data, setData] = useState<DocumentsResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  const load = useCallback(async () => {
    try {
      setData(await api.get<DocumentsResponse>('documents'));
      setError(undefined);
    } catch (failure) {
      setError(describeError(failure));
    }
  }, []);
  useEffect(() => {
    void load();
    return onCommits(() => void load());
  }, [load]);
  return (
    <section aria-labelledby="documents-title">
      <h1 id="documents-title">Documents</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!data && !error && <p class="muted">Loading…</p>}
      {data && data.documents.length === 0 && <p class="muted">No documents you may read.</p>}
      {data && data.documents.length > 0 && (
        <div class="table-wrap">
          <table class="documents">
            <thead>
              <tr>
                <th scope="col">document</th>
                <th scope="col" class="num">
                  revision
                </th>
                <th scope="col" class="num">
                  size
                </th>
                <th scope="col">last change</th>
                <th scope="col">by</th>
                <th scope="col">
                  <span class="sr-only">links</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {data.documents.map((d) => (
                <tr key={d.doc} data-doc={d.doc}>
                  <td>
                    <a href={href({ view: 'document', doc: d.doc })} class="doc-link">
                      {d.doc}
                    </a>
                  </td>
                  <td class="num revision">{d.revision}</td>
                  <td class="num">
                    {bytes(d.bytes)}
                    {Object.entries(d.collections).map(([name, size]) => (
                      <span key={name} class="chip">
                        {name}: {size}
                      </span>
                    ))}
                  </td>
                  <td>
                    {d.lastChange ? (
                      <time dateTime={d.lastChange.at} title={localTime(d.lastChange.at)}>
                        {ago(d.lastChange.at)}
                      </time>
                    ) : (
                      <span class="muted">never</span>
                    )}
                    {d.lastChange && <span class="mono small"> {d.lastChange.command}</span>}
                  </td>
                  <td>{d.lastChange?.principal ?? ''}</td>
                  <td>
                    <a href={href({ view: 'history', doc: d.doc })}>history</a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
