/** `coremcp dev`: serves an app, serves it again when it changes, and survives an edit that does not load. */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { REPO, serveProject } from './helpers/package.js';
import { CLI, httpClient, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';
import { waitFor } from './helpers/wait.js';

// Inside the repository, so `coremcp` and `zod` resolve as they would in a user's ESM project.
const scratch = join(REPO, `.tmp/dev-${process.pid}`);
const data = tempDir();
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  data.remove();
});

const app = (extra: string) => `import { defineApp, defineCommand, defineDocument } from 'coremcp';
import { z } from 'zod';

const counter = defineDocument('counter', { value: 0 });
export default defineApp({
  name: 'counter',
  documents: [counter],
  commands: [
    defineCommand({ name: 'counter.add', description: 'Add to the counter', doc: counter,
      input: z.object({ by: z.number().int() }),
      handler: ({ input, draft }) => { draft.value += input.by; return { value: draft.value }; } }),
    ${extra}
  ],
});
`;
const readTool = `defineCommand({ name: 'counter.read', description: 'Read the counter', doc: counter, readOnly: true,
      handler: ({ state }) => ({ value: state.value }) }),`;

it('reloads the app when its file changes, keeps data and key, and keeps serving through a broken edit', async () => {
  mkdirSync(scratch, { recursive: true });
  const file = join(scratch, 'app.ts');
  writeFileSync(file, app(''));
  const dev = await serveProject(
    `${process.execPath} ${CLI} dev ${file} --http 127.0.0.1:0 --data-dir ${data.dir} --log-level warn --no-console`,
    { cwd: scratch, env: process.env },
  );
  try {
    const banner = dev.stderr();
    const key = /Bearer (cmcp_[A-Za-z0-9_-]+)/.exec(banner)?.[1];
    expect(key, banner).toBeDefined();
    expect(JSON.parse(/\n(\{\n[\s\S]*?\n\})\n/.exec(banner)![1]!)).toEqual({
      mcpServers: { counter: { type: 'http', url: dev.url, headers: { Authorization: `Bearer ${key}` } } },
    });
    expect(banner).toContain(
      `npx -y @modelcontextprotocol/inspector@0.17.5 --cli ${dev.url} --transport http`,
    );
    const client = await httpClient(dev.url, key);
    try {
      expect(structured(await client.callTool({ name: 'counter.add', arguments: { by: 2 } }))).toEqual({
        value: 2,
      });
      const names = async () => (await client.listTools()).tools.map((tool) => tool.name);
      expect(await names()).not.toContain('counter.read');

      writeFileSync(file, app(readTool));
      await waitFor(async () => (await names().catch((): string[] => [])).includes('counter.read'), {
        timeoutMs: 20_000,
        intervalMs: 200,
      });
      // Same port, same key, same data.
      expect(structured(await client.callTool({ name: 'counter.read', arguments: {} }))).toEqual({
        value: 2,
      });

      writeFileSync(file, `${app(readTool)}\nexport const broken = ;\n`);
      await waitFor(() => dev.stderr().includes('did not load'), { timeoutMs: 20_000, intervalMs: 200 });
      expect(dev.stderr()).toMatch(/did not load; still serving the last good version:\n[\s\S]*app\.ts/);
      expect(dev.stderr()).not.toMatch(/\n\s+at .*\(node:/);
      expect(await names()).toContain('counter.read');
      expect(structured(await client.callTool({ name: 'counter.add', arguments: { by: 1 } }))).toEqual({
        value: 3,
      });
    } finally {
      await client.close();
    }
  } finally {
    await dev.stop();
  }
  expect(readFileSync(join(data.dir, 'dev-key'), 'utf8')).toMatch(/^cmcp_/);
}, 90_000);
