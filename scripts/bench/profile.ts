/**
 * Summarizes a V8 `.cpuprofile` (from `node --cpu-prof`): self time by area (MCP SDK, coremcp's
 * layers, SQLite, Node's HTTP stack, …) and the functions with the most self time. Native frames
 * (JSON.parse, a SQLite statement's `run`) have no script, so they count for the nearest caller
 * that has one: `JSON.parse` called by the SDK is SDK time, `Statement.run` called by the store is
 * SQLite time.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const NODE_RUNTIME = 'Node runtime (HTTP server, sockets, streams)';

/**
 * The area a script belongs to, or undefined when its time should count for its caller: frames
 * without a script (native, builtin), and, with `nodeForCaller`, Node's own `node:` modules.
 */
function areaOf(url: string, functionName: string, nodeForCaller: boolean): string | undefined {
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'V8/native (unattributed)';
  if (url === '') return undefined;
  // Built code (dist/) everywhere the bench runs coremcp; sources (through tsx) when run without its tsconfig.
  if (/\/(?:dist\/)?src\/store\//.test(url) || url.includes('/better-sqlite3/'))
    return 'SQLite (store + better-sqlite3)';
  if (url.includes('/scripts/bench/')) return 'the bench itself';
  const own = /\/(?:dist\/)?(src\/[a-z]+|examples)\//.exec(url);
  if (own) return `coremcp ${own[1]}`;
  if (url.includes('@modelcontextprotocol/')) return 'MCP SDK';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return nodeForCaller ? undefined : NODE_RUNTIME;
  return url;
}

export interface ProfileSummary {
  totalMs: number;
  /** CPU spent loading modules at start-up, left out of everything else. */
  startupMs: number;
  /** `ms`: natives counted for their caller; `callerMs`: Node's internals too. */
  areas: Array<{ area: string; ms: number; callerMs: number }>;
  functions: Array<{ name: string; where: string; area: string; ms: number }>;
}

export function summarizeProfile(path: string, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const memo = (compute: (id: number, recurse: (id: number) => string) => string) => {
    const cache = new Map<number, string>();
    const get = (id: number): string => {
      let value = cache.get(id);
      if (value === undefined) {
        value = compute(id, get);
        cache.set(id, value);
      }
      return value;
    };
    return get;
  };
  const attribution = (nodeForCaller: boolean) =>
    memo((id, up) => {
      const frame = byId.get(id)!.callFrame;
      const caller = parent.get(id);
      const fallback = nodeForCaller ? NODE_RUNTIME : 'V8/native (unattributed)';
      return (
        areaOf(frame.url, frame.functionName, nodeForCaller) ?? (caller === undefined ? fallback : up(caller))
      );
    });
  const selfArea = attribution(false);
  const callerArea = attribution(true);
  const loading = memo((id, up) => {
    const caller = parent.get(id);
    if (byId.get(id)!.callFrame.url.startsWith('node:internal/modules/')) return 'yes';
    return caller === undefined ? 'no' : up(caller);
  });

  const selfMs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  let totalMs = 0;
  let startupMs = 0;
  const areas = new Map<string, { area: string; ms: number; callerMs: number }>();
  const areaEntry = (area: string) => {
    const entry = areas.get(area) ?? { area, ms: 0, callerMs: 0 };
    areas.set(area, entry);
    return entry;
  };
  const functions = new Map<string, { name: string; where: string; area: string; ms: number }>();
  for (const [id, ms] of selfMs) {
    const frame = byId.get(id)!.callFrame;
    const area = selfArea(id);
    if (area === 'idle') continue;
    if (loading(id) === 'yes') {
      startupMs += ms;
      continue;
    }
    totalMs += ms;
    areaEntry(area).ms += ms;
    areaEntry(callerArea(id)).callerMs += ms;
    const where = frame.url
      ? `${frame.url
          .replace(/^.*\/node_modules\//, '')
          .replace(/^file:\/\/.*?\/(dist|src|examples|scripts)\//, '$1/')}:${frame.lineNumber + 1}`
      : '(native)';
    const key = `${frame.functionName}@${where}@${area}`;
    const entry = functions.get(key) ?? { name: frame.functionName || '(anonymous)', where, area, ms: 0 };
    entry.ms += ms;
    functions.set(key, entry);
  }
  return {
    totalMs,
    startupMs,
    areas: [...areas.values()].sort((a, b) => b.ms - a.ms),
    functions: [...functions.values()].sort((a, b) => b.ms - a.ms).slice(0, top),
  };
}

export function renderProfile(summary: ProfileSummary, calls: number): string {
  const pct = (ms: number) => `${((ms / summary.totalMs) * 100).toFixed(1)}%`;
  const lines = [
    `Busy CPU ${(summary.totalMs / 1000).toFixed(2)} s for about ${Math.round(calls).toLocaleString('en-US')} calls ` +
      `(${(summary.totalMs / calls).toFixed(3)} ms per call; idle and ${Math.round(summary.startupMs)} ms of start-up module loading left out).`,
    '',
    '| area | self time (natives for their caller) | counting Node internals for their caller too |',
    '|---|---|---|',
    ...summary.areas.map((a) => `| ${a.area} | ${pct(a.ms)} | ${pct(a.callerMs)} |`),
    '',
    '| function (self time) | where | area | share |',
    '|---|---|---|---|',
    ...summary.functions.map((f) => `| \`${f.name}\` | ${f.where} | ${f.area} | ${pct(f.ms)} |`),
  ];
  return lines.join('\n');
}
