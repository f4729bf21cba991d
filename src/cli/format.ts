/**
 * How list-like commands print for people: a table with a header row, columns padded to their
 * widest cell, the header bold only on a terminal that takes colour (never when piped, nor with
 * `NO_COLOR`). Scripts ask for `--json` instead.
 */

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Right-aligned (numbers). */
  right?: boolean;
}

/** Cells longer than this are cut with an ellipsis, so one long value does not push every row apart. */
const MAX_CELL = 60;

function cell(text: string): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > MAX_CELL ? `${flat.slice(0, MAX_CELL - 1)}…` : flat;
}

export function useColour(stream: { isTTY?: boolean } = process.stdout): boolean {
  return stream.isTTY === true && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb';
}

/** The rows as an aligned table, header first; `empty` when there are none. */
export function table<T>(
  columns: ReadonlyArray<Column<T>>,
  rows: readonly T[],
  options: { empty?: string; colour?: boolean; header?: boolean; minWidths?: readonly number[] } = {},
): string {
  if (rows.length === 0) return `${options.empty ?? '(none)'}\n`;
  const cells = rows.map((row) => columns.map((column) => cell(column.value(row))));
  const widths = columns.map((column, i) =>
    Math.max(column.header.length, options.minWidths?.[i] ?? 0, ...cells.map((line) => line[i]!.length)),
  );
  const render = (line: readonly string[]) =>
    line
      .map((text, i) => (columns[i]!.right ? text.padStart(widths[i]!) : text.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const header = render(columns.map((column) => column.header));
  const bold = options.colour ?? useColour();
  const lines = cells.map(render);
  if (options.header !== false) lines.unshift(bold ? `\u001b[1m${header}\u001b[22m` : header);
  return `${lines.join('\n')}\n`;
}

/** The widths `table` gives each column for these rows: follow-up rows printed later line up with them. */
export function widths<T>(columns: ReadonlyArray<Column<T>>, rows: readonly T[]): number[] {
  return columns.map((column) =>
    Math.max(column.header.length, ...rows.map((row) => cell(column.value(row)).length)),
  );
}

/** `1234` → `1.2 kB`: sizes for people. */
export function bytes(count: number): string {
  if (count < 1000) return `${count} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = count;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** An ISO time as `2026-12-02 13:45:07` (UTC, to the second): wide enough to read, narrow enough for a table. */
export function time(iso: string | undefined): string {
  if (!iso) return '-';
  return iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '');
}
