import type { PlannedMigration } from '../core/state.js';
import { createCore } from '../runtime.js';
import { type CommonOptions, configOf, createLogger, storeOf } from './context.js';
import { loadApp } from './load-app.js';
import { operatorPrincipal } from './operator.js';

export interface MigrateOptions extends CommonOptions {
  dryRun?: boolean;
  json?: boolean;
}

/**
 * `coremcp migrate [app]`: runs the app's document migrations that are due, each an audited commit
 * (what `coremcp serve` does at start). `--dry-run` runs the next step of each on a draft and prints
 * its patches instead, committing nothing.
 */
export async function migrate(appPath: string | undefined, options: MigrateOptions): Promise<void> {
  const config = configOf(options);
  const core = await createCore({
    app: await loadApp(appPath),
    store: storeOf(options, config),
    logger: createLogger(options.logLevel ?? 'warn'),
    migrate: false,
  });
  try {
    // Run from the CLI, the migrations are the operator's commits (serve runs them as `system`).
    const planned = await core.state.migrate({
      dryRun: options.dryRun === true,
      principal: operatorPrincipal(),
    });
    if (options.json) {
      process.stdout.write(
        `${JSON.stringify({ dryRun: options.dryRun === true, migrations: planned }, null, 2)}\n`,
      );
      return;
    }
    process.stdout.write(describe(planned, options.dryRun === true));
  } finally {
    await core.close();
  }
}

function describe(planned: readonly PlannedMigration[], dryRun: boolean): string {
  if (planned.length === 0) return 'Every document is at the version the app declares; nothing to migrate.\n';
  const lines: string[] = [];
  for (const plan of planned) {
    lines.push(
      `${plan.doc}: version ${plan.from} → ${plan.to}${dryRun ? ' (dry run: nothing committed)' : ''}`,
    );
    for (const step of plan.steps) {
      lines.push(`  to version ${step.to}: ${step.patches.length} change(s)`);
      for (const op of step.patches.slice(0, 50))
        lines.push(
          `    ${op.op} ${op.path}${'value' in op ? ` = ${JSON.stringify(op.value).slice(0, 200)}` : ''}`,
        );
      if (step.patches.length > 50) lines.push(`    … ${step.patches.length - 50} more`);
    }
    if (dryRun && plan.to - plan.from > 1)
      lines.push(`  (later steps run on the result of this one: run without --dry-run to apply them)`);
  }
  return `${lines.join('\n')}\n`;
}
