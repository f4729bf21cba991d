import type { Transport } from '@modelcontextprotocol/server';
import { type StdioServerHandle, serveStdio as sdkServeStdio } from '@modelcontextprotocol/server/stdio';
import type { Principal } from '../core/access.js';
import type { Logger } from '../core/log.js';
import { GuardedStdioTransport } from './stdio-transport.js';
import type { McpSurface } from './surface.js';

export interface StdioServeOptions {
  /** Who the local client acts as: the OS user running the server, with roles from configuration. */
  principal: Principal;
  logger: Logger;
  /** A transport other than this process's stdin/stdout (tests, sockets). */
  transport?: Transport;
  /** When stdin ends: runs before the connection closes, so calls in flight are still answered. */
  beforeEnd?: () => Promise<unknown>;
}

/**
 * Serves a surface over stdio. The SDK decides the era from the first message and pins one instance
 * for the connection; 2025-era clients follow documents with resources/subscribe, 2026-era clients
 * with subscriptions/listen. stdout carries only the protocol: all logging goes to stderr.
 */
export function serveStdio(surface: McpSurface, options: StdioServeOptions): StdioServerHandle {
  const log = options.logger.child({ component: 'stdio' });
  return sdkServeStdio(
    ({ era }) => surface.createServer(options.principal, era === 'modern' ? 'listen' : 'session'),
    {
      onerror: (error) => log.debug({ err: error }, 'stdio transport reported an error'),
      transport:
        options.transport ??
        new GuardedStdioTransport(process.stdin, process.stdout, { beforeEnd: options.beforeEnd }),
    },
  );
}
