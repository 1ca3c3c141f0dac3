/**
 * Envelope helpers: add or remove the MLLP frame around one whole payload.
 * For streams, use the framer.
 *
 * @example Wrap and unwrap
 * ```ts
 * import { unwrap, wrap } from "@x/mllp/envelope";
 * import { assertEquals } from "@std/assert";
 *
 * const framed = wrap("Hip hip hurray");
 * assertEquals(framed, "\x0bHip hip hurray\x1c\r");
 * assertEquals(wrap(framed), framed); // never double-wrapped
 * assertEquals(unwrap(framed), "Hip hip hurray");
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { CARRIAGE_RETURN, END_BLOCK, START_BLOCK } from "./framer.ts";

const logger = getLogger(["mllp", "envelope"]);

const START = String.fromCharCode(START_BLOCK);
const END = String.fromCharCode(END_BLOCK, CARRIAGE_RETURN);

/**
 * Tells whether a payload is already wrapped: it starts with VT and ends
 * with FS CR.
 *
 * @param payload Text or bytes.
 * @returns Whether the payload carries an MLLP frame.
 *
 * @example Check a payload
 * ```ts
 * import { isWrapped } from "@x/mllp/envelope";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isWrapped("\x0bA\x1c\r"), true);
 * assertEquals(isWrapped("A"), false);
 * ```
 */
export function isWrapped(payload: string | Uint8Array): boolean {
  if (typeof payload === "string") {
    return payload.length >= 3 && payload.startsWith(START) &&
      payload.endsWith(END);
  }
  const n = payload.length;
  return n >= 3 && payload[0] === START_BLOCK &&
    payload[n - 2] === END_BLOCK && payload[n - 1] === CARRIAGE_RETURN;
}

/**
 * Wraps a payload in an MLLP frame. A payload that is already wrapped is
 * returned unchanged.
 *
 * @typeParam T Text in, text out; bytes in, bytes out.
 * @param payload The payload.
 * @returns The framed payload.
 *
 * @example Wrap bytes
 * ```ts
 * import { wrap } from "@x/mllp/envelope";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(wrap(new Uint8Array([0x41])), new Uint8Array([0x0b, 0x41, 0x1c, 0x0d]));
 * ```
 */
export function wrap<T extends string | Uint8Array>(payload: T): T {
  if (isWrapped(payload)) return payload;
  if (typeof payload === "string") return (START + payload + END) as T;
  const bytes = payload as Uint8Array;
  const framed = new Uint8Array(bytes.length + 3);
  framed[0] = START_BLOCK;
  framed.set(bytes, 1);
  framed[bytes.length + 1] = END_BLOCK;
  framed[bytes.length + 2] = CARRIAGE_RETURN;
  return framed as T;
}

/**
 * Removes the MLLP frame from a payload. A payload that is not wrapped is
 * returned unchanged (and a debug line says the unwrapping was not
 * needed).
 *
 * @typeParam T Text in, text out; bytes in, bytes out.
 * @param payload The framed payload.
 * @returns The payload without its frame.
 *
 * @example Unwrapping an unwrapped payload is harmless
 * ```ts
 * import { unwrap } from "@x/mllp/envelope";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(unwrap("MSH|^~\\&|A"), "MSH|^~\\&|A");
 * ```
 */
export function unwrap<T extends string | Uint8Array>(payload: T): T {
  if (!isWrapped(payload)) {
    // Checked first: the client unwraps every payload it sends.
    if (logger.isEnabledFor("debug")) {
      logger.debug(
        "MLLP Envelope performed unnecessary unwrapping of unwrapped message",
      );
    }
    return payload;
  }
  if (typeof payload === "string") return payload.slice(1, -2) as T;
  return (payload as Uint8Array).subarray(1, payload.length - 2) as T;
}
