import type { CredentialStore, Store } from '../core/store.js';
import { ApiKeys } from '../security/apikeys.js';
import { DEFAULT_ROLES } from '../security/rbac.js';
import { type CommonOptions, configOf, storeOf } from './context.js';
import { table, time } from './format.js';
import { auditedByOperator } from './operator.js';
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
  options: CommonOptions & { name: string; role: string; anyRole?: boolean; json?: boolean },
): Promise<void> {
  await withKeys(options, async (keys, store) => {
    const manager = options.anyRole ? new ApiKeys(store) : keys;
    const { key, record } = await auditedByOperator(
      store,
      'admin.keys.create',
      { name: options.name, role: options.role },
      () => manager.create(options.name, options.role),
    );
    const { hash: _hash, ...shown } = record;
    process.stdout.write(options.json ? `${JSON.stringify({ key, ...shown }, null, 2)}\n` : `${key}\n`);
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
    process.stdout.write(
      table(
        [
          { header: 'ID', value: (k) => k.id },
          { header: 'NAME', value: (k) => k.name },
          { header: 'ROLE', value: (k) => k.role },
          { header: 'CREATED', value: (k) => time(k.createdAt) },
          { header: 'REVOKED', value: (k) => time(k.revokedAt) },
        ],
        list,
        { empty: 'no keys' },
      ),
    );
  });
}

export async function revokeKey(options: CommonOptions & { key: string; json?: boolean }): Promise<void> {
  await withKeys(options, async (keys, store) => {
    const revoked = await auditedByOperator(store, 'admin.keys.revoke', { id: options.key }, async () => {
      const found = await keys.revoke(options.key);
      if (!found) throw new UsageError(`no key with id or name "${options.key}"`);
      return found;
    });
    const { hash: _hash, ...shown } = revoked;
    process.stdout.write(
      options.json
        ? `${JSON.stringify(shown, null, 2)}\n`
        : `revoked ${revoked.name} (${revoked.id}) at ${revoked.revokedAt}\n`,
    );
  });
}
