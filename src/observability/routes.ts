import type { Authorizer, CommandGrant } from '../core/access.js';
import { AccessError } from '../core/errors.js';
import { sendBody } from '../http/respond.js';
import type { HttpRoute } from '../http/route.js';
import type { HealthMonitor } from './health.js';
import type { CoreMetrics } from './metrics.js';

/** Reading /metrics is a permission: admins have it; a role may grant `admin.metrics` alone. */
export const METRICS_GRANT: CommandGrant = { name: 'admin.metrics', permission: 'admin.metrics' };

export interface ObservabilityRoutesOptions {
  health: HealthMonitor;
  /** Without metrics, /metrics is not served. */
  metrics?: CoreMetrics | undefined;
  authorizer: Authorizer;
}

const READ_ONLY = ['GET', 'HEAD'];
const NO_STORE = { 'cache-control': 'no-store' };
const HEALTHY = '{"status":"healthy"}';

/**
 * `/healthz` (the process answers), `/readyz` (the checks pass; 503 when one is unhealthy) and
 * `/metrics`. Health needs no credentials and no Host check on any address: probes must reach it, and
 * its body holds check names, statuses and public details only. /metrics authenticates like the MCP
 * endpoint and needs the `admin.metrics` permission; on an open loopback edge it is served to any
 * scraper on this machine.
 */
export function observabilityRoutes(options: ObservabilityRoutesOptions): HttpRoute[] {
  const { health, metrics, authorizer } = options;
  const routes: HttpRoute[] = [
    {
      paths: ['/healthz'],
      access: 'public',
      methods: READ_ONLY,
      handle: async ({ res }) => sendBody(res, 200, 'application/json', HEALTHY, NO_STORE),
    },
    {
      paths: ['/readyz'],
      access: 'public',
      methods: READ_ONLY,
      handle: async ({ res }) => {
        const report = await health.check();
        const status = report.status === 'unhealthy' ? 503 : 200;
        sendBody(res, status, 'application/json', JSON.stringify(report), NO_STORE);
      },
    },
  ];
  if (metrics) {
    routes.push({
      paths: ['/metrics'],
      access: 'authenticated',
      methods: READ_ONLY,
      handle: async ({ res, principal }) => {
        if (principal && !authorizer.canExecute(principal, METRICS_GRANT))
          throw new AccessError('forbidden', 'Reading metrics needs the admin.metrics permission');
        sendBody(res, 200, metrics.contentType, await metrics.render(), NO_STORE);
      },
    });
  }
  return routes;
}
