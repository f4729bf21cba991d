import type { CredentialStore, Store } from '../core/store.js';
import { ApiKeys } from '../security/apikeys.js';
import { DEFAULT_ROLES } from '../security/rbac.js';
import { type CommonOptions, configOf, storeOf } from './context.js';
import { UsageError } from './usage.js';

async function withKeys<T>(
  options: CommonOptions,
  work: (keys: ApiKeys, store: Store & CredentialStore) => Promise<T>,
): Promise<T> {
  const config = configOf(options);
  const store = storeOf(options, config);
  await store.open();
  try {
    // Roles an app adds are known only to the app; keys may name them, so only the config's and the
    // built-in roles are checked here when no app is loaded.
    const roles = new Set([...Object.keys(DEFAULT_ROLES), ...Object.keys(config.roles ?? {})]);
    return await work(new ApiKeys(store, { roles }), store);
  } finally {
    await store.close();
  }
}

/** Prints the new key alone on stdout, so `KEY=$(coremcp keys create ...)` works. */
export async function createKey(
  options: CommonOptions & { name: string; role: string; anyRole?: boolean },
): Promise<void> {
  await withKeys(options, async (keys, store) => {
    const manager = options.anyRole ? new ApiKeys(store) : keys;
    const { key, record } = await manager.create(options.name, options.role);
    process.stdout.write(`${key}\n`);
    process.stderr.write(
      `coremcp: created key "${record.name}" (id ${record.id}, role ${record.role}); it is shown only this once\n`,
    );
  });
}

export async function listKeys(options: CommonOptions & { json?: boolean }): Promise<void> {
  await withKeys(options, async (keys) => {
    const list = (await keys.list()).map(({ hash: _hash, ...rest }) => rest);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      return;
    }
    if (list.length === 0) {
      process.stdout.write('no keys\n');
      return;
    }
    for (const k of list) {
      process.stdout.write(
        `${k.id}  ${k.name.padEnd(24)} ${k.role.padEnd(10)} created ${k.createdAt}${k.revokedAt ? `  REVOKED ${k.revokedAt}` : ''}\n`,
      );
    }
  });
}

export async function revokeKey(options: CommonOptions & { key: string }): Promise<void> {
  await withKeys(options, async (keys) => {
    const revoked = await keys.revoke(options.key);
    if (!revoked) throw new UsageError(`no key with id or name "${options.key}"`);
    process.stdout.write(`revoked ${revoked.name} (${revoked.id}) at ${revoked.revokedAt}\n`);
  });
}
