// The baselines for the wire benchmarks: the official SDK v2 with one counter tool and no coremcp,
// served the way the SDK documents for plain Node (Host/Origin checks included, as coremcp does them
// too). Plain JavaScript, so it starts like `coremcp serve` does: no TypeScript loader.
//   node scripts/bench/bare-server.mjs --http   → prints "listening http://127.0.0.1:PORT/mcp" on stderr
//   node scripts/bench/bare-server.mjs --stdio
//   … --sqlite FILE: the counter lives in SQLite (better-sqlite3, WAL, one statement per call): what
//   a user would write instead of adopting coremcp, to keep the change across restarts.
import { createServer } from 'node:http';
import {
  localhostHostValidation,
  localhostOriginValidation,
  toNodeHandler,
} from '@modelcontextprotocol/node';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { z } from 'zod';

let counter = 0;
const sqliteAt = process.argv.indexOf('--sqlite');
let persist;
if (sqliteAt !== -1) {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(process.argv[sqliteAt + 1]);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)');
  db.exec('INSERT OR IGNORE INTO counter (id, n) VALUES (1, 0)');
  const add = db.prepare('UPDATE counter SET n = n + ? WHERE id = 1 RETURNING n').pluck();
  persist = (by) => add.get(by);
}

function build() {
  const server = new McpServer({ name: 'bare-sdk-counter', version: '1.0.0' });
  server.registerTool(
    'incr',
    { description: 'Adds to a counter', inputSchema: z.object({ by: z.number().int().min(1).max(100) }) },
    async ({ by }) => {
      counter = persist ? persist(by) : counter + by;
      return { content: [{ type: 'text', text: String(counter) }] };
    },
  );
  return server;
}

if (process.argv.includes('--stdio')) {
  serveStdio(build);
} else {
  const handler = toNodeHandler(createMcpHandler(build));
  const validHost = localhostHostValidation();
  const validOrigin = localhostOriginValidation();
  const http = createServer((req, res) => {
    if (!validHost(req, res) || !validOrigin(req, res)) return;
    void handler(req, res);
  });
  http.listen(0, '127.0.0.1', () => {
    process.stderr.write(`listening http://127.0.0.1:${http.address().port}/mcp\n`);
  });
}
// Exit (rather than die of the signal) on SIGTERM, so a `--cpu-prof` profile gets written.
process.once('SIGTERM', () => process.exit(0));
