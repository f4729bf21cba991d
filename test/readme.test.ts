/** The README's own-app example, run as written: extracted, served by the CLI over stdio, called. */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { errorCodeOf, stdioClient, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const section = readme.slice(readme.indexOf('## Write your own app'));
const example = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
// Inside the repository, so `coremcp` and `zod` resolve as they would in a user's project.
const scratch = fileURLToPath(new URL('../.tmp/readme/', import.meta.url));
const tmp = tempDir();

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  tmp.remove();
});

it('serves the README example app with `coremcp serve ./stock.ts`, as the README says it behaves', async () => {
  expect(example).toBeDefined();
  expect(example!.split('\n').length).toBeLessThanOrEqual(30);
  mkdirSync(scratch, { recursive: true });
  writeFileSync(`${scratch}stock.ts`, example!);
  const { client } = await stdioClient([`${scratch}stock.ts`, '--data-dir', tmp.dir]);
  try {
    // The local user is admin over stdio, so the history tools come with every app.
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual([
      'state.rollback',
      'state.undo',
      'stock.put',
      'stock.take',
    ]);
    expect(
      structured(await client.callTool({ name: 'stock.put', arguments: { item: 'bolt', count: 4 } })),
    ).toEqual({ count: 4 });
    expect(
      structured(await client.callTool({ name: 'stock.put', arguments: { item: 'bolt', count: 6 } })),
    ).toEqual({ count: 10 });
    expect(
      structured(await client.callTool({ name: 'stock.take', arguments: { item: 'bolt', count: 8 } })),
    ).toEqual({ left: 2 });
    const none = await client.callTool({ name: 'stock.take', arguments: { item: 'nut', count: 1 } });
    expect(structured(none).error).toMatchObject({ code: 'out_of_stock', details: { left: 0 } });
    const refused = await client.callTool({ name: 'stock.take', arguments: { item: 'bolt', count: 3 } });
    expect(errorCodeOf(refused)).toBe('out_of_stock');
    expect(structured(refused).error).toMatchObject({ details: { left: 2 } });
    const invalid = await client.callTool({ name: 'stock.take', arguments: { item: 'bolt', count: -1 } });
    expect(errorCodeOf(invalid)).toBe('invalid_input');
  } finally {
    await client.close();
  }
});
