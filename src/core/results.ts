import { StateError } from './errors.js';
import { findJsonProblem, type JsonLimits } from './json.js';

/**
 * The one check that what a handler returned is plain JSON (within `limits`): results are audited,
 * stored for idempotent repeats and sent to clients, so nothing else may pass.
 */
export function checkResultIsJson(result: unknown, limits: Partial<JsonLimits> = {}): void {
  const problem = findJsonProblem(result, limits);
  if (problem) {
    throw new StateError(
      'state_invalid',
      `The command returned a result that is not plain JSON at "${problem.path}": ${problem.problem}`,
      { details: { path: `result${problem.path}`, problem: problem.problem } },
    );
  }
}
