import type pg from 'pg';

export interface ChangeFeedOptions {
  /** node-postgres (loaded by the store). */
  driver: typeof pg;
  /** How to connect: always a direct connection (LISTEN does not survive a transaction-mode pooler). */
  connection: pg.ClientConfig;
  /** The channel commits notify on. */
  channel: string;
  /** This store's id: notifications it sent itself are not reported. */
  self: string;
  /** Called (coalesced) when another writer may have committed, and after every (re)connect. */
  onChange: () => void;
  /**
   * A second channel and what hears it at once (not coalesced): on every notification on it, from
   * this handle too, after every (re)connect and every poll tick.
   */
  urgent?: { channel: string; onNotify: () => void } | undefined;
  /** The backstop: `onChange` at least this often, whatever was heard (ms; 0 = never). */
  pollIntervalMs: number;
  /** Reports a lost connection (and the reconnect attempts after it). */
  onError?: ((error: Error) => void) | undefined;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;

/**
 * One dedicated LISTEN connection: notifications are a wake-up hint only (they are dropped while the
 * connection is down, and carry just `{doc, revision}`), so every (re)connect and every poll tick
 * reports a change too, and the listener catches up from the durable history by diff.
 */
export class ChangeFeed {
  readonly #options: ChangeFeedOptions;
  #client: pg.Client | undefined;
  #stopped = false;
  #pending = false;
  #attempt = 0;
  #retry: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;

  constructor(options: ChangeFeedOptions) {
    this.#options = options;
  }

  start(): void {
    void this.#connect();
    if (this.#options.pollIntervalMs > 0) {
      this.#poll = setInterval(() => {
        this.#options.urgent?.onNotify();
        this.#changed();
      }, this.#options.pollIntervalMs);
      this.#poll.unref();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearInterval(this.#poll);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  /** The backend pid of the LISTEN connection (tests terminate it), or undefined while down. */
  get backendPid(): number | undefined {
    return (this.#client as unknown as { processID?: number } | undefined)?.processID ?? undefined;
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const client = new this.#options.driver.Client(this.#options.connection);
    let failed = false;
    const lost = (error: Error) => {
      if (failed) return;
      failed = true;
      if (this.#client === client) this.#client = undefined;
      client.end().catch(() => {});
      if (this.#stopped) return;
      this.#options.onError?.(error);
      this.#schedule();
    };
    client.on('error', lost);
    client.on('end', () => lost(new Error('LISTEN connection ended')));
    client.on('notification', (message) => {
      if (message.channel === this.#options.urgent?.channel) {
        this.#options.urgent.onNotify();
        return;
      }
      if (message.channel !== this.#options.channel) return;
      if (fromSelf(message.payload, this.#options.self)) return;
      this.#changed();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.#options.channel)}`);
      if (this.#options.urgent) await client.query(`LISTEN ${quoteIdent(this.#options.urgent.channel)}`);
    } catch (error) {
      lost(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    if (this.#stopped || failed) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#attempt = 0;
    // Whatever was committed while no one listened: the listener reads it from the history.
    this.#options.urgent?.onNotify();
    this.#changed();
  }

  #schedule(): void {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#attempt++);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.#retry = setTimeout(() => void this.#connect(), delay);
    this.#retry.unref();
  }

  /** Reports once per turn of the event loop, however many notifications arrived in it. */
  #changed(): void {
    if (this.#pending || this.#stopped) return;
    this.#pending = true;
    setImmediate(() => {
      this.#pending = false;
      if (!this.#stopped) this.#options.onChange();
    });
  }
}

function fromSelf(payload: string | undefined, self: string): boolean {
  if (payload === undefined) return false;
  try {
    return (JSON.parse(payload) as { by?: unknown }).by === self;
  } catch {
    return false;
  }
}

/** A PostgreSQL identifier, double-quoted. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
