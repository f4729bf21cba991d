import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../core/log.js';
import { type HttpRoute, isLoopback, type RouteContext } from '../mcp/http.js';

export interface ObservabilityServerOptions {
  /** A loopback address: this listener has no authentication. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  routes: HttpRoute[];
  logger: Logger;
}

export interface RunningObservabilityServer {
  /** e.g. http://127.0.0.1:9464 */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const NO_AUTH: RouteContext = {
  authenticate: () => Promise.reject(new Error('this listener has no authentication')),
};

/**
 * A second listener, for scrapers and probes only (/metrics, /healthz, /readyz), without credentials.
 * Bound to loopback only; the Host header must name a loopback host too, so a web page cannot reach
 * it through DNS rebinding.
 */
export async function serveObservability(
  options: ObservabilityServerOptions,
): Promise<RunningObservabilityServer> {
  if (!isLoopback(options.host)) {
    throw new TypeError(
      `the metrics listener has no authentication and binds loopback only, not ${options.host}; ` +
        'elsewhere, scrape /metrics on the MCP port with an admin key',
    );
  }
  const log = options.logger.child({ component: 'metrics-http' });
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const hostname = /^(\[[^\]]*\]|[^:]*)/.exec(req.headers.host ?? '')?.[1] ?? '';
      if (!isLoopback(hostname)) return text(res, 403, 'Host not allowed');
      for (const route of options.routes) if (await route(req, res, url, NO_AUTH)) return;
      text(res, 404, 'Not found');
    })().catch((error: unknown) => {
      log.error({ err: error }, 'metrics request failed');
      if (!res.headersSent) text(res, 500, 'Internal error');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // An auxiliary listener never keeps the process alive by itself: stdio mode still ends with stdin.
  server.unref();
  const { port } = server.address() as AddressInfo;
  const urlHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
