import { CommandError } from './errors.js';

/**
 * The abort signal a handler sees: fires when the caller cancels or the time limit passes. Created
 * only when a handler asks for it, so synchronous handlers pay nothing.
 */
export class CallSignal {
  #controller: AbortController | undefined;
  readonly #outer: AbortSignal | undefined;
  #reason: unknown;

  constructor(outer: AbortSignal | undefined) {
    this.#outer = outer;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
      else if (this.#outer) {
        if (this.#outer.aborted) this.#controller.abort(this.#outer.reason);
        else
          this.#outer.addEventListener('abort', () => this.#controller?.abort(this.#outer?.reason), {
            once: true,
          });
      }
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  /**
   * Waits for `work` but gives up after `timeoutMs` or when the caller cancels, aborting the handler's
   * signal. Nothing the handler does afterwards is committed.
   */
  async bound<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const outer = this.#outer;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new CommandError('timeout', `The command did not finish within ${timeoutMs} ms`);
        this.abort(error);
        reject(error);
      }, timeoutMs);
      if (outer) {
        onAbort = () => {
          const error = new CommandError('cancelled');
          this.abort(error);
          reject(error);
        };
        if (outer.aborted) onAbort();
        else outer.addEventListener('abort', onAbort, { once: true });
      }
    });
    try {
      return await Promise.race([work, limit]);
    } finally {
      clearTimeout(timer);
      if (onAbort) outer?.removeEventListener('abort', onAbort);
    }
  }
}
