import { join, resolve } from 'node:path';
import pino from 'pino';
import type { Logger } from '../core/log.js';
import { SqliteStore } from '../store/sqlite.js';
import { type CoreMcpConfig, loadConfig } from './config.js';
import { UsageError } from './usage.js';

export const DEFAULT_DATA_DIR = '.coremcp';
export const DATABASE_FILE = 'coremcp.db';

export interface CommonOptions {
  dataDir?: string;
  config?: string;
  logLevel?: string;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** JSON logs to stderr, always: in stdio mode stdout is the protocol. */
export function createLogger(level: string | undefined): Logger {
  const chosen = level ?? process.env.COREMCP_LOG_LEVEL ?? 'info';
  if (!LEVELS.includes(chosen)) throw new UsageError(`log level must be one of ${LEVELS.join(', ')}`);
  return pino(
    {
      level: chosen,
      base: { pid: process.pid },
      redact: { paths: ['*.authorization', '*.token', 'headers.authorization'], censor: '[REDACTED]' },
    },
    pino.destination(2),
  ) as unknown as Logger;
}

export function dataDirOf(options: CommonOptions): string {
  return resolve(options.dataDir ?? process.env.COREMCP_DATA_DIR ?? DEFAULT_DATA_DIR);
}

export function openSqlite(options: CommonOptions, config: CoreMcpConfig = {}): SqliteStore {
  return new SqliteStore({
    path: join(dataDirOf(options), DATABASE_FILE),
    durability: config.store?.durability ?? 'normal',
  });
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
