import type { IncomingMessage } from 'node:http';
import { validateHostHeader, validateOriginHeader } from '@modelcontextprotocol/server';
import { AccessError } from '../core/errors.js';
import { isLoopback, LOOPBACK_HOSTNAMES } from './listen.js';

export interface HostOriginOptions {
  /** The address the edge binds: a specific one is a name clients use, so it is allowed as a Host. */
  bindHost: string;
  /** Host header names accepted besides the loopback ones (the names clients use to reach this server). */
  allowedHosts?: readonly string[] | undefined;
  /** Origin hostnames accepted besides the loopback ones. Requests without Origin are accepted. */
  allowedOrigins?: readonly string[] | undefined;
}

/**
 * The DNS-rebinding defence: a web page that got its own name to resolve to this server still sends
 * that name as Host, and its own origin as Origin. Both must be on the lists. A loopback IP literal is
 * always a valid Host: no page can rebind a name to be one (and 127.0.0.2 is as local as 127.0.0.1).
 */
export class HostOriginCheck {
  readonly #hosts: string[];
  readonly #origins: string[];

  constructor(options: HostOriginOptions) {
    const { bindHost } = options;
    this.#hosts = [...LOOPBACK_HOSTNAMES, ...(options.allowedHosts ?? [])];
    if (!isLoopback(bindHost) && bindHost !== '0.0.0.0' && bindHost !== '::')
      this.#hosts.push(bindHost.includes(':') ? `[${bindHost}]` : bindHost);
    this.#origins = [...LOOPBACK_HOSTNAMES, ...(options.allowedOrigins ?? [])];
  }

  /** Throws `forbidden` (403) when the Host or the Origin is not allowed. */
  check(req: IncomingMessage): void {
    const host = validateHostHeader(req.headers.host, this.#hosts);
    if (!host.ok && !(host.hostname !== undefined && isLoopback(host.hostname)))
      throw new AccessError('forbidden', 'Host not allowed');
    const origin = req.headers.origin;
    if (!validateOriginHeader(typeof origin === 'string' ? origin : undefined, this.#origins).ok)
      throw new AccessError('forbidden', 'Origin not allowed');
  }
}
