/**
 * The framer's error: a frame grew past the decoder's limit.
 *
 * @module
 */

/**
 * Options for {@linkcode FrameSizeError}.
 *
 * @example Construct the error
 * ```ts
 * import { FrameSizeError, type FrameSizeErrorOptions } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const options: FrameSizeErrorOptions = { limit: 1024 };
 * const error = new FrameSizeError("Frame over 1024 bytes", options);
 * assertEquals([error.name, error.limit], ["FrameSizeError", 1024]);
 * ```
 */
export interface FrameSizeErrorOptions extends ErrorOptions {
  /** The limit that was exceeded, in bytes. */
  limit: number;
}

/**
 * A frame grew past the decoder's `maxFrameBytes`.
 *
 * @example Inspect the limit
 * ```ts
 * import { FrameSizeError } from "@x/mllp/errors";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new FrameSizeError("Too big", { limit: 10 });
 * assertEquals(error.limit, 10);
 * ```
 */
export class FrameSizeError extends Error {
  /** The limit that was exceeded, in bytes. */
  readonly limit: number;

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options The limit and an optional cause.
   */
  constructor(message: string, options: FrameSizeErrorOptions) {
    super(message, options);
    this.name = "FrameSizeError";
    this.limit = options.limit;
  }
}
