import type { ReadResourceResult, ResourceTemplateType } from '@modelcontextprotocol/server';
import { DOCUMENT_ID_PATTERN } from '../core/commands.js';
import { StateError } from '../core/errors.js';
import type { JsonObject } from '../core/json.js';
import { touchedPaths } from '../core/patch.js';
import type { StateManager } from '../core/state.js';
import { META, STATE_URI_PREFIX } from './meta.js';

/** A parsed state URI: the document's value, a diff, its commit history, or a page of a collection. */
export interface StateUri {
  kind: 'value' | 'diff' | 'history' | 'entries';
  doc: string;
  /** The collection, for `entries`. */
  collection?: string;
  params: URLSearchParams;
}

export const STATE_RESOURCE_TEMPLATES: ResourceTemplateType[] = [
  {
    uriTemplate: `${STATE_URI_PREFIX}{doc}{?revision}`,
    name: 'state',
    title: 'State document',
    description:
      'A JSON document at head, or at `revision`. The revision is in _meta["coremcp/revision"]. Collections larger than one page hold their first page; _meta["coremcp/more"] names each with its size and the cursor of the next page.',
    mimeType: 'application/json',
  },
  {
    uriTemplate: `${STATE_URI_PREFIX}{doc}/entries/{collection}{?cursor,limit,revision}`,
    name: 'state-entries',
    title: 'Collection page',
    description:
      "A page of a collection's entries in key order: `entries` as [key, value] pairs, `cursor` for the next page. Pages after the first read at the revision of the first.",
    mimeType: 'application/json',
  },
  {
    uriTemplate: `${STATE_URI_PREFIX}{doc}/diff{?from,to}`,
    name: 'state-diff',
    title: 'State diff',
    description: 'RFC 6902 patches turning the value at `from` into the value at `to` (default: head).',
    mimeType: 'application/json',
  },
  {
    uriTemplate: `${STATE_URI_PREFIX}{doc}/history{?since,limit}`,
    name: 'state-history',
    title: 'State history',
    description:
      'Commits after revision `since`: revision, time, principal, command, paths touched. Paginated by `limit`.',
    mimeType: 'application/json',
  },
];

const HISTORY_DEFAULT_LIMIT = 100;
const HISTORY_MAX_LIMIT = 1000;

/** Parses `coremcp://state/{doc}[/diff|/history][?query]`; undefined if the URI has another shape. */
export function parseStateUri(uri: string): StateUri | undefined {
  if (!uri.startsWith(STATE_URI_PREFIX) || uri.length > 2048) return undefined;
  const queryAt = uri.indexOf('?');
  const path = uri.slice(STATE_URI_PREFIX.length, queryAt === -1 ? undefined : queryAt);
  const params = new URLSearchParams(queryAt === -1 ? '' : uri.slice(queryAt + 1));
  const [doc, kind, collection, extra] = path.split('/');
  if (doc === undefined || !DOCUMENT_ID_PATTERN.test(doc) || extra !== undefined) return undefined;
  if (kind === undefined) return { kind: 'value', doc, params };
  if (collection === undefined && (kind === 'diff' || kind === 'history')) return { kind, doc, params };
  if (kind === 'entries' && collection !== undefined && /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(collection))
    return { kind, doc, collection, params };
  return undefined;
}

/** A revision-like query parameter: absent, or a non-negative integer in decimal. */
function revisionParam(params: URLSearchParams, name: string): number | undefined {
  const raw = params.get(name);
  if (raw === null) return undefined;
  if (!/^\d{1,15}$/.test(raw)) {
    throw new StateError('invalid_revision', `"${name}" must be a non-negative integer`, {
      details: { [name]: raw.slice(0, 64) },
    });
  }
  return Number(raw);
}

function jsonContents(uri: string, body: unknown, meta: JsonObject): ReadResourceResult {
  return {
    contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(body), _meta: meta }],
    _meta: meta,
  };
}

/** Reads a state resource. Typed errors (not_found, invalid_revision, revision_compacted, …) propagate. */
export async function readStateResource(
  state: StateManager,
  uri: string,
  parsed: StateUri,
): Promise<ReadResourceResult> {
  const { doc, params } = parsed;
  switch (parsed.kind) {
    case 'value': {
      const revision = revisionParam(params, 'revision');
      const read = await state.read(doc, { revision });
      const meta: JsonObject = { [META.revision]: read.revision, [META.doc]: doc };
      if (Object.keys(read.more).length > 0) meta[META.more] = read.more;
      return jsonContents(uri, read.value, meta);
    }
    case 'entries': {
      const revision = revisionParam(params, 'revision');
      const limit = revisionParam(params, 'limit');
      const cursor = params.get('cursor') ?? undefined;
      const page = await state.page(doc, {
        collection: parsed.collection!,
        cursor,
        limit,
        revision,
      });
      return jsonContents(uri, page, { [META.revision]: page.revision, [META.doc]: doc });
    }
    case 'diff': {
      const from = revisionParam(params, 'from');
      if (from === undefined)
        throw new StateError('invalid_revision', 'A diff needs `from`', { details: { from: null } });
      const diff = await state.diff(doc, from, revisionParam(params, 'to'));
      return jsonContents(uri, diff, {
        [META.revision]: diff.to,
        [META.doc]: doc,
        [META.compacted]: diff.compacted,
      });
    }
    case 'history': {
      const since = revisionParam(params, 'since') ?? 0;
      const limit = revisionParam(params, 'limit') ?? HISTORY_DEFAULT_LIMIT;
      if (limit < 1 || limit > HISTORY_MAX_LIMIT) {
        throw new StateError('range_too_large', `limit must be between 1 and ${HISTORY_MAX_LIMIT}`, {
          details: { limit: HISTORY_MAX_LIMIT },
        });
      }
      const page = await state.history(doc, since, limit);
      const body = {
        doc,
        since,
        head: page.head,
        oldestRevision: page.oldestRevision,
        commits: page.commits.map((c) => ({
          revision: c.revision,
          at: c.at,
          principal: c.principal,
          command: c.command,
          commandId: c.commandId,
          paths: touchedPaths(c.patches),
        })),
        next: page.next,
      };
      return jsonContents(uri, body, { [META.revision]: page.head, [META.doc]: doc });
    }
  }
}
