import { userInfo } from 'node:os';
import type { Principal } from '../core/access.js';
import { auditedAction } from '../core/audit.js';
import type { JsonObject } from '../core/json.js';
import type { Store } from '../core/store.js';

/** The operator at the keyboard: whoever can open the data folder acts as admin, audited by OS user name. */
export function operatorPrincipal(): Principal {
  const name = userInfo().username || 'operator';
  return Object.freeze({ id: name, name, roles: Object.freeze(['admin']), via: 'cli' });
}

/**
 * Runs an operator action that is not a command (a key made or revoked, a snapshot, a compaction)
 * and records it in the audit chain as the operator, `via: cli`: `ok`, or the error's code.
 */
export function auditedByOperator<T>(
  store: Store,
  command: string,
  input: JsonObject,
  work: () => Promise<T>,
  describe?: (result: T) => { doc?: string; revision?: number },
): Promise<T> {
  return auditedAction(store, { principal: operatorPrincipal(), command, input }, work, describe);
}
