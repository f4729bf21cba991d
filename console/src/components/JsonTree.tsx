import { useMemo, useState } from 'preact/hooks';
import type { Json } from '../../../src/console/wire';
import { ancestorsOf, pointerToken } from '../format';

export interface JsonTreeProps {
  value: Json;
  /** JSON Pointers to highlight (changed by a diff or the latest commit). */
  changed?: ReadonlySet<string> | undefined;
  /** Top-level collections with more entries on the server: a button under each loads the next page. */
  more?: Readonly<Record<string, { size: number }>> | undefined;
  onMore?: ((collection: string) => void) | undefined;
  /** Levels open at first (default 2); nodes holding a change open too. */
  openDepth?: number;
  label?: string;
}

const PAGE = 200;

interface Context {
  changed: ReadonlySet<string>;
  containsChange: ReadonlySet<string>;
  more: Readonly<Record<string, { size: number }>>;
  onMore: ((collection: string) => void) | undefined;
  openDepth: number;
}

/**
 * A JSON value as a collapsible tree. Every key and value is rendered as text (never as HTML), so a
 * string that looks like markup shows as those characters.
 */
export function JsonTree(props: JsonTreeProps) {
  const changed = props.changed ?? new Set<string>();
  const context: Context = useMemo(
    () => ({
      changed,
      containsChange: ancestorsOf(changed),
      more: props.more ?? {},
      onMore: props.onMore,
      openDepth: props.openDepth ?? 2,
    }),
    [changed, props.more, props.onMore, props.openDepth],
  );
  return (
    <ul class="tree" aria-label={props.label ?? 'JSON value'}>
      <TreeNode name={undefined} path="" value={props.value} depth={0} context={context} />
    </ul>
  );
}

function mark(context: Context, path: string): string {
  if (context.changed.has(path)) return 'changed';
  return context.containsChange.has(path) ? 'contains-change' : '';
}

function Leaf({ value }: { value: Json }) {
  if (value === null) return <span class="v-null">null</span>;
  if (typeof value === 'string') return <span class="v-string">{JSON.stringify(value)}</span>;
  return <span class={`v-${typeof value}`}>{String(value)}</span>;
}

function TreeNode(props: {
  name: string | undefined;
  path: string;
  value: Json;
  depth: number;
  context: Context;
}) {
  const { name, path, value, depth, context } = props;
  const highlight = mark(context, path);
  const [open, setOpen] = useState(depth < context.openDepth || highlight !== '');
  const [shown, setShown] = useState(PAGE);
  const label = name === undefined ? null : <span class="key">{name}</span>;
  if (value === null || typeof value !== 'object') {
    return (
      <li class={`node leaf ${highlight}`} data-path={path}>
        {label}
        {label && <span class="colon">: </span>}
        <Leaf value={value} />
      </li>
    );
  }
  const entries: Array<[string, Json]> = Array.isArray(value)
    ? value.map((item, i) => [String(i), item])
    : Object.entries(value);
  const more = depth === 1 && name !== undefined ? context.more[name] : undefined;
  const summary = Array.isArray(value)
    ? `[${entries.length}]`
    : `{${more ? `${entries.length} of ${more.size}` : entries.length}}`;
  return (
    <li class={`node ${highlight}`} data-path={path}>
      <button type="button" class="toggle" aria-expanded={open} onClick={() => setOpen(!open)}>
        <span class="caret" aria-hidden="true">
          {open ? '▾' : '▸'}
        </span>
        {label ?? <span class="key root">value</span>}
        <span class="summary">{summary}</span>
      </button>
      {open && (
        <ul class="children">
          {entries.slice(0, shown).map(([key, child]) => (
            <TreeNode
              key={key}
              name={key}
              path={`${path}/${pointerToken(key)}`}
              value={child}
              depth={depth + 1}
              context={context}
            />
          ))}
          {entries.length > shown && (
            <li class="more">
              <button type="button" class="link" onClick={() => setShown(shown + PAGE)}>
                Show {Math.min(PAGE, entries.length - shown)} more of {entries.length - shown}
              </button>
            </li>
          )}
          {more && context.onMore && (
            <li class="more">
              <button type="button" class="link" onClick={() => context.onMore?.(name!)}>
                Load the next page of {name} ({entries.length} of {more.size} loaded)
              </button>
            </li>
          )}
        </ul>
      )}
    </li>
  );
}
