/** Formatting for the report: numbers, verdicts, Markdown tables. */
import type { Measurement } from './scenario.js';

export function num(value: number | undefined, digits = 2): string {
  if (value === undefined || Number.isNaN(value)) return 'n/a';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(digits);
}

export function verdict(met: boolean | undefined): string {
  return met === undefined ? 'n/a' : met ? '**met**' : '**not met**';
}

export function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

/** `min–max` of one number over the rounds, to show how noisy a median is. */
export function spread(runs: Measurement[] | undefined, field: string, digits = 2): string {
  const values = (runs ?? []).map((run) => run[field]).filter((v): v is number => v !== undefined);
  if (values.length < 2) return '';
  return ` (${num(Math.min(...values), digits)}–${num(Math.max(...values), digits)})`;
}

export function lessThan(value: number | undefined, limit: number): boolean | undefined {
  return value === undefined || Number.isNaN(value) ? undefined : value < limit;
}
