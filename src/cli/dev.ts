import {
  chmodSync,
  existsSync,
  type FSWatcher,
  mkdirSync,
  readFileSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { AppDefinition } from '../mcp/app.js';
import { createCore } from '../runtime.js';
import { type RunningServer, startServer } from '../server.js';
import { MemoryStore } from '../store/memory.js';
import { dataDirOf } from './context.js';
import { appOf } from './load-app.js';
import { DEFAULT_HTTP, parseListen, type ServeOptions, serverOptions } from './serve.js';
import { UsageError } from './usage.js';

export interface DevOptions extends ServeOptions {
  /** The role of the key dev mode keeps for the client configuration it prints (default admin). */
  role?: string;
}

/** The MCP Inspector release whose CLI runs on Node 20. */
const INSPECTOR = '@modelcontextprotocol/inspector@0.17.5';
/** Where dev mode keeps its key in the data folder, readable by the owner alone (dev only: serve keeps hashes). */
const DEV_KEY_FILE = 'dev-key';
const DEV_KEY_NAME = 'dev';

interface LoadedApp {
  app: AppDefinition;
  /** The app's own files (its module and what it imports outside node_modules): what is watched. */
  files: Set<string>;
}

/**
 * Imports the app afresh: tsx gives every import its own namespace, so the module and everything it
 * imports are read again (an ESM project's; CommonJS modules stay in require's cache).
 */
async function importApp(path: string): Promise<LoadedApp> {
  const { tsImport } = await import('tsx/esm/api');
  const files = new Set<string>([path]);
  const module = (await tsImport(pathToFileURL(path).href, {
    parentURL: import.meta.url,
    onImport: (url: string) => {
      if (!url.startsWith('file:')) return;
      const file = fileURLToPath(url.split('?')[0]!);
      if (!file.includes('/node_modules/')) files.add(file);
    },
  })) as Record<string, unknown>;
  const app = appOf(module, path);
  // What createCore refuses (two commands with one name, bad roles) is found before the old app stops.
  await (await createCore({ app, store: new MemoryStore() })).close();
  return { app, files };
}

/**
 * `coremcp dev [app]`: serves the app over HTTP and serves it again, on the same port, data folder
 * and key, whenever one of its files changes. An edit that does not load (a syntax error, a bad
 * export) is printed and the last good version keeps serving.
 */
export async function dev(appPath: string | undefined, flags: DevOptions): Promise<void> {
  const path = resolve(appPath ?? 'app.ts');
  if (!existsSync(path)) throw new UsageError(`no such app module: ${appPath ?? 'app.ts'}`);
  if (flags.stdio) throw new UsageError('dev serves HTTP; for stdio use `coremcp serve --stdio`');
  const say = (line: string) => process.stderr.write(`coremcp dev: ${line}\n`);
  let current = await importApp(path);
  const listen = typeof flags.http === 'string' ? parseListen(flags.http) : DEFAULT_HTTP;
  const start = async (app: AppDefinition, port: number) =>
    startServer({
      ...(await serverOptions(path, { ...flags, http: `${hostPort(listen.host, port)}` }, app)),
      announceFirstKey: false,
    });
  let server = await start(current.app, listen.port);
  const url = server.http!.url;
  // Restarts take the same port, even when the first start was given port 0.
  const port = Number(new URL(url).port);
  const key = await devKey(server, dataDirOf(flags), flags.role ?? 'admin');
  process.stderr.write(banner(current.app, url, key, server.consoleUrl));
  if (!isEsm(path))
    say(
      `${basename(path)} loads as CommonJS, whose modules stay cached: edits will not show until you restart. Set "type": "module" in its package.json (or name it .mts) to reload on save.`,
    );

  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let reloading = Promise.resolve();
  const rewatch = (files: Set<string>) => {
    for (const watcher of watchers) watcher.close();
    const byDir = new Map<string, Set<string>>();
    for (const file of files) {
      const names = byDir.get(dirname(file)) ?? new Set<string>();
      names.add(basename(file));
      byDir.set(dirname(file), names);
    }
    // Folders, not files: an editor that saves by renaming a new file over the old one is still seen.
    watchers = [...byDir].map(([dir, names]) =>
      watch(dir, (_event, name) => {
        if (name && names.has(name.toString())) schedule();
      }),
    );
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      reloading = reloading.then(reload);
    }, 100);
  };
  const reload = async () => {
    let next: LoadedApp;
    try {
      next = await importApp(path);
    } catch (error) {
      say(`${path} did not load; still serving the last good version:\n${describe(error)}`);
      // Watch whatever the broken edit imports too, and keep the good version's files.
      rewatch(new Set([...current.files, path]));
      return;
    }
    await server.close({ deadlineMs: 2000 });
    try {
      server = await start(next.app, port);
      current = next;
      say(`reloaded "${next.app.name}": ${next.app.commands.map((c) => c.name).join(', ')}`);
    } catch (error) {
      say(`the new version did not start; serving the last good version again:\n${describe(error)}`);
      server = await start(current.app, port);
    }
    rewatch(current.files);
  };
  rewatch(current.files);

  let stopping = false;
  const stop = async () => {
    if (stopping) process.exit(1);
    stopping = true;
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
    await reloading;
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

/** Whether Node loads the file as an ES module: `.mts`/`.mjs`, or the nearest package.json says `"type": "module"`. */
function isEsm(file: string): boolean {
  if (/\.m[tj]s$/.test(file)) return true;
  if (/\.c[tj]s$/.test(file)) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        return (JSON.parse(readFileSync(manifest, 'utf8')) as { type?: unknown }).type === 'module';
      } catch {
        return false;
      }
    }
    if (dirname(dir) === dir) return false;
  }
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    .split('\n')
    .slice(0, 20)
    .map((line) => `  ${line}`)
    .join('\n');
}

