/**
 * Rate-limited warnings: a port scanner or a broken device must not flood
 * the log. Each source gets a few warnings per window; the rest are
 * counted and summed up in one line when the source next speaks after the
 * window.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";

/** Options for a {@linkcode WarningLimiter}. */
export interface WarningLimiterOptions {
  /** Warnings per source per window. */
  limit: number;
  /** The window, in milliseconds. */
  windowMs: number;
  /** The most sources remembered at once. */
  maxSources?: number;
}

interface Budget {
  windowStart: number;
  used: number;
  suppressed: number;
}

/** Lets through a few warnings per source and window. */
export class WarningLimiter {
  #logger: Logger;
  #limit: number;
  #windowMs: number;
  #maxSources: number;
  #budgets = new Map<string, Budget>();

  constructor(logger: Logger, options: WarningLimiterOptions) {
    this.#logger = logger;
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxSources = options.maxSources ?? 4096;
  }

  /**
   * Logs a warning unless `source` has used its budget in this window.
   *
   * @param source Who caused it (an IP address, say).
   * @param message A LogTape message template.
   * @param properties Its values.
   */
  warn(source: string, message: string, properties: Record<string, unknown>) {
    const now = performance.now();
    let budget = this.#budgets.get(source);
    if (budget && now - budget.windowStart >= this.#windowMs) {
      if (budget.suppressed > 0) {
        this.#logger.warn(
          "Suppressed {count} more warnings from {source} in the last {seconds} s",
          {
            count: budget.suppressed,
            source,
            seconds: Math.round((now - budget.windowStart) / 1000),
          },
        );
      }
      budget = undefined;
    }
    if (!budget) {
      if (this.#budgets.size >= this.#maxSources) {
        const [oldest] = this.#budgets.keys();
        this.#budgets.delete(oldest);
      }
      budget = { windowStart: now, used: 0, suppressed: 0 };
      this.#budgets.set(source, budget);
    }
    if (budget.used < this.#limit) {
      budget.used++;
      this.#logger.warn(message, properties);
      if (budget.used === this.#limit) {
        this.#logger.warn(
          "Further warnings from {source} are suppressed for {seconds} s",
          { source, seconds: Math.round(this.#windowMs / 1000) },
        );
      }
    } else {
      budget.suppressed++;
    }
  }
}
