/**
 * The task board `npm start` serves: several agents share one board, add tasks, claim them, and
 * complete them. Claiming a task someone else holds is a typed refusal, never a lost update. Tasks
 * are a collection: a call costs the same with a million tasks on the board as with a hundred.
 */
import { CommandError, collection, defineApp, defineCommand, defineDocument } from 'coremcp';
import { z } from 'zod';

export type TaskStatus = 'open' | 'claimed' | 'done';

export interface Task {
  id: string;
  title: string;
  description: string;
  status: TaskStatus;
  assignee: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  note: string | null;
}

export interface ArchivedTask extends Task {
  archivedAt: string;
  archivedBy: string;
}

export const board = defineDocument('board', {
  nextId: 1,
  settings: { wipLimit: 5 },
  tasks: collection<Task>({
    indexes: {
      // "Open tasks, oldest first", "how many are done".
      byStatus: ['status', 'createdAt'],
      // "What does this principal hold": the WIP limit counts here instead of scanning the board.
      byAssignee: ['assignee', 'status', 'createdAt'],
      byCreation: ['createdAt'],
    },
  }),
});

/** Done tasks moved off the board, so the board stays what agents work on. */
export const archive = defineDocument('archive', {
  tasks: collection<ArchivedTask>({ indexes: { byArchived: ['archivedAt'] } }),
});

/** The board's shape, as its JSON value reads: `tasks` maps ids to tasks. */
export interface Board {
  tasks: Record<string, Task>;
  nextId: number;
  settings: { wipLimit: number };
}

const taskId = z
  .string()
  .regex(/^T-\d{1,9}$/, 'a task id looks like T-1')
  .describe('Task id, e.g. T-1');

const page = {
  cursor: z.string().max(4096).optional().describe('From the previous page, to read the next one'),
  limit: z.number().int().min(1).max(1000).optional().describe('Tasks per page (default 100)'),
};

function notFound(id: string): CommandError {
  return new CommandError('task_not_found', `No task ${id}`, { details: { id } });
}

const add = defineCommand({
  name: 'task.add',
  title: 'Add a task',
  description: 'Add a task to the board. Returns the new task with its id.',
  doc: board,
  input: z.object({
    title: z.string().trim().min(1).max(200).describe('Short title'),
    description: z.string().max(4000).optional().describe('Details, acceptance criteria'),
  }),
  handler: async ({ input, draft, principal, now, sequence }) => {
    // Ids come from a counter no rollback rewinds: a task id is never handed out twice. The board
    // keeps `nextId` too, for readers (and as the floor for boards made before the counter).
    const number = await sequence('taskboard.tasks', { atLeast: draft.nextId });
    const id = `T-${number}`;
    draft.nextId = number + 1;
    const at = now.toISOString();
    const task: Task = {
      id,
      title: input.title,
      description: input.description ?? '',
      status: 'open',
      assignee: null,
      createdBy: principal.id,
      createdAt: at,
      updatedAt: at,
      note: null,
    };
    draft.tasks.set(id, task);
    return { task };
  },
});

const list = defineCommand({
  name: 'task.list',
  title: 'List tasks',
  description:
    'List tasks on the board, oldest first, optionally only those with a status or an assignee. ' +
    'Returns a page of tasks and, when there are more, a cursor for the next page.',
  doc: board,
  readOnly: true,
  input: z.object({
    status: z.enum(['open', 'claimed', 'done']).optional(),
    assignee: z.string().max(128).optional().describe('Principal id of the assignee'),
    ...page,
  }),
  handler: async ({ input, state }) => {
    const { status, assignee, cursor, limit } = input;
    const found =
      assignee !== undefined
        ? await state.tasks.query('byAssignee', {
            prefix: status === undefined ? [assignee] : [assignee, status],
            cursor,
            limit,
          })
        : status !== undefined
          ? await state.tasks.query('byStatus', { prefix: [status], cursor, limit })
          : await state.tasks.query('byCreation', { cursor, limit });
    const tasks = found.entries.map((entry) => entry.value);
    return found.cursor === undefined ? { tasks } : { tasks, cursor: found.cursor };
  },
});

