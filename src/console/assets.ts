import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { HttpExchange, HttpRoute } from '../http/route.js';
import { CONSOLE_PATH, SECURITY_HEADERS } from './http.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};

/** Hashed file names never change content: browsers keep them a year without asking again. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * Where `npm run build` puts the console (Vite's output, with its manifest): `dist/console/`, found
 * from the compiled server (`dist/src/console/`) and from its sources (`src/console/`, under tests).
 */
export function builtConsoleDir(): string | undefined {
  for (const relative of ['../../console/', '../../dist/console/']) {
    const dir = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(join(dir, '.vite', 'manifest.json')) && existsSync(join(dir, 'index.html'))) return dir;
  }
  return undefined;
}

interface StaticFile {
  type: string;
  body: Buffer;
  gzip: Buffer | undefined;
}

function load(path: string): StaticFile {
  const body = readFileSync(path);
  const type = TYPES[extname(path)] ?? 'application/octet-stream';
  // Text compresses well; the rest (woff2, png) already is.
  const gzip = type.startsWith('text/') || type === 'image/svg+xml' ? gzipSync(body) : undefined;
  return { type, body, gzip };
}

function send(exchange: HttpExchange, file: StaticFile, cacheControl: string): void {
  const acceptsGzip = /\bgzip\b/.test(String(exchange.req.headers['accept-encoding'] ?? ''));
  const headers: Record<string, string> = {
    ...SECURITY_HEADERS,
    'cache-control': cacheControl,
    vary: 'Accept-Encoding',
  };
  if (file.gzip && acceptsGzip) headers['content-encoding'] = 'gzip';
  const body = file.gzip && acceptsGzip ? file.gzip : file.body;
  exchange.res.writeHead(200, { ...headers, 'content-type': file.type, 'content-length': body.length });
  exchange.res.end(exchange.req.method === 'HEAD' ? undefined : body);
}

/**
 * The built page and its assets, read into memory once: `/console` serves the page (never cached,
 * so a new build is picked up at once), each `/console/assets/<name>-<hash>.<ext>` its file with
 * long-lived immutable caching. The page routes with the URL's fragment, so these are all the paths.
 */
export function consoleAssetRoutes(dir: string): HttpRoute[] {
  const page = load(join(dir, 'index.html'));
  const routes: HttpRoute[] = [
    {
      paths: [CONSOLE_PATH, `${CONSOLE_PATH}/`],
      access: 'host-checked',
      methods: ['GET', 'HEAD'],
      handle: async (exchange) => send(exchange, page, 'no-store'),
    },
  ];
  const assets = join(dir, 'assets');
  const names = existsSync(assets) ? readdirSync(assets).filter((name) => !name.startsWith('.')) : [];
  for (const name of names) {
    const file = load(join(assets, name));
    routes.push({
      paths: [`${CONSOLE_PATH}/assets/${name}`],
      access: 'host-checked',
      methods: ['GET', 'HEAD'],
      handle: async (exchange) => send(exchange, file, IMMUTABLE),
    });
  }
  return routes;
}
