#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { isCoreMcpError } from '../core/errors.js';
import { StoreConfigError } from '../store/config-error.js';
import { auditExport, auditTail, auditVerify } from './audit.js';
import { DEFAULT_CONSOLE_LISTEN, runConsole } from './console.js';
import { dev } from './dev.js';
import { health } from './health.js';
import { init } from './init.js';
import { createKey, listKeys, revokeKey } from './keys.js';
import { migrate } from './migrate.js';
import { serve } from './serve.js';
import {
  stateCompact,
  stateDiff,
  stateGet,
  stateHistory,
  stateRollback,
  stateSnapshot,
  stateUndo,
  stateVerify,
} from './state.js';
import { stateList } from './state-list.js';
import { CheckFailed, UsageError } from './usage.js';

const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Options every command that touches the data folder takes. */
function withCommon(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'where state is kept (default ./.coremcp, or $COREMCP_DATA_DIR)')
    .option('--config <file>', 'configuration file (default ./coremcp.config.json if present)')
    .option('--store <url>', 'a database URL, or $COREMCP_STORE_URL (default: SQLite in the data directory)');
}

export function buildProgram(): Command {
  const program = new Command('coremcp')
    .description(
      'Run MCP servers whose tools change shared state: every call an authenticated, audited command on versioned JSON.',
    )
    .version(version)
    .showHelpAfterError()
    .addHelpText(
      'after',
      '\nErrors are one line on stderr; --debug (or COREMCP_DEBUG=1) adds the stack trace.\nExit codes: 0 ok, 1 failure, 2 usage error.',
    )
    .exitOverride();

  withCommon(
    program
      .command('serve')
      .description('serve an app over Streamable HTTP (default 127.0.0.1:3000) and/or stdio')
      .argument(
        '[app]',
        'module whose default export is defineApp({...}) (.ts or .js); default: the task board',
      )
      .option('--http [address]', 'serve Streamable HTTP on [host:]port (default 127.0.0.1:3000)')
      .option('--stdio', 'serve over stdin/stdout (the local user, no key needed)')
      .option('--no-auth', 'serve HTTP without authentication (loopback only; for local tooling)')
      .option('--console', 'serve the web console at /console (default: on when HTTP is on loopback)')
      .option('--no-console', 'do not serve the web console')
      .option(
        '--metrics <address>',
        'also serve /metrics, /healthz, /readyz without credentials on loopback [host:]port (e.g. 9464)',
      )
      .addOption(
        new Option('--log-level <level>', 'log level (logs go to stderr)').choices([
          'fatal',
          'error',
          'warn',
          'info',
          'debug',
          'trace',
          'silent',
        ]),
      ),
  ).action((app: string | undefined, options) => serve(app, options));

  withCommon(
    program
      .command('dev')
      .description(
        'serve an app over HTTP and serve it again when its files change (same port, data and key); prints a client configuration',
      )
      .argument('[app]', 'module whose default export is defineApp({...}) (default ./app.ts)')
      .option('--http <address>', 'serve Streamable HTTP on [host:]port (default 127.0.0.1:3000)')
      .option('--role <role>', 'role of the key in the printed client configuration (default admin)')
      .option('--no-console', 'do not serve the web console')
      .addOption(
        new Option('--log-level <level>', 'log level (logs go to stderr)').choices([
          'fatal',
          'error',
          'warn',
          'info',
          'debug',
          'trace',
          'silent',
        ]),
      ),
  ).action((app: string | undefined, options) => dev(app, options));

  withCommon(
    program
      .command('migrate')
      .description(
        "run the app's document migrations that are due, each an audited commit (serve does it at start)",
      )
      .argument('[app]', 'module whose default export is defineApp({...}); default: the task board')
      .option('--dry-run', 'show what the next step of each migration would change; commit nothing')
      .option('--json', 'print JSON'),
  ).action((app: string | undefined, options) => migrate(app, options));

  withCommon(
    program
      .command('console')
      .description('open the web console alone on loopback, over a data directory or store, without MCP')
      .argument('[app]', 'module whose default export is defineApp({...}); default: the task board')
      .option('--listen <address>', `loopback [host:]port (default ${DEFAULT_CONSOLE_LISTEN})`)
      .addOption(
        new Option('--log-level <level>', 'log level (logs go to stderr)').choices([
          'fatal',
          'error',
          'warn',
          'info',
          'debug',
          'trace',
          'silent',
        ]),
      ),
  ).action((app: string | undefined, options) => runConsole(app, options));

  program
    .command('init')
    .description('create a project: an app with two documents, its test, a config with an agent role')
    .argument('[dir]', 'folder to create it in (default: this one); must be empty')
    .option(
      '--coremcp <spec>',
      'what package.json depends on for coremcp: a version, a git URL or a tarball path (default: how this coremcp was installed)',
    )
    .option('--force', 'write into a folder that is not empty (overwrites the files it creates)')
    .action((dir: string | undefined, options) => init(dir, options));

  program
    .command('health')
    .description("ask a running server's /readyz; prints the report; exit 0 only when healthy")
    .option('--url <url>', 'server URL, its MCP URL, or a health URL (default http://127.0.0.1:3000/readyz)')
    .option('--timeout <seconds>', 'give up after this long (default 5)')
    .action((options) => health(options));

  const keys = program.command('keys').description('manage API keys for HTTP clients');
  withCommon(
    keys
      .command('create')
      .description('create a key; prints the key alone on stdout (it is never shown again)')
      .requiredOption('--name <name>', 'a unique name; the principal id the key acts as')
      .requiredOption('--role <role>', 'role the key grants (admin, member, viewer, or a configured role)')
      .option('--allow-unknown-role', 'accept a role defined only by an app')
      .option('--json', 'print the key with its record as JSON'),
  ).action((options) => createKey({ ...options, anyRole: options.allowUnknownRole }));
  withCommon(
    keys.command('list').description('list keys (never the keys themselves)').option('--json', 'print JSON'),
  ).action((options) => listKeys(options));
  withCommon(
    keys
      .command('revoke')
      .description('revoke a key by id or name')
      .argument('<key>', 'key id or name')
      .option('--json', 'print the revoked key record as JSON'),
  ).action((key: string, options) => revokeKey({ ...options, key }));

  const state = program.command('state').description('read the state and its history');
  withCommon(
    state
      .command('list')
      .description('list documents: revision, size, collection entries, last change (time, who, command)')
      .option('--json', 'print JSON'),
  ).action((options) => stateList(options));
  withCommon(
    state
      .command('get')
      .description(
        'print a document (at head, or at --revision); collections hold their first page, `more` says how to go on',
      )
      .option('--doc <doc>', "document id (default: the store's only document, else `default`)")
      .option('--revision <n>', 'revision to read')
      .option('--collection <name>', 'print one page of this collection instead')
      .option('--cursor <cursor>', 'with --collection: the `cursor` of the previous page')
      .option('--limit <n>', 'entries per page (1-1000, default 1000 for the document, 100 for a page)'),
  ).action((options) => stateGet(options));
  withCommon(
    state
      .command('history')
      .description('list commits: revision, time, principal, command, command id, paths touched')
      .option('--doc <doc>', "document id (default: the store's only document, else `default`)")
      .option('--limit <n>', 'how many commits (default 20)')
      .option('--since <n>', 'commits after this revision (default: the last --limit)')
      .option('--json', 'print JSON'),
  ).action((options) => stateHistory(options));
  withCommon(
    state
      .command('diff')
      .description('print the RFC 6902 patches from one revision to another (default: head)')
      .option('--doc <doc>', "document id (default: the store's only document, else `default`)")
      .requiredOption('--from <n>', 'starting revision')
      .option('--to <n>', 'ending revision (default: head)'),
  ).action((options) => stateDiff(options));
  withCommon(
    state
      .command('snapshot')
      .description(
        'write a snapshot of the head now (start-up loads the newest snapshot and replays the rest)',
      )
      .option('--doc <doc>', "document id (default: the store's only document, else `default`)"),
  ).action((options) => stateSnapshot(options));
  withCommon(
    state
      .command('verify')
      .description(
        "check the database (SQLite's quick_check, or integrity_check with --full) and replay every document's history against its snapshots and head; exit 1 naming each problem",
      )
      .option('--doc <doc>', 'only this document')
      .option('--full', 'the full integrity check (reads every page and index; slower)')
      .option('--json', 'print JSON'),
  ).action((options) => stateVerify(options));
  withCommon(
    state
      .command('compact')
      .description('remove commits older than the retention policy (a snapshot keeps the value)')
      .option('--doc <doc>', "document id (default: the store's only document, else `default`)")
      .option('--keep-commits <n>', 'keep at least the last N commits')
      .option('--keep-days <n>', 'keep every commit younger than N days'),
  ).action((options) => stateCompact(options));
  withCommon(
    state
      .command('rollback')
      .description('return a document to an earlier revision, as a new audited commit')
      .option('--doc <doc>', "document id (default: the store's only document, else `default`)")
      .requiredOption('--to <n>', 'revision whose value to restore'),
  ).action((options) => stateRollback(options));
  withCommon(
    state
      .command('undo')
      .description(
        "undo one command's change, named by its command id or by --doc D --revision N (refused if later commits touched the same paths)",
      )
      .argument('[commandId]', 'command id of the commit (see `state history`)')
      .option('--doc <doc>', "document id (default: the store's only document)")
      .option('--revision <n>', 'the revision the command made, instead of its id'),
  ).action((commandId: string | undefined, options) => stateUndo({ ...options, commandId }));

  const audit = program.command('audit').description('check and read the tamper-evident audit trail');
  withCommon(
    audit
      .command('verify')
      .description("check every record's hash and link; exit 1 naming the first broken record")
      .option('--json', 'print JSON'),
  ).action((options) => auditVerify(options));
  withCommon(
    audit
      .command('tail')
      .description('print the last records (seq, time, principal, via, command, outcome, doc@revision)')
      .option('--limit <n>', 'how many records (default 20)')
      .option('--principal <id>', 'only this principal')
      .option('--command <name>', 'only this command')
      .option('--follow', 'keep printing new records until interrupted')
      .option('--json', 'print JSON lines'),
  ).action((options) => auditTail(options));
  withCommon(
    audit
      .command('export')
      .description('print every record since a time as JSON lines')
      .requiredOption('--since <time>', 'ISO date or time, e.g. 2026-12-01 or 2026-12-01T10:00:00Z')
      .option('--principal <id>', 'only this principal')
      .option('--command <name>', 'only this command'),
  ).action((options) => auditExport(options));

  return program;
}

