import { useEffect, useState } from 'preact/hooks';
import type { HealthResponse, MetricsResponse } from '../../../src/console/wire';
import { api, describeError } from '../api';
import { LineChart, StackedBars } from '../components/Chart';

const REFRESH_MS = 5000;

/** Readiness checks, and the last minutes of commands/s, p50/p99 latency and errors by code. */
export function HealthView({ metrics }: { metrics: boolean }) {
  const [health, setHealth] = useState<HealthResponse | undefined>();
  const [series, setSeries] = useState<MetricsResponse | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    let stopped = false;
    const refresh = async () => {
      try {
        const [h, m] = await Promise.all([
          api.get<HealthResponse>('health'),
          metrics ? api.get<MetricsResponse>('metrics') : Promise.resolve(undefined),
        ]);
        if (stopped) return;
        setHealth(h);
        setSeries(m);
        setError(undefined);
      } catch (failure) {
        if (!stopped) setError(describeError(failure));
      }
    };
    void refresh();
    const timer = setInterval(() => void refresh(), REFRESH_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [metrics]);
  const points = series?.points ?? [];
  const slots = series?.intervals ?? 0;
  const minutes = Math.max(1, Math.round((slots * (series?.intervalMs ?? REFRESH_MS)) / 60_000));
  return (
    <section aria-labelledby="health-title">
      <h1 id="health-title">Health and metrics</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {health && (
        <>
          <p class={`overall ${health.status}`} role="status">
            Readiness: <strong>{health.status}</strong>
          </p>
          <div class="table-wrap">
            <table class="checks">
              <thead>
                <tr>
                  <th scope="col">check</th>
                  <th scope="col">status</th>
                  <th scope="col">detail</th>
                  <th scope="col" class="num">
                    ms
                  </th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(health.checks).map(([name, check]) => (
                  <tr key={name}>
                    <td class="mono">{name}</td>
                    <td>
                      <span class={`badge ${check.status === 'healthy' ? 'ok' : 'bad'}`}>{check.status}</span>
                    </td>
                    <td>{check.detail ?? ''}</td>
                    <td class="num">{check.durationMs.toFixed(1)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {metrics && series && (
        <div class="charts">
          {points.length === 0 && <p class="muted">Collecting the first interval…</p>}
          <LineChart
            title="Commands per second"
            unit="/s"
            slots={slots}
            minutes={minutes}
            series={[
              { name: 'commands', className: 'series-0', values: points.map((p) => p.commandsPerSecond) },
              { name: 'commits', className: 'series-1', values: points.map((p) => p.commitsPerSecond) },
            ]}
          />
          <LineChart
            title="Latency"
            unit="ms"
            slots={slots}
            minutes={minutes}
            series={[
              { name: 'p50', className: 'series-0', values: points.map((p) => p.p50Ms) },
              { name: 'p99', className: 'series-2', values: points.map((p) => p.p99Ms) },
            ]}
          />
          <StackedBars
            title="Errors by code"
            slots={slots}
            minutes={minutes}
            points={points.map((p) => p.errors)}
          />
        </div>
      )}
    </section>
  );
}
