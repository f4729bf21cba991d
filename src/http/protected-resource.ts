import { sendBody } from './respond.js';
import type { HttpRoute } from './route.js';

export const WELL_KNOWN_PROTECTED_RESOURCE = '/.well-known/oauth-protected-resource';

export interface ProtectedResourceOptions {
  /** The protected endpoint's path on this edge (the MCP endpoint). */
  path: string;
  /** RFC 9728 `resource`: this endpoint's URL as clients reach it (default: its URL on this edge). */
  resource?: string | undefined;
  /** RFC 9728 `authorization_servers`: where clients may get tokens (default none). */
  authorizationServers?: readonly string[] | undefined;
  /** RFC 9728 `resource_name`. */
  name: string;
}

export interface ProtectedResource {
  /** Where the metadata is, as clients reach it: named in every 401's `WWW-Authenticate`. */
  readonly metadataUrl: string;
  /** Serves the metadata at `/.well-known/oauth-protected-resource`, and there with the endpoint's path appended. */
  readonly route: HttpRoute;
}

/** RFC 9728 protected-resource metadata for an endpoint of an edge listening at `origin`. */
export function protectedResource(options: ProtectedResourceOptions, origin: string): ProtectedResource {
  const resource = options.resource ?? `${origin}${options.path}`;
  const resourceUrl = new URL(resource);
  const body = JSON.stringify({
    resource,
    authorization_servers: options.authorizationServers ?? [],
    bearer_methods_supported: ['header'],
    resource_name: options.name,
  });
  const suffix = resourceUrl.pathname === '/' ? '' : resourceUrl.pathname;
  return {
    metadataUrl: `${resourceUrl.origin}${WELL_KNOWN_PROTECTED_RESOURCE}${suffix}`,
    route: {
      paths: [WELL_KNOWN_PROTECTED_RESOURCE, `${WELL_KNOWN_PROTECTED_RESOURCE}${options.path}`],
      access: 'host-checked',
      handle: async ({ res }) =>
        sendBody(res, 200, 'application/json', body, { 'cache-control': 'public, max-age=3600' }),
    },
  };
}
