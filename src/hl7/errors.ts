/**
 * The error for HL7 that cannot be read: a header (MSH, FHS, BHS) or an
 * ACK that is not what it must be.
 *
 * @module
 */

/**
 * A payload that starts with `MSH` cannot be read as HL7 (bad separators,
 * a truncated header). Receivers answer such input with an AR ACK.
 *
 * @example Catch an unreadable header
 * ```ts
 * import { HeaderError } from "@x/mllp/errors";
 * import { readHeader } from "@x/mllp/hl7";
 * import { assertThrows } from "@std/assert";
 *
 * assertThrows(() => readHeader("MSH|"), HeaderError);
 * ```
 */
export class HeaderError extends Error {
  /**
   * Constructs a new error.
   *
   * @param message What cannot be read.
   * @param options An optional cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HeaderError";
  }
}
