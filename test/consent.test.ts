/**
 * Consent for destructive commands: the first call is a dry run that commits nothing and asks the
 * client to approve a summary and the RFC 6902 patches; an approval commits exactly those changes at
 * exactly that revision; a refusal changes nothing; both are audited with the hash of the diff shown.
 */
import type { Client } from '@modelcontextprotocol/client';
import { CONSENT_KEY, localPrincipal } from 'coremcp';
import { afterEach, describe, expect, it } from 'vitest';
import taskboard from '../examples/taskboard/app.js';
import askApp from './fixtures/ask-app.js';
import {
  type ClientSetup,
  type Era,
  errorCodeOf,
  httpClient,
  startInProcess,
  structured,
} from './helpers/servers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Shown {
  message: string;
  consent: { command: string; diffHash: string; changes: unknown };
}

/** A client that answers the consent question with `answer`, keeping what it was shown. */
function deciding(answer: 'approve' | 'refuse' | 'decline', shown: Shown[]): ClientSetup {
  return {
    capabilities: { elicitation: {} },
    setup: (client) => {
      client.setRequestHandler('elicitation/create', async (request) => {
        const params = request.params as { message: string; _meta?: Record<string, unknown> };
        shown.push({
          message: params.message,
          consent: params._meta?.['coremcp/consent'] as Shown['consent'],
        });
        if (answer === 'decline') return { action: 'decline' as const };
        return { action: 'accept' as const, content: { approve: answer === 'approve' } };
      });
    },
  };
}

async function server() {
  const s = await startInProcess({ app: askApp });
  cleanups.push(() => s.close());
  return s;
}

type Round = {
  resultType?: string;
  inputRequests?: Record<string, { params: { message: string; _meta: Record<string, Shown['consent']> } }>;
  requestState?: string;
  isError?: boolean;
};

function call(client: Client, params: Record<string, unknown>): Promise<Round> {
  return client.callTool(params as never, { allowInputRequired: true }) as Promise<Round>;
}

const APPROVE = { [CONSENT_KEY]: { action: 'accept', content: { approve: true } } };

describe.each<Era>(['modern', 'legacy'])('consent (%s)', (era) => {
  it('shows the diff, commits nothing until approved, then commits exactly it', async () => {
    const s = await server();
    const shown: Shown[] = [];
    const client = await httpClient(s.url, await s.key('ops', 'admin'), era, deciding('approve', shown));
    cleanups.push(() => client.close());
    const result = await client.callTool({ name: 'note.delete', arguments: { id: 'n1' } });
    expect(structured(result)).toEqual({ deleted: 'n1' });
    expect(shown).toHaveLength(1);
    expect(shown[0]!.message).toContain('Delete note n1?');
    expect(shown[0]!.message).toContain('notes @ revision 0:');
    expect(shown[0]!.message).toContain('remove /notes/n1');
    expect(shown[0]!.consent).toMatchObject({
      command: 'note.delete',
      changes: [{ doc: 'notes', revision: 0, patches: [{ op: 'remove', path: '/notes/n1' }] }],
    });
    const { value, revision } = await s.core.state.get('notes');
    expect(revision).toBe(1);
    expect(value).toEqual({ notes: { n2: 'and me' } });
    const audit = await s.core.store.readAudit({ command: 'note.delete' });
    const diffHash = shown[0]!.consent.diffHash;
    expect(audit.map((r) => [r.principal, r.outcome, r.consent])).toEqual([
      ['ops', 'input_required', { decision: 'requested', diffHash }],
      ['ops', 'ok', { decision: 'accepted', diffHash }],
    ]);
  });

  it.each(['refuse', 'decline'] as const)(
    'changes nothing when the answer is %s, and audits the refusal',
    async (answer) => {
      const s = await server();
      const shown: Shown[] = [];
      const client = await httpClient(s.url, await s.key('ops', 'admin'), era, deciding(answer, shown));
      cleanups.push(() => client.close());
      const result = await client.callTool({ name: 'note.delete', arguments: { id: 'n1' } });
      expect(errorCodeOf(result)).toBe('consent_declined');
      expect((await s.core.state.get('notes')).revision).toBe(0);
      const audit = await s.core.store.readAudit({ command: 'note.delete' });
      expect(audit.map((r) => [r.outcome, r.consent?.decision, r.consent?.diffHash])).toEqual([
        ['input_required', 'requested', shown[0]!.consent.diffHash],
        ['consent_declined', 'declined', shown[0]!.consent.diffHash],
      ]);
    },
  );
});

