import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import pino, { type DestinationStream } from 'pino';
import type { Logger } from '../core/log.js';
import type { CredentialStore, Store } from '../core/store.js';
import { openStore, StoreConfigError } from '../store/open.js';
import { type CoreMcpConfig, loadConfig } from './config.js';
import { UsageError } from './usage.js';

export const DEFAULT_DATA_DIR = '.coremcp';

export interface CommonOptions {
  dataDir?: string;
  /** A database URL (`--store`); default `$COREMCP_STORE_URL`, then the config's `store.url`. */
  store?: string;
  config?: string;
  logLevel?: string;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Fields never written to the log whatever a caller passes: credentials, and command inputs (the
 * audit trail keeps a redacted copy of those).
 */
const REDACT = ['authorization', 'token', 'key', 'apiKey', 'password', 'secret', 'cookie', 'input'].flatMap(
  (name) => [name, `*.${name}`],
);
REDACT.push('headers.authorization', '*.headers.authorization', 'headers.cookie', '*.headers.cookie');

/**
 * Logs to stderr, always: in stdio mode stdout is the protocol. JSON lines, or pino-pretty's
 * readable lines when stderr is a terminal (`COREMCP_LOG_FORMAT=json` keeps JSON there too).
 */
export function createLogger(level: string | undefined): Logger {
  const chosen = level ?? process.env.COREMCP_LOG_LEVEL ?? 'info';
  if (!LEVELS.includes(chosen)) throw new UsageError(`log level must be one of ${LEVELS.join(', ')}`);
  return pino(
    {
      level: chosen,
      base: { pid: process.pid },
      redact: { paths: REDACT, censor: '[REDACTED]' },
    },
    destination(),
  ) as unknown as Logger;
}

function destination(): DestinationStream {
  const format = process.env.COREMCP_LOG_FORMAT;
  if (format === 'pretty' || (format !== 'json' && process.stderr.isTTY)) {
    // Loaded only for a terminal: servers writing JSON never pay for it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    // One line per record (a command's line with its fields), as a terminal reads best.
    return pretty({
      destination: 2,
      sync: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      singleLine: true,
    });
  }
  return pino.destination(2);
}

export function dataDirOf(options: CommonOptions): string {
  return resolve(options.dataDir ?? process.env.COREMCP_DATA_DIR ?? DEFAULT_DATA_DIR);
}

/** The store the flags, the environment and the config name; not opened yet. */
export function storeOf(options: CommonOptions, config: CoreMcpConfig = {}): Store & CredentialStore {
  try {
    return openStore({
      dataDir: dataDirOf(options),
      durability: config.store?.durability,
      busyWaitMs: config.store?.busyWaitMs,
      walLimitMiB: config.store?.walLimitMiB,
      url: options.store ?? process.env.COREMCP_STORE_URL ?? config.store?.url,
      schema: config.store?.schema,
      poolSize: config.store?.poolSize,
      statementTimeoutMs: config.store?.statementTimeoutMs,
      pollIntervalMs: config.store?.pollIntervalMs,
      listenUrl: process.env.COREMCP_STORE_LISTEN_URL ?? config.store?.listenUrl,
    });
  } catch (error) {
    if (error instanceof StoreConfigError) throw new UsageError(error.message);
    throw error;
  }
}

export function configOf(options: CommonOptions): CoreMcpConfig {
  return loadConfig(options.config);
}

/** Parses a non-negative integer option, or throws a usage error naming it. */
export function integerOption(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value) || Number(value) < min)
    throw new UsageError(`${name} must be an integer ≥ ${min}, not "${value}"`);
  return Number(value);
}
