#!/usr/bin/env node
/**
 * Runs the official MCP conformance suite (@modelcontextprotocol/conformance, server scenarios,
 * active suite) against coremcp serving examples/conformance/app.ts, checked against
 * conformance-baseline.yml. Run it with `npm run conformance` (which builds first).
 *
 * It starts `coremcp serve` on a free loopback port without authentication (the suite cannot
 * authenticate; `--no-auth` is loopback-only) and with a throwaway data directory, runs the suite,
 * prints one line per scenario, stops the server, removes the data directory and exits with the
 * suite's exit code. Everything it starts is stopped on every exit path, and the whole run is
 * bounded by CONFORMANCE_TIMEOUT_MS (default 10 minutes).
 *
 * Arguments after `--` go to the suite, e.g. `npm run conformance -- --scenario ping` or
 * `-- --suite pending`; the baseline describes the active suite only.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const CLI = join(ROOT, 'dist/src/cli/main.js');
const APP = join(ROOT, 'dist/examples/conformance/app.js');
const SUITE = join(ROOT, 'node_modules/.bin/conformance');
const BASELINE = join(ROOT, 'conformance-baseline.yml');
const TOTAL_TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS) || 10 * 60 * 1000;
const STARTUP_TIMEOUT_MS = 30_000;
const KILL_GRACE_MS = 5_000;

/** Child processes still running, stopped by cleanup() whatever way the run ends. */
const children = new Set();
let dataDir;
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
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
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

/** Scenario names listed in the baseline (the `server:` list), read the simple way. */
function baselineScenarios() {
  const listed = new Set();
  let inServer = false;
  for (const line of readFileSync(BASELINE, 'utf8').split('\n')) {
    if (/^\S/.test(line)) inServer = /^server:\s*(#.*)?$/.test(line);
    const item = /^\s+-\s+([\w/.-]+)/.exec(line);
    if (inServer && item) listed.add(item[1]);
  }
  return listed;
}

/** One line per scenario from the results directory the suite wrote. */
function summarize(resultsDir) {
  if (!existsSync(resultsDir)) return log('no results were written');
  const expected = baselineScenarios();
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
}

async function main() {
  for (const [what, path] of [
    ['the built CLI', CLI],
    ['the built conformance app', APP],
    ['the conformance suite', SUITE],
    ['the baseline', BASELINE],
  ]) {
    if (!existsSync(path)) throw new Error(`${what} is missing: ${relative(ROOT, path)} (run npm run build)`);
  }
  dataDir = mkdtempSync(join(tmpdir(), 'coremcp-conformance-'));
  const port = await freePort();
  const url = `http://${HOST}:${port}/mcp`;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(ROOT, 'results', `conformance-${stamp}`);

  log(`starting coremcp on ${url} (data in ${dataDir})`);
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

  const extra = process.argv.slice(2);
  log(
    `running @modelcontextprotocol/conformance (${extra.length ? extra.join(' ') : 'active suite'}) on ${url}`,
  );
  const suite = spawnChild(
    process.execPath,
    [SUITE, 'server', '--url', url, '--expected-failures', BASELINE, '-o', resultsDir, ...extra],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const code = await new Promise((resolveCode) => {
    let settled = false;
    const done = (value) => {
      if (!settled) resolveCode(value);
      settled = true;
    };
    suite.once('exit', (exitCode, signal) => done(exitCode ?? (signal ? 1 : 0)));
    suite.once('error', (error) => {
      log(`could not run the suite: ${error.message}`);
      done(1);
    });
    server.once('exit', (exitCode, signal) => {
      if (settled || finalCode !== undefined) return;
      log(`the server exited while the suite was running (${exitCode ?? signal})`);
      done(1);
    });
  });
  if (finalCode !== undefined) return finalCode; // stopped by the timeout or a signal
  process.stdout.write('\n');
  summarize(resultsDir);
  log(
    code === 0 ? 'conformance: OK (every failure is in the baseline)' : `conformance: FAILED (exit ${code})`,
  );
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
