/**
 * A clock for the store's consumers and the outbox's workers to measure
 * their claims and leases on, standing still until the test moves it, so
 * that a claim runs out exactly when the test says and never because the
 * machine is busy.
 *
 * @module
 */

/** A clock that stands still until {@linkcode TestClock.advance}. */
export class TestClock {
  #ms = Date.now();
  /**
   * How often it was read: a consumer reads it each time it looks at a
   * claimed message in the queue.
   */
  reads = 0;

  /** The time, in ms since the epoch (a function to hand out as `now`). */
  now = (): number => {
    this.reads++;
    return this.#ms;
  };

  /** Moves the clock on by `ms`. */
  advance(ms: number): void {
    this.#ms += ms;
  }
}

/** Waits until `clock` has been read `more` more times; fails after 5 s. */
export async function looks(
  clock: TestClock,
  more: number,
  what: string,
): Promise<void> {
  const target = clock.reads + more;
  const end = Date.now() + 5_000;
  while (clock.reads < target) {
    if (Date.now() > end) throw new Error(`${what}: not within 5000 ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
