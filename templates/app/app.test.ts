/**
 * The app in process: a core over an in-memory store, with the roles of coremcp.config.json, each
 * call run through the same pipeline as a call over MCP (validation, access rules, audit).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { type CommandResult, type Core, createCore, localPrincipal } from 'coremcp';
import app from './app.js';

const { roles } = JSON.parse(readFileSync(new URL('./coremcp.config.json', import.meta.url), 'utf8'));
const agent = localPrincipal('agent-1', ['agent']);
const admin = localPrincipal('operator', ['admin']);
let core: Core;

before(async () => {
  core = await createCore({ app, roles });
});
after(() => core.close());

function resultOf(outcome: CommandResult): Record<string, unknown> {
  assert.equal(outcome.status, 'success', JSON.stringify(outcome.status === 'error' && outcome.publicError));
  return outcome.status === 'success' ? (outcome.result as Record<string, unknown>) : {};
}

test('an agent opens, lists and closes a ticket', async () => {
  const { ticket } = resultOf(
    await core.execute('ticket.open', { title: 'Printer on fire' }, { principal: agent }),
  );
  assert.deepEqual((ticket as { id: string; openedBy: string }).openedBy, 'agent-1');
  const id = (ticket as { id: string }).id;
  const open = resultOf(await core.execute('ticket.list', { status: 'open' }, { principal: agent }));
  assert.deepEqual(
    (open.tickets as { id: string }[]).map((t) => t.id),
    [id],
  );
  resultOf(await core.execute('ticket.close', { id, resolution: 'Put it out' }, { principal: agent }));
  const again = await core.execute('ticket.close', { id, resolution: 'Twice' }, { principal: agent });
  assert.equal(again.status === 'error' && again.error.code, 'ticket_closed');
});

test('refuses bad input with the path that is wrong', async () => {
  const outcome = await core.execute('ticket.open', { title: '' }, { principal: agent });
  assert.equal(outcome.status === 'error' && outcome.error.code, 'invalid_input');
});

test('an agent reads the desk but may not change it; an admin may', async () => {
  assert.deepEqual(resultOf(await core.execute('desk.status', {}, { principal: agent })).open, true);
  const refused = await core.execute('desk.set', { open: false }, { principal: agent });
  assert.equal(refused.status === 'error' && refused.error.code, 'forbidden');
  assert.equal(resultOf(await core.execute('desk.set', { open: false }, { principal: admin })).open, false);
  const { value, revision } = await core.state.get('desk');
  assert.deepEqual([value, revision], [{ open: false, greeting: 'How can we help?' }, 1]);
});
