// Preloaded into a server under test (`node --import ./stall-probe.mjs …`): on SIGUSR2 it writes the
// event loop's longest delay since the previous SIGUSR2 to stderr, as one line, and starts over.
// Nothing else changes in the server; the 1 ms timer it adds costs about as much as a log line a ms.
import { monitorEventLoopDelay } from 'node:perf_hooks';

const RESOLUTION_MS = 1;
const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
histogram.enable();

process.on('SIGUSR2', () => {
  // The histogram holds intervals between timer runs; what exceeds the resolution is the stall.
  const stall = (ns) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  const reading = {
    maxMs: histogram.count > 0 ? stall(histogram.max) : 0,
    p99Ms: histogram.count > 0 ? stall(histogram.percentile(99)) : 0,
  };
  process.stderr.write(`coremcp-bench-stall ${JSON.stringify(reading)}\n`);
  histogram.reset();
});
