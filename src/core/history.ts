import { apply } from 'mutative';
import { z } from 'zod';
import { type CommandDefinition, DOCUMENT_ID_PATTERN, defineCommand } from './commands.js';
import { StateError } from './errors.js';
import { escapePointerToken, type JsonValue, parsePointer } from './json.js';
import { type JsonPatch, pathsOverlap, touchedPaths } from './patch.js';
import type { DocumentState, Mutation, StateManager } from './state.js';
import type { CommitRecord } from './store.js';

// mutative's typing of apply() recurses without end through JsonValue; the call is data in, data out.
const applyToDraft = apply as unknown as (
  draft: unknown,
  patch: JsonPatch,
  options: { mutable: true },
) => void;

export interface RollbackResult {
  doc: string;
  /** The revision the document was at before the rollback. */
  from: number;
  /** The revision whose value the document now holds. */
  to: number;
  /** How many commits were reverted. */
  reverted: number;
}

export interface UndoResult {
  doc: string;
  /** The command whose change was undone. */
  undone: string;
  /** The revision that command had created. */
  revision: number;
}

/** A later commit that stands in the way of an undo. */
export interface UndoConflict {
  revision: number;
  commandId: string;
  command: string;
  paths: string[];
}

/**
 * The mutation that brings a document back to the value it had at `toRevision`: the inverse patches
 * of every later commit, newest first, applied to the draft. The commit it produces records only
 * what actually changes.
 */
export function rollbackMutation(
  state: StateManager,
  doc: string,
  toRevision: number,
): Mutation<RollbackResult> {
  return async (draft, base) => {
    if (!Number.isSafeInteger(toRevision) || toRevision < 0) {
      throw new StateError(
        'invalid_revision',
        'The revision to roll back to must be a non-negative integer',
        { details: { toRevision } },
      );
    }
    if (toRevision > base.revision) {
      throw new StateError(
        'invalid_revision',
        `Revision ${toRevision} is later than the head (${base.revision})`,
        {
          details: { toRevision, head: base.revision },
        },
      );
    }
    if (toRevision === base.revision) return { doc, from: base.revision, to: toRevision, reverted: 0 };
    const commits = await state.store.readCommits(doc, { after: toRevision, to: base.revision });
    if (commits.length !== base.revision - toRevision || commits[0]?.revision !== toRevision + 1) {
      const oldestRevision = commits[0] ? commits[0].revision - 1 : base.revision;
      throw new StateError(
        'revision_compacted',
        `History before revision ${oldestRevision} of "${doc}" was compacted`,
        {
          details: { toRevision, oldestRevision },
        },
      );
    }
    const inverse: JsonPatch = [];
    for (let i = commits.length - 1; i >= 0; i--) for (const op of commits[i]!.inverse) inverse.push(op);
    applyToDraft(draft, inverse, { mutable: true });
    return { doc, from: base.revision, to: toRevision, reverted: commits.length };
  };
}

/**
 * The path a change really touches, for conflict checks: array elements shift when an earlier one is
 * added or removed, so a path into an array counts as touching the whole array.
 */
function stablePath(path: string, value: JsonValue): string {
  let node: JsonValue | undefined = value;
  let stable = '';
  for (const token of parsePointer(path)) {
    if (Array.isArray(node)) return stable;
    if (node === null || typeof node !== 'object') break;
    stable += `/${escapePointerToken(token)}`;
    node = node[token];
  }
  return path;
}

/** Later commits whose changes overlap what `target` changed. */
export function findUndoConflicts(
  target: CommitRecord,
  later: readonly CommitRecord[],
  head: JsonValue,
): UndoConflict[] {
  const mine = touchedPaths(target.patches).map((p) => stablePath(p, head));
  const conflicts: UndoConflict[] = [];
  for (const commit of later) {
    const paths = touchedPaths(commit.patches);
    if (paths.some((p) => mine.some((m) => pathsOverlap(stablePath(p, head), m)))) {
      conflicts.push({
        revision: commit.revision,
        commandId: commit.commandId,
        command: commit.command,
        paths: paths.slice(0, 10),
      });
    }
  }
  return conflicts;
}

/**
 * The mutation that undoes one commit by applying its inverse, refused with `undo_conflict` (naming
 * the later commits) when a later commit touched the same paths.
 */
export function undoMutation(state: StateManager, target: CommitRecord): Mutation<UndoResult> {
  return async (draft, base: DocumentState) => {
    const later = await state.store.readCommits(target.doc, { after: target.revision, to: base.revision });
    const conflicts = findUndoConflicts(target, later, base.value);
    if (conflicts.length > 0) {
      throw new StateError(
        'undo_conflict',
        `Cannot undo ${target.commandId}: ${conflicts.length} later commit(s) changed the same paths (first at revision ${conflicts[0]!.revision})`,
        {
          details: {
            commandId: target.commandId,
            revision: target.revision,
            conflicts: conflicts.slice(0, 20) as unknown as JsonValue[],
          },
        },
      );
    }
    applyToDraft(draft, target.inverse, { mutable: true });
    return { doc: target.doc, undone: target.commandId, revision: target.revision };
  };
}

/** Looks up the commit an undo names; `not_found` when it never existed or was compacted away. */
export async function findCommit(state: StateManager, commandId: string): Promise<CommitRecord> {
  const commit = await state.store.readCommit(commandId);
  if (!commit) {
    throw new StateError(
      'not_found',
      `No commit with command id "${commandId}" (it changed nothing, or was compacted)`,
      {
        details: { commandId },
      },
    );
  }
  return commit;
}

const COMMAND_ID = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, 'a command id is letters, digits, - and _');

/**
 * Rollback and undo as tools. Both write a new, audited commit; both need the `state.rollback` /
 * `state.undo` permission and the `rollback` action on the document (admins by default).
 */
export function historyCommands(state: StateManager): CommandDefinition[] {
  return [
    defineCommand({
      name: 'state.rollback',
      title: 'Roll back a document',
      description:
        'Return a document to the value it had at an earlier revision, as a new commit. History stays; the rollback itself can be undone.',
      permission: 'state.rollback',
      documentAction: 'rollback',
      destructive: true,
      input: z.object({
        doc: z.string().regex(DOCUMENT_ID_PATTERN, 'a document id').describe('Document id'),
        toRevision: z.number().int().min(0).describe('The revision whose value to restore'),
      }),
      doc: (input) => input.doc,
      handler: ({ input, draft, revision, state: value }) =>
        rollbackMutation(
          state,
          input.doc,
          input.toRevision,
        )(draft, { doc: input.doc, revision, value: value as JsonValue }),
    }),
    defineCommand({
      name: 'state.undo',
      title: 'Undo a command',
      description:
        "Undo one earlier command's change by applying its inverse, as a new commit. Refused with undo_conflict when later commits changed the same paths.",
      permission: 'state.undo',
      documentAction: 'rollback',
      destructive: true,
      input: z.object({
        commandId: COMMAND_ID.describe(
          'The command id of the commit to undo (from a result\'s _meta["coremcp/command-id"] or the history)',
        ),
      }),
      doc: async (input) => (await findCommit(state, input.commandId)).doc,
      handler: async ({ input, draft, revision, doc, state: value }) =>
        undoMutation(state, await findCommit(state, input.commandId))(draft, {
          doc,
          revision,
          value: value as JsonValue,
        }),
    }),
  ];
}
