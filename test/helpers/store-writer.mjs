// A child process with its own SqliteStore on a shared file, driven by test/store.race.test.ts over
// IPC: `node store-writer.mjs <db path> <writer name>`. Loads the compiled store (npm run build).
import { SqliteStore } from '../../dist/src/store/sqlite.js';

const [path, name] = process.argv.slice(2);
const DOC = 'd';
const store = new SqliteStore({ path });
await store.open();

let sequence = 0;

function request(expectedRevision) {
  const commandId = `${name}-${++sequence}`;
  const at = new Date().toISOString();
  return {
    changes: [
      {
        expectedRevision,
        commit: {
          doc: DOC,
          revision: expectedRevision + 1,
          commandId,
          command: 'race.add',
          principal: name,
          at,
          patches: [{ op: 'add', path: `/${commandId}`, value: expectedRevision + 1 }],
          inverse: [{ op: 'remove', path: `/${commandId}` }],
        },
      },
    ],
    audit: {
      at,
      requestId: commandId,
      principal: name,
      via: 'test',
      command: 'race.add',
      input: {},
      outcome: 'ok',
      doc: DOC,
      revision: expectedRevision + 1,
      commandId,
    },
  };
}

async function head() {
  const info = (await store.listDocuments()).find((d) => d.doc === DOC);
  if (!info) throw new Error(`no document ${DOC}`);
  return info.revision;
}

/** Commits `count` times, each time at the head just read, retrying on conflict. */
async function commitMany(count) {
  const committed = [];
  const conflicts = [];
  while (committed.length < count) {
    const expected = await head();
    const r = request(expected);
    const outcome = await store.commit(r);
    if (outcome.status === 'committed') {
      committed.push({
        revision: r.changes[0].commit.revision,
        commandId: r.changes[0].commit.commandId,
        auditSeq: outcome.audit.seq,
      });
    } else if (outcome.status === 'conflict') {
      conflicts.push({ expected, currentRevision: outcome.currentRevision });
    } else {
      throw new Error(`unexpected outcome ${outcome.status}`);
    }
  }
  return { committed, conflicts };
}

process.on('message', async (message) => {
  try {
    if (message.type === 'many') {
      process.send({ type: 'many', ...(await commitMany(message.count)) });
    } else if (message.type === 'head') {
      process.send({ type: 'head', revision: await head() });
    } else if (message.type === 'commit') {
      const r = request(message.expectedRevision);
      const outcome = await store.commit(r);
      process.send({ type: 'commit', commandId: r.changes[0].commit.commandId, outcome });
    } else if (message.type === 'close') {
      await store.close();
      process.disconnect();
    }
  } catch (error) {
    process.send({ type: 'error', message: String(error?.stack ?? error) });
  }
});

process.send({ type: 'ready' });
