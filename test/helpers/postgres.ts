import { randomBytes } from 'node:crypto';
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
