import { existsSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type AppDefinition, isAppDefinition } from '../mcp/app.js';
import { UsageError } from './usage.js';

/** The app `coremcp serve` runs when none is named: the task board. */
export const DEFAULT_APP = new URL('../../examples/taskboard/app.js', import.meta.url);

/**
 * Loads an app module: its default export (or an export named `app`) must come from `defineApp`.
 * TypeScript apps are loaded through tsx, so `coremcp serve ./my-app.ts` needs no build step.
 */
export async function loadApp(path: string | undefined): Promise<AppDefinition> {
  let url: string;
  if (path === undefined) {
    url = DEFAULT_APP.href;
  } else {
    const absolute = resolve(path);
    if (!existsSync(absolute)) throw new UsageError(`no such app module: ${path}`);
    url = pathToFileURL(absolute).href;
  }
  const ext = extname(new URL(url).pathname);
  let module: Record<string, unknown>;
  if (ext === '.ts' || ext === '.mts' || ext === '.cts' || ext === '.tsx') {
    const { tsImport } = await import('tsx/esm/api');
    module = (await tsImport(url, import.meta.url)) as Record<string, unknown>;
  } else {
    module = (await import(url)) as Record<string, unknown>;
  }
  return appOf(module, path);
}

/** The app a loaded module exports: its default export (or one named `app`) made by `defineApp`. */
export function appOf(module: Record<string, unknown>, path: string | undefined): AppDefinition {
  // tsx may wrap a CommonJS-style default in another default.
  const candidates = [
    module.default,
    (module.default as Record<string, unknown> | undefined)?.default,
    module.app,
  ];
  const app = candidates.find(isAppDefinition);
  if (!app) {
    throw new UsageError(
      `${path ?? 'the default app'} does not export an app: write \`export default defineApp({ ... })\``,
    );
  }
  return app;
}
