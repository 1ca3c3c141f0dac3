/**
 * Error classes for what callers of this library catch: framing limits,
 * unreadable HL7 headers and client transport failures. Each has `name` set and passes `cause`
 * through.
 *
 * @example Tell a refused connection from a reply timeout
 * ```ts
 * import { ConnectionRefusedError, ReplyTimeoutError } from "@x/mllp/errors";
 * import { assert } from "@std/assert";
 *
 * const error: Error = new ReplyTimeoutError("No reply", { timeout: 100 });
 * assert(error instanceof ReplyTimeoutError);
 * assert(!(error instanceof ConnectionRefusedError));
 * ```
 *
 * @module
 */

export * from "./wire/errors.ts";
export * from "./hl7/errors.ts";
export type { TlsFailure, TlsSide } from "./net/tls.ts";
export * from "./client/errors.ts";
