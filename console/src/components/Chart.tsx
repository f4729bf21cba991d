export interface Series {
  name: string;
  values: ReadonlyArray<number | null>;
  className: string;
}

const W = 320;
const H = 120;
const PAD = { left: 40, right: 8, top: 8, bottom: 18 };

function niceMax(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

function format(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/**
 * A small line chart in SVG: one polyline per series, gaps where a value is null. The x axis is the
 * server's whole window (`slots` intervals), the newest value at the right edge.
 */
export function LineChart(props: {
  title: string;
  unit: string;
  series: Series[];
  slots: number;
  minutes: number;
}) {
  const count = Math.max(props.slots, ...props.series.map((s) => s.values.length), 2);
  const max = niceMax(
    Math.max(0, ...props.series.flatMap((s) => s.values.filter((v): v is number => v !== null))),
  );
  const x = (i: number) => PAD.left + (i / (count - 1)) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const latest = props.series.map((s) => [...s.values].reverse().find((v) => v !== null) ?? null);
  return (
    <figure class="chart">
      <figcaption>
        {props.title}{' '}
        <span class="legend">
          {props.series.map((s, i) => (
            <span key={s.name} class={`legend-item ${s.className}`}>
              {s.name}: {latest[i] === null ? '–' : `${format(latest[i]!)} ${props.unit}`}
            </span>
          ))}
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${props.title}, last ${props.minutes} minutes`}>
        <line class="axis" x1={PAD.left} y1={H - PAD.bottom} x2={W - PAD.right} y2={H - PAD.bottom} />
        <line class="grid" x1={PAD.left} y1={PAD.top} x2={W - PAD.right} y2={PAD.top} />
        <text class="tick" x={PAD.left - 4} y={PAD.top + 4} text-anchor="end">
          {format(max)}
        </text>
        <text class="tick" x={PAD.left - 4} y={H - PAD.bottom} text-anchor="end">
          0
        </text>
        <text class="tick" x={PAD.left} y={H - 4}>
          −{props.minutes} min
        </text>
        <text class="tick" x={W - PAD.right} y={H - 4} text-anchor="end">
          now
        </text>
        {props.series.map((s) => {
          const runs: string[][] = [[]];
          s.values.forEach((v, i) => {
            if (v === null) runs.push([]);
            else runs.at(-1)!.push(`${x(i + count - s.values.length).toFixed(1)},${y(v).toFixed(1)}`);
          });
          return runs
            .filter((run) => run.length > 0)
            .map((run) => (
              <polyline key={`${s.name}-${run[0]}`} class={`line ${s.className}`} points={run.join(' ')} />
            ));
        })}
      </svg>
    </figure>
  );
}

/** Stacked bars per interval, one colour class per key (error codes). */
export function StackedBars(props: {
  title: string;
  points: ReadonlyArray<Readonly<Record<string, number>>>;
  slots: number;
  minutes: number;
}) {
  const keys = [...new Set(props.points.flatMap((p) => Object.keys(p)))].sort();
  const count = Math.max(props.slots, props.points.length, 1);
  const offset = count - props.points.length;
  const max = niceMax(Math.max(0, ...props.points.map((p) => Object.values(p).reduce((a, b) => a + b, 0))));
  const band = (W - PAD.left - PAD.right) / count;
  const scale = (v: number) => (v / max) * (H - PAD.top - PAD.bottom);
  const totals = Object.fromEntries(
    keys.map((k) => [k, props.points.reduce((sum, p) => sum + (p[k] ?? 0), 0)]),
  );
  return (
    <figure class="chart">
      <figcaption>
        {props.title}{' '}
        <span class="legend">
          {keys.length === 0 ? (
            <span class="legend-item">none</span>
          ) : (
            keys.map((k, i) => (
              <span key={k} class={`legend-item series-${i % 6}`}>
                {k}: {totals[k]}
              </span>
            ))
          )}
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${props.title}, last ${props.minutes} minutes`}>
        <line class="axis" x1={PAD.left} y1={H - PAD.bottom} x2={W - PAD.right} y2={H - PAD.bottom} />
        <text class="tick" x={PAD.left - 4} y={PAD.top + 4} text-anchor="end">
          {format(max)}
        </text>
        <text class="tick" x={PAD.left - 4} y={H - PAD.bottom} text-anchor="end">
          0
        </text>
        <text class="tick" x={PAD.left} y={H - 4}>
          −{props.minutes} min
        </text>
        <text class="tick" x={W - PAD.right} y={H - 4} text-anchor="end">
          now
        </text>
        {props.points.map((p, i) => {
          let top = H - PAD.bottom;
          return keys.map((k, j) => {
            const v = p[k] ?? 0;
            if (v === 0) return null;
            const h = scale(v);
            top -= h;
            return (
              <rect
                key={`${i}-${k}`}
                class={`bar series-${j % 6}`}
                x={PAD.left + (i + offset) * band + 0.5}
                y={top}
                width={Math.max(1, band - 1)}
                height={h}
              />
            );
          });
        })}
      </svg>
    </figure>
  );
}
