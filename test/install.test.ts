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
const shellBlocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
const serveLine = shellBlocks[1];
const initLines = shellBlocks[2]?.trim().split('\n');

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
  // What was shipped is complete: every source map names files the package holds, no tests ride along
  // (but the test `coremcp init` writes into a new project).
  const shipped = files(installed);
  expect(shipped.filter((path) => path.endsWith('.test.ts'))).toEqual([
    join(installed, 'templates/app/app.test.ts'),
  ]);
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

it('scaffolds a project with `coremcp init` that passes its own npm test and serves with npm start', async () => {
  const started = performance.now();
  const tarball = join(home.dir, `coremcp-${VERSION}.tgz`);
  const stock = join(home.dir, 'stock');
  expect(existsSync(tarball) && existsSync(join(stock, 'node_modules/coremcp')), 'the README test ran').toBe(
    true,
  );
  // The README's lines; the first runs the installed bin, with the templates the package ships.
  // Without --coremcp: the new project depends on the tarball ~/stock was installed from.
  expect(initLines?.[0]).toBe('cd ~/stock && npx coremcp init ~/desk');
  expect(initLines?.[1]).toBe('cd ~/desk && npm install && npm test && npm start');
  const created = await shell(initLines![0]!, { cwd: home.dir, env });
  expect(created.stdout).toContain('npm install && npm test && npm start');
  const desk = join(home.dir, 'desk');
  expect(readdirSync(desk).sort()).toEqual([
    '.gitignore',
    'README.md',
    'app.test.ts',
    'app.ts',
    'coremcp.config.json',
    'package.json',
    'tsconfig.json',
  ]);
  expect(JSON.parse(readFileSync(join(desk, 'package.json'), 'utf8'))).toMatchObject({
    name: 'desk',
    type: 'module',
    dependencies: { coremcp: `file:${tarball}` },
  });
  expect(readFileSync(join(desk, '.gitignore'), 'utf8')).toContain('.coremcp/');
  await expect(shell('npx coremcp init ~/desk', { cwd: stock, env })).rejects.toThrow(/not empty.*--force/s);

  await shell('npm install', { cwd: desk, env });
  const tested = await shell('npm test 2>&1', { cwd: desk, env });
  expect(tested.stdout).toMatch(/# pass 3\b/);
  expect(tested.stdout).toMatch(/# fail 0\b/);
  await shell('npm run check', { cwd: desk, env });

  const server = await serveProject('npm start -- --http 127.0.0.1:0 --log-level warn', { cwd: desk, env });
  try {
    // The first start's second key is the agent's, with the scaffold's least-privilege `agent` role.
    expect(server.stderr()).toContain('agent (role agent:');
    const agentKey = [...server.stderr().matchAll(/\n {2}(cmcp_\S+)\n/g)][1]?.[1];
    const client = await httpClient(server.url, agentKey);
    try {
      expect((await client.listTools()).tools.map((tool) => tool.name).sort()).toEqual([
        'desk.status',
        'ticket.close',
        'ticket.list',
        'ticket.open',
      ]);
      const opened = structured(
        await client.callTool({ name: 'ticket.open', arguments: { title: 'Hello' } }),
      );
      expect(opened.ticket).toMatchObject({ id: 'TK-1', status: 'open' });
    } finally {
      await client.close();
    }
  } finally {
    await server.stop();
  }
  console.log(
    `init test: scaffolded, installed, tested and served in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}, 180_000);
