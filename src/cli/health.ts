import { CheckFailed, UsageError } from './usage.js';

export interface HealthOptions {
  url?: string;
  timeout?: string;
}

export const DEFAULT_HEALTH_URL = 'http://127.0.0.1:3000/readyz';

/** The URL to ask: a server's base URL or its MCP URL means its /readyz; a full path is kept. */
export function healthUrl(value: string | undefined): URL {
  let url: URL;
  try {
    url = new URL(value ?? DEFAULT_HEALTH_URL);
  } catch {
    throw new UsageError(`--url takes an http(s) URL such as ${DEFAULT_HEALTH_URL}, not "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`--url must be http or https, not ${url.protocol}`);
  if (url.pathname === '/' || url.pathname === '' || url.pathname.endsWith('/mcp'))
    url.pathname = `${url.pathname.replace(/\/?(mcp)?$/, '')}/readyz`;
  return url;
}

/** Asks a running server whether it is ready; prints the report on stdout; exit 0 only when healthy. */
export async function health(options: HealthOptions): Promise<void> {
  const url = healthUrl(options.url);
  const timeoutMs = options.timeout === undefined ? 5000 : Number(options.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new UsageError('--timeout takes seconds, e.g. 5');
  let response: Response;
  try {
    response = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: { accept: 'application/json' },
    });
  } catch (error) {
    const reason = (error as Error).name === 'TimeoutError' ? 'timed out' : (error as Error).message;
    throw new CheckFailed(`unhealthy: could not reach ${url.href} (${reason})`);
  }
  const text = await response.text();
  let status: unknown;
  try {
    const report = JSON.parse(text) as { status?: unknown };
    status = report.status;
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } catch {
    throw new CheckFailed(`unhealthy: ${url.href} answered ${response.status} without a health report`);
  }
  if (status !== 'healthy') throw new CheckFailed(`${String(status)} (HTTP ${response.status})`);
}
