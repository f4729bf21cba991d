/**
 * The task board `npm start` serves: several agents share one board, add tasks, claim them, and
 * complete them. Claiming a task someone else holds is a typed refusal, never a lost update.
 */
import { CommandError, defineApp, defineCommand, defineDocument } from 'coremcp';
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

export interface Board {
  tasks: Record<string, Task>;
  nextId: number;
  settings: { wipLimit: number };
}

export const board = defineDocument<Board>('board', { tasks: {}, nextId: 1, settings: { wipLimit: 5 } });

const taskId = z
  .string()
  .regex(/^T-\d{1,9}$/, 'a task id looks like T-1')
  .describe('Task id, e.g. T-1');

function findTask(state: Board, id: string): Task {
  const task = state.tasks[id];
  if (!task) throw new CommandError('task_not_found', `No task ${id}`, { details: { id } });
  return task;
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
  handler: ({ input, draft, principal, now }) => {
    const id = `T-${draft.nextId}`;
    draft.nextId += 1;
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
    draft.tasks[id] = task;
    return { task };
  },
});

const list = defineCommand({
  name: 'task.list',
  title: 'List tasks',
  description: 'List tasks on the board, optionally only those with a status or an assignee.',
  doc: board,
  readOnly: true,
  input: z.object({
    status: z.enum(['open', 'claimed', 'done']).optional(),
    assignee: z.string().max(128).optional().describe('Principal id of the assignee'),
  }),
  handler: ({ input, state }) => {
    const tasks = Object.values(state.tasks).filter(
      (task) =>
        (input.status === undefined || task.status === input.status) &&
        (input.assignee === undefined || task.assignee === input.assignee),
    );
    tasks.sort((a, b) => Number(a.id.slice(2)) - Number(b.id.slice(2)));
    return { tasks };
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
  handler: ({ input, draft, state, principal, now }) => {
    const task = findTask(draft, input.id);
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
    // Read through `state`, write through `draft`: scanning the draft would draft every task.
    const held = Object.values(state.tasks).filter(
      (t) => t.assignee === principal.id && t.status === 'claimed',
    ).length;
    if (held >= state.settings.wipLimit) {
      throw new CommandError(
        'wip_limit_reached',
        `You already hold ${held} tasks; the limit is ${state.settings.wipLimit}`,
        {
          details: { held, limit: state.settings.wipLimit },
        },
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
  handler: ({ input, draft, principal, now }) => {
    const task = findTask(draft, input.id);
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
  handler: ({ input, draft, principal, now }) => {
    const task = findTask(draft, input.id);
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
  documents: [board],
  commands: [add, list, claim, release, complete, settings],
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
