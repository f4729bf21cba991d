import { isLoopback } from '../http/listen.js';
import { startServer } from '../server.js';
import { type CommonOptions, configOf, createLogger, storeOf } from './context.js';
import { loadApp } from './load-app.js';
import { consoleBanner, parseListen } from './serve.js';
import { UsageError } from './usage.js';

export interface ConsoleCommandOptions extends CommonOptions {
  /** `[host:]port` on loopback (default 127.0.0.1:3100). */
  listen?: string;
}

export const DEFAULT_CONSOLE_LISTEN = '127.0.0.1:3100';

/**
 * `coremcp console`: the web console alone, on loopback, over a data directory or a store URL, with
 * no MCP endpoint. It follows commits other processes make (a running `serve`, the CLI), so it can
 * sit beside a server or look at the data of one that is stopped. Runs until SIGINT/SIGTERM.
 */
export async function runConsole(appPath: string | undefined, flags: ConsoleCommandOptions): Promise<void> {
  const listen = parseListen(flags.listen ?? DEFAULT_CONSOLE_LISTEN, '--listen');
  if (!isLoopback(listen.host))
    throw new UsageError(
      '`coremcp console` listens on loopback only; to offer the console elsewhere use `coremcp serve --console`',
    );
  const config = configOf(flags);
  const server = await startServer({
    app: await loadApp(appPath),
    store: storeOf(flags, config),
    roles: config.roles,
    logger: createLogger(flags.logLevel),
    metrics: true,
    snapshotEvery: config.store?.snapshotEvery,
    groupCommit: config.store?.groupCommit,
    auth: config.auth,
    limits: config.limits,
    console: { listen },
  });
  const shutdown = async (signal: string) => {
    server.core.logger.info({ signal }, 'shutting down');
    await server.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.stderr.write(consoleBanner(server.consoleUrl!));
}
