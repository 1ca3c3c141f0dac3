/**
 * How long to wait before connecting again: exponential backoff with
 * jitter, or a fixed interval. The client's reconnect loop, the outbox and
 * the message store's retries share it.
 *
 * @module
 */

/**
 * Exponential backoff between reconnection attempts: `initialDelay`,
 * multiplied by `factor` after each failed attempt up to `maxDelay`, each
 * delay moved by up to ±`jitter` of itself at random.
 *
 * @example Faster backoff for a local receiver
 * ```ts
 * import { type BackoffOptions, reconnectDelay } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * const backoff: BackoffOptions = {
 *   initialDelay: 200,
 *   maxDelay: 5_000,
 *   factor: 3,
 *   jitter: 0,
 * };
 * // Pass it as `reconnect: backoff` to Client.connect or new Client.
 * assertEquals([1, 2, 3, 4, 5].map((wait) => reconnectDelay(backoff, wait)), [
 *   200,
 *   600,
 *   1800,
 *   5000,
 *   5000,
 * ]);
 * ```
 */
export interface BackoffOptions {
  /**
   * The first delay, in milliseconds.
   *
   * @default {1000}
   */
  initialDelay?: number;
  /**
   * The longest delay, in milliseconds.
   *
   * @default {180000}
   */
  maxDelay?: number;
  /**
   * The growth factor.
   *
   * @default {2}
   */
  factor?: number;
  /**
   * The random spread, as a fraction of the delay (0 for none).
   *
   * @default {0.1}
   */
  jitter?: number;
}

/**
 * A fixed delay between reconnection attempts.
 *
 * @example Retry every 5 seconds
 * ```ts
 * import { type FixedIntervalOptions, reconnectDelay } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * const fixed: FixedIntervalOptions = { interval: 5_000 };
 * // Pass it as `reconnect: fixed` to Client.connect or new Client.
 * assertEquals([1, 2, 10].map((wait) => reconnectDelay(fixed, wait)), [
 *   5000,
 *   5000,
 *   5000,
 * ]);
 * ```
 */
export interface FixedIntervalOptions {
  /** The delay, in milliseconds. */
  interval: number;
}

/**
 * Computes the delay before a reconnection attempt.
 *
 * The first wait after a failed attempt or a dropped connection is
 * `initialDelay`; each further wait in a row is `factor` times longer, up
 * to `maxDelay`. A successful connection starts the count over.
 *
 * @param policy Backoff or a fixed interval.
 * @param wait Which wait in a row this is, from 1 (1 gets `initialDelay`).
 * @param random A source of numbers in [0, 1), for the jitter.
 * @returns The delay in milliseconds.
 *
 * @example The defaults
 * ```ts
 * import { reconnectDelay } from "@x/mllp/client";
 * import { assertEquals } from "@std/assert";
 *
 * const noJitter = { jitter: 0 };
 * assertEquals([1, 2, 3, 9, 20].map((n) => reconnectDelay(noJitter, n)), [
 *   1000, 2000, 4000, 180000, 180000,
 * ]);
 * assertEquals(reconnectDelay({ interval: 5000 }, 7), 5000);
 * ```
 */
export function reconnectDelay(
  policy: BackoffOptions | FixedIntervalOptions,
  wait: number,
  random: () => number = Math.random,
): number {
  if ("interval" in policy) return policy.interval;
  const initial = policy.initialDelay ?? 1000;
  const max = policy.maxDelay ?? 180_000;
  const factor = policy.factor ?? 2;
  const jitter = policy.jitter ?? 0.1;
  const base = Math.min(max, initial * factor ** Math.max(0, wait - 1));
  const spread = base * jitter * (2 * random() - 1);
  return Math.max(0, Math.min(max, Math.round(base + spread)));
}
