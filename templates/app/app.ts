/**
 * A help desk that agents share: they open tickets, list them and close them; an admin opens and
 * closes the desk itself. Every call is an authenticated, validated, audited command on versioned
 * JSON documents. Serve it with `npm start`, test it with `npm test`.
 */
import { CommandError, collection, defineApp, defineCommand, defineDocument } from 'coremcp';
import { z } from 'zod';

export interface Ticket {
  id: string;
  title: string;
  status: 'open' | 'closed';
  openedBy: string;
  openedAt: string;
  resolution: string | null;
}

/** The tickets, a collection: stored entry by entry, listed by index, never scanned whole. */
export const tickets = defineDocument('tickets', {
  tickets: collection<Ticket>({ indexes: { byStatus: ['status', 'openedAt'] } }),
});

/** The desk itself: whether it takes new tickets. Agents read it; only admins change it. */
export const desk = defineDocument('desk', { open: true, greeting: 'How can we help?' });

const ticketId = z.string().regex(/^TK-\d{1,9}$/, 'a ticket id looks like TK-1');

const open = defineCommand({
  name: 'ticket.open',
  description: 'Open a ticket. Returns it with its id (TK-1, TK-2, ...).',
  doc: tickets,
  input: z.object({ title: z.string().trim().min(1).max(200).describe('What the ticket is about') }),
  handler: async ({ input, draft, principal, now, sequence }) => {
    // A counter outside the document: ids are never handed out twice, not even after a rollback.
    const id = `TK-${await sequence('tickets')}`;
    const ticket: Ticket = {
      id,
      title: input.title,
      status: 'open',
      openedBy: principal.id,
      openedAt: now.toISOString(),
      resolution: null,
    };
    draft.tickets.set(id, ticket);
    return { ticket };
  },
});

const list = defineCommand({
  name: 'ticket.list',
  description: 'List tickets, oldest first, optionally only open or closed ones.',
  doc: tickets,
  readOnly: true,
  input: z.object({ status: z.enum(['open', 'closed']).optional() }),
  handler: async ({ input, state }) => {
    const page =
      input.status === undefined
        ? await state.tickets.query('byStatus', { limit: 100 })
        : await state.tickets.query('byStatus', { prefix: [input.status], limit: 100 });
    return { tickets: page.entries.map((entry) => entry.value) };
  },
});

const close = defineCommand({
  name: 'ticket.close',
  description: 'Close an open ticket with a resolution. Fails with ticket_closed if it is closed already.',
  doc: tickets,
  input: z.object({ id: ticketId, resolution: z.string().trim().min(1).max(2000) }),
  handler: async ({ input, draft }) => {
    const ticket = await draft.tickets.get(input.id);
    if (!ticket)
      throw new CommandError('ticket_not_found', `No ticket ${input.id}`, { details: { id: input.id } });
    if (ticket.status === 'closed')
      throw new CommandError('ticket_closed', `Ticket ${input.id} is closed already`, {
        details: { id: input.id },
      });
    ticket.status = 'closed';
    ticket.resolution = input.resolution;
    return { ticket };
  },
});

const status = defineCommand({
  name: 'desk.status',
  description: 'Whether the desk is open, and its greeting.',
  doc: desk,
  readOnly: true,
  handler: ({ state }) => ({ open: state.open, greeting: state.greeting }),
});

const setDesk = defineCommand({
  name: 'desk.set',
  description: 'Open or close the desk, or change its greeting (admins).',
  doc: desk,
  input: z.object({ open: z.boolean().optional(), greeting: z.string().trim().min(1).max(200).optional() }),
  handler: ({ input, draft }) => {
    if (input.open !== undefined) draft.open = input.open;
    if (input.greeting !== undefined) draft.greeting = input.greeting;
    return { open: draft.open, greeting: draft.greeting };
  },
});

export default defineApp({
  name: 'desk',
  documents: [tickets, desk],
  commands: [open, list, close, status, setDesk],
});
