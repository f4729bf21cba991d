// Holds SQLite's write lock on a database from another process, as a backup or a second writer
// would: `node lock-holder.mjs <db path>` opens it, runs BEGIN IMMEDIATE, prints "locked", and
// commits and exits when its stdin closes or receives a line.
import Database from 'better-sqlite3';

const db = new Database(process.argv[2], { fileMustExist: true });
db.pragma('busy_timeout = 5000');
db.exec('BEGIN IMMEDIATE');
process.stdout.write('locked\n');
const release = () => {
  db.exec('COMMIT');
  db.close();
  process.exit(0);
};
process.stdin.on('data', release);
process.stdin.on('end', release);