/** Whether to print stacks: `--debug` anywhere on the command line, or `COREMCP_DEBUG` set. */
function debugging(argv: readonly string[]): boolean {
  const env = process.env.COREMCP_DEBUG;
  return argv.includes('--debug') || (env !== undefined && env !== '' && env !== '0' && env !== 'false');
}

/** One line on stderr, and a hint on how to go on when there is one. */
function report(message: string, hint?: string): void {
  process.stderr.write(`coremcp: ${message}\n${hint ? `hint: ${hint}\n` : ''}`);
}

/** Errors from the system that an operator fixes, said plainly: a port in use, a folder that cannot be written. */
function systemError(error: unknown): { message: string; hint: string } | undefined {
  const { code, port, address, path, syscall } = (error ?? {}) as NodeJS.ErrnoException & {
    port?: number;
    address?: string;
  };
  if (code === 'EADDRINUSE')
    return {
      message: `${address ?? 'the address'}:${port ?? '?'} is already in use`,
      hint: 'stop the process listening there, or choose another port with --http [host:]port',
    };
  if (code === 'EACCES' || code === 'EPERM')
    return {
      message: `permission denied${syscall ? ` (${syscall}${path ? ` ${path}` : ''})` : ''}`,
      hint: 'choose a folder you may write with --data-dir, or a port above 1023',
    };
  if (code === 'ENOENT' && path) return { message: `no such file or folder: ${path}`, hint: '' };
  return undefined;
}

