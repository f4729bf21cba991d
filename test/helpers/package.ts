/**
 * The package as a user gets it: `npm pack` of this repository, and a shell like a fresh one to
 * install it with (a temporary home, none of the `npm_*` variables or `node_modules/.bin` paths
 * that `npm test` adds).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string })
  .version;

const run = promisify(execFile);

/**
 * A fresh shell's environment with `home` as HOME. npm keeps its usual cache (so packages already
 * fetched are not fetched again), and better-sqlite3 finds this repository's own compiled binary as a
 * local prebuild (its `prebuild-install` option), instead of compiling for a minute when GitHub's
 * release downloads are out of reach.
 */
export function freshEnv(home: string): NodeJS.ProcessEnv {
  const cache = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(name) || name === 'INIT_CWD' || name.startsWith('COREMCP_')) continue;
    env[name] = value;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(':')
    .filter((entry) => !entry.includes('node_modules/.bin'))
    .join(':');
  const prebuilds = join(home, '.prebuilds');
  mkdirSync(prebuilds, { recursive: true });
  const sqlite = join(REPO, 'node_modules/better-sqlite3');
  const { version } = JSON.parse(readFileSync(join(sqlite, 'package.json'), 'utf8')) as { version: string };
  execFileSync('tar', [
    '-czf',
    join(
      prebuilds,
      `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`,
    ),
    '-C',
    sqlite,
    'build/Release/better_sqlite3.node',
  ]);
  return {
    ...env,
    HOME: home,
    npm_config_cache: cache,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    npm_config_better_sqlite3_local_prebuilds: prebuilds,
  };
}

/** Runs a script with bash, stopping at the first failing command. */
export async function shell(
  script: string,
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run('bash', ['-euo', 'pipefail', '-c', script], {
      ...options,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const failed = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${failed.message}\n--- stdout\n${failed.stdout}\n--- stderr\n${failed.stderr}`);
  }
}

export interface ServedProject {
  url: string;
  stderr: () => string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Runs a long-lived command (`npx coremcp serve …`, `npm start`) in its own process group and waits
 * for the line saying where it serves; `stop` signals the whole group (npx runs the bin as a child).
 */
export async function serveProject(
  command: string,
  options: { cwd: string; env: NodeJS.ProcessEnv; ready?: RegExp; timeoutMs?: number },
): Promise<ServedProject> {
  const child = spawn('bash', ['-c', `exec ${command}`], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stderr = '';
  let stdout = '';
  const ready = options.ready ?? /serving "[^"]+" at (http:\/\/\S+)/;
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${command} did not start:\n${stderr}`)),
      options.timeoutMs ?? 30_000,
    );
    const look = () => {
      const match = ready.exec(stderr) ?? ready.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      look();
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      look();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code}:\n${stdout}\n${stderr}`));
    });
  });
  return {
    url,
    stderr: () => stderr,
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        process.kill(-child.pid!, 'SIGTERM');
      }),
  };
}
