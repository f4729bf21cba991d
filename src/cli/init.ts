import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './usage.js';

/** The files `coremcp init` copies, as the package ships them (type-checked and linted in this repository). */
const TEMPLATE = new URL('../../../templates/app/', import.meta.url);
/** This package's manifest: its version, and the ranges the scaffold depends on. */
const MANIFEST = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
};

/** Template file → the name it gets (npm drops `.gitignore` from packages, so it travels without the dot). */
const FILES: Record<string, string> = {
  'app.ts': 'app.ts',
  'app.test.ts': 'app.test.ts',
  'coremcp.config.json': 'coremcp.config.json',
  gitignore: '.gitignore',
  'tsconfig.json': 'tsconfig.json',
  'README.md': 'README.md',
};

export interface InitOptions {
  /**
   * What the project's package.json depends on for coremcp: a version range, a git URL or a tarball
   * path. Default: the way the running coremcp was installed (its lockfile entry), else `^version`.
   */
  coremcp?: string;
  force?: boolean;
}

/**
 * `coremcp init [dir]`: a project that passes its own `npm test` and serves with `npm start`. A path
 * given for `--coremcp` (a packed tarball, a clone) becomes an absolute `file:` spec, so it still
 * resolves from the new folder.
 */
export function init(dir: string | undefined, options: InitOptions): void {
  const target = resolve(dir ?? '.');
  if (existsSync(target) && readdirSync(target).length > 0 && !options.force)
    throw new UsageError(`${target} is not empty: choose an empty or new folder, or pass --force`);
  mkdirSync(target, { recursive: true });
  const name = packageName(basename(target));
  const spec = dependencySpec(options.coremcp);
  const manifest = {
    name,
    version: '0.1.0',
    private: true,
    type: 'module',
    scripts: {
      start: 'coremcp serve ./app.ts',
      dev: 'coremcp dev ./app.ts',
      test: 'node --import tsx --test app.test.ts',
      check: 'tsc',
    },
    dependencies: { coremcp: spec, zod: MANIFEST.peerDependencies.zod },
    devDependencies: {
      '@types/node': MANIFEST.devDependencies['@types/node'],
      tsx: MANIFEST.dependencies.tsx,
      typescript: MANIFEST.devDependencies.typescript,
    },
  };
  writeFileSync(join(target, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  for (const [from, to] of Object.entries(FILES)) {
    const text = readFileSync(new URL(from, TEMPLATE), 'utf8').replaceAll('{{name}}', name);
    writeFileSync(join(target, to), text);
  }
  const where = relative(process.cwd(), target) || '.';
  const lines = [
    `created "${name}" in ${target}: package.json, ${Object.values(FILES).join(', ')}`,
    '',
    'next:',
    `  ${where === '.' ? '' : `cd ${where} && `}npm install && npm test && npm start`,
    '',
  ];
  if (options.coremcp === undefined && spec.startsWith('^'))
    lines.push(
      `package.json depends on coremcp ${spec}. If npm cannot find that version, point "coremcp" at a git URL`,
      'or a tarball from `npm pack` instead (or run init again with --coremcp SPEC).',
      '',
    );
  process.stdout.write(lines.join('\n'));
}

/** A valid npm package name made from the folder's name. */
function packageName(folder: string): string {
  const name = folder
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[._-]+|-+$/g, '');
  return name.slice(0, 214) || 'coremcp-app';
}

/**
 * How the running coremcp was installed, so a new project gets the same: the `resolved` of
 * `node_modules/coremcp` in the lockfile of the project (or npx cache) it runs from — a tarball
 * path, made absolute, or a git URL pinned to its commit. Undefined when it runs from elsewhere (a
 * clone) or came from the registry.
 */
export function installedSpec(
  packageDir: string = fileURLToPath(new URL('../../../', import.meta.url)),
): string | undefined {
  const marker = `${sep}node_modules${sep}coremcp`;
  const at = packageDir.replace(/[\\/]+$/, '').lastIndexOf(marker);
  if (at < 0) return undefined;
  const root = packageDir.slice(0, at);
  let resolved: unknown;
  try {
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
      packages?: Record<string, { resolved?: unknown }>;
    };
    resolved = lock.packages?.['node_modules/coremcp']?.resolved;
  } catch {
    return undefined;
  }
  if (typeof resolved !== 'string') return undefined;
  if (resolved.startsWith('file:')) return `file:${resolve(root, resolved.slice('file:'.length))}`;
  if (/^(git\+|git:|github:)/.test(resolved)) return resolved;
  return undefined;
}

function dependencySpec(given: string | undefined): string {
  if (given === undefined) return installedSpec() ?? `^${MANIFEST.version}`;
  if (given.trim() === '') throw new UsageError('--coremcp needs a version range, a git URL or a path');
  const path = given.startsWith('~/') ? join(homedir(), given.slice(2)) : given;
  if (/^(\.{1,2}|~)?\//.test(given) || /\.(tgz|tar\.gz)$/.test(given)) {
    const absolute = resolve(path);
    if (!existsSync(absolute)) throw new UsageError(`--coremcp: no such file or folder: ${given}`);
    return `file:${absolute}`;
  }
  return given;
}
