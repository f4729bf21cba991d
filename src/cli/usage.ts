/** A mistake in how the CLI was called: reported in one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A check that ran and failed (e.g. a broken audit chain): reported in one line, exit code 1. */
export class CheckFailed extends Error {
  override readonly name = 'CheckFailed';
}
