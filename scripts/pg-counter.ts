/**
 * `node --import tsx scripts/pg-counter.ts [calls] [instances] [clients]`: several `coremcp serve`
 * processes on one fresh PostgreSQL schema, SDK clients spread over them, `calls` increments of one
 * counter (default 10,000 over 3 instances and 48 clients). Prints the figures and checks: exactly
 * `calls` commits, the value `calls`, gapless revisions, `coremcp audit verify` passing. Needs the build
 * (`npm run build`) and PostgreSQL at $COREMCP_TEST_PG_URL or 127.0.0.1:5432/test.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/client';
import { PostgresStore } from '../src/store/postgres.js';
import { freshSchema } from '../test/helpers/postgres.js';
import {
  CLI,
  errorCodeOf,
  httpClient,
  type ServerProcess,
  startServerProcess,
  structured,
} from '../test/helpers/servers.js';
import { tempDir } from '../test/helpers/tmp.js';

const total = Number(process.argv[2] ?? 10_000);
const instances = Number(process.argv[3] ?? 3);
const clientCount = Number(process.argv[4] ?? 48);
const APP = fileURLToPath(new URL('../test/fixtures/counter-app.ts', import.meta.url));

const fresh = await freshSchema('counter');
const tmp = tempDir();
const env = { ...process.env, COREMCP_STORE_URL: fresh.url };
const servers: ServerProcess[] = [];
const clients: Client[] = [];
try {
  const key = execFileSync(process.execPath, [CLI, 'keys', 'create', '--name', 'bench', '--role', 'admin'], {
    env,
  })
    .toString()
    .trim();
  // One key for every client: the per-principal rate limit is raised out of reach, as in the bench.
  const config = join(tmp.dir, 'counter.config.json');
  writeFileSync(config, JSON.stringify({ limits: { rate: { perSecond: 100_000, burst: 1_000_000 } } }));
  servers.push(
    ...(await Promise.all(
      Array.from({ length: instances }, () =>
        startServerProcess([APP, '--store', fresh.url, '--config', config], { cwd: tmp.dir }),
      ),
    )),
  );
  for (let i = 0; i < clientCount; i++) clients.push(await httpClient(servers[i % instances]!.url, key));
  let issued = 0;
  let resent = 0;
  const started = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      while (issued < total) {
        issued++;
        for (;;) {
          const result = await client.callTool({ name: 'counter.bump', arguments: {} });
          if (!result.isError) break;
          if (errorCodeOf(result) !== 'conflict_retries_exhausted') throw new Error(JSON.stringify(result));
          resent++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const value = structured(await clients[0]!.callTool({ name: 'counter.read', arguments: {} })).value;
  const store = new PostgresStore({ url: fresh.url });
  await store.open();
  const commits = await store.readCommits('counter', { after: 0 });
  await store.close();
  const gapless = commits.every((c, i) => c.revision === i + 1);
  const verify = execFileSync(process.execPath, [CLI, 'audit', 'verify'], { env }).toString().trim();
  console.log(
    JSON.stringify({
      instances,
      clients: clientCount,
      calls: total,
      seconds: Number(seconds.toFixed(1)),
      callsPerSec: Math.round(total / seconds),
      resentPer1000: Number(((1000 * resent) / total).toFixed(1)),
      value,
      commits: commits.length,
      gapless,
      verify,
    }),
  );
  if (value !== total || commits.length !== total || !gapless) process.exitCode = 1;
} finally {
  for (const client of clients) await client.close().catch(() => {});
  await Promise.all(servers.map((s) => s.stop()));
  await fresh.drop();
  tmp.remove();
}
