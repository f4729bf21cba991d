/**
 * One-at-a-time execution per key, in arrival order. Writers to one document queue here so they never
 * race each other inside a process; across processes the store's conditional commit decides.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key);
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous ? previous.then(() => done) : done;
    this.#tails.set(key, tail);
    try {
      if (previous) await previous;
      return await work();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Runs `work` holding every key, taken in sorted order so two callers never wait on each other. */
  async runAll<T>(keys: readonly string[], work: () => Promise<T>): Promise<T> {
    if (keys.length === 1) return this.run(keys[0]!, work);
    const sorted = [...new Set(keys)].sort();
    const hold = (i: number): Promise<T> =>
      i === sorted.length ? work() : this.run(sorted[i]!, () => hold(i + 1));
    return hold(0);
  }

  /** Keys with work running or queued. */
  get busy(): number {
    return this.#tails.size;
  }
}
