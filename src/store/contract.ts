import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/helpers/wait.js';
import { verifyAuditRecords } from '../core/audit.js';
import { isCoreMcpError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type {
  AuditEntry,
  CommitRecord,
  CommitRequest,
  CredentialStore,
  IdempotencyRecord,
  Store,
  TaskRecord,
} from '../core/store.js';

export interface StoreUnderTest {
  store: Store & CredentialStore;
  /** Another handle on the same data (another process, another instance), when the store has one. */
  second?: () => Promise<Store & CredentialStore>;
  /**
   * Which optional members the store provides. Declared, not detected, so a store that loses one
   * fails the suite instead of skipping the tests for it.
   */
  provides: { watchExternalChanges: boolean; schemaStatus: boolean; commitBatch?: boolean };
  cleanup: () => Promise<void>;
}

const AT = '2026-01-01T00:00:00.000Z';

function entry(overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    at: AT,
    requestId: 'r1',
    principal: 'alice',
    via: 'api_key',
    command: 'task.add',
    input: { a: 1 },
    outcome: 'ok',
    ...overrides,
  };
}

/** A single-document commit request, with its commit at hand (`.commit`) for assertions. */
type SingleCommit = CommitRequest & { commit: CommitRecord };

function commitRequest(doc: string, revision: number, overrides: Partial<CommitRecord> = {}): SingleCommit {
  const commit: CommitRecord = {
    doc,
    revision,
    commandId: `cmd-${doc}-${revision}-${Math.random().toString(36).slice(2)}`,
    command: 'task.add',
    principal: 'alice',
    at: AT,
    patches: [{ op: 'add', path: `/k${revision}`, value: revision }],
    inverse: [{ op: 'remove', path: `/k${revision}` }],
    ...overrides,
  };
  return { changes: [{ commit, expectedRevision: revision - 1 }], audit: entry({ doc, revision }), commit };
}

async function readCommit(store: Store, commandId: string): Promise<CommitRecord | undefined> {
  return (await store.readCommand(commandId))[0];
}

function idem(key: string, revision: number): IdempotencyRecord {
  return {
    principal: 'alice',
    key,
    fingerprint: 'f'.repeat(64),
    command: 'task.add',
    doc: 'd',
    revision,
    commandId: `c${revision}`,
    outcome: 'ok',
    response: { ok: true },
    at: AT,
  };
}

