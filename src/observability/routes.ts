import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authorizer, CommandGrant } from '../core/access.js';
import type { HttpRoute } from '../mcp/http.js';
import type { HealthMonitor } from './health.js';
import type { CoreMetrics } from './metrics.js';

/** Reading /metrics is a permission: admins have it; a role may grant `admin.metrics` alone. */
export const METRICS_GRANT: CommandGrant = { name: 'admin.metrics', permission: 'admin.metrics' };

export interface ObservabilityRoutesOptions {
  health: HealthMonitor;
  /** Without metrics, /metrics is not served. */
  metrics?: CoreMetrics | undefined;
  /**
   * `authenticated`: /metrics needs the same credentials as /mcp and the `admin.metrics` permission.
   * `open`: no credentials (only for a listener bound to loopback).
   */
  metricsAccess: 'authenticated' | 'open';
  authorizer: Authorizer;
}

/**
 * `/healthz` (the process answers), `/readyz` (the checks pass; 503 when one is unhealthy) and
 * `/metrics`. Health needs no credentials on any address: probes must reach it, and its body holds
 * check names, statuses and public details only.
 */
export function observabilityRoutes(options: ObservabilityRoutesOptions): HttpRoute[] {
  const { health, metrics } = options;
  return [
    async (req, res, url, ctx) => {
      const path = url.pathname;
      if (path !== '/healthz' && path !== '/readyz' && (path !== '/metrics' || !metrics)) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(req, res, 405, 'application/json', '{"error":{"code":"method_not_allowed"}}', {
          allow: 'GET, HEAD',
        });
        return true;
      }
      if (path === '/healthz') {
        send(req, res, 200, 'application/json', '{"status":"healthy"}');
      } else if (path === '/readyz') {
        const report = await health.check();
        send(req, res, report.status === 'unhealthy' ? 503 : 200, 'application/json', JSON.stringify(report));
      } else if (metrics) {
        if (options.metricsAccess === 'authenticated') {
          const principal = await ctx.authenticate();
          if (!options.authorizer.canExecute(principal, METRICS_GRANT)) {
            const body =
              '{"error":{"code":"forbidden","message":"Reading metrics needs the admin.metrics permission"}}';
            send(req, res, 403, 'application/json', body);
            return true;
          }
        }
        send(req, res, 200, metrics.contentType, await metrics.render());
      }
      return true;
    },
  ];
}

function send(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    ...headers,
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