/** Exit codes: 0 ok, 1 failure, 2 usage error. */
export async function main(argv: string[]): Promise<number> {
  const debug = debugging(argv);
  const program = buildProgram();
  try {
    await program.parseAsync(argv.filter((arg) => arg !== '--debug'));
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.exitCode === 0
      )
        return 0;
      return 2;
    }
    if (debug && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    if (error instanceof CheckFailed) {
      report(error.message);
      return 1;
    }
    if (error instanceof UsageError) {
      report(error.message);
      return 2;
    }
    if (isCoreMcpError(error) && (error.code === 'invalid_input' || error.code === 'invalid_revision')) {
      report(error.message);
      return 2;
    }
    if (error instanceof StoreConfigError) {
      report(error.message);
      return 1;
    }
    // Store faults (unreachable, corrupt, empty, locked or full) are for the operator: one line, no stack.
    if (isCoreMcpError(error) && (error.spec.expose || error.spec.family === 'recovery')) {
      report(`${error.code}: ${error.message}`);
      return 1;
    }
    const known = systemError(error);
    if (known) {
      report(known.message, known.hint || undefined);
      return 1;
    }
    report(
      (error as Error)?.message?.split('\n')[0] ?? String(error),
      debug ? undefined : 'run again with --debug (or COREMCP_DEBUG=1) for the stack trace',
    );
    return 1;
  }
}

const code = await main(process.argv);
// `serve` and `console` keep running on their own handles; everything else ends here.
const longRunning = process.argv
  .slice(2)
  .some((arg) => arg === 'serve' || arg === 'console' || arg === 'dev');
if (code !== 0 || !longRunning) process.exitCode = code;
