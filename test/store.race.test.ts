/**
 * Commits that really race: several OS processes, each with its own SqliteStore on one file, commit
 * at the same time. better-sqlite3 is synchronous, so within one process commits never overlap; the
 * head check inside each IMMEDIATE transaction is what keeps separate processes from interleaving.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifyAuditRecords } from '../src/core/audit.js';
import type { AuditRecord, CommitOutcome } from '../src/core/store.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { tempDir } from './helpers/tmp.js';

const WRITER = fileURLToPath(new URL('./helpers/store-writer.mjs', import.meta.url));
const COMPILED = fileURLToPath(new URL('../dist/src/store/sqlite.js', import.meta.url));
const AT = '2026-01-01T00:00:00.000Z';
const WRITERS = 4;

interface Committed {
  revision: number;
  commandId: string;
  auditSeq: number;
}

type Reply =
  | { type: 'ready' }
  | { type: 'many'; committed: Committed[]; conflicts: Array<{ expected: number; currentRevision: number }> }
  | { type: 'head'; revision: number }
  | { type: 'commit'; commandId: string; outcome: CommitOutcome }
  | { type: 'error'; message: string };

/** One writer process and a way to ask it something and await its answer. */
class Writer {
  readonly #child: ChildProcess;
  readonly #waiting: Array<{ resolve: (reply: Reply) => void; reject: (error: Error) => void }> = [];
  #stderr = '';
  readonly ready: Promise<Reply>;

  constructor(
    readonly name: string,
    path: string,
  ) {
    this.#child = fork(WRITER, [path, name], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.#child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
    });
    this.ready = this.#next();
    this.#child.on('message', (reply: Reply) => {
      const waiter = this.#waiting.shift();
      if (!waiter) return;
      if (reply.type === 'error') waiter.reject(new Error(`writer ${name}: ${reply.message}`));
      else waiter.resolve(reply);
    });
    this.#child.on('exit', (code) => {
      for (const waiter of this.#waiting.splice(0)) {
        waiter.reject(new Error(`writer ${name} exited with ${code} before answering:\n${this.#stderr}`));
      }
    });
  }

  #next(): Promise<Reply> {
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  ask<T extends Reply['type']>(
    message: { type: T } & Record<string, unknown>,
  ): Promise<Extract<Reply, { type: T }>> {
    const reply = this.#next();
    this.#child.send(message);
    return reply as Promise<Extract<Reply, { type: T }>>;
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    if (this.#child.connected) this.#child.send({ type: 'close' });
    else this.#child.kill();
    await exited;
  }
}

describe('SQLite commits racing across processes', () => {
  let tmp: ReturnType<typeof tempDir>;
  let path: string;
  let store: SqliteStore;
  let writers: Writer[];

  beforeEach(async () => {
    if (!existsSync(COMPILED)) throw new Error(`${COMPILED} is missing: run npm run build first`);
    tmp = tempDir();
    path = join(tmp.dir, 'state.db');
    store = new SqliteStore({ path });
    await store.open();
    await store.createDocument('d', {}, AT);
    writers = Array.from({ length: WRITERS }, (_, i) => new Writer(`w${i}`, path));
    // Every writer has its store open before any commits: they start together.
    await Promise.all(writers.map((w) => w.ready));
  });

  afterEach(async () => {
    await Promise.all(writers.map((w) => w.close()));
    await store.close();
    tmp.remove();
  });

  async function checkHistory(total: number): Promise<{ audit: AuditRecord[] }> {
    const loaded = await store.loadDocument('d');
    expect(loaded?.revision).toBe(total);
    const commits = await store.readCommits('d', { after: 0 });
    expect(commits.map((c) => c.revision)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const audit = await store.readAudit({});
    expect(audit.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(verifyAuditRecords(audit)).toMatchObject({ ok: true, checked: total });
    const bySeq = new Map(audit.map((r) => [r.seq, r]));
    for (const commit of commits) {
      const record = bySeq.get(commit.auditSeq!);
      expect(record, `the audit record of revision ${commit.revision}`).toMatchObject({
        commandId: commit.commandId,
        doc: 'd',
        revision: commit.revision,
        principal: commit.principal,
        outcome: 'ok',
      });
    }
    return { audit };
  }

  it('keeps every commit, gapless, with its audit record, when writers retry on conflict', async () => {
    const perWriter = 100;
    const results = await Promise.all(writers.map((w) => w.ask({ type: 'many', count: perWriter })));
    const total = WRITERS * perWriter;
    expect(results.reduce((sum, r) => sum + r.committed.length, 0)).toBe(total);
    for (const r of results) {
      // A conflict is only ever reported because someone else moved the head.
      for (const c of r.conflicts) expect(c.currentRevision).toBeGreaterThan(c.expected);
    }
    await checkHistory(total);
    // What each writer was told it committed is what the history holds.
    for (const [i, r] of results.entries()) {
      for (const c of r.committed) {
        const stored = await readCommitOf(store, c.commandId);
        expect(stored).toMatchObject({ revision: c.revision, principal: `w${i}`, auditSeq: c.auditSeq });
      }
    }
    const claimed = results.flatMap((r) => r.committed.map((c) => c.revision)).sort((a, b) => a - b);
    expect(claimed).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  });

  it('lets exactly one writer win each round of commits at the same revision', async () => {
    const rounds = 10;
    for (let round = 0; round < rounds; round++) {
      // Every writer reads the same head before any of them commits, then all commit at once.
      const heads = await Promise.all(writers.map((w) => w.ask({ type: 'head' })));
      expect(heads.map((h) => h.revision)).toEqual(writers.map(() => round));
      const replies = await Promise.all(
        writers.map((w) => w.ask({ type: 'commit', expectedRevision: round })),
      );
      const winners = replies.filter((r) => r.outcome.status === 'committed');
      expect(winners).toHaveLength(1);
      for (const r of replies) {
        if (r.outcome.status !== 'committed')
          expect(r.outcome).toEqual({ status: 'conflict', doc: 'd', currentRevision: round + 1 });
      }
      const stored = await readCommitOf(store, winners[0]!.commandId);
      expect(stored?.revision).toBe(round + 1);
      for (const r of replies) {
        if (r !== winners[0]) expect(await readCommitOf(store, r.commandId)).toBeUndefined();
      }
    }
    await checkHistory(rounds);
  });
});

async function readCommitOf(store: SqliteStore, commandId: string) {
  return (await store.readCommand(commandId))[0];
}
