// Preloaded into a server under test (`node --import ./stall-probe.mjs …`): on SIGUSR2 it writes the
// event loop's longest stall since the previous SIGUSR2 to stderr, as one line, and starts over.
// Nothing else changes in the server; the 1 ms timer it adds costs a few microseconds a tick.
// The same probe as `stallMonitor()` in stall.ts (this file is plain JavaScript: no loader needed).
import { openSync, readSync } from 'node:fs';

const TICK_MS = 1;
// How long this thread waited for a CPU (Linux): the part of a gap another process is to blame for.
let schedstat;
try {
  schedstat = openSync('/proc/thread-self/schedstat', 'r');
} catch {
  schedstat = undefined;
}
const buffer = Buffer.alloc(128);
function waitMs() {
  if (schedstat === undefined) return 0;
  const length = readSync(schedstat, buffer, 0, buffer.length, 0);
  return Number(buffer.toString('latin1', 0, length).split(' ')[1]) / 1e6;
}

let lastWall = performance.now();
let lastWait = waitMs();
let maxMs = 0;
let ownMaxMs = 0;

setInterval(() => {
  const wall = performance.now();
  const wait = waitMs();
  const gap = wall - lastWall;
  maxMs = Math.max(maxMs, gap - TICK_MS);
  ownMaxMs = Math.max(ownMaxMs, gap - (wait - lastWait) - TICK_MS);
  lastWall = wall;
  lastWait = wait;
}, TICK_MS).unref();

process.on('SIGUSR2', () => {
  const reading = { maxMs: Math.max(0, maxMs), ownMaxMs: Math.max(0, ownMaxMs) };
  process.stderr.write(`coremcp-bench-stall ${JSON.stringify(reading)}\n`);
  maxMs = 0;
  ownMaxMs = 0;
});
