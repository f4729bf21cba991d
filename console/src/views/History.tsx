import { useCallback, useEffect, useState } from 'preact/hooks';
import type {
  CommandResponse,
  CommitSummary,
  DiffResponse,
  DocumentResponse,
  DocumentsResponse,
  HistoryResponse,
} from '../../../src/console/wire';
import { api, describeError } from '../api';
import { Confirm } from '../components/Confirm';
import { PatchList } from '../components/PatchList';
import { ago, localTime } from '../format';
import { onCommits } from '../live';
import { href } from '../router';

type Diff = DiffResponse & { totalOps: number };

interface Filter {
  principal: string;
  command: string;
}

/** A document's commits, newest first: filter by principal or command, page back, open each diff, undo. */
export function HistoryView({ doc }: { doc: string | undefined }) {
  const [docs, setDocs] = useState<string[] | undefined>();
  useEffect(() => {
    api
      .get<DocumentsResponse>('documents')
      .then((r) => {
        setDocs(r.documents.map((d) => d.doc));
        // Without a document named, the one changed last.
        const latest = [...r.documents].sort((a, b) =>
          (b.lastChange?.at ?? '').localeCompare(a.lastChange?.at ?? ''),
        )[0];
        if (!doc && latest) location.replace(href({ view: 'history', doc: latest.doc }));
      })
      .catch(() => setDocs([]));
  }, [doc]);
  return (
    <section aria-labelledby="history-title">
      <header class="view-header">
        <h1 id="history-title">History</h1>
        {docs && docs.length > 0 && (
          <label>
            document{' '}
            <select
              value={doc}
              onChange={(e) => {
                location.hash = href({ view: 'history', doc: (e.target as HTMLSelectElement).value });
              }}
            >
              {docs.map((d) => (
                <option key={d} value={d}>
                  {d}
                </option>
              ))}
            </select>
          </label>
        )}
      </header>
      {doc ? (
        <Timeline key={doc} doc={doc} />
      ) : (
        docs && docs.length === 0 && <p class="muted">No documents.</p>
      )}
    </section>
  );
}

function Timeline({ doc }: { doc: string }) {
  const [filter, setFilter] = useState<Filter>({ principal: '', command: '' });
  const [draft, setDraft] = useState<Filter>(filter);
  const [pages, setPages] = useState<number[]>([]);
  const before = pages.at(-1);
  const [page, setPage] = useState<HistoryResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [mayUndo, setMayUndo] = useState(false);
  const [open, setOpen] = useState<number | undefined>();
  const [undoing, setUndoing] = useState<CommitSummary | undefined>();
  const [notice, setNotice] = useState<string | undefined>();

  const load = useCallback(async () => {
    try {
      setPage(
        await api.get<HistoryResponse>('history', {
          doc,
          before,
          principal: filter.principal,
          command: filter.command,
          limit: 25,
        }),
      );
      setError(undefined);
    } catch (failure) {
      setError(describeError(failure));
    }
  }, [doc, before, filter]);

  useEffect(() => {
    void load();
    // New commits show up on the first page; older pages stay as they are.
    if (before !== undefined) return;
    return onCommits(() => void load(), { filter: (e) => e.doc === doc });
  }, [load, before, doc]);

  useEffect(() => {
    api
      .get<DocumentResponse>('document', { doc })
      .then((d) => setMayUndo(d.actions.undo))
      .catch(() => setMayUndo(false));
  }, [doc]);

  return (
    <div class="timeline">
      <form
        class="inline-form filters"
        onSubmit={(e) => {
          e.preventDefault();
          setPages([]);
          setFilter(draft);
        }}
      >
        <label>
          principal{' '}
          <input
            value={draft.principal}
            onInput={(e) => setDraft({ ...draft, principal: (e.target as HTMLInputElement).value })}
          />
        </label>
        <label>
          command{' '}
          <input
            value={draft.command}
            onInput={(e) => setDraft({ ...draft, command: (e.target as HTMLInputElement).value })}
          />
        </label>
        <button type="submit">Filter</button>
      </form>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {page && (
        <>
          <p class="muted small">
            Head r{page.head}; history kept from r{page.oldestRevision}.
          </p>
          {page.commits.length === 0 && <p class="muted">No commits match.</p>}
          <ol class="commits">
            {page.commits.map((c) => (
              <li key={c.revision} class="commit" data-revision={c.revision}>
                <div class="commit-head">
                  <span class="revision-badge">r{c.revision}</span>
                  <time dateTime={c.at} title={localTime(c.at)}>
                    {ago(c.at)}
                  </time>
                  <span class="principal">{c.principal}</span>
                  <span class="mono command">{c.command}</span>
                  <span class="paths">
                    {c.paths.slice(0, 4).map((p) => (
                      <code key={p} class="chip">
                        {p || '/'}
                      </code>
                    ))}
                    {c.pathCount > 4 && <span class="muted small">+{c.pathCount - 4} more</span>}
                  </span>
                  <span class="commit-actions">
                    <button
                      type="button"
                      aria-expanded={open === c.revision}
                      onClick={() => setOpen(open === c.revision ? undefined : c.revision)}
                    >
                      {open === c.revision ? 'Hide diff' : 'Diff'}
                    </button>
                    {mayUndo && (
                      <button type="button" class="danger" onClick={() => setUndoing(c)}>
                        Undo…
                      </button>
                    )}
                  </span>
                </div>
                {open === c.revision && <CommitDiff doc={doc} revision={c.revision} />}
              </li>
            ))}
          </ol>
          <nav class="pager" aria-label="History pages">
            <button type="button" onClick={() => setPages([])} disabled={pages.length === 0}>
              Newest
            </button>
            <button type="button" onClick={() => setPages(pages.slice(0, -1))} disabled={pages.length === 0}>
              Newer
            </button>
            <button
              type="button"
              onClick={() => page.next !== undefined && setPages([...pages, page.next])}
              disabled={page.next === undefined}
            >
              Older
            </button>
          </nav>
        </>
      )}
      {undoing && (
        <UndoDialog
          doc={doc}
          commit={undoing}
          onClose={() => setUndoing(undefined)}
          onDone={(result) =>
            setNotice(`Undid r${undoing.revision} (${undoing.command}): new revision r${result.revision}.`)
          }
        />
      )}
    </div>
  );
}

function CommitDiff({ doc, revision }: { doc: string; revision: number }) {
  const [diff, setDiff] = useState<Diff | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    api
      .get<Diff>('diff', { doc, from: revision - 1, to: revision })
      .then(setDiff)
      .catch((failure: unknown) => setError(describeError(failure)));
  }, [doc, revision]);
  if (error)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  return diff ? <PatchList patches={diff.patches} total={diff.totalOps} /> : <p class="muted">Loading…</p>;
}

function UndoDialog(props: {
  doc: string;
  commit: CommitSummary;
  onClose: () => void;
  onDone: (result: CommandResponse) => void;
}) {
  const { commit } = props;
  return (
    <Confirm
      title={`Undo r${commit.revision} (${commit.command})?`}
      confirmLabel="Undo this commit"
      danger
      onClose={props.onClose}
      onConfirm={async () =>
        props.onDone(await api.post<CommandResponse>('undo', { commandId: commit.commandId }))
      }
    >
      <p>
        A new commit applies the inverse of what {commit.principal} changed in r{commit.revision}. It is
        refused if a later commit changed the same paths.
      </p>
      <h3>The change that will be reversed</h3>
      <CommitDiff doc={props.doc} revision={commit.revision} />
    </Confirm>
  );
}
