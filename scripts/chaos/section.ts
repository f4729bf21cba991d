import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** The heading of the section `npm run chaos` owns in docs/benchmarks.md. */
export const CHAOS_HEADING = '## 9. Faults and recovery';

/** The chaos section of a report, or undefined: so `npm run bench` can keep it when it rewrites the file. */
export function chaosSection(text: string): string | undefined {
  const start = text.indexOf(CHAOS_HEADING);
  if (start < 0) return undefined;
  const end = text.indexOf('\n## ', start + CHAOS_HEADING.length);
  return end < 0 ? text.slice(start) : text.slice(start, end + 1);
}

/** `text` with `section` in place of its chaos section, or before "## Reproduce" when it has none. */
export function withChaosSection(text: string, section: string): string {
  const old = chaosSection(text);
  if (old !== undefined) return text.replace(old, section);
  const reproduce = text.indexOf('## Reproduce');
  return reproduce >= 0
    ? `${text.slice(0, reproduce)}${section}\n${text.slice(reproduce)}`
    : `${text}\n${section}`;
}

/** Writes `section` into the report file at `path`. */
export function writeSection(path: string, section: string): void {
  writeFileSync(path, withChaosSection(existsSync(path) ? readFileSync(path, 'utf8') : '', section));
}