const claim = defineCommand({
  name: 'task.claim',
  title: 'Claim a task',
  description:
    'Claim an open task so you can work on it. Fails with task_already_claimed (naming the holder) if another principal holds it.',
  doc: board,
  idempotent: true,
  input: z.object({ id: taskId }),
  handler: async ({ input, draft, state, principal, now }) => {
    const task = await draft.tasks.get(input.id);
    if (!task) throw notFound(input.id);
    if (task.status === 'done')
      throw new CommandError('task_already_done', `Task ${task.id} is already done`, {
        details: { id: task.id },
      });
    if (task.assignee === principal.id) return { task };
    if (task.assignee !== null) {
      throw new CommandError('task_already_claimed', `Task ${task.id} is claimed by ${task.assignee}`, {
        details: { id: task.id, holder: task.assignee },
      });
    }
    // An index count: the same cost on a board of a million tasks as on one of ten.
    const held = await state.tasks.count('byAssignee', [principal.id, 'claimed']);
    if (held >= state.settings.wipLimit) {
      throw new CommandError(
        'wip_limit_reached',
        `You already hold ${held} tasks; the limit is ${state.settings.wipLimit}`,
        { details: { held, limit: state.settings.wipLimit } },
      );
    }
    task.status = 'claimed';
    task.assignee = principal.id;
    task.updatedAt = now.toISOString();
    return { task };
  },
});

const release = defineCommand({
  name: 'task.release',
  title: 'Release a task',
  description: 'Give back a task you claimed, so someone else can take it.',
  doc: board,
  input: z.object({ id: taskId }),
  handler: async ({ input, draft, principal, now }) => {
    const task = await draft.tasks.get(input.id);
    if (!task) throw notFound(input.id);
    if (task.assignee !== principal.id || task.status !== 'claimed') {
      throw new CommandError('not_assignee', `You do not hold task ${task.id}`, {
        details: { id: task.id, holder: task.assignee },
      });
    }
    task.status = 'open';
    task.assignee = null;
    task.updatedAt = now.toISOString();
    return { task };
  },
});

const complete = defineCommand({
  name: 'task.complete',
  title: 'Complete a task',
  description: 'Mark a task you hold as done, with an optional note on what was done.',
  doc: board,
  input: z.object({ id: taskId, note: z.string().max(4000).optional() }),
  handler: async ({ input, draft, principal, now }) => {
    const task = await draft.tasks.get(input.id);
    if (!task) throw notFound(input.id);
    if (task.status === 'done')
      throw new CommandError('task_already_done', `Task ${task.id} is already done`, {
        details: { id: task.id },
      });
    if (task.assignee !== principal.id) {
      throw new CommandError('not_assignee', `Only the assignee can complete task ${task.id}`, {
        details: { id: task.id, holder: task.assignee },
      });
    }
    task.status = 'done';
    task.note = input.note ?? null;
    task.updatedAt = now.toISOString();
    return { task };
  },
});

const remove = defineCommand({
  name: 'task.remove',
  title: 'Remove a task',
  description:
    'Remove a task from the board for good. Asks for consent first, showing exactly what would change; ' +
    'a task another principal holds cannot be removed (task_already_claimed).',
  doc: board,
  destructive: true,
  input: z.object({ id: taskId }),
  handler: async ({ input, draft, principal }) => {
    const task = await draft.tasks.get(input.id);
    if (!task) throw notFound(input.id);
    if (task.assignee !== null && task.assignee !== principal.id) {
      throw new CommandError('task_already_claimed', `Task ${task.id} is claimed by ${task.assignee}`, {
        details: { id: task.id, holder: task.assignee },
      });
    }
    const removed = { ...task };
    draft.tasks.delete(input.id);
    return { removed };
  },
  // Declared after the handler, so the preview's result has the handler's type.
  confirm: ({ input, result }) =>
    `Remove task ${input.id} "${result.removed.title}" (${result.removed.status}) from the board?`,
});

