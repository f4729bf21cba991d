import { useCallback, useEffect, useState } from 'preact/hooks';
import type { AuditRecordView, AuditResponse, AuditVerifyResponse } from '../../../src/console/wire';
import { api, apiUrl, describeError } from '../api';
import { JsonTree } from '../components/JsonTree';
import { localTime } from '../format';
import { onCommits } from '../live';

interface Filter {
  principal: string;
  command: string;
  outcome: string;
  since: string;
  until: string;
}

const EMPTY: Filter = { principal: '', command: '', outcome: '', since: '', until: '' };

/** A `datetime-local` value (local time, no zone) as an ISO time, or empty. */
function iso(local: string): string {
  if (local === '') return '';
  const time = new Date(local);
  return Number.isNaN(time.getTime()) ? '' : time.toISOString();
}

function query(filter: Filter) {
  return {
    principal: filter.principal,
    command: filter.command,
    outcome: filter.outcome,
    since: iso(filter.since),
    until: iso(filter.until),
  };
}

/** The audit trail: filterable records, newest first; the chain's verify status and last hash; export. */
export function AuditView() {
  const [filter, setFilter] = useState<Filter>(EMPTY);
  const [draft, setDraft] = useState<Filter>(EMPTY);
  const [pages, setPages] = useState<number[]>([]);
  const before = pages.at(-1);
  const [page, setPage] = useState<AuditResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [verdict, setVerdict] = useState<AuditVerifyResponse | undefined>();
  const [verifying, setVerifying] = useState(false);
  const [open, setOpen] = useState<number | undefined>();

  const load = useCallback(async () => {
    try {
      setPage(await api.get<AuditResponse>('audit', { ...query(filter), before, limit: 50 }));
      setError(undefined);
    } catch (failure) {
      setError(describeError(failure));
    }
  }, [filter, before]);

  const verify = useCallback(async () => {
    setVerifying(true);
    try {
      setVerdict(await api.get<AuditVerifyResponse>('audit/verify'));
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setVerifying(false);
    }
  }, []);

  useEffect(() => {
    void load();
    if (before !== undefined) return;
    return onCommits(() => void load(), { ms: 500 });
  }, [load, before]);

  useEffect(() => {
    void verify();
  }, [verify]);

  const onField = (name: keyof Filter) => (e: Event) =>
    setDraft({ ...draft, [name]: (e.target as HTMLInputElement).value });
  const field = (name: keyof Filter, label: string) => (
    <label>
      {label} <input name={name} value={draft[name]} onInput={onField(name)} />
    </label>
  );
  const timeField = (name: keyof Filter, label: string) => (
    <label>
      {label} <input type="datetime-local" name={name} value={draft[name]} onInput={onField(name)} />
    </label>
  );

  return (
    <section aria-labelledby="audit-title">
      <header class="view-header">
        <h1 id="audit-title">Audit</h1>
        <a class="button" href={apiUrl('audit/export', query(filter))} download>
          Export (JSON lines)
        </a>
      </header>
      <div class={`verify ${verdict ? (verdict.ok ? 'ok' : 'broken') : ''}`} role="status" aria-live="polite">
        {verdict === undefined ? (
          <span>Checking the chain…</span>
        ) : verdict.ok ? (
          <span>
            <strong>Chain intact</strong>: {verdict.records} records, last hash{' '}
            <code class="hash">{verdict.records === 0 ? '(empty)' : verdict.lastHash}</code>
          </span>
        ) : (
          <span>
            <strong>Chain broken</strong> at record {verdict.seq}: {verdict.reason} ({verdict.records} records
            checked before it)
          </span>
        )}
        <button type="button" onClick={() => void verify()} disabled={verifying}>
          {verifying ? 'Verifying…' : 'Verify again'}
        </button>
      </div>
      <form
        class="inline-form filters"
        onSubmit={(e) => {
          e.preventDefault();
          setPages([]);
          setFilter(draft);
        }}
      >
        {field('principal', 'principal')}
        {field('command', 'command')}
        <label>
          outcome{' '}
          <input
            name="outcome"
            list="outcomes"
            value={draft.outcome}
            onInput={(e) => setDraft({ ...draft, outcome: (e.target as HTMLInputElement).value })}
          />
          <datalist id="outcomes">
            <option value="ok" />
            <option value="error" />
            <option value="forbidden" />
            <option value="invalid_input" />
          </datalist>
        </label>
        {timeField('since', 'since')}
        {timeField('until', 'until')}
        <button type="submit">Filter</button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {page && (
        <>
          <div class="table-wrap">
            <table class="audit">
              <thead>
                <tr>
                  <th scope="col" class="num">
                    seq
                  </th>
                  <th scope="col">time</th>
                  <th scope="col">principal</th>
                  <th scope="col">command</th>
                  <th scope="col">outcome</th>
                  <th scope="col">document</th>
                  <th scope="col">
                    <span class="sr-only">details</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {page.records.map((r) => (
                  <AuditRow
                    key={r.seq}
                    record={r}
                    open={open === r.seq}
                    toggle={() => setOpen(open === r.seq ? undefined : r.seq)}
                  />
                ))}
              </tbody>
            </table>
          </div>
          {page.records.length === 0 && <p class="muted">No records match.</p>}
          <nav class="pager" aria-label="Audit pages">
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
    </section>
  );
}

function AuditRow({
  record: r,
  open,
  toggle,
}: {
  record: AuditRecordView;
  open: boolean;
  toggle: () => void;
}) {
  return (
    <>
      <tr class={r.outcome === 'ok' ? '' : 'failed'}>
        <td class="num">{r.seq}</td>
        <td>
          <time dateTime={r.at}>{localTime(r.at)}</time>
        </td>
        <td>
          {r.principal} <span class="muted small">({r.via})</span>
        </td>
        <td class="mono">{r.command}</td>
        <td>
          <span class={`badge ${r.outcome === 'ok' ? 'ok' : 'bad'}`}>{r.outcome}</span>
        </td>
        <td class="mono">{r.doc === undefined ? '' : `${r.doc}@${r.revision ?? '-'}`}</td>
        <td>
          <button type="button" class="link" aria-expanded={open} onClick={toggle}>
            {open ? 'less' : 'more'}
          </button>
        </td>
      </tr>
      {open && (
        <tr class="details">
          <td colSpan={7}>
            <dl>
              <dt>request</dt>
              <dd class="mono">{r.requestId}</dd>
              {r.commandId && (
                <>
                  <dt>command id</dt>
                  <dd class="mono">{r.commandId}</dd>
                </>
              )}
              {r.patchHash && (
                <>
                  <dt>patch hash</dt>
                  <dd class="mono hash">{r.patchHash}</dd>
                </>
              )}
              <dt>previous hash</dt>
              <dd class="mono hash">{r.prevHash}</dd>
              <dt>hash</dt>
              <dd class="mono hash">{r.hash}</dd>
              <dt>input (redacted)</dt>
              <dd>
                <JsonTree value={r.input} openDepth={3} label="input" />
              </dd>
            </dl>
          </td>
        </tr>
      )}
    </>
  );
}