/**
 * The key dev mode prints in the client configuration, the same on every start: kept in the data
 * folder (mode 0600) beside the store, and made again if it was revoked or the store is new.
 */
async function devKey(server: RunningServer, dataDir: string, role: string): Promise<string | undefined> {
  const keys = server.core.keys;
  if (!keys) return undefined;
  const file = join(dataDir, DEV_KEY_FILE);
  if (existsSync(file)) {
    const kept = readFileSync(file, 'utf8').trim();
    const found = await keys.authenticate(kept);
    if (found.ok && found.principal.roles.includes(role)) return kept;
  }
  const names = new Set((await keys.list()).map((record) => record.name));
  if (names.has(DEV_KEY_NAME)) await keys.revoke(DEV_KEY_NAME);
  // Key names stay taken after a revocation.
  const name = names.has(DEV_KEY_NAME) ? `${DEV_KEY_NAME}-${Date.now()}` : DEV_KEY_NAME;
  const { key } = await keys.create(name, role);
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return key;
}

function banner(
  app: AppDefinition,
  url: string,
  key: string | undefined,
  consoleUrl: string | undefined,
): string {
  const headers = key ? { Authorization: `Bearer ${key}` } : undefined;
  const config = { mcpServers: { [app.name]: { type: 'http', url, ...(headers ? { headers } : {}) } } };
  const header = key ? ` --header "Authorization: Bearer ${key}"` : '';
  return [
    `coremcp dev: serving "${app.name}" at ${url} (reloads when its files change; Ctrl-C stops)`,
    ...(consoleUrl ? [`coremcp dev: console at ${consoleUrl}`] : []),
    '',
    'Client configuration (paste into your MCP client):',
    '',
    JSON.stringify(config, null, 2),
    '',
    'MCP Inspector:',
    '',
    `  npx -y ${INSPECTOR} --cli ${url} --transport http${header} --method tools/list`,
    `  npx -y ${INSPECTOR}   # the web UI: choose Streamable HTTP, ${url}${key ? ', and the header above' : ''}`,
    '',
  ].join('\n');
}
