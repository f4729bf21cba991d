import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';

/**
 * The PostgreSQL the tests use: the real server on 127.0.0.1:5432 (trust authentication, database
 * `test`), or `$COREMCP_TEST_PG_URL`. Tests fail, never skip, when it cannot be reached.
 */
export const PG_URL = process.env.COREMCP_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema name no other test uses. */
export function schemaName(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Runs SQL on the test database (one connection, closed after). */
export async function pgQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${PG_URL} (${(error as Error).message}); the PostgreSQL tests need it: start it (see .ci/run)`,
    );
  }
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** A fresh schema on the test database, and how to drop it. */
export async function freshSchema(
  prefix = 't',
): Promise<{ schema: string; url: string; drop: () => Promise<void> }> {
  const schema = schemaName(prefix);
  await pgQuery('SELECT 1');
  return {
    schema,
    url: `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${schema}`,
    drop: async () => {
      await pgQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    },
  };
}

/** A TCP proxy to PostgreSQL that can be taken down (connections cut, port closed) and brought back. */
export class FlakyProxy {
  readonly #target = new URL(PG_URL);
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  port = 0;

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = createConnectionTo(this.#target);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  async down(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  url(): string {
    const url = new URL(PG_URL);
    url.port = String(this.port);
    return url.toString();
  }
}

function createConnectionTo(target: URL): Socket {
  return connect(Number(target.port || 5432), target.hostname);
}
