import { z } from 'zod';
import { type CommandDefinition, defineCommand } from './commands.js';
import { DOCUMENT_ID_PATTERN } from './document.js';
import { StateError } from './errors.js';
import { escapePointerToken, type JsonValue, parsePointer } from './json.js';
import { type JsonPatch, pathsOverlap, touchedPaths } from './patch.js';
import type { CommitRecord, Store } from './store.js';

/** The history reads rollback and undo need: nothing else of the store. */
export type CommitReader = Pick<Store, 'readCommits' | 'readCommand'>;

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
  /** The revision that command had created (in `doc`). */
  revision: number;
  /** When the command had changed several documents: each, with the revision it made there. */
  documents?: Array<{ doc: string; revision: number }>;
}

/** A later commit that stands in the way of an undo. */
export interface UndoConflict {
  doc: string;
  revision: number;
  commandId: string;
  command: string;
  paths: string[];
}

/** What a history operation changes a document through: its base revision and value, and patching. */
export interface PatchTarget {
  base(doc: string): { revision: number; value: unknown };
  apply(doc: string, patches: JsonPatch): Promise<void>;
}

/**
 * Brings a document back to the value it had at `toRevision`: the inverse patches of every later
 * commit, newest first, applied to its draft. The commit this produces records only what changes.
 */
export async function revertTo(
  commits: CommitReader,
  doc: string,
  toRevision: number,
  head: number,
  apply: (patches: JsonPatch) => Promise<void>,
): Promise<RollbackResult> {
  if (!Number.isSafeInteger(toRevision) || toRevision < 0) {
    throw new StateError('invalid_revision', 'The revision to roll back to must be a non-negative integer', {
      details: { toRevision },
    });
  }
  if (toRevision > head) {
    throw new StateError('invalid_revision', `Revision ${toRevision} is later than the head (${head})`, {
      details: { toRevision, head },
    });
  }
  if (toRevision === head) return { doc, from: head, to: toRevision, reverted: 0 };
  const later = await commits.readCommits(doc, { after: toRevision, to: head });
  if (later.length !== head - toRevision || later[0]?.revision !== toRevision + 1) {
    const oldestRevision = later[0] ? later[0].revision - 1 : head;
    throw new StateError(
      'revision_compacted',
      `History before revision ${oldestRevision} of "${doc}" was compacted`,
      {
        details: { toRevision, oldestRevision },
      },
    );
  }
  const inverse: JsonPatch = [];
  for (let i = later.length - 1; i >= 0; i--) for (const op of later[i]!.inverse) inverse.push(op);
  await apply(inverse);
  return { doc, from: head, to: toRevision, reverted: later.length };
}

/**
 * The path a change really touches, for conflict checks: array elements shift when an earlier one is
 * added or removed, so a path into an array counts as touching the whole array.
 */
function stablePath(path: string, value: unknown): string {
  let node = value as JsonValue | undefined;
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
  head: unknown,
): UndoConflict[] {
  const mine = touchedPaths(target.patches).map((p) => stablePath(p, head));
  const conflicts: UndoConflict[] = [];
  for (const commit of later) {
    const paths = touchedPaths(commit.patches);
    if (paths.some((p) => mine.some((m) => pathsOverlap(stablePath(p, head), m)))) {
      conflicts.push({
        doc: commit.doc,
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
 * Undoes a command by applying the inverse of each commit it made, in every document it changed;
 * refused with `undo_conflict` (naming the later commits) when a later commit touched the same paths.
 */
export async function undoCommand(
  commits: CommitReader,
  targets: readonly CommitRecord[],
  session: PatchTarget,
): Promise<UndoResult> {
  const conflicts: UndoConflict[] = [];
  for (const target of targets) {
    const base = session.base(target.doc);
    const later = await commits.readCommits(target.doc, { after: target.revision, to: base.revision });
    conflicts.push(...findUndoConflicts(target, later, base.value));
  }
  const first = targets[0]!;
  if (conflicts.length > 0) {
    throw new StateError(
      'undo_conflict',
      `Cannot undo ${first.commandId}: ${conflicts.length} later commit(s) changed the same paths (first at revision ${conflicts[0]!.revision} of "${conflicts[0]!.doc}")`,
      {
        details: {
          commandId: first.commandId,
          revision: first.revision,
          conflicts: conflicts.slice(0, 20) as unknown as JsonValue[],
        },
      },
    );
  }
  for (const target of targets) await session.apply(target.doc, target.inverse);
  const result: UndoResult = { doc: first.doc, undone: first.commandId, revision: first.revision };
  if (targets.length > 1) result.documents = targets.map((t) => ({ doc: t.doc, revision: t.revision }));
  return result;
}

/** The commits a command made; `not_found` when it changed nothing, never existed or was compacted away. */
export async function findCommand(commits: CommitReader, commandId: string): Promise<CommitRecord[]> {
  const found = await commits.readCommand(commandId);
  if (found.length === 0) {
    throw new StateError(
      'not_found',
      `No commit with command id "${commandId}" (it changed nothing, or was compacted)`,
      {
        details: { commandId },
      },
    );
  }
  return found;
}

const COMMAND_ID = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, 'a command id is letters, digits, - and _');

/**
 * Rollback and undo as tools. Both write a new, audited commit; both need the `state.rollback` /
 * `state.undo` permission and the `rollback` action on the documents (admins by default).
 */
export function historyCommands(commits: CommitReader): CommandDefinition[] {
  return [
    defineCommand({
      name: 'state.rollback',
      title: 'Roll back a document',
      description:
        'Return a document to the value it had at an earlier revision, as a new commit. History stays; the rollback itself can be undone.',
      permission: 'state.rollback',
      documentAction: 'rollback',
      destructive: true,
      // An admin sees what a rollback undoes before it happens.
      confirm: ({ result }) => {
        const { doc, from, to, reverted } = result as RollbackResult;
        return `Roll "${doc}" back from revision ${from} to ${to}, reverting ${reverted} commit${reverted === 1 ? '' : 's'}?`;
      },
      input: z.object({
        doc: z.string().regex(DOCUMENT_ID_PATTERN, 'a document id').describe('Document id'),
        toRevision: z.number().int().min(0).describe('The revision whose value to restore'),
      }),
      doc: (input) => input.doc,
      handler: ({ input, revision, applyPatches }) =>
        revertTo(commits, input.doc, input.toRevision, revision, (patches) => applyPatches(patches)),
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
      doc: async (input) => (await findCommand(commits, input.commandId))[0]!.doc,
      also: async (input) => (await findCommand(commits, input.commandId)).slice(1).map((c) => c.doc),
      handler: async (ctx) =>
        undoCommand(commits, await findCommand(commits, ctx.input.commandId), {
          base: (doc) => ({ revision: ctx.revisionOf(doc), value: ctx.stateOf(doc) }),
          apply: (doc, patches) => ctx.applyPatches(patches, doc),
        }),
    }),
  ];
}
