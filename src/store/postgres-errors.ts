import { isCoreMcpError, RecoveryError } from '../core/errors.js';

/** SQLSTATEs after which the same transaction, run again, may well succeed. */
const RETRYABLE = new Set(['40001', '40P01']);

/** Errors of the connection, not of the statement: the server is gone, restarting, or unreachable. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);
const NETWORK_MESSAGE =
  /Connection terminated|connection error|timeout exceeded when trying to connect|not queryable|Client was closed|Cannot use a pool after calling end|the database system is (starting up|shutting down)|Query read timeout/i;

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** A serialization failure or deadlock: run the transaction again. */
export function isRetryable(error: unknown): boolean {
  const state = sqlState(error);
  return state !== undefined && RETRYABLE.has(state);
}

/** The error names a lost or refused connection (or a server shutting down). */
export function isConnectionError(error: unknown): boolean {
  const state = sqlState(error);
  if (state !== undefined) return state.startsWith('08') || state.startsWith('57P') || state === '53300';
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
  return error instanceof Error && NETWORK_MESSAGE.test(error.message);
}

/**
 * The typed error the core knows for a failure of PostgreSQL: `store_unavailable` for a lost,
 * refused or timed-out connection, `store_busy` for a statement timeout or a lock that could not be
 * had, `storage_full` for a full disk or a read-only server, `conflict_retries_exhausted` for
 * serialization failures that outlasted the retries. Typed errors pass through; anything else (a bug,
 * a constraint the store does not expect) is returned as it is, so it surfaces as internal.
 */
export function storeErrorOf(error: unknown): unknown {
  if (isCoreMcpError(error)) return error;
  const state = sqlState(error);
  const cause = { cause: error };
  if (isConnectionError(error)) {
    return new RecoveryError('store_unavailable', `PostgreSQL unavailable: ${messageOf(error)}`, cause);
  }
  switch (state) {
    case '57014': // query_canceled: statement_timeout
    case '55P03': // lock_not_available: lock_timeout
      return new RecoveryError('store_busy', `PostgreSQL: ${messageOf(error)}`, cause);
    case '53100': // disk_full
    case '25006': // read_only_sql_transaction (a standby, or default_transaction_read_only)
      return new RecoveryError('storage_full', `PostgreSQL: ${messageOf(error)}`, cause);
    case '40001':
    case '40P01':
      return new RecoveryError(
        'conflict_retries_exhausted',
        `PostgreSQL: ${messageOf(error)} (after retries)`,
        cause,
      );
    default:
      return error;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