describe('consent, step by step (2026-07-28)', () => {
  async function manual() {
    const s = await server();
    const client = await httpClient(s.url, await s.key('ops', 'admin'), 'modern', {
      capabilities: { elicitation: {} },
      autoFulfill: false,
    });
    cleanups.push(() => client.close());
    return { s, client };
  }

  it('asks again with a fresh diff when the document moved since the one shown', async () => {
    const { s, client } = await manual();
    const args = { name: 'note.delete', arguments: { id: 'n1' } };
    const first = await call(client, args);
    const firstConsent = first.inputRequests?.[CONSENT_KEY]?.params._meta['coremcp/consent'];
    expect(first.resultType).toBe('input_required');
    await s.core.execute(
      'note.write',
      { id: 'n1', text: 'edited meanwhile' },
      { principal: localPrincipal('bob') },
    );

    const second = await call(client, { ...args, requestState: first.requestState, inputResponses: APPROVE });
    expect(second.resultType).toBe('input_required');
    const fresh = second.inputRequests?.[CONSENT_KEY]?.params._meta['coremcp/consent'];
    expect(fresh?.diffHash).not.toBe(firstConsent?.diffHash);
    expect(fresh?.changes).toEqual([
      { doc: 'notes', revision: 1, patches: [{ op: 'remove', path: '/notes/n1' }] },
    ]);
    expect((await s.core.state.get('notes')).value).toEqual({
      notes: { n1: 'edited meanwhile', n2: 'and me' },
    });

    const done = await call(client, { ...args, requestState: second.requestState, inputResponses: APPROVE });
    expect(structured(done)).toEqual({ deleted: 'n1' });
    expect((await s.core.state.get('notes')).revision).toBe(2);
  });

  it('refuses a replay of an approved state and commits nothing more', async () => {
    const { s, client } = await manual();
    const args = { name: 'note.delete', arguments: { id: 'n1' } };
    const first = await call(client, args);
    const retry = { ...args, requestState: first.requestState, inputResponses: APPROVE };
    expect(structured(await call(client, retry))).toEqual({ deleted: 'n1' });
    await s.core.execute(
      'note.write',
      { id: 'n1', text: 'back again' },
      { principal: localPrincipal('bob') },
    );
    const replay = await call(client, retry).catch(
      (e: unknown) => e as { code: number; data: { code: string } },
    );
    expect(replay).toMatchObject({ code: -32602, data: { code: 'request_state_replayed' } });
    expect((await s.core.state.get('notes')).value).toEqual({ notes: { n1: 'back again', n2: 'and me' } });
  });

  it('takes no approval given without the state that showed the diff', async () => {
    const { s, client } = await manual();
    const unasked = await call(client, {
      name: 'note.delete',
      arguments: { id: 'n1' },
      inputResponses: APPROVE,
    });
    expect(unasked.resultType).toBe('input_required');
    expect(Object.keys(unasked.inputRequests ?? {})).toEqual([CONSENT_KEY]);
    expect((await s.core.state.get('notes')).revision).toBe(0);
  });

  it('needs no consent when the call would change nothing, and refuses as the handler does', async () => {
    const { s, client } = await manual();
    const missing = await call(client, { name: 'note.delete', arguments: { id: 'n9' } });
    expect(errorCodeOf(missing)).toBe('note_not_found');
    expect((await s.core.store.readAudit({ command: 'note.delete' })).map((r) => r.outcome)).toEqual([
      'note_not_found',
    ]);
  });
});

describe('the task board and the history tools ask for consent', () => {
  it.each<Era>(['modern', 'legacy'])(
    'removes a board task once approved, showing its title (%s)',
    async (era) => {
      const s = await startInProcess({ app: taskboard });
      cleanups.push(() => s.close());
      const shown: Shown[] = [];
      const client = await httpClient(s.url, await s.key('ops', 'admin'), era, deciding('approve', shown));
      cleanups.push(() => client.close());
      await client.callTool({ name: 'task.add', arguments: { title: 'Old idea' } });
      const removed = await client.callTool({ name: 'task.remove', arguments: { id: 'T-1' } });
      expect(structured(removed).removed).toMatchObject({ id: 'T-1', title: 'Old idea' });
      expect(shown[0]!.message).toContain('Remove task T-1 "Old idea" (open) from the board?');
      expect(shown[0]!.message).toContain('remove /tasks/T-1');
      const list = await client.callTool({ name: 'task.list', arguments: {} });
      expect(structured(list).tasks).toEqual([]);
    },
  );

  it('rolls back only after the admin approves the reverted commits', async () => {
    const s = await startInProcess({ app: taskboard });
    cleanups.push(() => s.close());
    const shown: Shown[] = [];
    const client = await httpClient(s.url, await s.key('ops', 'admin'), 'modern', deciding('refuse', shown));
    cleanups.push(() => client.close());
    await client.callTool({ name: 'task.add', arguments: { title: 'one' } });
    await client.callTool({ name: 'task.add', arguments: { title: 'two' } });
    const refused = await client.callTool({
      name: 'state.rollback',
      arguments: { doc: 'board', toRevision: 0 },
    });
    expect(errorCodeOf(refused)).toBe('consent_declined');
    expect(shown[0]!.message).toContain('Roll "board" back from revision 2 to 0, reverting 2 commits?');
    expect((await s.core.state.get('board')).revision).toBe(2);
  });
});

describe('consent without a client', () => {
  it('is refused in process, where there is nobody to ask', async () => {
    const s = await server();
    const result = await s.core.execute('note.delete', { id: 'n1' }, { principal: localPrincipal('ops') });
    expect(result.status === 'error' && result.error.code).toBe('input_unavailable');
    expect((await s.core.state.get('notes')).revision).toBe(0);
  });
});
