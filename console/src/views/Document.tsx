import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type {
  CommandResponse,
  DiffResponse,
  DocumentResponse,
  EntriesResponse,
  HistoryResponse,
  Json,
} from '../../../src/console/wire';
import { api, describeError } from '../api';
import { Confirm } from '../components/Confirm';
import { JsonTree } from '../components/JsonTree';
import { PatchList } from '../components/PatchList';
import { ago, localTime } from '../format';
import { onCommits } from '../live';
import { href } from '../router';

type Diff = DiffResponse & { totalOps: number };
const NONE: ReadonlySet<string> = new Set();

/**
 * One document: its value as a tree at head (live) or at any revision, the diff between two
 * revisions with the changed paths highlighted, large collections page by page, and rollback.
 */
export function DocumentView({ doc }: { doc: string }) {
  const [at, setAt] = useState<number | 'head'>('head');
  const atRef = useRef(at);
  atRef.current = at;
  const [data, setData] = useState<DocumentResponse | undefined>();
  const [head, setHead] = useState(0);
  const [slider, setSlider] = useState(0);
  const [changed, setChanged] = useState<ReadonlySet<string>>(NONE);
  const [tab, setTab] = useState<'value' | 'diff'>('value');
  const [error, setError] = useState<string | undefined>();
  const [notice, setNotice] = useState<string | undefined>();
  const [rollbackTo, setRollbackTo] = useState<number | undefined>();

  const load = useCallback(
    async (revision: number | 'head', highlight: ReadonlySet<string> = NONE) => {
      try {
        const read = await api.get<DocumentResponse>('document', {
          doc,
          revision: revision === 'head' ? undefined : revision,
        });
        setData(read);
        setHead(read.head);
        setSlider(read.revision);
        setChanged(highlight);
        setError(undefined);
      } catch (failure) {
        setError(describeError(failure));
      }
    },
    [doc],
  );

  useEffect(() => {
    setAt('head');
    setData(undefined);
    setTab('value');
    void load('head');
    return onCommits(
      (events) => {
        const latest = Math.max(...events.map((e) => e.revision));
        setHead((h) => Math.max(h, latest));
        if (atRef.current === 'head') void load('head', new Set(events.flatMap((e) => e.paths)));
      },
      { filter: (e) => e.doc === doc },
    );
  }, [doc, load]);

  const goTo = (revision: number | 'head') => {
    const target = revision === 'head' || revision >= head ? 'head' : revision;
    setAt(target);
    void load(target);
  };

  const loadMore = useCallback(
    async (collection: string) => {
      if (!data) return;
      const cursor = data.more[collection]?.cursor;
      if (!cursor) return;
      try {
        const page = await api.get<EntriesResponse>('entries', { doc, collection, cursor });
        const value = { ...(data.value as Record<string, Json>) };
        value[collection] = {
          ...(value[collection] as Record<string, Json>),
          ...Object.fromEntries(page.entries),
        };
        const more = { ...data.more };
        if (page.cursor) more[collection] = { size: page.size, cursor: page.cursor };
        else delete more[collection];
        setData({ ...data, value, more });
      } catch (failure) {
        setError(describeError(failure));
      }
    },
    [data, doc],
  );

  if (!data)
    return (
      <section>
        <h1>{doc}</h1>
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : (
          <p class="muted">Loading…</p>
        )}
      </section>
    );

  const atHead = at === 'head';
  return (
    <section aria-labelledby="doc-title" class="document">
      <header class="view-header">
        <h1 id="doc-title">
          {doc} <span class="revision-badge">r{data.revision}</span>
        </h1>
        <a href={href({ view: 'history', doc })}>History of {doc}</a>
      </header>
      <fieldset class="revision-picker">
        <legend class="sr-only">Revision</legend>
        <label for="revision-range">Revision</label>
        <input
          id="revision-range"
          type="range"
          min={data.oldestRevision}
          max={head}
          value={slider}
          onInput={(e) => setSlider(Number((e.target as HTMLInputElement).value))}
          onChange={(e) => goTo(Number((e.target as HTMLInputElement).value))}
        />
        <input
          type="number"
          aria-label="Revision number"
          class="revision-number"
          min={data.oldestRevision}
          max={head}
          value={slider}
          onChange={(e) => goTo(Number((e.target as HTMLInputElement).value))}
        />
        <button type="button" onClick={() => goTo('head')} disabled={atHead}>
          Head
        </button>
        <span class={`live-state ${atHead ? 'on' : ''}`} role="status">
          {atHead ? `live at head (r${data.revision})` : `viewing r${data.revision} of ${head}`}
        </span>
        {data.actions.rollback && !atHead && data.revision < head && (
          <button type="button" class="danger" onClick={() => setRollbackTo(data.revision)}>
            Roll back to r{data.revision}…
          </button>
        )}
      </fieldset>
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
      <div class="tabs" role="tablist" aria-label="Document views">
        <button type="button" role="tab" aria-selected={tab === 'value'} onClick={() => setTab('value')}>
          Value
        </button>
        <button type="button" role="tab" aria-selected={tab === 'diff'} onClick={() => setTab('diff')}>
          Diff
        </button>
      </div>
      {tab === 'value' ? (
        <div role="tabpanel" aria-label="Value">
          <JsonTree
            value={data.value}
            changed={changed}
            more={data.more}
            onMore={loadMore}
            label={`${doc} at revision ${data.revision}`}
          />
        </div>
      ) : (
        <div role="tabpanel" aria-label="Diff">
          <DiffPanel doc={doc} oldest={data.oldestRevision} head={head} revision={data.revision} />
        </div>
      )}
      {rollbackTo !== undefined && (
        <RollbackDialog
          doc={doc}
          toRevision={rollbackTo}
          head={head}
          onClose={() => setRollbackTo(undefined)}
          onDone={(result) => {
            setNotice(`Rolled back to r${rollbackTo}: new revision r${result.revision}.`);
            goTo('head');
          }}
        />
      )}
    </section>
  );
}

