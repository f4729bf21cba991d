/**
 * docs/guide.md's code, as written: every `ts` block type-checks against the public API (with the
 * repository's compiler options), and the blocks that are tests run and pass.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, expect, it } from 'vitest';
import { REPO } from './helpers/package.js';

const guide = readFileSync(join(REPO, 'docs/guide.md'), 'utf8');
const blocks = [...guide.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);
// Inside the repository, so `coremcp` and `zod` resolve as they do for the rest of its code.
const scratch = join(REPO, `.tmp/guide-${process.pid}`);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function files(): string[] {
  mkdirSync(scratch, { recursive: true });
  return blocks.map((code, i) => {
    const file = join(scratch, `block-${i + 1}.ts`);
    writeFileSync(file, code);
    return file;
  });
}

it('type-checks every TypeScript block of the guide against the public API', () => {
  expect(blocks.length).toBeGreaterThanOrEqual(8);
  const config = ts.readConfigFile(join(REPO, 'tsconfig.json'), ts.sys.readFile);
  const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, REPO);
  const roots = files();
  const program = ts.createProgram(roots, { ...options, noEmit: true });
  const problems = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file === undefined || roots.includes(d.file.fileName))
    .map((d) => {
      const where = d.file
        ? `${d.file.fileName.slice(scratch.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}`
        : '';
      return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  expect(problems).toEqual([]);
}, 60_000);

it('runs the guide’s in-process test and it passes', async () => {
  const roots = files();
  const tests = roots.filter((_, i) => blocks[i]!.includes("from 'node:test'"));
  expect(tests.length).toBeGreaterThanOrEqual(1);
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--test', ...tests], {
    cwd: REPO,
  });
  expect(stdout).toMatch(/# fail 0\b/);
  expect(stdout).toMatch(/# pass [1-9]/);
}, 60_000);
