import type { PatchOp } from '../../../src/console/wire';

/** RFC 6902 operations, one per row: what changed where, values as text. */
export function PatchList({ patches, total }: { patches: readonly PatchOp[]; total?: number }) {
  if (patches.length === 0) return <p class="muted">No changes.</p>;
  return (
    <div class="table-wrap">
      <table class="patches">
        <thead>
          <tr>
            <th scope="col">op</th>
            <th scope="col">path</th>
            <th scope="col">value</th>
          </tr>
        </thead>
        <tbody>
          {patches.map((op, i) => (
            // Operations have no identity of their own: their order is the patch.
            <tr key={i} class={`op-${op.op}`}>
              <td>
                <span class={`badge op ${op.op}`}>{op.op}</span>
              </td>
              <td class="mono path">
                {op.from !== undefined ? `${op.from} → ` : ''}
                {op.path || '(whole value)'}
              </td>
              <td class="mono value">{op.value === undefined ? '' : JSON.stringify(op.value)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {total !== undefined && total > patches.length && (
        <p class="muted">
          Showing the first {patches.length} of {total} operations.
        </p>
      )}
    </div>
  );
}