/** The diff between two revisions: the operations, and the value at `to` with the changed paths marked. */
export function DiffPanel(props: { doc: string; oldest: number; head: number; revision: number }) {
  const [from, setFrom] = useState(Math.max(props.oldest, props.revision - 1));
  const [to, setTo] = useState(props.revision);
  const [diff, setDiff] = useState<Diff | undefined>();
  const [after, setAfter] = useState<DocumentResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  const show = async (event?: Event) => {
    event?.preventDefault();
    try {
      const [d, value] = await Promise.all([
        api.get<Diff>('diff', { doc: props.doc, from, to }),
        api.get<DocumentResponse>('document', { doc: props.doc, revision: to }),
      ]);
      setDiff(d);
      setAfter(value);
      setError(undefined);
    } catch (failure) {
      setError(describeError(failure));
    }
  };
  // The first diff is shown once, on opening; later ones on request.
  useEffect(() => {
    void show();
  }, []);
  return (
    <div class="diff">
      <form class="inline-form" onSubmit={show}>
        <label>
          from{' '}
          <input
            type="number"
            min={props.oldest}
            max={props.head}
            value={from}
            onInput={(e) => setFrom(Number((e.target as HTMLInputElement).value))}
          />
        </label>
        <label>
          to{' '}
          <input
            type="number"
            min={props.oldest}
            max={props.head}
            value={to}
            onInput={(e) => setTo(Number((e.target as HTMLInputElement).value))}
          />
        </label>
        <button type="submit">Show diff</button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {diff && (
        <div class="diff-result">
          <h2>
            r{diff.from} → r{diff.to}: {diff.totalOps} operation{diff.totalOps === 1 ? '' : 's'}
            {diff.compacted && <span class="badge warn">compacted: whole value replaced</span>}
          </h2>
          <PatchList patches={diff.patches} total={diff.totalOps} />
          {after && (
            <>
              <h3>Value at r{diff.to}, changed paths highlighted</h3>
              <JsonTree
                value={after.value}
                changed={new Set(diff.paths)}
                openDepth={1}
                label={`value at r${diff.to}`}
              />
            </>
          )}
        </div>
      )}
    </div>
  );
}

/** Confirms a rollback, showing the commits it reverts and the changes that will be undone. */
function RollbackDialog(props: {
  doc: string;
  toRevision: number;
  head: number;
  onClose: () => void;
  onDone: (result: CommandResponse) => void;
}) {
  const [diff, setDiff] = useState<Diff | undefined>();
  const [commits, setCommits] = useState<HistoryResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    Promise.all([
      // Backwards, from head to the target: the very patches the rollback will apply.
      api.get<Diff>('diff', { doc: props.doc, from: props.head, to: props.toRevision }),
      api.get<HistoryResponse>('history', { doc: props.doc, before: props.head + 1, limit: 20 }),
    ])
      .then(([d, h]) => {
        setDiff(d);
        setCommits(h);
      })
      .catch((failure: unknown) => setError(describeError(failure)));
  }, [props.doc, props.toRevision, props.head]);
  const reverted = props.head - props.toRevision;
  return (
    <Confirm
      title={`Roll back ${props.doc} to revision ${props.toRevision}?`}
      confirmLabel={`Roll back ${reverted} commit${reverted === 1 ? '' : 's'}`}
      danger
      onClose={props.onClose}
      onConfirm={async () => {
        if (!diff) throw new Error('The changes are still loading');
        const result = await api.post<CommandResponse>('rollback', {
          doc: props.doc,
          toRevision: props.toRevision,
          expectedRevision: props.head,
        });
        props.onDone(result);
      }}
    >
      <p>
        A new commit (r{props.head + 1}) returns <strong>{props.doc}</strong> to its value at r
        {props.toRevision}. History is kept, and the rollback itself can be undone. If anyone commits before
        you confirm, nothing happens and you are told.
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {commits && (
        <>
          <h3>Commits reverted</h3>
          <ul class="commit-list">
            {commits.commits
              .filter((c) => c.revision > props.toRevision)
              .map((c) => (
                <li key={c.revision}>
                  r{c.revision} <span class="mono">{c.command}</span> by {c.principal},{' '}
                  <time dateTime={c.at} title={localTime(c.at)}>
                    {ago(c.at)}
                  </time>
                </li>
              ))}
            {reverted > commits.commits.length && (
              <li class="muted">…and {reverted - commits.commits.length} more</li>
            )}
          </ul>
        </>
      )}
      {diff ? (
        <>
          <h3>What the rollback changes</h3>
          <PatchList patches={diff.patches} total={diff.totalOps} />
        </>
      ) : (
        !error && <p class="muted">Loading the changes…</p>
      )}
    </Confirm>
  );
}
