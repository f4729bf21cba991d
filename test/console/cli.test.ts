/** Where the console is served from the command line: `serve` by default on loopback, `--no-console`, `coremcp console`. */
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, httpClient, runCli, startServerProcess } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor, waitForOutput } from '../helpers/wait.js';
import { ConsoleClient } from './client.js';

const tmp = tempDir();
afterAll(() => tmp.remove());

/** Runs `coremcp console ...` until it prints where it listens; returns that origin and a stop function. */
async function startConsole(
  args: string[],
): Promise<{ origin: string; stderr: () => string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [CLI, 'console', '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const origin = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /console at (http:\/\/\S+)\/console/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`coremcp console exited with ${code}:\n${stderr}`)));
  });
  return {
    origin,
    stderr: () => stderr,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

describe('the console from the command line', () => {
  it('is served beside MCP by `serve` on loopback, and not with --no-console', async () => {
    const dir = `${tmp.dir}/serve`;
    const on = await startServerProcess(['--data-dir', dir]);
    try {
      const origin = new URL(on.url).origin;
      // The console's line follows the MCP endpoint's, perhaps in a later chunk.
      await waitForOutput(on.child.stderr!, on.stderr, 'console at');
      expect(on.stderr()).toContain(`coremcp: console at ${origin}/console (sign in with an API key`);
      expect((await fetch(`${origin}/console`)).status).toBe(200);
    } finally {
      await on.stop();
    }
    const off = await startServerProcess(['--data-dir', dir, '--no-console']);
    try {
      expect(off.stderr()).not.toContain('console at');
      expect((await fetch(`${new URL(off.url).origin}/console`)).status).toBe(404);
    } finally {
      await off.stop();
    }
  });

  it('`coremcp console` serves the console alone over a data directory, following a running server', async () => {
    const dir = `${tmp.dir}/alone`;
    const server = await startServerProcess(['--data-dir', dir]);
    const key = server.firstKey!;
    const alone = await startConsole(['--listen', '127.0.0.1:0', '--data-dir', dir]);
    try {
      // The data directory has a key already: nothing is created or printed but the URL and the hint.
      expect(alone.stderr()).not.toContain('cmcp_');
      expect((await fetch(`${alone.origin}/mcp`, { method: 'POST' })).status).toBe(404);
      const client = await ConsoleClient.signIn(alone.origin, key);
      // A commit the server process makes reaches this process's event stream.
      const stream = await client.events();
      const mcp = await httpClient(server.url, key);
      await mcp.callTool({ name: 'task.add', arguments: { title: 'made next door' } });
      await mcp.close();
      const event = await waitFor(() => stream.events.find((e) => e.event === 'commit'));
      expect(event.data).toMatchObject({ doc: 'board', revision: 1, command: 'task.add', external: true });
      stream.close();
      const rollback = await client.post<{ committed: boolean }>('rollback', { doc: 'board', toRevision: 0 });
      expect(rollback.status).toBe(200);
      const audit = await runCli(['audit', 'tail', '--json', '--data-dir', dir]);
      expect(JSON.parse(audit.stdout.trim().split('\n').at(-1)!)).toMatchObject({
        principal: 'admin',
        via: 'console',
        command: 'state.rollback',
      });
    } finally {
      await alone.stop();
      await server.stop();
    }
  });

  it('`coremcp console` on a new data directory creates the first admin key and says to sign in with it', async () => {
    const alone = await startConsole(['--listen', '127.0.0.1:0', '--data-dir', `${tmp.dir}/fresh`]);
    try {
      const key = /\n {2}(cmcp_\S+)\n/.exec(alone.stderr())?.[1];
      expect(key).toBeDefined();
      expect(alone.stderr()).toContain('Sign in to the console with it.');
      expect(alone.stderr()).not.toContain('mcpServers');
      expect((await new ConsoleClient(alone.origin).signIn(key!)).status).toBe(200);
    } finally {
      await alone.stop();
    }
  });

  it('`coremcp console` refuses to listen beyond loopback (exit 2)', async () => {
    const refused = await runCli(['console', '--listen', '0.0.0.0:0', '--data-dir', `${tmp.dir}/x`]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/loopback only/);
  });
});
