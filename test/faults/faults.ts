/** Real faults for real processes: another process's write lock, a small file system that fills up. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LOCK_HOLDER = fileURLToPath(new URL('../../scripts/chaos/lock-holder.mjs', import.meta.url));

export interface HeldLock {
  child: ChildProcess;
  /** Commits the holder's empty transaction and waits for it to exit. */
  release(): Promise<void>;
}

/** Another process holding the database's write lock (BEGIN IMMEDIATE) until released. */
export async function holdWriteLock(dbPath: string): Promise<HeldLock> {
  const child = spawn(process.execPath, [LOCK_HOLDER, dbPath], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('locked')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`lock holder exited with ${code}: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    release: async () => {
      if (child.exitCode === null) child.stdin!.end('release\n');
      await exited;
    },
  };
}

/** Whether this process may mount file systems (root in a container that allows it). */
export function canMount(): boolean {
  const probe = mkdtempSync(join(tmpdir(), 'coremcp-mount-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

export interface SmallDisk {
  dir: string;
  /** Remounts the file system read-only, or writable again. */
  remount(mode: 'ro' | 'rw'): void;
  remove(): void;
}

/** A tmpfs of `sizeMiB` mounted on a fresh folder: a disk that really fills up. */
export function smallDisk(sizeMiB: number): SmallDisk {
  const dir = mkdtempSync(join(tmpdir(), 'coremcp-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
  mkdirSync(join(dir, 'data'));
  return {
    dir,
    remount: (mode) => execFileSync('mount', ['-o', `remount,${mode}`, dir]),
    remove: () => {
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** GET a health route: its status, body and how long it took to answer. */
export async function probe(url: string, path: '/healthz' | '/readyz') {
  const started = performance.now();
  const res = await fetch(new URL(path, url), { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as {
    status: string;
    checks?: Record<string, { status: string; detail?: string }>;
  };
  return { status: res.status, body, ms: performance.now() - started };
}