/** The behaviour every Store must have. Run it against each implementation. */
export function describeStoreContract(name: string, make: () => Promise<StoreUnderTest>): void {
  describe(`Store contract: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: Store & CredentialStore;

    beforeEach(async () => {
      subject = await make();
      store = subject.store;
      await store.open();
    });

    afterEach(async () => {
      await store.close();
      await subject.cleanup();
    });

    it('opens idempotently and answers ping', async () => {
      await store.open();
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('creates a document at revision 0 holding its initial value, once', async () => {
      expect(await store.createDocument('d', { tasks: {} }, AT)).toBe(true);
      expect(await store.createDocument('d', { other: 1 }, AT)).toBe(false);
      const loaded = await store.loadDocument('d');
      expect(loaded).toMatchObject({
        doc: 'd',
        revision: 0,
        oldestRevision: 0,
        snapshot: { revision: 0, value: { tasks: {} } },
        commits: [],
      });
      expect(await store.listDocuments()).toEqual([
        { doc: 'd', revision: 0, oldestRevision: 0, createdAt: AT },
      ]);
    });

    it('knows nothing of documents never created', async () => {
      expect(await store.loadDocument('nope')).toBeUndefined();
      expect(await store.readCommits('nope', { after: 0 })).toEqual([]);
      expect(await store.readSnapshot('nope', 10)).toBeUndefined();
    });

    it('commits at the expected revision and reads the commit back exactly', async () => {
      await store.createDocument('d', {}, AT);
      const value: JsonValue = { 'a/b~c': ['ü', 1.5, null, { deep: [true] }], empty: '' };
      const request = commitRequest('d', 1, {
        patches: [{ op: 'add', path: '/x', value }],
        requestId: 'req-1',
        idempotencyKey: 'k',
      });
      const outcome = await store.commit(request);
      expect(outcome.status).toBe('committed');
      const commits = await store.readCommits('d', { after: 0 });
      expect(commits).toHaveLength(1);
      expect(commits[0]).toMatchObject({ ...request.commit });
      expect(commits[0]!.auditSeq).toBe(outcome.status === 'committed' ? outcome.audit.seq : -1);
      expect(await readCommit(store, request.commit.commandId)).toEqual(commits[0]);
      expect((await store.loadDocument('d'))?.revision).toBe(1);
    });

    it('refuses a commit whose expected revision is stale, writing nothing', async () => {
      await store.createDocument('d', {}, AT);
      await store.commit(commitRequest('d', 1));
      const auditBefore = await store.readAudit({});
      const stale = commitRequest('d', 1);
      expect(await store.commit(stale)).toEqual({ status: 'conflict', doc: 'd', currentRevision: 1 });
      expect(await store.readCommits('d', { after: 0 })).toHaveLength(1);
      expect(await store.readAudit({})).toEqual(auditBefore);
      expect(await readCommit(store, stale.commit.commandId)).toBeUndefined();
    });

    it('lets exactly one of several commits racing at the same revision win, across handles', async () => {
      // Started together through every handle there is; a store whose calls finish before their
      // promise is returned (SQLite) runs them one after another here, and test/store.race.test.ts
      // races it across processes.
      const other = subject.second ? await subject.second() : undefined;
      await other?.open();
      try {
        const handles = other ? [store, other] : [store];
        await store.createDocument('d', {}, AT);
        expect((await store.commit(commitRequest('d', 1))).status).toBe('committed');
        const requests = Array.from({ length: 6 }, (_, i) => {
          const request = commitRequest('d', 2, { principal: `p${i}` });
          request.audit = { ...request.audit, principal: `p${i}`, commandId: request.commit.commandId };
          return request;
        });
        const outcomes = await Promise.all(
          requests.map((request, i) => handles[i % handles.length]!.commit(request)),
        );
        const winners = outcomes.flatMap((o, i) => (o.status === 'committed' ? [i] : []));
        expect(winners).toHaveLength(1);
        const winner = requests[winners[0]!]!;
        outcomes.forEach((o, i) => {
          if (i !== winners[0]) expect(o).toEqual({ status: 'conflict', doc: 'd', currentRevision: 2 });
        });

        for (const handle of handles) {
          const loaded = await handle.loadDocument('d');
          expect(loaded?.revision).toBe(2);
          expect(loaded?.commits.map((c) => [c.revision, c.commandId])).toEqual([
            [1, expect.any(String)],
            [2, winner.commit.commandId],
          ]);
          for (const [i, request] of requests.entries()) {
            if (i !== winners[0]) expect(await readCommit(handle, request.commit.commandId)).toBeUndefined();
          }
        }
        const records = await store.readAudit({});
        // One record per commit; a single chain's seq has no gaps (verify checks it), while a store
        // with a chain per document may skip sequence values a losing racer drew.
        expect(records).toHaveLength(2);
        expect(verifyAuditRecords(records)).toMatchObject({ ok: true, checked: 2 });
        expect(records[1]).toEqual((outcomes[winners[0]!] as { audit: unknown }).audit);
        expect(records[1]).toMatchObject({
          principal: winner.audit.principal,
          commandId: winner.commit.commandId,
        });
        expect((await readCommit(store, winner.commit.commandId))?.auditSeq).toBe(records[1]!.seq);

        // A retry at the new head commits, through the other handle, and the chain goes on.
        const retry = commitRequest('d', 3);
        expect((await handles.at(-1)!.commit(retry)).status).toBe('committed');
        expect(verifyAuditRecords(await store.readAudit({}))).toMatchObject({ ok: true, checked: 3 });
      } finally {
        await other?.close();
      }
    });

    it('stores the idempotency record with the commit and reports a duplicate key instead of committing', async () => {
      await store.createDocument('d', {}, AT);
      const first = { ...commitRequest('d', 1), idempotency: idem('key-1', 1) };
      expect((await store.commit(first)).status).toBe('committed');
      expect(await store.findIdempotency('alice', 'key-1')).toEqual(idem('key-1', 1));
      const again = { ...commitRequest('d', 2), idempotency: idem('key-1', 2) };
      expect(await store.commit(again)).toEqual({ status: 'duplicate', record: idem('key-1', 1) });
      expect((await store.loadDocument('d'))?.revision).toBe(1);
      expect(await store.findIdempotency('bob', 'key-1')).toBeUndefined();
    });

    it('commits a batch in one transaction, each request as commit would, its audit records in chain order', async () => {
      if (!subject.provides.commitBatch) {
        expect(store.commitBatch).toBeUndefined();
        return;
      }
      await store.createDocument('d', { tasks: {} }, AT, { collections: { tasks: { indexes: {} } } });
      await store.createDocument('e', {}, AT);
      const requests = [
        commitRequest('d', 1),
        { ...commitRequest('e', 1), idempotency: idem('batch-key', 1) },
        commitRequest('d', 2),
        commitRequest('d', 3),
      ];
      requests[2]!.changes[0]!.entries = [
        { collection: 'tasks', key: 'T-1', value: { n: 1 }, existed: false, indexRemove: [], indexAdd: [] },
      ];
      requests[3]!.changes[0]!.entries = [
        { collection: 'tasks', key: 'T-1', value: { n: 2 }, existed: true, indexRemove: [], indexAdd: [] },
      ];
      const outcome = await store.commitBatch!(requests);
      expect(outcome.status).toBe('committed');
      const audits = outcome.status === 'committed' ? outcome.audits : [];
      expect(audits).toHaveLength(4);
      const records = await store.readAudit({});
      expect(records).toEqual(audits);
      expect(records.map((r) => [r.doc, r.revision])).toEqual([
        ['d', 1],
        ['e', 1],
        ['d', 2],
        ['d', 3],
      ]);
      expect(verifyAuditRecords(records)).toMatchObject({ ok: true, checked: 4 });
      const loaded = await store.loadDocument('d');
      expect(loaded?.revision).toBe(3);
      expect(loaded?.collections.tasks?.size).toBe(1);
      expect((await store.readEntries('d', 'tasks', ['T-1'])).get('T-1')).toEqual({ n: 2 });
      for (const [i, request] of requests.entries())
        expect((await readCommit(store, request.commit.commandId))?.auditSeq).toBe(audits[i]!.seq);
      expect(await store.findIdempotency('alice', 'batch-key')).toEqual(idem('batch-key', 1));
      // The chain goes on after a batch, by commit and by batch alike.
      expect((await store.commit(commitRequest('d', 4))).status).toBe('committed');
      expect((await store.commitBatch!([commitRequest('e', 2)])).status).toBe('committed');
      expect(verifyAuditRecords(await store.readAudit({}))).toMatchObject({ ok: true, checked: 6 });
    });

    it('rolls a whole batch back when one request would not commit, writing nothing of it', async () => {
      if (!subject.provides.commitBatch) return;
      await store.createDocument('d', { tasks: {} }, AT, { collections: { tasks: { indexes: {} } } });
      await store.createDocument('e', {}, AT);
      expect((await store.commit({ ...commitRequest('e', 1), idempotency: idem('taken', 1) })).status).toBe(
        'committed',
      );
      const before = {
        audit: await store.readAudit({}),
        d: await store.loadDocument('d'),
        e: await store.loadDocument('e'),
      };
      const batch = (middle: SingleCommit) => {
        const first = { ...commitRequest('d', 1), idempotency: idem('fresh', 1) };
        first.changes[0]!.entries = [
          { collection: 'tasks', key: 'T-1', value: { n: 1 }, existed: false, indexRemove: [], indexAdd: [] },
        ];
        return [first, middle, commitRequest('d', 2)];
      };
      const refusals: Array<[SingleCommit, unknown]> = [
        [commitRequest('e', 1), { status: 'conflict', doc: 'e', currentRevision: 1 }],
        [
          { ...commitRequest('e', 2), idempotency: idem('taken', 2) },
          { status: 'duplicate', record: idem('taken', 1) },
        ],
      ];
      for (const [middle, expected] of refusals) {
        const requests = batch(middle);
        expect(await store.commitBatch!(requests)).toEqual({
          status: 'refused',
          index: 1,
          outcome: expected,
        });
        expect(await store.readAudit({})).toEqual(before.audit);
        expect(await store.loadDocument('d')).toEqual(before.d);
        expect(await store.loadDocument('e')).toEqual(before.e);
        expect(await store.readEntries('d', 'tasks', ['T-1'])).toEqual(new Map());
        expect(await store.findIdempotency('alice', 'fresh')).toBeUndefined();
        for (const request of requests)
          expect(await readCommit(store, request.commit.commandId)).toBeUndefined();
      }
      // A fence held by another writer refuses the batch the same way.
      expect(await store.fence(['e'], 'operator', 10_000)).toBe(true);
      expect(await store.commitBatch!(batch(commitRequest('e', 2)))).toEqual({
        status: 'refused',
        index: 1,
        outcome: { status: 'conflict', doc: 'e', currentRevision: 1, fenced: true },
      });
      await store.releaseFence(['e'], 'operator');
      expect(await store.readAudit({})).toEqual(before.audit);
      // The batch made good commits.
      expect((await store.commitBatch!(batch(commitRequest('e', 2)))).status).toBe('committed');
      expect(verifyAuditRecords(await store.readAudit({}))).toMatchObject({ ok: true, checked: 4 });
    });

    it('chains every audit record, commits and attempts alike, across documents', async () => {
      await store.createDocument('a', {}, AT);
      await store.createDocument('b', {}, AT);
      await store.commit(commitRequest('a', 1));
      await store.recordAttempt({ audit: entry({ outcome: 'forbidden' }) });
      await store.commit(commitRequest('b', 1));
      await store.recordAttempt({
        audit: entry({ outcome: 'ok', command: 'task.list' }),
        idempotency: idem('q', 0),
      });
      const records = await store.readAudit({});
      expect(records.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
      expect(verifyAuditRecords(records)).toMatchObject({ ok: true, checked: 4 });
      expect(await store.findIdempotency('alice', 'q')).toEqual(idem('q', 0));
    });

    it('filters and pages the audit trail', async () => {
      await store.recordAttempt({
        audit: entry({ principal: 'alice', command: 'task.add', at: '2026-01-01T00:00:00.000Z' }),
      });
      await store.recordAttempt({
        audit: entry({ principal: 'bob', command: 'task.add', at: '2026-01-02T00:00:00.000Z' }),
      });
      await store.recordAttempt({
        audit: entry({ principal: 'alice', command: 'task.claim', at: '2026-01-03T00:00:00.000Z' }),
      });
      expect((await store.readAudit({ principal: 'alice' })).map((r) => r.seq)).toEqual([1, 3]);
      expect((await store.readAudit({ command: 'task.add' })).map((r) => r.seq)).toEqual([1, 2]);
      expect((await store.readAudit({ since: '2026-01-02T00:00:00.000Z' })).map((r) => r.seq)).toEqual([
        2, 3,
      ]);
      expect((await store.readAudit({ afterSeq: 1, limit: 1 })).map((r) => r.seq)).toEqual([2]);
    });

    it('loads from the newest snapshot plus the commits after it', async () => {
      await store.createDocument('d', { n: 0 }, AT);
      for (let r = 1; r <= 5; r++) await store.commit(commitRequest('d', r));
      await store.writeSnapshot('d', { revision: 3, value: { n: 3 } });
      const loaded = await store.loadDocument('d');
      expect(loaded?.snapshot).toEqual({ revision: 3, value: { n: 3 } });
      expect(loaded?.commits.map((c) => c.revision)).toEqual([4, 5]);
      expect(await store.readSnapshot('d', 2)).toEqual({ revision: 0, value: { n: 0 } });
      expect(await store.readSnapshot('d', 4)).toEqual({ revision: 3, value: { n: 3 } });
      expect((await store.readCommits('d', { after: 1, to: 3 })).map((c) => c.revision)).toEqual([2, 3]);
      expect((await store.readCommits('d', { after: 0, limit: 2 })).map((c) => c.revision)).toEqual([1, 2]);
    });

    it('refuses a snapshot later than the head', async () => {
      await store.createDocument('d', {}, AT);
      await expect(store.writeSnapshot('d', { revision: 9, value: {} })).rejects.toSatisfy(
        (e: unknown) => isCoreMcpError(e) && e.code === 'invalid_revision',
      );
    });

    it('compacts only up to a snapshot and moves the oldest readable revision', async () => {
      await store.createDocument('d', {}, AT);
      for (let r = 1; r <= 6; r++) await store.commit(commitRequest('d', r));
      await store.writeSnapshot('d', { revision: 4, value: { at: 4 } });
      expect(await store.compact('d', 3)).toBe(0);
      expect(await store.compact('d', 5)).toBe(4);
      const loaded = await store.loadDocument('d');
      expect(loaded).toMatchObject({ revision: 6, oldestRevision: 4, snapshot: { revision: 4 } });
      expect(loaded?.commits.map((c) => c.revision)).toEqual([5, 6]);
      expect(await store.readSnapshot('d', 2)).toBeUndefined();
      expect((await store.listDocuments())[0]?.oldestRevision).toBe(4);
    });

    it('expires idempotency records older than a time', async () => {
      await store.recordAttempt({
        audit: entry(),
        idempotency: { ...idem('old', 0), at: '2020-01-01T00:00:00.000Z' },
      });
      await store.recordAttempt({ audit: entry(), idempotency: idem('new', 0) });
      expect(await store.expireIdempotency('2025-01-01T00:00:00.000Z')).toBe(1);
      expect(await store.findIdempotency('alice', 'old')).toBeUndefined();
      expect(await store.findIdempotency('alice', 'new')).toBeDefined();
    });

    it('keeps API keys by hash, with unique names, and revokes by id or name', async () => {
      const key = { id: 'k1', name: 'agent-1', role: 'member', hash: 'h'.repeat(64), createdAt: AT };
      await store.insertApiKey(key);
      expect(await store.findApiKeyByHash(key.hash)).toEqual(key);
      await expect(store.insertApiKey({ ...key, id: 'k2', hash: 'i'.repeat(64) })).rejects.toSatisfy(
        (e: unknown) => isCoreMcpError(e) && e.code === 'already_exists',
      );
      expect(await store.listApiKeys()).toEqual([key]);
      expect((await store.revokeApiKey('agent-1', '2026-02-01T00:00:00.000Z'))?.revokedAt).toBe(
        '2026-02-01T00:00:00.000Z',
      );
      expect((await store.revokeApiKey('k1', '2026-03-01T00:00:00.000Z'))?.revokedAt).toBe(
        '2026-02-01T00:00:00.000Z',
      );
      expect(await store.revokeApiKey('nobody', AT)).toBeUndefined();
      expect((await store.findApiKeyByHash(key.hash))?.revokedAt).toBe('2026-02-01T00:00:00.000Z');
    });

    it('shares state, conflicts and the audit chain with every handle on the same data', async () => {
      // A store without a second handle (memory) is its own only writer; the check is then vacuous
      // for it, and it proves the invariant with the racing-commit test above instead.
      const other = subject.second ? await subject.second() : store;
      await other.open();
      try {
        await store.createDocument('d', {}, AT);
        expect((await store.commit(commitRequest('d', 1))).status).toBe('committed');
        expect(await other.commit(commitRequest('d', 1))).toEqual({
          status: 'conflict',
          doc: 'd',
          currentRevision: 1,
        });
        expect((await other.commit(commitRequest('d', 2))).status).toBe('committed');
        await store.recordAttempt({ audit: entry() });
        await other.recordAttempt({ audit: entry() });
        const records = await store.readAudit({});
        expect(records).toHaveLength(4);
        expect(verifyAuditRecords(records).ok).toBe(true);
      } finally {
        if (other !== store) await other.close();
      }
    });

    it('finds the newest revision committed strictly before a time, never before the oldest readable one', async () => {
      const t = (second: number) => `2026-01-01T00:00:${String(second).padStart(2, '0')}.000Z`;
      await store.createDocument('d', {}, AT);
      // Revisions 1..6 at seconds 10, 20, 30, 30, 40, 50: two commits share a time.
      const times = [t(10), t(20), t(30), t(30), t(40), t(50)];
      for (const [i, at] of times.entries()) {
        expect((await store.commit(commitRequest('d', i + 1, { at }))).status).toBe('committed');
      }
      expect(await store.revisionBefore('d', t(5))).toBe(0);
      expect(await store.revisionBefore('d', t(10))).toBe(0);
      expect(await store.revisionBefore('d', '2026-01-01T00:00:10.001Z')).toBe(1);
      expect(await store.revisionBefore('d', t(20))).toBe(1);
      expect(await store.revisionBefore('d', t(25))).toBe(2);
      expect(await store.revisionBefore('d', t(30))).toBe(2);
      expect(await store.revisionBefore('d', t(35))).toBe(4);
      expect(await store.revisionBefore('d', t(50))).toBe(5);
      expect(await store.revisionBefore('d', '2027-01-01T00:00:00.000Z')).toBe(6);
      expect(await store.revisionBefore('nope', t(30))).toBe(0);

      await store.writeSnapshot('d', { revision: 3, value: { at: 3 } });
      expect(await store.compact('d', 3)).toBe(3);
      expect(await store.revisionBefore('d', t(5))).toBe(3);
      expect(await store.revisionBefore('d', t(20))).toBe(3);
      expect(await store.revisionBefore('d', t(30))).toBe(3);
      expect(await store.revisionBefore('d', t(35))).toBe(4);
      expect(await store.revisionBefore('d', t(45))).toBe(5);
      expect(await store.revisionBefore('d', '2027-01-01T00:00:00.000Z')).toBe(6);

      // A document compacted to its head has only the snapshot left to read.
      await store.writeSnapshot('d', { revision: 6, value: { at: 6 } });
      await store.compact('d', 6);
      expect(await store.revisionBefore('d', t(5))).toBe(6);
      expect(await store.revisionBefore('d', '2027-01-01T00:00:00.000Z')).toBe(6);
    });

    it('tells a watcher about commits made through another handle, and stops when told', async () => {
      expect(typeof store.watchExternalChanges === 'function').toBe(subject.provides.watchExternalChanges);
      if (!store.watchExternalChanges) {
        // Only a store nothing else writes may go without: then there is no other handle to test.
        expect(subject.second).toBeUndefined();
        return;
      }
      expect(
        subject.second,
        'a store that watches for other writers must offer a second handle',
      ).toBeDefined();
      const other = await subject.second!();
      await other.open();
      const stops: Array<() => void> = [];
      try {
        await store.createDocument('d', {}, AT);
        let calls = 0;
        stops.push(
          store.watchExternalChanges(() => {
            calls++;
          }),
        );
        expect((await other.commit(commitRequest('d', 1))).status).toBe('committed');
        await waitFor(() => calls > 0, {
          message: 'the watcher to hear a commit made through another handle',
        });
        stops[0]!();
        const heard = calls;

        // The stopped watcher would hear revision 2. To know it had every chance to, wait until a
        // watcher started after that commit has heard two later ones: a store notifies watchers in
        // the order they started, and no later than it notifies those started after them.
        expect((await other.commit(commitRequest('d', 2))).status).toBe('committed');
        let later = 0;
        stops.push(
          store.watchExternalChanges(() => {
            later++;
          }),
        );
        for (const revision of [3, 4]) {
          const before = later;
          expect((await other.commit(commitRequest('d', revision))).status).toBe('committed');
          await waitFor(() => later > before, {
            message: `a watcher started later to hear revision ${revision}`,
          });
        }
        expect(calls).toBe(heard);
      } finally {
        for (const stop of stops) stop();
        await other.close();
      }
    });

    it("trims a principal's idempotency records to its newest, leaving others' alone", async () => {
      await store.createDocument('d', {}, AT);
      for (let i = 0; i < 5; i++) {
        await store.recordAttempt({
          audit: entry(),
          idempotency: { ...idem(`a-${i}`, 0), at: `2026-01-01T00:00:0${i}.000Z` },
        });
      }
      await store.recordAttempt({ audit: entry(), idempotency: { ...idem('b-0', 0), principal: 'bob' } });
      expect(await store.trimIdempotency('alice', 2)).toBe(3);
      expect(await store.findIdempotency('alice', 'a-4')).toBeDefined();
      expect(await store.findIdempotency('alice', 'a-3')).toBeDefined();
      expect(await store.findIdempotency('alice', 'a-2')).toBeUndefined();
      expect(await store.findIdempotency('bob', 'b-0')).toBeDefined();
      expect(await store.trimIdempotency('alice', 2)).toBe(0);
    });

    it("refuses others' commits while a fence is held, lets the holder commit, and frees it on release or expiry", async () => {
      await store.createDocument('d', {}, AT);
      expect(await store.fence(['d'], 'op-1', 60_000)).toBe(true);
      expect(await store.fence(['d'], 'op-2', 60_000)).toBe(false);
      const other = commitRequest('d', 1);
      expect(await store.commit(other)).toEqual({
        status: 'conflict',
        doc: 'd',
        currentRevision: 0,
        fenced: true,
      });
      const mine = { ...commitRequest('d', 1), fence: 'op-1' };
      expect((await store.commit(mine)).status).toBe('committed');
      await store.releaseFence(['d'], 'op-2'); // not the holder: nothing happens
      expect(await store.fence(['d'], 'op-2', 60_000)).toBe(false);
      await store.releaseFence(['d'], 'op-1');
      expect((await store.commit(commitRequest('d', 2))).status).toBe('committed');
      expect(await store.fence(['d'], 'op-3', 1)).toBe(true);
      await waitFor(async () => (await store.commit(commitRequest('d', 3))).status === 'committed', {
        message: 'the expired fence to stop refusing commits',
      });
    });

    it('hands out sequence values that only grow, from a floor, shared by every handle', async () => {
      expect(await store.nextSequence('ids', 1)).toBe(1);
      expect(await store.nextSequence('ids', 1)).toBe(2);
      expect(await store.nextSequence('ids', 10)).toBe(10);
      expect(await store.nextSequence('ids', 3)).toBe(11);
      expect(await store.nextSequence('other', 1)).toBe(1);
      if (subject.second) {
        const handle = await subject.second();
        await handle.open();
        try {
          expect(await handle.nextSequence('ids', 1)).toBe(12);
        } finally {
          await handle.close();
        }
      }
    });

    it('keeps one server secret per name, shared by every handle', async () => {
      const first = await store.secret('mrtr', () => 'one');
      expect(first).toBe('one');
      expect(await store.secret('mrtr', () => 'two')).toBe('one');
      expect(await store.secret('other', () => 'three')).toBe('three');
      if (subject.second) {
        const other = await subject.second();
        await other.open();
        try {
          expect(await other.secret('mrtr', () => 'four')).toBe('one');
        } finally {
          await other.close();
        }
      }
    });

    it('keeps a watcher working across close and open of the store', async () => {
      if (!store.watchExternalChanges || !subject.second) return;
      const other = await subject.second();
      await other.open();
      let calls = 0;
      const stop = store.watchExternalChanges(() => {
        calls++;
      });
      try {
        await store.createDocument('d', {}, AT);
        await store.close();
        await store.open();
        const before = calls;
        expect((await other.commit(commitRequest('d', 1))).status).toBe('committed');
        await waitFor(() => calls > before, {
          message: 'the watcher to hear a commit after the store reopened',
        });
      } finally {
        stop();
        await other.close();
      }
    });

    it('reports its schema at the version the code expects once open', async () => {
      expect(typeof store.schemaStatus === 'function').toBe(subject.provides.schemaStatus);
      if (!store.schemaStatus) return;
      const status = await store.schemaStatus();
      expect(status.expected).toBeGreaterThan(0);
      expect(status.version).toBe(status.expected);
      await store.open();
      expect(await store.schemaStatus()).toEqual(status);
      if (subject.second) {
        const other = await subject.second();
        await other.open();
        try {
          expect(await other.schemaStatus!()).toEqual(status);
        } finally {
          await other.close();
        }
      }
    });

    it('consumes an id once, across handles, until it is expired', async () => {
      expect(await store.consumeOnce('mrtr:a', '2026-01-01T00:10:00.000Z')).toBe(true);
      expect(await store.consumeOnce('mrtr:a', '2026-01-01T00:10:00.000Z')).toBe(false);
      expect(await store.consumeOnce('mrtr:b', '2026-01-01T00:20:00.000Z')).toBe(true);
      if (subject.second) {
        const other = await subject.second();
        await other.open();
        try {
          expect(await other.consumeOnce('mrtr:a', '2026-01-01T00:10:00.000Z')).toBe(false);
          // Racing handles: exactly one wins each id.
          const wins = await Promise.all(
            Array.from({ length: 8 }, (_, i) =>
              (i % 2 === 0 ? store : other).consumeOnce('mrtr:race', '2026-01-01T00:10:00.000Z'),
            ),
          );
          expect(wins.filter(Boolean)).toHaveLength(1);
        } finally {
          await other.close();
        }
      }
      expect(await store.expireConsumed('2026-01-01T00:15:00.000Z')).toBe(subject.second ? 2 : 1);
      // Forgotten once expired (its requestState has expired too, so nothing can present it again).
      expect(await store.consumeOnce('mrtr:a', '2026-01-01T00:30:00.000Z')).toBe(true);
      expect(await store.consumeOnce('mrtr:b', '2026-01-01T00:20:00.000Z')).toBe(false);
    });

    it('keeps MCP tasks whole, updating them only over the version read', async () => {
      const task: TaskRecord = {
        taskId: 't-1',
        principal: 'alice',
        command: 'board.export',
        input: { format: 'json', nested: { 'a/b': [1, null] } },
        status: 'working',
        createdAt: AT,
        lastUpdatedAt: AT,
        ttlMs: 60_000,
        pollIntervalMs: 500,
        expiresAt: '2026-01-01T00:01:00.000Z',
        version: 1,
      };
      await store.createTask(task);
      expect(await store.readTask('t-1')).toEqual(task);
      expect(await store.readTask('t-2')).toBeUndefined();
      const taken = await store.createTask(task).catch((e: unknown) => e);
      expect(isCoreMcpError(taken) && taken.code).toBe('already_exists');

      const progressed = { ...task, statusMessage: 'half way', version: 2 };
      expect(await store.updateTask(progressed)).toBe(true);
      // A second writer that read version 1 loses: nothing of its update is written.
      expect(await store.updateTask({ ...task, status: 'cancelled', version: 2 })).toBe(false);
      expect(await store.readTask('t-1')).toEqual(progressed);
      expect(await store.updateTask({ ...progressed, taskId: 'missing', version: 3 })).toBe(false);

      const done = { ...progressed, status: 'completed' as const, result: { content: [] }, version: 3 };
      expect(await store.updateTask(done)).toBe(true);
      if (subject.second) {
        const other = await subject.second();
        await other.open();
        try {
          expect(await other.readTask('t-1')).toEqual(done);
          expect(await other.updateTask({ ...done, version: 3 })).toBe(false);
        } finally {
          await other.close();
        }
      }
      await store.createTask({ ...task, taskId: 't-forever', ttlMs: null, expiresAt: undefined });
      await store.createTask({ ...task, taskId: 't-later', expiresAt: '2026-01-02T00:00:00.000Z' });
      expect(await store.expireTasks('2026-01-01T12:00:00.000Z')).toBe(1);
      expect(await store.readTask('t-1')).toBeUndefined();
      expect((await store.readTask('t-later'))?.taskId).toBe('t-later');
      expect((await store.readTask('t-forever'))?.ttlMs).toBeNull();
    });

    it('refuses to serve once closed: ping rejects, nothing throws synchronously, close repeats', async () => {
      await store.createDocument('d', {}, AT);
      await store.close();
      let ping: Promise<void> | undefined;
      expect(() => {
        ping = store.ping();
      }).not.toThrow();
      await expect(ping).rejects.toBeInstanceOf(Error);
      let load: Promise<unknown> | undefined;
      expect(() => {
        load = store.loadDocument('d');
      }).not.toThrow();
      await expect(load).rejects.toBeInstanceOf(Error);
      let commit: Promise<unknown> | undefined;
      expect(() => {
        commit = store.commit(commitRequest('d', 1));
      }).not.toThrow();
      await expect(commit).rejects.toBeInstanceOf(Error);
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
