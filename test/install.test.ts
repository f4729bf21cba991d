/**
 * The README's "Write your own app", run as written: its shell block in a fresh shell with a
 * temporary home (packing this repository, installing the tarball into an empty project), its app
 * file saved where it says, served with `npx coremcp serve`, called with the SDK client.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freshEnv, REPO, serveProject, shell, VERSION } from './helpers/package.js';
import { httpClient, structured } from './helpers/servers.js';
import { tempDir } from './helpers/tmp.js';

const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('## Write your own app'), readme.indexOf('\n## State'));
const setup = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
const app = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
const serveLine = [...section.matchAll(/```sh\n([\s\S]*?)```/g)][1]?.[1];

const home = tempDir('coremcp-home-');
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  if (!existsSync(join(REPO, 'dist/src/cli/main.js'))) throw new Error('build first: npm run build');
  env = freshEnv(home.dir);
});
afterAll(() => home.remove());

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

it('installs from the packed tarball into an empty project and serves the README app', async () => {
  expect(setup).toBeDefined();
  expect(app).toBeDefined();
  expect(serveLine?.trim()).toMatch(/^npx coremcp serve \.\/stock\.ts\b/);
  expect(setup).toContain(`~/coremcp-${VERSION}.tgz`);
  const started = performance.now();
  // `npm test` has just built dist/ and other test files are reading it: pack what is built rather
  // than rebuilding it under them (the README's `npm pack` builds on `prepare`, which is the same build).
  await shell(setup!.replace(/^npm pack /m, 'npm pack --ignore-scripts '), { cwd: REPO, env });
  const installedMs = performance.now() - started;
  const project = join(home.dir, 'stock');
  writeFileSync(join(project, 'stock.ts'), app!);

  const installed = join(project, 'node_modules/coremcp');
  // What was shipped is complete: every source map names files the package holds, no tests ride along.
  const shipped = files(installed);
  expect(shipped.some((path) => path.endsWith('.test.ts'))).toBe(false);
  for (const map of shipped.filter((path) => path.endsWith('.map'))) {
    const { sources, sourceRoot } = JSON.parse(readFileSync(map, 'utf8')) as {
      sources: string[];
      sourceRoot?: string;
    };
    for (const source of sources)
      expect(existsSync(resolve(dirname(map), sourceRoot ?? '', source)), `${map} → ${source}`).toBe(true);
  }
  // zod is the user's, shared with coremcp: one copy, at the top.
  expect(existsSync(join(installed, 'node_modules/zod'))).toBe(false);
  expect(existsSync(join(project, 'node_modules/zod/package.json'))).toBe(true);
  expect(JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'))).toMatchObject({ type: 'module' });

  const { stdout: version } = await shell('npx coremcp --version', { cwd: project, env });
  expect(version.trim()).toBe(VERSION);

  const server = await serveProject(
    `${serveLine!.split('#')[0]!.trim()} --http 127.0.0.1:0 --log-level warn`,
    {
      cwd: project,
      env,
    },
  );
  try {
    const key = /\n {2}(cmcp_\S+)\n/.exec(server.stderr())?.[1];
    expect(key, server.stderr()).toBeDefined();
    const client = await httpClient(server.url, key);
    try {
      expect(
        structured(await client.callTool({ name: 'stock.put', arguments: { item: 'bolt', count: 4 } })),
      ).toEqual({ count: 4 });
      expect(
        structured(await client.callTool({ name: 'stock.take', arguments: { item: 'bolt', count: 3 } })),
      ).toEqual({ left: 1 });
    } finally {
      await client.close();
    }
    console.log(
      `install test: packed and installed in ${(installedMs / 1000).toFixed(1)} s; ` +
        `empty folder to first call in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  } finally {
    await server.stop();
  }
}, 180_000);
