/**
 * How the store's consumer and the outbox's worker wait for work: a sleep
 * that an abort or a {@linkcode Wakeup} (something was just stored or
 * queued through this object) cuts short.
 *
 * @module
 */

/**
 * Sleeps `ms`, or less when `wake` resolves or `signal` aborts.
 */
export function sleep(
  ms: number,
  signal?: AbortSignal,
  wake?: Promise<void>,
): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    wake?.then(done, done);
  });
}

/** A promise that a call to `notify` resolves, and a new one after that. */
export class Wakeup {
  #resolve!: () => void;
  #promise: Promise<void>;

  constructor() {
    this.#promise = new Promise((resolve) => this.#resolve = resolve);
  }

  /** The promise of the next notification. */
  get next(): Promise<void> {
    return this.#promise;
  }

  /** Resolves the current promise and starts a new one. */
  notify(): void {
    this.#resolve();
    this.#promise = new Promise((resolve) => this.#resolve = resolve);
  }
}