const archiveDone = defineCommand({
  name: 'board.archive',
  title: 'Archive done tasks',
  description:
    'Move done tasks (oldest first, up to `limit`) off the board into the archive, in one atomic change of both. ' +
    'Returns how many moved and how many done tasks remain on the board.',
  doc: board,
  also: [archive],
  input: z.object({
    limit: z.number().int().min(1).max(1000).optional().describe('Most tasks to move (default 100)'),
  }),
  handler: async ({ input, draft, draftOf, principal, now }) => {
    const done = await draft.tasks.query('byStatus', { prefix: ['done'], limit: input.limit ?? 100 });
    const shelf = draftOf(archive);
    const at = now.toISOString();
    for (const { key, value } of done.entries) {
      shelf.tasks.set(key, { ...value, archivedAt: at, archivedBy: principal.id });
      draft.tasks.delete(key);
    }
    return { archived: done.entries.length, remaining: await draft.tasks.count('byStatus', ['done']) };
  },
});

/** A field for a CSV line: quoted when it has a comma, a quote or a line break. */
function csvField(value: string | null): string {
  const text = value ?? '';
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

const exportBoard = defineCommand({
  name: 'board.export',
  title: 'Export the board',
  description:
    'Export tasks as CSV (id, title, status, assignee, createdAt), oldest first, optionally only those with a status. ' +
    'Long-running: for clients with the MCP tasks extension it runs as a task (poll tasks/get; progress in statusMessage); ' +
    'otherwise it answers when done.',
  doc: board,
  readOnly: true,
  task: 'optional',
  timeoutMs: 300_000,
  input: z.object({
    status: z.enum(['open', 'claimed', 'done']).optional(),
    limit: z.number().int().min(1).max(100_000).optional().describe('Most tasks to export (default 10,000)'),
  }),
  handler: async ({ input, state, client, signal, runAsTask }) => {
    await runAsTask('Exporting the board');
    const limit = input.limit ?? 10_000;
    const prefix = input.status === undefined ? undefined : [input.status];
    const total = Math.min(
      limit,
      prefix ? await state.tasks.count('byStatus', prefix) : await state.tasks.count(),
    );
    const lines = ['id,title,status,assignee,createdAt'];
    let cursor: string | undefined;
    do {
      signal.throwIfAborted();
      const page = prefix
        ? await state.tasks.query('byStatus', {
            prefix,
            cursor,
            limit: Math.min(500, limit - lines.length + 1),
          })
        : await state.tasks.query('byCreation', { cursor, limit: Math.min(500, limit - lines.length + 1) });
      for (const { value } of page.entries) {
        lines.push(
          [value.id, value.title, value.status, value.assignee, value.createdAt].map(csvField).join(','),
        );
      }
      cursor = page.cursor;
      await client?.progress(lines.length - 1, total, `Exported ${lines.length - 1} of ${total} tasks`);
    } while (cursor !== undefined && lines.length - 1 < limit);
    return { exported: lines.length - 1, csv: lines.join('\n') };
  },
  content: (result) => [{ type: 'text', text: result.csv }],
});

const settings = defineCommand({
  name: 'board.settings',
  title: 'Change board settings',
  description: 'Change how the board works, e.g. how many tasks one principal may hold at once.',
  doc: board,
  input: z.object({ wipLimit: z.number().int().min(1).max(100) }),
  handler: ({ input, draft }) => {
    draft.settings.wipLimit = input.wipLimit;
    return { settings: draft.settings };
  },
});

export default defineApp({
  name: 'coremcp-taskboard',
  version: '0.1.0',
  title: 'Task board',
  instructions:
    'A task board shared by several agents. List tasks, claim one before working on it, complete it when done. ' +
    'A task someone else holds cannot be claimed; pick another.',
  documents: [board, archive],
  commands: [add, list, claim, release, complete, remove, archiveDone, exportBoard, settings],
  roles: {
    // Members run the board but may not change its settings, even through a command they may call.
    member: {
      commands: ['task.*', 'board.*'],
      queries: true,
      documents: { '*': ['read', 'follow', 'write'] },
      paths: { board: { deny: ['/settings/**'] } },
    },
  },
});
