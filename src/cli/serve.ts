import { isLoopback } from '../http/listen.js';
import type { AppDefinition } from '../mcp/app.js';
import { type ServerOptions, startServer } from '../server.js';
import { type CommonOptions, configOf, createLogger, storeOf } from './context.js';
import { loadApp } from './load-app.js';
import { UsageError } from './usage.js';

export interface ServeOptions extends CommonOptions {
  /** `true` for the default address, or `[host:]port`. */
  http?: string | boolean;
  stdio?: boolean;
  /** `false` (from `--no-auth`) serves without authentication: loopback only, for local tooling. */
  auth?: boolean;
  /** `[host:]port` of a loopback listener serving /metrics, /healthz and /readyz without credentials. */
  metrics?: string;
  /** The web console at /console: `--console` / `--no-console`; by default on when HTTP is on loopback. */
  console?: boolean;
}

export const DEFAULT_HTTP = { host: '127.0.0.1', port: 3000 };

const HOUR_MS = 60 * 60 * 1000;

/** Parses `[host:]port`: `3000`, `0.0.0.0:8080`, `[::1]:3000`. */
export function parseListen(value: string, flag = '--http'): { host: string; port: number } {
  const match = /^(?:(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):)?(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new UsageError(`${flag} takes [host:]port, e.g. 3000 or 127.0.0.1:3000, not "${value}"`);
  return { host: match[1] ?? match[2] ?? DEFAULT_HTTP.host, port };
}

/** Runs the server until SIGINT/SIGTERM (or, for stdio alone, until the client closes stdin). */
export async function serve(appPath: string | undefined, flags: ServeOptions): Promise<void> {
  const options = await serverOptions(appPath, flags);
  const server = await startServer(options);
  let stopping = false;
  const shutdown = async (why: string) => {
    if (stopping) {
      // A second signal: the operator does not want to wait.
      server.core.logger.warn({ why }, 'stopping at once');
      process.exit(1);
    }
    stopping = true;
    server.core.logger.info({ why }, 'shutting down');
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  // stdio alone: the client closing stdin ends the server, gracefully, once its answers are out.
  if (options.stdio && !options.http) process.stdin.once('end', () => void shutdown('stdin closed'));
  if (server.http) process.stderr.write(`coremcp: serving "${server.core.app.name}" at ${server.http.url}\n`);
  if (server.metricsListener)
    process.stderr.write(`coremcp: metrics at ${server.metricsListener.origin}/metrics\n`);
  if (server.consoleUrl) process.stderr.write(consoleBanner(server.consoleUrl));
}

/** What `serve` and `console` print about the console: where it is and what to sign in with. */
export function consoleBanner(url: string): string {
  return `coremcp: console at ${url} (sign in with an API key: the admin key printed at first start, or one from \`coremcp keys create --name NAME --role admin\`)\n`;
}

/** The flags and the config file, checked, as the one options object `startServer` takes (`app`: already loaded). */
export async function serverOptions(
  appPath: string | undefined,
  flags: ServeOptions,
  app?: AppDefinition,
): Promise<ServerOptions> {
  const config = configOf(flags);
  const logger = createLogger(flags.logLevel);
  const listen = typeof flags.http === 'string' ? parseListen(flags.http) : DEFAULT_HTTP;
  const wantStdio = flags.stdio === true;
  const wantHttp = flags.http !== undefined || !wantStdio;
  if (flags.auth === false && wantHttp && !isLoopback(listen.host)) {
    throw new UsageError('--no-auth is only allowed on a loopback address (127.0.0.1, ::1, localhost)');
  }
  const metricsListener = flags.metrics === undefined ? undefined : parseListen(flags.metrics, '--metrics');
  const wantConsole = wantHttp && (flags.console ?? isLoopback(listen.host));
  if (metricsListener && !isLoopback(metricsListener.host)) {
    throw new UsageError(
      '--metrics serves without authentication, so only on loopback; elsewhere scrape /metrics on the --http port with an admin key',
    );
  }
  return {
    app: app ?? (await loadApp(appPath)),
    store: storeOf(flags, config),
    roles: config.roles,
    logger,
    metrics: true,
    snapshotEvery: config.store?.snapshotEvery,
    groupCommit: config.store?.groupCommit,
    http: wantHttp ? { ...listen, ...config.http, authenticate: flags.auth !== false } : undefined,
    stdio: wantStdio ? { roles: config.stdio?.roles } : undefined,
    console: wantConsole ? {} : undefined,
    metricsListener,
    auth: config.auth,
    limits: config.limits,
    retention: config.retention,
    idempotencyTtlMs: config.idempotencyHours === undefined ? undefined : config.idempotencyHours * HOUR_MS,
    shutdownDeadlineMs: config.shutdownSeconds === undefined ? undefined : config.shutdownSeconds * 1000,
  };
}
