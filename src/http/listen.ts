import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Host names that always mean this machine. `[::1]` is how a Host header or URL writes `::1`. */
export const LOOPBACK_HOSTNAMES: readonly string[] = ['localhost', '127.0.0.1', '[::1]', '::1'];

/** Whether a host (an address to bind, or a Host header's name) is this machine: localhost, ::1, 127.0.0.0/8. */
export function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTNAMES.includes(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A bound, listening Node HTTP server. */
export interface Listening {
  readonly server: Server;
  readonly port: number;
  /** Where clients reach it, e.g. `http://127.0.0.1:3000` (a wildcard bind is reached on 127.0.0.1). */
  readonly origin: string;
  /** Drops open connections (SSE streams included) and stops listening. */
  close(): Promise<void>;
}

/**
 * Binds a server with no request listener yet: the caller attaches one as soon as this resolves, in
 * the same turn, before any connection can be read. (The port is known only now, and so is anything
 * built from the URL, like the RFC 9728 metadata.)
 */
export async function listen(host: string, port: number): Promise<Listening> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    server,
    port: bound,
    origin: `http://${urlHost}:${bound}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
